//! A simulated file system for crash testing, driven by a seed.
//!
//! It models what real disks and kernels do to data that was not made durable (DESIGN.md, "Fault
//! model"):
//! - every file has a *synced length*: bytes up to it survive a crash; the unsynced tail survives
//!   independently per file, wholly, not at all, torn at a byte or 512-byte-sector boundary, or
//!   with *holes*: any subset of its sectors persisted (page-cache writeback in any order), the
//!   others read as zeros; a cut tail is sometimes followed by zeros up to the length the file
//!   had (delayed allocation);
//! - creations, removals and renames are durable only once their directory is synced; at a
//!   crash any subset of the pending ones survives (in order);
//! - faults on demand: short writes (part of the data written, then an error), a full disk
//!   (`ENOSPC` past a capacity), failing `fsync` (the data stays in the cache but is not durable),
//!   and failing reads;
//! - a crash kills the "process": every handle opened before it fails from then on, and locks
//!   are released.
//!
//! Everything is deterministic for a given seed and sequence of calls.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::rng::Rng;
use crate::storage::{AppendFile, DirLock, ReadView, Storage};

/// Sector size used for sector-granular tears.
const SECTOR_BYTES: usize = 512;

/// Faults injected by a [`SimStorage`], each a probability per operation (0 = never).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// An append writes a random part of its data, then fails.
    pub short_write: f64,
    /// A data sync fails (the data stays unsynced).
    pub fail_sync: f64,
    /// Reading a file fails.
    pub read_error: f64,
    /// Total file bytes the disk holds; appends past it write what fits, then fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
}

/// Counters of what a [`SimStorage`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Mutating operations performed.
    pub operations: u64,
    /// Crashes simulated.
    pub crashes: u64,
    /// Faults injected (short writes, failed syncs, failed reads, ENOSPC).
    pub faults: u64,
    /// Unsynced bytes dropped or torn away by crashes.
    pub bytes_lost: u64,
    /// Pending directory operations undone by crashes.
    pub dir_ops_lost: u64,
}

/// Salt of the storage's own generator.
const STORAGE_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Clone, Debug)]
enum DirOp {
    Link { path: PathBuf, entry: Entry },
    Unlink { path: PathBuf },
}

impl DirOp {
    fn dir(&self) -> Option<&Path> {
        match self {
            DirOp::Link { path, .. } | DirOp::Unlink { path } => path.parent(),
        }
    }

    fn apply(&self, namespace: &mut BTreeMap<PathBuf, Entry>) {
        match self {
            DirOp::Link { path, entry } => {
                namespace.insert(path.clone(), *entry);
            }
            DirOp::Unlink { path } => {
                namespace.remove(path);
            }
        }
    }
}

#[derive(Debug)]
struct SimState {
    rng: Rng,
    generation: u64,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    namespace: BTreeMap<PathBuf, Entry>,
    durable: BTreeMap<PathBuf, Entry>,
    pending: Vec<DirOp>,
    locks: HashMap<PathBuf, u64>,
    faults: FaultConfig,
    stats: SimStats,
}

/// The simulated file system. Cheap to clone: clones share the same disk.
#[derive(Clone)]
pub struct SimStorage {
    state: Arc<Mutex<SimState>>,
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimStorage({:?})", self.stats())
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn dead_handle() -> io::Error {
    io::Error::other("the process that opened this handle crashed")
}

impl SimStorage {
    /// An empty disk whose fault and crash choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        let mut namespace = BTreeMap::new();
        namespace.insert(PathBuf::from("/"), Entry::Dir);
        let state = SimState {
            rng: Rng::salted(seed, STORAGE_SALT),
            generation: 0,
            inodes: HashMap::new(),
            next_inode: 1,
            durable: namespace.clone(),
            namespace,
            pending: Vec::new(),
            locks: HashMap::new(),
            faults: FaultConfig::default(),
            stats: SimStats::default(),
        };
        SimStorage {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        crate::locks::lock(&self.state)
    }

    /// Sets the faults to inject from now on.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.lock().faults = faults;
    }

