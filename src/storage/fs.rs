//! The real file system behind the storage seam.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use memmap2::MmapOptions;

use super::{AppendFile, DirLock, ReadView, Storage};

/// Permission bits of files aggrelog creates: owner read/write only.
const FILE_MODE: u32 = 0o600;
/// Permission bits of directories aggrelog creates: owner only.
const DIR_MODE: u32 = 0o700;

/// Storage on the local file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsStorage;

struct FsAppendFile {
    file: File,
}

impl AppendFile for FsAppendFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[derive(Debug)]
struct FsLock {
    // Held for its flock; released when the file is closed.
    _file: File,
}

impl DirLock for FsLock {}

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)?;
        Ok(Box::new(FsAppendFile { file }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(FsAppendFile { file }))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn read_view(&self, path: &Path, len: u64) -> io::Result<ReadView> {
        if len == 0 {
            return Ok(ReadView::new(Vec::new()));
        }
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        if len > file_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("asked to map {len} bytes of a {file_len}-byte file"),
            ));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::other("file too large to map"))?;
        // SAFETY: the mapping is read-only and covers bytes aggrelog never rewrites or truncates
        // while a view exists: segments only grow by appends, a torn tail is truncated at open
        // before any view of it is kept, and the directory lock keeps other aggrelog processes
        // out. Another program truncating the file behind our back could still fault the reader,
        // as with any mmap-based engine.
        let map = unsafe { MmapOptions::new().len(len).map(&file)? };
        Ok(ReadView::new(map))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn DirLock>>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(FsLock { _file: file }))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
