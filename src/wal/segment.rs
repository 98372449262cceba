//! Segment files: naming, listing and creation.

use std::path::{Path, PathBuf};

use super::format::{encode_segment_header, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::storage::{AppendFile, Storage};

/// Name of the directory holding segment files, inside the database directory.
pub const WAL_DIR: &str = "wal";
const SEGMENT_SUFFIX: &str = ".seg";

/// File name of segment `id`: 20 zero-padded decimal digits and `.seg`, so names sort by id.
pub fn segment_file_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

/// The segment id a file name denotes, if it is a segment file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Path of segment `id` in `wal_dir`.
pub fn segment_path(wal_dir: &Path, id: u64) -> PathBuf {
    wal_dir.join(segment_file_name(id))
}

/// Ids of the segment files in `wal_dir`, ascending.
pub fn list_segments(storage: &dyn Storage, wal_dir: &Path) -> Result<Vec<u64>> {
    let names = storage
        .list_dir(wal_dir)
        .map_err(|e| Error::io(wal_dir, e))?;
    let mut ids: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Creates segment `id` with its header, makes the file and its directory entry durable, and
/// returns it open for appending.
pub fn create_segment(
    storage: &dyn Storage,
    wal_dir: &Path,
    id: u64,
) -> Result<(PathBuf, Box<dyn AppendFile>)> {
    let path = segment_path(wal_dir, id);
    let mut file = storage.create_new(&path).map_err(|e| Error::io(&path, e))?;
    file.append(&encode_segment_header(id, FORMAT_VERSION))
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(&path, e))?;
    storage
        .sync_dir(wal_dir)
        .map_err(|e| Error::io(wal_dir, e))?;
    Ok((path, file))
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
    }
}
