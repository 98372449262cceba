//! Online backup (DESIGN.md, section 5b2): a point-in-time copy of the log at its end E, its
//! checkpoints up to E and an empty lock file, written while writers go on. Immutable files
//! (sealed segments, checkpoints) are hard-linked where the storage allows, copied otherwise.

use std::path::{Path, PathBuf};

use crate::checkpoint::format as checkpoint;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::layout::{checkpoint_dir, prepare_dir, LOCK_FILE, WAL_DIR};
use crate::model::Model;
use crate::options::Options;
use crate::retry::is_vanished_file;
use crate::wal::RecordLocation;

/// What [`Db::backup`](crate::Db::backup) wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup's directory.
    pub dest: PathBuf,
    /// The log position the copy ends at: every batch before it is in the backup.
    pub position: RecordLocation,
    /// Bytes of every file in the backup.
    pub bytes: u64,
    /// Of those, bytes shared with the source through hard links (not copied).
    pub linked_bytes: u64,
}

/// One file of the backup: where it comes from, how many of its bytes, and whether it may be
/// linked (immutable) or must be copied (the active segment's prefix).
struct Part {
    from: PathBuf,
    to: PathBuf,
    bytes: u64,
    immutable: bool,
    /// A segment: its id, read through the log's (possibly already mapped) view; a checkpoint
    /// is read from its file, and skipped if a writer in another process deleted it meanwhile.
    segment: Option<u64>,
}

/// Writes the backup of `engine` into `dest`, which must not exist.
pub(crate) fn backup<M: Model>(engine: &Engine<M>, dest: &Path) -> Result<BackupReport> {
    let storage = engine.storage();
    if storage.exists(dest).map_err(|e| Error::io(dest, e))? {
        return Err(Error::InvalidInput(format!(
            "backup destination {} exists; a backup goes into a new directory",
            dest.display()
        )));
    }
    // No checkpoint or compaction of this handle while the parts are listed and copied: none
    // of them is deleted or rewritten meanwhile. (A read-only handle copies the segments it
    // has mapped, which a writer elsewhere deleting them does not change.)
    let _maintenance = engine.maintenance();
    let end = engine.log().end();
    let parts = parts(engine, dest, end)?;
    prepare_dir(storage, dest, &Options::default())?;
    let mut report = BackupReport {
        dest: dest.to_path_buf(),
        position: end,
        bytes: 0,
        linked_bytes: 0,
    };
    for dir in [dest.join(WAL_DIR), checkpoint_dir(dest)] {
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, e))?;
    }
    for part in &parts {
        match place(engine, part) {
            Ok(linked) => {
                report.linked_bytes += linked;
                report.bytes += part.bytes;
            }
            Err(e) if part.segment.is_none() && is_vanished_file(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let lock = dest.join(LOCK_FILE);
    storage
        .create_new(&lock)
        .and_then(|mut file| file.sync_data())
        .map_err(|e| Error::io(&lock, e))?;
    for dir in [dest.join(WAL_DIR), checkpoint_dir(dest), dest.to_path_buf()] {
        storage.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    debug_assert!(report.linked_bytes <= report.bytes);
    Ok(report)
}

/// The files of the log up to `end` and the checkpoints at or before it.
fn parts<M: Model>(engine: &Engine<M>, dest: &Path, end: RecordLocation) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    for (id, path, len) in engine.log().segments() {
        if id > end.segment {
            continue;
        }
        let sealed = id < end.segment;
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        parts.push(Part {
            to: dest.join(WAL_DIR).join(name),
            from: path,
            bytes: if sealed { len } else { end.offset },
            immutable: sealed,
            segment: Some(id),
        });
    }
    let source_checkpoints = checkpoint_dir(engine.dir());
    let listing = checkpoint::list(engine.storage(), &source_checkpoints)?;
    for (_, path) in listing.checkpoints {
        let storage = engine.storage();
        let usable = checkpoint::load(storage, &path).is_ok_and(|c| c.meta.position <= end);
        let Some(bytes) = usable.then(|| storage.file_len(&path).ok()).flatten() else {
            continue;
        };
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        parts.push(Part {
            to: checkpoint_dir(dest).join(name),
            from: path,
            bytes,
            immutable: true,
            segment: None,
        });
    }
    Ok(parts)
}

/// Links or copies one part and makes it durable; returns the bytes linked.
fn place<M: Model>(engine: &Engine<M>, part: &Part) -> Result<u64> {
    let storage = engine.storage();
    if part.immutable && storage.hard_link(&part.from, &part.to).is_ok() {
        return Ok(part.bytes);
    }
    let view = match part.segment {
        Some(id) => engine.log().view(id, part.bytes)?,
        None => storage
            .read_view(&part.from, part.bytes)
            .map_err(|e| Error::io(&part.from, e))?,
    };
    let mut file = storage
        .create_new(&part.to)
        .map_err(|e| Error::io(&part.to, e))?;
    file.append(&view[..part.bytes as usize])
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(&part.to, e))?;
    Ok(0)
}
