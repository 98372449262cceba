//! Reading a follower directory (what `aggrelog follow --db DIR` writes, see the
//! `aggrelog-kafka` crate's `layout`): `DIR/aggrelog-follower.json` marks it, and each
//! partition's database is `DIR/<topic>.<partition>/`. `get`, `scan` and `stats` read every
//! partition database read-only, beside a running follower. This needs no Kafka client, so the
//! default build reads follower directories too.

use std::fs;
use std::path::{Path, PathBuf};

use aggrelog::Db;
use serde_json::Value;

use crate::open::{in_database, reader_options, DbArgs};
use crate::output::Failure;

/// The marker file of a follower directory.
const MARKER_FILE: &str = "aggrelog-follower.json";

/// A follower directory: its topic, group and partition databases.
pub struct FollowerDir {
    /// The topic followed.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// The partition databases, by partition.
    pub partitions: Vec<(u32, PathBuf)>,
}

/// The follower directory `dir`, or `None` when it holds no marker.
pub fn detect(dir: &Path) -> Result<Option<FollowerDir>, Failure> {
    let marker = dir.join(MARKER_FILE);
    let text = match fs::read_to_string(&marker) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::new(format!("{}: {e}", marker.display()))),
    };
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(topic), Some(group)) = (field("topic"), field("group")) else {
        return Err(Failure::new(format!(
            "{}: not a follower marker (it needs \"topic\" and \"group\")",
            marker.display()
        )));
    };
    let partitions = partition_dbs(dir, &topic)?;
    Ok(Some(FollowerDir {
        topic,
        group,
        partitions,
    }))
}

/// The `<topic>.<partition>` directories in `dir`, by partition.
fn partition_dbs(dir: &Path, topic: &str) -> Result<Vec<(u32, PathBuf)>, Failure> {
    let in_dir = |e: std::io::Error| Failure::new(format!("{}: {e}", dir.display()));
    let prefix = format!("{topic}.");
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(in_dir)? {
        let entry = entry.map_err(in_dir)?;
        let name = entry.file_name();
        let partition = (name.to_str())
            .and_then(|name| name.strip_prefix(&prefix))
            .and_then(|number| number.parse::<u32>().ok());
        if let (Some(partition), true) = (partition, entry.path().is_dir()) {
            found.push((partition, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

impl FollowerDir {
    /// Opens every partition database read-only, by partition. A partition directory the
    /// follower has just created and not yet made a database is skipped.
    pub fn open(&self, args: &DbArgs) -> Result<Vec<(u32, Db)>, Failure> {
        let mut dbs = Vec::new();
        for (partition, path) in &self.partitions {
            match Db::open_read_only(path, reader_options(args)) {
                Ok(db) => dbs.push((*partition, db)),
                Err(aggrelog::Error::NotADatabase { .. }) => continue,
                Err(e) => return Err(in_database(path, e)),
            }
        }
        Ok(dbs)
    }
}
