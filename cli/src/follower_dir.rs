//! Reading a follower directory (what `aggrelog follow --db DIR` writes; its layout is the
//! `aggrelog-kafka` crate's `layout`, used without that crate's Kafka client, so the default
//! build reads follower directories too). `get`, `scan` and `stats` read every partition
//! database read-only, beside a running follower.

use std::path::{Path, PathBuf};

use aggrelog::Db;
use aggrelog_kafka::layout::{partition_dbs, read_marker};

use crate::open::{in_database, reader_options, DbArgs};
use crate::output::Failure;

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
    let Some(marker) = read_marker(dir)? else {
        return Ok(None);
    };
    let partitions = partition_dbs(dir, &marker.topic)?;
    Ok(Some(FollowerDir {
        topic: marker.topic,
        group: marker.group,
        partitions,
    }))
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
