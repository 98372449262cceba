//! The storage seam: every byte aggrelog reads or writes goes through [`Storage`].
//!
//! [`FsStorage`] is the real implementation (files, `fdatasync`, mmap'd reads, `flock`). Tests can
//! supply another implementation (the `testing` feature's simulated disk, which loses unsynced
//! writes, tears writes or fails syncs) without the engine noticing.

mod fs;

pub use fs::FsStorage;

use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

/// A file opened for appending. Writes go to the end of the file.
pub trait AppendFile: Send {
    /// Appends all of `data`.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// An immutable view of the first bytes of a file (a memory map for [`FsStorage`]).
///
/// The bytes are stable as long as nobody rewrites or truncates that range of the file, which
/// aggrelog guarantees for every range it maps (appends only ever extend a segment; a torn tail
/// is truncated before any view of it is kept).
#[derive(Clone)]
pub struct ReadView(Arc<dyn AsRef<[u8]> + Send + Sync>);

impl ReadView {
    /// A view over any byte container.
    pub fn new(bytes: impl AsRef<[u8]> + Send + Sync + 'static) -> Self {
        ReadView(Arc::new(bytes))
    }
}

impl Deref for ReadView {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_ref().as_ref()
    }
}

impl fmt::Debug for ReadView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadView({} bytes)", self.len())
    }
}

/// A held lock on a database directory; dropping it releases the lock.
pub trait DirLock: Send + Sync + fmt::Debug {}

/// All file-system access of the engine: every byte aggrelog reads or writes goes through it.
/// [`FsStorage`] is the real one; another implementation can count, slow down, fail or simulate
/// operations (the `testing` feature's `SimStorage` simulates power loss).
///
/// ```
/// use std::io;
/// use std::path::Path;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// use aggrelog::{AppendFile, Batch, Db, DirLock, FsStorage, MergePatch, Options, ReadView, Storage};
///
/// /// The real file system, counting directory syncs.
/// #[derive(Debug, Default)]
/// struct Counting {
///     dir_syncs: AtomicU64,
/// }
///
/// impl Storage for Counting {
///     fn sync_dir(&self, dir: &Path) -> io::Result<()> {
///         self.dir_syncs.fetch_add(1, Ordering::Relaxed);
///         FsStorage.sync_dir(dir)
///     }
///     fn create_dir_all(&self, dir: &Path) -> io::Result<()> { FsStorage.create_dir_all(dir) }
///     fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> { FsStorage.list_dir(dir) }
///     fn exists(&self, path: &Path) -> io::Result<bool> { FsStorage.exists(path) }
///     fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
///         FsStorage.create_new(path)
///     }
///     fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
///         FsStorage.open_append(path)
///     }
///     fn file_len(&self, path: &Path) -> io::Result<u64> { FsStorage.file_len(path) }
///     fn read_view(&self, path: &Path, len: u64) -> io::Result<ReadView> {
///         FsStorage.read_view(path, len)
///     }
///     fn truncate(&self, path: &Path, len: u64) -> io::Result<()> { FsStorage.truncate(path, len) }
///     fn remove(&self, path: &Path) -> io::Result<()> { FsStorage.remove(path) }
///     fn rename(&self, from: &Path, to: &Path) -> io::Result<()> { FsStorage.rename(from, to) }
///     fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn DirLock>>> {
///         FsStorage.try_lock(path)
///     }
/// }
///
/// # fn main() -> aggrelog::Result<()> {
/// let dir = tempfile::tempdir().expect("temp dir");
/// let storage = Arc::new(Counting::default());
/// let db = Db::open_with(dir.path(), Options::default(), MergePatch, storage.clone())?;
/// db.write(Batch::new().patch("a", 1, &serde_json::json!({"x": 1}))?)?;
/// db.close()?;
/// assert!(storage.dir_syncs.load(Ordering::Relaxed) > 0); // creating the segment synced `wal/`
/// # Ok(())
/// # }
/// ```
pub trait Storage: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents (owner-only permissions) if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries in `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Creates a new, empty file (owner-only); fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Current length of the file in bytes.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// A read-only view of the first `len` bytes of the file (`len` must not exceed its length).
    fn read_view(&self, path: &Path, len: u64) -> io::Result<ReadView>;
    /// Cuts the file to `len` bytes and makes that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing); `Ok(None)` when someone else,
    /// in this process or another, holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn DirLock>>>;
    /// Makes `to` a second name of the file `from` (a hard link), or fails; `to` must not exist.
    /// Backups link immutable files when they can and copy them otherwise. The default says
    /// the storage cannot.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _ = (from, to);
        Err(io::ErrorKind::Unsupported.into())
    }
}
