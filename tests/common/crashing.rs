//! A storage that "crashes" at its k-th mutating operation: that operation and every later
//! one fail without touching the disk, as if the process had died there. Reads still work.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aggrelog::storage::{AppendFile, DirLock, FsStorage, ReadView, Storage};

#[derive(Debug, Default)]
pub struct Crashing {
    /// Mutating operations performed so far.
    pub performed: Arc<AtomicU64>,
    /// The operation number (1-based) at which to crash; 0 = never.
    pub crash_at: Arc<AtomicU64>,
    /// What each performed operation was, for failure messages.
    pub journal: Arc<Mutex<Vec<String>>>,
}

impl Crashing {
    fn step(&self, what: impl FnOnce() -> String) -> io::Result<()> {
        step(&self.performed, &self.crash_at, &self.journal, what)
    }
}

fn step(
    performed: &AtomicU64,
    crash_at: &AtomicU64,
    journal: &Mutex<Vec<String>>,
    what: impl FnOnce() -> String,
) -> io::Result<()> {
    let n = performed.load(Ordering::SeqCst) + 1;
    let at = crash_at.load(Ordering::SeqCst);
    if at != 0 && n >= at {
        return Err(io::Error::other(format!(
            "simulated crash at operation {at}"
        )));
    }
    performed.store(n, Ordering::SeqCst);
    journal.lock().unwrap().push(what());
    Ok(())
}

struct CrashingFile {
    inner: Box<dyn AppendFile>,
    performed: Arc<AtomicU64>,
    crash_at: Arc<AtomicU64>,
    journal: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl AppendFile for CrashingFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        step(&self.performed, &self.crash_at, &self.journal, || {
            format!("append {} bytes to {}", data.len(), self.name)
        })?;
        self.inner.append(data)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        step(&self.performed, &self.crash_at, &self.journal, || {
            format!("sync {}", self.name)
        })?;
        self.inner.sync_data()
    }
}

fn name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

impl Crashing {
    fn wrap(&self, path: &Path, inner: Box<dyn AppendFile>) -> Box<dyn AppendFile> {
        Box::new(CrashingFile {
            inner,
            performed: Arc::clone(&self.performed),
            crash_at: Arc::clone(&self.crash_at),
            journal: Arc::clone(&self.journal),
            name: name(path),
        })
    }
}

impl Storage for Crashing {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if !dir.exists() {
            self.step(|| format!("mkdir {}", name(dir)))?;
        }
        FsStorage.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsStorage.list_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        FsStorage.exists(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        self.step(|| format!("create {}", name(path)))?;
        Ok(self.wrap(path, FsStorage.create_new(path)?))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(self.wrap(path, FsStorage.open_append(path)?))
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        FsStorage.file_len(path)
    }
    fn read_view(&self, path: &Path, len: u64) -> io::Result<ReadView> {
        FsStorage.read_view(path, len)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.step(|| format!("truncate {} to {len}", name(path)))?;
        FsStorage.truncate(path, len)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.step(|| format!("remove {}", name(path)))?;
        FsStorage.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(|| format!("rename {} to {}", name(from), name(to)))?;
        FsStorage.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(|| format!("sync dir {}", name(dir)))?;
        FsStorage.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn DirLock>>> {
        FsStorage.try_lock(path)
    }
}
