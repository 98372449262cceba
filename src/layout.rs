//! The database directory: what lives where, how files are named, and the directory operations
//! open performs (DESIGN.md, section 2).
//!
//! ```text
//! DIR/                             0700
//!   LOCK                           0600, empty; flock held by the open handle
//!   wal/00000000000000000001.seg   segment files: 20-digit id, ".seg"
//!   checkpoints/00000000000000000001.ckpt   checkpoint files: 20-digit number, ".ckpt"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::options::Options;
use crate::storage::{DirLock, Storage};

/// Name of the lock file inside the database directory.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the directory holding segment files, inside the database directory.
pub const WAL_DIR: &str = "wal";
/// Name of the directory holding checkpoint files, inside the database directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";

const SEGMENT_SUFFIX: &str = ".seg";
const CHECKPOINT_SUFFIX: &str = ".ckpt";
/// Suffix of a checkpoint file being written (renamed into place once synced).
pub const CHECKPOINT_TEMP_SUFFIX: &str = ".ckpt.tmp";

/// The highest segment id: the index stores segment ids in 32 bits. A segment file numbered
/// higher is not one this engine wrote.
pub const MAX_SEGMENT_ID: u64 = u32::MAX as u64;

/// File name of segment `id`: 20 zero-padded decimal digits and `.seg`, so names sort by id.
pub fn segment_file_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

/// The number a file name `{20 digits}{suffix}` carries, if it is such a name.
fn numbered(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment id a file name denotes, if it is a segment file name (any number: see
/// [`list_segments`] for the ones that fit).
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    numbered(name, SEGMENT_SUFFIX)
}

/// Path of segment `id` in `wal_dir`.
pub fn segment_path(wal_dir: &Path, id: u64) -> PathBuf {
    wal_dir.join(segment_file_name(id))
}

/// Ids of the segment files in `wal_dir`, ascending. A segment file whose number exceeds
/// [`MAX_SEGMENT_ID`] is corruption (it would alias another segment in the index).
pub fn list_segments(storage: &dyn Storage, wal_dir: &Path) -> Result<Vec<u64>> {
    let names = storage
        .list_dir(wal_dir)
        .map_err(|e| Error::io(wal_dir, e))?;
    let mut ids = Vec::new();
    for name in &names {
        let Some(id) = parse_segment_file_name(name) else {
            continue;
        };
        if id > MAX_SEGMENT_ID {
            return Err(Error::corruption(
                wal_dir.join(name),
                0,
                format!("segment number {id} is above the highest segment id {MAX_SEGMENT_ID}"),
            ));
        }
        ids.push(id);
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The id after `id`, unless `id` is the last one.
pub fn next_segment_id(id: u64) -> Result<u64> {
    debug_assert!(id <= MAX_SEGMENT_ID, "segment ids are checked when listed");
    if id >= MAX_SEGMENT_ID {
        return Err(Error::Exhausted(format!(
            "segment id {id} is the last one ({MAX_SEGMENT_ID})"
        )));
    }
    Ok(id + 1)
}

/// The 32-bit form of a log location the index stores: the segment id (checked when listed or
/// allocated) and the offset (segments are smaller than 4 GiB).
pub fn index_location(segment: u64, offset: u64) -> (u32, u32) {
    debug_assert!(segment <= MAX_SEGMENT_ID, "segment {segment}");
    debug_assert!(offset <= u64::from(u32::MAX), "offset {offset}");
    (segment as u32, offset as u32)
}

/// File name of checkpoint `number`.
pub fn checkpoint_file_name(number: u64) -> String {
    format!("{number:020}{CHECKPOINT_SUFFIX}")
}

/// The checkpoint number a file name denotes, if it is a checkpoint file name.
pub fn parse_checkpoint_file_name(name: &str) -> Option<u64> {
    numbered(name, CHECKPOINT_SUFFIX)
}

/// Directory of checkpoint files of the database in `dir`.
pub fn checkpoint_dir(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_DIR)
}

/// Creates the database directory if it is missing and `options` allow it, making every
/// directory created durable in its parent (outermost first).
pub fn prepare_dir(storage: &dyn Storage, dir: &Path, options: &Options) -> Result<()> {
    if storage.exists(dir).map_err(|e| Error::io(dir, e))? {
        return Ok(());
    }
    if !options.create_if_missing {
        return Err(Error::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let mut created = Vec::new();
    for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        if storage
            .exists(ancestor)
            .map_err(|e| Error::io(ancestor, e))?
        {
            break;
        }
        created.push(ancestor);
    }
    storage.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for made in created.iter().rev() {
        if let Some(parent) = made.parent().filter(|p| !p.as_os_str().is_empty()) {
            storage.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
        }
    }
    Ok(())
}

/// Fails with [`Error::NotADatabase`] when `dir` exists but holds no log and `options` do not
/// allow creating a database: open must then leave no file behind.
pub fn require_database(storage: &dyn Storage, dir: &Path, options: &Options) -> Result<()> {
    let wal_dir = dir.join(WAL_DIR);
    if options.create_if_missing
        || storage
            .exists(&wal_dir)
            .map_err(|e| Error::io(&wal_dir, e))?
    {
        return Ok(());
    }
    Err(Error::NotADatabase {
        path: dir.to_path_buf(),
    })
}

/// Makes the entries of the database directory and its checkpoint directory durable: what open
/// is about to rely on may have been created by a handle whose directory sync failed.
pub fn sync_dirs(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let checkpoints = checkpoint_dir(dir);
    for d in [dir, checkpoints.as_path()] {
        if storage.exists(d).map_err(|e| Error::io(d, e))? {
            storage.sync_dir(d).map_err(|e| Error::io(d, e))?;
        }
    }
    Ok(())
}

/// Takes the exclusive lock of the database in `dir`.
pub fn take_lock(storage: &dyn Storage, dir: &Path) -> Result<Box<dyn DirLock>> {
    let path = dir.join(LOCK_FILE);
    storage
        .try_lock(&path)
        .map_err(|e| Error::io(&path, e))?
        .ok_or_else(|| Error::Locked {
            path: dir.to_path_buf(),
        })
}

/// Lengths of the segment files of the database in `dir`, by id.
pub fn segment_lengths(storage: &dyn Storage, dir: &Path) -> Result<BTreeMap<u64, u64>> {
    let wal_dir = dir.join(WAL_DIR);
    if !storage
        .exists(&wal_dir)
        .map_err(|e| Error::io(&wal_dir, e))?
    {
        return Ok(BTreeMap::new());
    }
    let mut lengths = BTreeMap::new();
    for id in list_segments(storage, &wal_dir)? {
        let path = segment_path(&wal_dir, id);
        let len = storage.file_len(&path).map_err(|e| Error::io(&path, e))?;
        lengths.insert(id, len);
    }
    Ok(lengths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(segment_file_name(7), "00000000000000000007.seg");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("7.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.seg"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
        assert_eq!(
            parse_checkpoint_file_name(&checkpoint_file_name(3)),
            Some(3)
        );
        assert_eq!(
            parse_checkpoint_file_name("00000000000000000003.ckpt.tmp"),
            None
        );
    }

    #[test]
    fn segment_ids_stop_at_32_bits() {
        assert_eq!(next_segment_id(1).unwrap(), 2);
        assert!(matches!(
            next_segment_id(MAX_SEGMENT_ID),
            Err(Error::Exhausted(_))
        ));
    }
}
