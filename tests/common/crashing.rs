//! A storage that "crashes" at its k-th mutating operation: that operation and every later
//! one fail without touching the disk, as if the process had died there. Reads still work.
//! It wraps the real file system by default, or any other storage (the simulated one, whose
//! `crash()` then turns the process death into a power loss).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aggrelog::storage::{AppendFile, DirLock, FsStorage, ReadView, Storage};

#[derive(Debug)]
pub struct Crashing {
    /// The storage underneath.
    pub inner: Arc<dyn Storage>,
    /// Mutating operations performed so far.
    pub performed: Arc<AtomicU64>,
    /// The operation number (1-based) at which to crash; 0 = never.
    pub crash_at: Arc<AtomicU64>,
    /// What each performed operation was, for failure messages.
    pub journal: Arc<Mutex<Vec<String>>>,
}

impl Default for Crashing {
    fn default() -> Self {
        Crashing::over(Arc::new(FsStorage))
    }
}

impl Crashing {
    /// A crashing storage over `inner`.
    pub fn over(inner: Arc<dyn Storage>) -> Self {
        Crashing {
            inner,
            performed: Arc::default(),
            crash_at: Arc::default(),
            journal: Arc::default(),
        }
    }

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
        if !self.inner.exists(dir)? {
            self.step(|| format!("mkdir {}", name(dir)))?;
        }
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        self.step(|| format!("create {}", name(path)))?;
        Ok(self.wrap(path, self.inner.create_new(path)?))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(self.wrap(path, self.inner.open_append(path)?))
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_len(path)
    }
    fn read_view(&self, path: &Path, len: u64) -> io::Result<ReadView> {
        self.inner.read_view(path, len)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.step(|| format!("truncate {} to {len}", name(path)))?;
        self.inner.truncate(path, len)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.step(|| format!("remove {}", name(path)))?;
        self.inner.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(|| format!("rename {} to {}", name(from), name(to)))?;
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(|| format!("sync dir {}", name(dir)))?;
        self.inner.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn DirLock>>> {
        self.inner.try_lock(path)
    }
}