    /// The faults in force.
    pub fn faults(&self) -> FaultConfig {
        self.lock().faults
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    /// Creates a durable file with `bytes` (and its parent directories), as if written and
    /// synced long ago. For building test inputs.
    pub fn write_file(&self, path: &Path, bytes: &[u8]) {
        let mut state = self.lock();
        for ancestor in path.ancestors().skip(1) {
            state.namespace.insert(ancestor.to_path_buf(), Entry::Dir);
            state.durable.insert(ancestor.to_path_buf(), Entry::Dir);
        }
        let inode = state.new_inode();
        let file = state.inodes.entry(inode).or_default();
        file.data = bytes.to_vec();
        file.synced_len = bytes.len();
        state
            .namespace
            .insert(path.to_path_buf(), Entry::File(inode));
        state.durable.insert(path.to_path_buf(), Entry::File(inode));
    }

    /// The current bytes of a file, if it exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        match state.namespace.get(path) {
            Some(Entry::File(inode)) => state.inodes.get(inode).map(|f| f.data.clone()),
            _ => None,
        }
    }

    /// A handle on `inode` for the process of `generation`.
    fn handle(&self, inode: u64, generation: u64) -> Box<dyn AppendFile> {
        Box::new(SimFile {
            storage: self.clone(),
            inode,
            generation,
        })
    }

    /// Simulates a power loss: unsynced data and directory operations survive partly, per the
    /// seeded model, and every handle and lock of the crashed "process" dies.
    pub fn crash(&self) {
        self.lock().crash();
    }
}

impl SimState {
    fn new_inode(&mut self) -> u64 {
        let inode = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(inode, Inode::default());
        inode
    }

    fn count_op(&mut self) {
        self.stats.operations += 1;
    }

    fn inject(&mut self, probability: f64) -> bool {
        let hit = self.rng.chance(probability);
        if hit {
            self.stats.faults += 1;
        }
        hit
    }

    fn file(&self, path: &Path) -> io::Result<u64> {
        match self.namespace.get(path) {
            Some(Entry::File(inode)) => Ok(*inode),
            Some(Entry::Dir) => Err(io::Error::other(format!(
                "{} is a directory",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|f| f.data.len() as u64).sum()
    }

    fn link(&mut self, path: &Path, entry: Entry) {
        self.namespace.insert(path.to_path_buf(), entry);
        let op = DirOp::Link {
            path: path.to_path_buf(),
            entry,
        };
        self.pending.push(op);
    }

    fn unlink(&mut self, path: &Path) {
        self.namespace.remove(path);
        self.pending.push(DirOp::Unlink {
            path: path.to_path_buf(),
        });
    }

    fn crash(&mut self) {
        self.stats.crashes += 1;
        self.generation += 1;
        self.locks.clear();
        for op in std::mem::take(&mut self.pending) {
            if self.rng.below(2) == 0 {
                op.apply(&mut self.durable);
            } else {
                self.stats.dir_ops_lost += 1;
            }
        }
        // An entry whose directory's own entry was lost is lost with it (an orphan, as fsck
        // would find it): it never reappears when the directory is created again.
        let orphans: Vec<PathBuf> = self
            .durable
            .keys()
            .filter(|p| {
                p.ancestors()
                    .skip(1)
                    .any(|a| self.durable.get(a) != Some(&Entry::Dir))
            })
            .cloned()
            .collect();
        for orphan in orphans {
            self.durable.remove(&orphan);
        }
        self.namespace = self.durable.clone();
        let mut inodes: Vec<u64> = self.inodes.keys().copied().collect();
        inodes.sort_unstable();
        for inode in inodes {
            self.tear(inode);
        }
        let live: Vec<u64> = self
            .namespace
            .values()
            .filter_map(|e| match e {
                Entry::File(inode) => Some(*inode),
                Entry::Dir => None,
            })
            .collect();
        self.inodes.retain(|inode, _| live.contains(inode));
    }

    /// Decides what survives of one file's unsynced tail.
    fn tear(&mut self, inode: u64) {
        let Some(file) = self.inodes.get(&inode) else {
            return;
        };
        let (synced, len) = (file.synced_len.min(file.data.len()), file.data.len());
        let tail = len - synced;
        let kept = match self.rng.below(5) {
            0 => 0,
            1 => tail,
            2 => self.rng.below(tail as u64 + 1) as usize,
            3 => {
                let sectors = tail / SECTOR_BYTES;
                self.rng.below(sectors as u64 + 1) as usize * SECTOR_BYTES
            }
            _ => {
                let kept = self.rng.below(tail as u64 + 1) as usize;
                self.punch_holes(inode, synced, synced + kept);
                kept
            }
        };
        let zero_fill = kept < tail && self.rng.below(4) == 0;
        let lost = (tail - kept) as u64;
        if let Some(file) = self.inodes.get_mut(&inode) {
            file.data.truncate(synced + kept);
            if zero_fill {
                file.data.resize(len, 0);
            }
            file.synced_len = file.data.len();
        }
        self.stats.bytes_lost += lost;
    }

    /// Zeroes a random subset of the 512-byte sectors (aligned to the file's start) that overlap
    /// `from..to`, never touching bytes before `from` (they were synced).
    fn punch_holes(&mut self, inode: u64, from: usize, to: usize) {
        let mut sector_start = from - from % SECTOR_BYTES;
        let mut zeroed = 0u64;
        while sector_start < to {
            let range = sector_start.max(from)..(sector_start + SECTOR_BYTES).min(to);
            if self.rng.below(2) == 0 {
                if let Some(file) = self.inodes.get_mut(&inode) {
                    file.data[range.clone()].fill(0);
                    zeroed += range.len() as u64;
                }
            }
            sector_start += SECTOR_BYTES;
        }
        self.stats.bytes_lost += zeroed;
    }
}

/// A handle opened by [`SimStorage`]; dead after a crash.
struct SimFile {
    storage: SimStorage,
    inode: u64,
    generation: u64,
}

impl SimFile {
    fn state(&self) -> io::Result<MutexGuard<'_, SimState>> {
        let state = self.storage.lock();
        if state.generation != self.generation {
            return Err(dead_handle());
        }
        Ok(state)
    }
}

impl AppendFile for SimFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let inode = self.inode;
        let mut state = self.state()?;
        state.count_op();
        let room = match state.faults.capacity_bytes {
            Some(capacity) => capacity.saturating_sub(state.used_bytes()) as usize,
            None => usize::MAX,
        };
        let short = state.faults.short_write;
        let (written, error) = if data.len() > room {
            state.stats.faults += 1;
            let full = io::Error::new(io::ErrorKind::StorageFull, "no space left on device");
            (room, Some(full))
        } else if !data.is_empty() && state.inject(short) {
            let part = state.rng.below(data.len() as u64) as usize;
            (part, Some(io::Error::other("short write")))
        } else {
            (data.len(), None)
        };
        let file = state.inodes.get_mut(&inode).ok_or_else(dead_handle)?;
        file.data.extend_from_slice(&data[..written]);
        error.map_or(Ok(()), Err)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let inode = self.inode;
        let mut state = self.state()?;
        state.count_op();
        let fail = state.faults.fail_sync;
        if state.inject(fail) {
            return Err(io::Error::other("injected fsync failure (EIO)"));
        }
        let file = state.inodes.get_mut(&inode).ok_or_else(dead_handle)?;
        file.synced_len = file.data.len();
        Ok(())
    }
}

