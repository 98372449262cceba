//! The follower directory: `DIR/aggrelog-follower.json` (`{"topic":T,"group":G}`, written at
//! start so that tools recognise the directory) and one aggrelog database per partition the
//! follower has held, `DIR/<topic>.<partition>/`.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The marker file's name.
pub const MARKER_FILE: &str = "aggrelog-follower.json";

/// What the marker of a follower directory says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The topic followed.
    pub topic: String,
    /// The consumer group.
    pub group: String,
}

/// The database directory of `partition` of `topic` in the follower directory `dir`.
pub fn partition_dir(dir: &Path, topic: &str, partition: u32) -> PathBuf {
    dir.join(format!("{topic}.{partition}"))
}

/// The marker of the follower directory `dir`: `Ok(None)` when `dir` holds none (it is not a
/// follower directory), an error when it holds one that cannot be read.
pub fn read_marker(dir: &Path) -> Result<Option<Marker>> {
    let path = dir.join(MARKER_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let bad = |reason: &str| Error::Directory {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    match (field("topic"), field("group")) {
        (Some(topic), Some(group)) => Ok(Some(Marker { topic, group })),
        _ => Err(bad(
            "the marker needs string fields \"topic\" and \"group\"",
        )),
    }
}

/// Makes `dir` a follower directory of `topic` for `group`: creates it and writes its marker.
/// A directory that follows another topic is refused.
pub fn prepare(dir: &Path, topic: &str, group: &str) -> Result<()> {
    if let Some(marker) = read_marker(dir)? {
        if marker.topic != topic {
            return Err(Error::Directory {
                path: dir.to_path_buf(),
                reason: format!("follows topic {:?}, not {topic:?}", marker.topic),
            });
        }
        if marker.group == group {
            return Ok(());
        }
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let text = json!({"topic": topic, "group": group}).to_string();
    write_durably(&dir.join(MARKER_FILE), text.as_bytes())
}

/// The partition databases in the follower directory `dir` of `topic`, by partition.
pub fn partition_dbs(dir: &Path, topic: &str) -> Result<Vec<(u32, PathBuf)>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let prefix = format!("{topic}.");
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let partition = (name.to_str())
            .and_then(|name| name.strip_prefix(&prefix))
            .and_then(|number| number.parse::<u32>().ok());
        if let Some(partition) = partition {
            if entry.path().is_dir() {
                found.push((partition, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Writes `path` whole or not at all: a temporary file, synced, renamed over it, and the
/// directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
    (file.write_all(bytes).and_then(|()| file.sync_all())).map_err(|e| Error::io(&temporary, e))?;
    fs::rename(&temporary, path).map_err(|e| Error::io(path, e))?;
    sync_parent(path)
}

/// Syncs the directory holding `path`, so that a new entry in it is durable.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    (File::open(parent).and_then(|dir| dir.sync_all())).map_err(|e| Error::io(parent, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_follows_one_topic() {
        let dir =
            std::env::temp_dir().join(format!("aggrelog-kafka-layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(read_marker(&dir).unwrap(), None);
        prepare(&dir, "deltas", "g1").unwrap();
        prepare(&dir, "deltas", "g2").unwrap();
        let marker = read_marker(&dir).unwrap().unwrap();
        assert_eq!(
            (marker.topic.as_str(), marker.group.as_str()),
            ("deltas", "g2")
        );
        assert!(prepare(&dir, "other", "g2").is_err());
        fs::create_dir_all(partition_dir(&dir, "deltas", 3)).unwrap();
        fs::create_dir_all(partition_dir(&dir, "deltas", 1)).unwrap();
        fs::create_dir_all(dir.join("deltas.x")).unwrap();
        let found: Vec<u32> = partition_dbs(&dir, "deltas")
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(found, [1, 3]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
