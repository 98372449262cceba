//! Checkpoint orchestration and the background maintenance thread.
//!
//! Writing a checkpoint (DESIGN.md, "Checkpoints"): under the exclusive commit gate, take the
//! log end P and encode the index (every record before P is indexed then); release the gate;
//! sync the log (everything before P is durable); write the file atomically; drop checkpoints
//! beyond the retention. A crash at any step leaves the previous checkpoints and the log intact.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, TryLockError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::checkpoint::{self, Checkpoint, CheckpointMeta};
use crate::compaction::{self, Scope};
use crate::db::{checkpoint_dir, maintenance_lock, segment_lengths, Shared};
use crate::error::{Error, Result};
use crate::index::Chain;
use crate::model::Model;
use crate::storage::Storage;
use crate::wal::format::{
    decode_frame_header, RecordType, END_FRAME_BYTES, FLAG_ZSTD, FRAME_HEADER_BYTES,
};
use crate::wal::log::lock;
use crate::wal::scan::frame_at;
use crate::wal::segment::{segment_path, WAL_DIR};

/// State of the maintenance work, behind one mutex held for a whole checkpoint or compaction,
/// so that they never run concurrently.
#[derive(Debug)]
pub(crate) struct Maintenance {
    pub next_checkpoint: u64,
}

