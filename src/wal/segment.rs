//! Creating a segment file (its name and place come from [`crate::layout`]).

use std::path::{Path, PathBuf};

use super::format::{encode_segment_header, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::layout::segment_path;
use crate::storage::{AppendFile, Storage};

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