#[derive(Debug)]
struct SimLock {
    storage: SimStorage,
    path: PathBuf,
    generation: u64,
}

impl DirLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.storage.lock();
        if state.locks.get(&self.path) == Some(&self.generation) {
            state.locks.remove(&self.path);
        }
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let mut missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|a| !state.namespace.contains_key(*a))
            .collect();
        missing.reverse();
        for path in missing {
            state.count_op();
            state.link(path, Entry::Dir);
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if state.namespace.get(dir) != Some(&Entry::Dir) {
            return Err(not_found(dir));
        }
        let names = state
            .namespace
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.lock().namespace.contains_key(path))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let mut state = self.lock();
        state.count_op();
        if state.namespace.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                path.display().to_string(),
            ));
        }
        let parent = path.parent().ok_or_else(|| not_found(path))?;
        if state.namespace.get(parent) != Some(&Entry::Dir) {
            return Err(not_found(parent));
        }
        let inode = state.new_inode();
        state.link(path, Entry::File(inode));
        Ok(self.handle(inode, state.generation))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let state = self.lock();
        let inode = state.file(path)?;
        Ok(self.handle(inode, state.generation))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let state = self.lock();
        let inode = state.file(path)?;
        Ok(state.inodes.get(&inode).map_or(0, |f| f.data.len() as u64))
    }

    fn read_view(&self, path: &Path, len: u64) -> io::Result<ReadView> {
        let mut state = self.lock();
        let fail = state.faults.read_error;
        if state.inject(fail) {
            return Err(io::Error::other("injected read failure (EIO)"));
        }
        let inode = state.file(path)?;
        let data = state
            .inodes
            .get(&inode)
            .map(|f| &f.data[..])
            .unwrap_or_default();
        let len = usize::try_from(len).map_err(|_| io::Error::other("length overflows"))?;
        let bytes = data.get(..len).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            )
        })?;
        Ok(ReadView::new(bytes.to_vec()))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.count_op();
        let inode = state.file(path)?;
        let len = usize::try_from(len).map_err(|_| io::Error::other("length overflows"))?;
        if let Some(file) = state.inodes.get_mut(&inode) {
            file.data.truncate(len);
            file.synced_len = file.data.len();
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.count_op();
        state.file(path)?;
        state.unlink(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.count_op();
        let inode = state.file(from)?;
        state.unlink(from);
        state.link(to, Entry::File(inode));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.count_op();
        let fail = state.faults.fail_sync;
        if state.inject(fail) {
            return Err(io::Error::other("injected directory fsync failure (EIO)"));
        }
        let (done, kept): (Vec<DirOp>, Vec<DirOp>) = std::mem::take(&mut state.pending)
            .into_iter()
            .partition(|op| op.dir() == Some(dir));
        for op in &done {
            op.apply(&mut state.durable);
        }
        state.pending = kept;
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn DirLock>>> {
        let mut state = self.lock();
        if state.locks.contains_key(path) {
            return Ok(None);
        }
        let generation = state.generation;
        state.locks.insert(path.to_path_buf(), generation);
        Ok(Some(Box::new(SimLock {
            storage: self.clone(),
            path: path.to_path_buf(),
            generation,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(storage: &SimStorage, path: &Path, data: &[u8], sync: bool) {
        let mut file = storage.open_append(path).unwrap();
        file.append(data).unwrap();
        if sync {
            file.sync_data().unwrap();
        }
    }

    #[test]
    fn synced_data_survives_and_unsynced_sectors_survive_in_any_subset() {
        let mut holes = 0;
        for seed in 0..400 {
            let storage = SimStorage::new(seed);
            let path = Path::new("/d/f");
            storage.write_file(path, b"");
            append(&storage, path, b"durable", true);
            append(&storage, path, &[7u8; 2000], false);
            storage.crash();
            let data = storage.read_file(path).unwrap();
            assert!(data.starts_with(b"durable"), "seed {seed}");
            assert!(data.len() <= 2007);
            // Every unsynced byte reads as written or as zero, and zeros come in whole
            // sectors (or the part of one after the synced bytes, or before a cut).
            let tail = &data[7..];
            assert!(tail.iter().all(|&b| b == 7 || b == 0), "seed {seed}");
            let kept = tail.iter().rposition(|&b| b == 7).map_or(0, |p| p + 1);
            let hole = tail[..kept].iter().position(|&b| b == 0);
            if let Some(start) = hole {
                holes += 1;
                let sector_end = (start + 7).next_multiple_of(SECTOR_BYTES) - 7;
                let zeros = &tail[start..sector_end.min(kept)];
                assert!(
                    zeros.iter().all(|&b| b == 0),
                    "seed {seed}: a partial sector"
                );
            }
        }
        assert!(holes > 0, "some crash persisted sectors out of order");
    }

    #[test]
    fn a_creation_survives_a_crash_only_if_its_directory_was_synced() {
        let mut vanished = 0;
        for seed in 0..100 {
            let storage = SimStorage::new(seed);
            storage.create_dir_all(Path::new("/d")).unwrap();
            storage.sync_dir(Path::new("/")).unwrap();
            drop(storage.create_new(Path::new("/d/synced")).unwrap());
            storage.sync_dir(Path::new("/d")).unwrap();
            drop(storage.create_new(Path::new("/d/unsynced")).unwrap());
            storage.crash();
            assert!(storage.exists(Path::new("/d/synced")).unwrap());
            vanished += usize::from(!storage.exists(Path::new("/d/unsynced")).unwrap());
        }
        assert!(vanished > 20 && vanished < 80, "{vanished} of 100");
    }

    #[test]
    fn handles_and_locks_die_with_the_crash() {
        let storage = SimStorage::new(1);
        storage.write_file(Path::new("/f"), b"x");
        let mut file = storage.open_append(Path::new("/f")).unwrap();
        let lock = storage.try_lock(Path::new("/LOCK")).unwrap().unwrap();
        assert!(storage.try_lock(Path::new("/LOCK")).unwrap().is_none());
        storage.crash();
        assert!(file.append(b"y").is_err());
        let relock = storage.try_lock(Path::new("/LOCK")).unwrap().unwrap();
        drop(lock);
        assert!(
            storage.try_lock(Path::new("/LOCK")).unwrap().is_none(),
            "old guard must not unlock"
        );
        drop(relock);
    }

    #[test]
    fn faults_are_injected_as_configured() {
        let storage = SimStorage::new(3);
        storage.write_file(Path::new("/f"), b"");
        storage.set_faults(FaultConfig {
            capacity_bytes: Some(10),
            ..FaultConfig::default()
        });
        let mut file = storage.open_append(Path::new("/f")).unwrap();
        let err = file.append(&[1u8; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(storage.read_file(Path::new("/f")).unwrap().len(), 10);
        storage.set_faults(FaultConfig {
            fail_sync: 1.0,
            ..FaultConfig::default()
        });
        assert!(file.sync_data().is_err());
        assert!(storage.stats().faults >= 2);
    }
}