/// Counters of the maintenance work, behind a mutex held only to read or bump them (so `stats`
/// never waits for a compaction).
#[derive(Debug, Default)]
pub(crate) struct MaintenanceStats {
    pub last_checkpoint: Option<CheckpointMeta>,
    pub compaction_runs: u64,
    pub bytes_rewritten: u64,
    pub segments_deleted: u64,
    pub last_error: Option<String>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes a checkpoint now.
pub(crate) fn write_checkpoint<M: Model>(shared: &Shared<M>) -> Result<CheckpointMeta> {
    let mut maintenance = maintenance_lock(shared);
    write_checkpoint_locked(shared, &mut maintenance)
}

/// Writes a checkpoint; the caller holds the maintenance lock.
pub(crate) fn write_checkpoint_locked<M: Model>(
    shared: &Shared<M>,
    maintenance: &mut Maintenance,
) -> Result<CheckpointMeta> {
    shared.log.check_writable()?;
    let number = maintenance.next_checkpoint;
    let (meta, bytes) = {
        let _gate = shared.gate_exclusive();
        // Checked again under the gate: no write can fail between the check and the capture.
        shared.log.check_writable()?;
        let index = shared.index_read();
        let meta = shared.checkpoint_meta(number, &index);
        let count = index.aggregates() as usize;
        let bytes = checkpoint::encode(&meta, count, index.iter());
        shared.bytes_since_checkpoint.store(0, Ordering::SeqCst);
        (meta, bytes)
    };
    shared.log.sync()?;
    let dir = checkpoint_dir(&shared.dir);
    checkpoint::write(&*shared.storage, &dir, number, &bytes)?;
    checkpoint::retain(&*shared.storage, &dir, shared.options.checkpoints_kept)?;
    maintenance.next_checkpoint = number.saturating_add(1);
    lock(&shared.maintenance_stats).last_checkpoint = Some(meta);
    Ok(meta)
}

/// Writes a checkpoint if enough log was written since the last one. Never waits for other
/// maintenance: if a checkpoint or compaction is running, the next call will do it.
pub(crate) fn checkpoint_if_due<M: Model>(shared: &Shared<M>) -> Result<()> {
    let every = shared.options.checkpoint_every_bytes;
    if every == 0 || shared.bytes_since_checkpoint.load(Ordering::Relaxed) < every {
        return Ok(());
    }
    match shared.maintenance.try_lock() {
        Ok(mut maintenance) => write_checkpoint_locked(shared, &mut maintenance).map(drop),
        Err(TryLockError::WouldBlock) => Ok(()),
        Err(TryLockError::Poisoned(poisoned)) => {
            write_checkpoint_locked(shared, &mut poisoned.into_inner()).map(drop)
        }
    }
}

/// The newest checkpoint that decodes and whose references exist in the segment files, and
/// why each newer one was rejected.
pub(crate) fn newest_valid_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<(Option<Checkpoint>, Vec<String>)> {
    let found = checkpoint::list(storage, &checkpoint_dir(dir))?.checkpoints;
    let lengths = segment_lengths(storage, dir)?;
    let mut rejected = Vec::new();
    for (_, path) in found {
        let verdict = checkpoint::load(storage, &path)
            .and_then(|c| validate_against_log(storage, dir, &c, &lengths).map(|()| c));
        match verdict {
            Ok(c) => return Ok((Some(c), rejected)),
            Err(e) => {
                log::warn!("not using checkpoint {}: {e}", path.display());
                rejected.push(e.to_string());
            }
        }
    }
    Ok((None, rejected))
}

/// What `check` finds in the checkpoint files: `(file, problem, is_damage)`. A checkpoint that
/// does not decode is damage; one that decodes but refers to records no longer in the log is
/// stale (open skips it), which a crash between deleting segments and deleting it can leave.
pub(crate) fn checkpoint_problems(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Vec<(std::path::PathBuf, String, bool)>> {
    let lengths = segment_lengths(storage, dir)?;
    let mut problems = Vec::new();
    for (_, path) in checkpoint::list(storage, &checkpoint_dir(dir))?.checkpoints {
        match checkpoint::load(storage, &path) {
            Err(e) => problems.push((path, e.to_string(), true)),
            Ok(c) => {
                if let Err(e) = validate_against_log(storage, dir, &c, &lengths) {
                    problems.push((path, e.to_string(), false));
                }
            }
        }
    }
    Ok(problems)
}

/// Removes checkpoints, other than the newest, that point into segments that no longer exist:
/// open would only reject them, and they hold disk space (an uncompacted index can be large).
pub(crate) fn drop_unusable_checkpoints<M: Model>(shared: &Shared<M>) -> Result<()> {
    let storage = &*shared.storage;
    let dir = checkpoint_dir(&shared.dir);
    let lengths = segment_lengths(storage, &shared.dir)?;
    let mut removed = false;
    for (_, path) in checkpoint::list(storage, &dir)?.checkpoints.iter().skip(1) {
        let usable = checkpoint::load(storage, path)
            .and_then(|c| validate_against_log(storage, &shared.dir, &c, &lengths))
            .is_ok();
        if !usable {
            storage.remove(path).map_err(|e| Error::io(path, e))?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// A referenced record as found in its segment file.
#[derive(Clone, Copy)]
struct FoundFrame {
    end: u64,
    length: u32,
    compressed: bool,
}

/// Reads and checks the frames a checkpoint refers to: each must lie inside its segment file
/// and end at or before the checkpoint's position in log order (a checkpoint covers only what
/// precedes its position; recovery truncates anything after it that does not verify).
struct ReferenceCheck<'a> {
    storage: &'a dyn Storage,
    dir: &'a Path,
    lengths: &'a std::collections::BTreeMap<u64, u64>,
    position: crate::wal::RecordLocation,
    views: std::collections::BTreeMap<u64, crate::storage::ReadView>,
    /// Frames checked so far (a checkpoint refers to each batch frame once per delta in it).
    frames: hashbrown::HashMap<(u32, u32), FoundFrame>,
}

impl ReferenceCheck<'_> {
    /// The frame at `segment`/`offset`, checked once and remembered (batch frames are referred
    /// to by each of their deltas).
    fn frame(&mut self, segment: u32, offset: u32) -> Result<FoundFrame, String> {
        if let Some(found) = self.frames.get(&(segment, offset)) {
            return Ok(*found);
        }
        let found = self.read_frame(segment, offset)?;
        self.frames.insert((segment, offset), found);
        Ok(found)
    }

    /// Reads and checks the frame header at `segment`/`offset`.
    fn read_frame(&mut self, segment: u32, offset: u32) -> Result<FoundFrame, String> {
        let id = u64::from(segment);
        let len = *self
            .lengths
            .get(&id)
            .ok_or_else(|| format!("points at missing segment {id}"))?;
        let view = match self.views.get(&id) {
            Some(view) => view.clone(),
            None => {
                let path = segment_path(&self.dir.join(WAL_DIR), id);
                let view = self
                    .storage
                    .read_view(&path, len)
                    .map_err(|e| format!("cannot read segment {id}: {e}"))?;
                self.views.insert(id, view.clone());
                view
            }
        };
        let start = offset as usize;
        let header: &[u8; FRAME_HEADER_BYTES] = view
            .get(start..start + FRAME_HEADER_BYTES)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!("points past the end of segment {id} (missing segment bytes)")
            })?;
        let header = decode_frame_header(header)
            .map_err(|e| format!("segment {id} offset {offset}: {e}"))?;
        let end = u64::from(offset) + (FRAME_HEADER_BYTES as u64) + u64::from(header.length);
        if end > len {
            return Err(format!("a frame at segment {id} offset {offset} runs past the file end (missing segment bytes)"));
        }
        let covered = id < self.position.segment
            || (id == self.position.segment && end <= self.position.offset);
        if !covered {
            return Err(format!(
                "refers to segment {id} offset {offset}, after its own position"
            ));
        }
        Ok(FoundFrame {
            end,
            length: header.length,
            compressed: header.flags & FLAG_ZSTD != 0,
        })
    }

    /// Every segment up to the checkpoint's position, except the log's last, was sealed: its
    /// last 20 bytes must be a valid end record. Open does not scan those segments, so this is
    /// how a truncation there is noticed (the checkpoint is rejected and a full replay reports
    /// the damage), instead of surfacing only at some later full replay.
    fn sealed_segments_end_with_end_records(&mut self) -> Result<(), String> {
        let last = self.lengths.keys().next_back().copied();
        let sealed: Vec<(u64, u64)> = self
            .lengths
            .iter()
            .filter(|(&id, _)| id <= self.position.segment && Some(id) != last)
            .map(|(&id, &len)| (id, len))
            .collect();
        for (id, len) in sealed {
            let path = segment_path(&self.dir.join(WAL_DIR), id);
            let view = self
                .storage
                .read_view(&path, len)
                .map_err(|e| format!("cannot read segment {id}: {e}"))?;
            let at = (len as usize).checked_sub(END_FRAME_BYTES);
            let ends_sealed = at.is_some_and(|at| {
                frame_at(&view, id, at).is_ok_and(|f| f.header.record_type == RecordType::End)
            });
            if !ends_sealed {
                return Err(format!("segment {id} does not end with its end record"));
            }
            self.views.insert(id, view);
        }
        Ok(())
    }

    /// Checks every chain's base: state records, each referred to once, read in log order.
    fn bases(&mut self, chains: &[(Box<str>, Chain)]) -> Result<(), String> {
        let mut bases: Vec<(u32, u32, u32, usize)> = chains
            .iter()
            .enumerate()
            .filter_map(|(at, (_, c))| c.base.map(|b| (b.segment, b.record_offset, b.len, at)))
            .collect();
        bases.sort_unstable();
        for (segment, offset, len, at) in bases {
            let frame = self.read_frame(segment, offset)?;
            if frame.end != u64::from(offset) + u64::from(len) {
                let id = &chains[at].0;
                return Err(format!("the state of {id:?} has the wrong length"));
            }
        }
        Ok(())
    }

    /// Checks the deltas of a chain.
    fn deltas(&mut self, id: &str, chain: &Chain) -> Result<(), String> {
        for d in &chain.deltas {
            let frame = self.frame(d.segment, d.record_offset)?;
            let delta_end = u64::from(d.delta_offset) + u64::from(d.len);
            if !frame.compressed && delta_end > u64::from(frame.length) {
                return Err(format!("a delta of {id:?} lies outside its batch"));
            }
        }
        Ok(())
    }
}

/// Checks that every location a checkpoint refers to exists in the segment files, before its
/// position.
fn validate_against_log(
    storage: &dyn Storage,
    dir: &Path,
    checkpoint: &Checkpoint,
    lengths: &std::collections::BTreeMap<u64, u64>,
) -> Result<()> {
    let position = checkpoint.meta.position;
    let bad = |reason: String| {
        Error::InvalidInput(format!("checkpoint {}: {reason}", checkpoint.meta.number))
    };
    match lengths.get(&position.segment) {
        Some(&len) if position.offset > len => {
            return Err(bad(format!(
                "position {position:?} is past the segment end {len}"
            )));
        }
        None if lengths.range(position.segment..).next().is_none() && !lengths.is_empty() => {
            return Err(bad(format!(
                "position {position:?} is past the end of the log"
            )));
        }
        _ => {}
    }
    let mut check = ReferenceCheck {
        storage,
        dir,
        lengths,
        position,
        views: Default::default(),
        frames: Default::default(),
    };
    check.sealed_segments_end_with_end_records().map_err(bad)?;
    check.bases(&checkpoint.chains).map_err(bad)?;
    for (id, chain) in &checkpoint.chains {
        check.deltas(id, chain).map_err(bad)?;
    }
    Ok(())
}

/// The background maintenance thread: automatic checkpoints and policy compaction.
pub(crate) struct Worker {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Worker {
    /// Starts the thread; it holds only a weak reference to the engine.
    pub fn start<M: Model>(shared: &Arc<Shared<M>>) -> Result<Worker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let weak: Weak<Shared<M>> = Arc::downgrade(shared);
        let interval = shared.options.compaction.interval;
        let handle = thread::Builder::new()
            .name("aggrelog-maintenance".into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => match weak.upgrade() {
                        Some(shared) => run_once(&shared),
                        None => return,
                    },
                    _ => return,
                }
            })
            .map_err(|e| Error::io(&shared.dir, e))?;
        Ok(Worker { stop, handle })
    }

    /// Stops the thread and waits for it (an operation in progress finishes first).
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.handle.join();
    }
}

/// One round of background maintenance; errors are logged and kept for `stats`.
fn run_once<M: Model>(shared: &Shared<M>) {
    let started = Instant::now();
    let rate = Some(shared.options.compaction.rate_bytes_per_sec);
    let result = checkpoint_if_due(shared)
        .and_then(|()| compaction::compact(shared, Scope::Policy, rate).map(drop));
    if let Err(e) = result {
        log::warn!(
            "background maintenance failed after {:?}: {e}",
            started.elapsed()
        );
        lock(&shared.maintenance_stats).last_error = Some(e.to_string());
    }
}
