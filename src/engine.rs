//! The engine state one open database shares between its handle, its readers and the
//! background worker: the log, the index, the model, the locks that order them, and counters.
//!
//! Who holds what (DESIGN.md, section 4 and "Reading"):
//! - the *commit gate*: writers hold it shared while they append and index a batch; checkpoints,
//!   seals and compaction's installs hold it exclusively, so at those moments every record in
//!   the log is also in the index ("in log => in index");
//! - the *index* lock: held only to copy a chain, insert a batch or install a state record;
//! - the *deletion* lock: readers hold it shared while they read records through a copied chain;
//!   compaction holds it exclusively while it deletes segments, so no read finds its segment
//!   gone;
//! - the *maintenance* mutex: held for a whole checkpoint or compaction, so they never overlap;
//!   the maintenance *counters* have their own mutex, held only to read or bump them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::checkpoint::format::Facts;
use crate::checkpoint::CheckpointMeta;
use crate::error::Result;
use crate::index::{Chain, Index};
use crate::locks::{lock, read, write};
use crate::model::Model;
use crate::options::Options;
use crate::retraction::{find_named, NameDeltas, Retractions};
use crate::sources::{SourcePosition, SourceRange, Sources};
use crate::storage::{DirLock, Storage};
use crate::wal::{BatchRecord, Damage, Log, RecordLocation};

/// The state of one aggregate as a reader sees it.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct AggregateState<O = serde_json::Value> {
    /// The highest `seq` among the deltas folded into this state.
    pub seq: u64,
    /// The folded state (a JSON object for [`MergePatch`](crate::MergePatch)).
    pub state: O,
}

/// What recovery found on open.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpenReport {
    pub torn_bytes_dropped: u64,
    pub skipped: Vec<Damage>,
    pub checkpoint_used: Option<u64>,
    pub checkpoints_rejected: Vec<String>,
}

/// State of the maintenance work, behind one mutex held for a whole checkpoint or compaction.
#[derive(Debug)]
pub(crate) struct Maintenance {
    /// The number the next checkpoint file gets.
    pub next_checkpoint: u64,
}

/// Counters of the maintenance work (so `stats` never waits for a compaction).
#[derive(Debug, Default)]
pub(crate) struct MaintenanceStats {
    pub last_checkpoint: Option<CheckpointMeta>,
    pub compaction_runs: u64,
    pub bytes_rewritten: u64,
    pub segments_deleted: u64,
    pub last_error: Option<String>,
}

/// The counters recovery rebuilds and the engine then keeps.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counters {
    /// The seal in force.
    pub seal: u64,
    /// The highest delta seq in the log.
    pub max_seq: u64,
    /// Batch records in the log.
    pub batches: u64,
    /// Source positions (DESIGN.md, section 5e).
    pub sources: Sources,
    /// Retraction registers and places (DESIGN.md, section 5f).
    pub retractions: Retractions,
    /// Declared reference pointers (DESIGN.md, section 6c).
    pub references: BTreeSet<String>,
}

/// Segments pinned against compaction by a spanning batch being written; dropping it unpins.
pub(crate) struct SegmentPin<'e> {
    pins: &'e Mutex<BTreeMap<u64, usize>>,
    from: u64,
}

impl Drop for SegmentPin<'_> {
    fn drop(&mut self) {
        let mut pins = lock(self.pins);
        if let Some(count) = pins.get_mut(&self.from) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&self.from);
            }
        }
    }
}

/// Everything an open hands over to the engine.
pub(crate) struct EngineParts<M: Model> {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub options: Options,
    pub model: M,
    pub log: Arc<Log>,
    pub index: Index,
    pub counters: Counters,
    pub last_checkpoint: Option<CheckpointMeta>,
    pub next_checkpoint: u64,
    pub open_report: OpenReport,
    /// The writer's directory lock; `None` for a read-only engine.
    pub lock: Option<Box<dyn DirLock>>,
}

/// Engine state shared by the handle, its readers and the background worker.
pub(crate) struct Engine<M: Model> {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    options: Options,
    model: M,
    log: Arc<Log>,
    /// Written by writers (inserts, under the shared gate) and compaction (installs, under the
    /// exclusive gate); read by everyone for a chain copy.
    index: RwLock<Index>,
    gate: RwLock<()>,
    deletion: RwLock<()>,
    /// Raised only by `Db::seal`, under the exclusive gate.
    seal: AtomicU64,
    /// Source positions (DESIGN.md, section 5e); changed under the commit gate.
    sources: Mutex<Sources>,
    /// Retraction registers and places (DESIGN.md, section 5f): read by every chain copy,
    /// written by writers of named batches (under the shared gate) and by retract (under the
    /// exclusive gate).
    retractions: RwLock<Retractions>,
    /// Declared reference pointers (DESIGN.md, section 6c).
    references: Mutex<BTreeSet<String>>,
    /// Raised by writers after their batch is indexed.
    max_seq: AtomicU64,
    /// Bumped by writers.
    batches: AtomicU64,
    /// Bumped by writers (this handle only).
    bytes_appended: AtomicU64,
    /// Bumped by writers, reset by each checkpoint under the exclusive gate.
    bytes_since_checkpoint: AtomicU64,
    /// Deltas of redelivered batches counted (not stored) since the last checkpoint: only a
    /// checkpoint keeps their count.
    redelivered_since_checkpoint: AtomicU64,
    /// Segments pinned by spanning batches being written: first pinned segment -> batches.
    pins: Mutex<BTreeMap<u64, usize>>,
    maintenance: Mutex<Maintenance>,
    maintenance_stats: Mutex<MaintenanceStats>,
    /// Set when the handle closes: background work stops at its next step.
    closing: AtomicBool,
    open_report: OpenReport,
    /// The writer's directory lock; `None` for a read-only engine.
    lock: Option<Box<dyn DirLock>>,
}

impl<M: Model> Engine<M> {
    /// The engine over what an open recovered.
    pub fn new(parts: EngineParts<M>) -> Self {
        Engine {
            dir: parts.dir,
            storage: parts.storage,
            options: parts.options,
            model: parts.model,
            log: parts.log,
            index: RwLock::new(parts.index),
            gate: RwLock::new(()),
            deletion: RwLock::new(()),
            seal: AtomicU64::new(parts.counters.seal),
            sources: Mutex::new(parts.counters.sources),
            retractions: RwLock::new(parts.counters.retractions),
            references: Mutex::new(parts.counters.references),
            max_seq: AtomicU64::new(parts.counters.max_seq),
            batches: AtomicU64::new(parts.counters.batches),
            bytes_appended: AtomicU64::new(0),
            bytes_since_checkpoint: AtomicU64::new(0),
            redelivered_since_checkpoint: AtomicU64::new(0),
            pins: Mutex::new(BTreeMap::new()),
            maintenance: Mutex::new(Maintenance {
                next_checkpoint: parts.next_checkpoint,
            }),
            maintenance_stats: Mutex::new(MaintenanceStats {
                last_checkpoint: parts.last_checkpoint,
                ..MaintenanceStats::default()
            }),
            closing: AtomicBool::new(false),
            open_report: parts.open_report,
            lock: parts.lock,
        }
    }

    /// Pins every segment from the active one on against reclaiming until the pin drops: a
    /// spanning batch's fragments are dead bytes to the index until its commit (DESIGN.md,
    /// section 3.6). Take it before appending the first fragment.
    pub fn pin_segments(&self) -> SegmentPin<'_> {
        let from = self.log.active_segment();
        *lock(&self.pins).entry(from).or_default() += 1;
        SegmentPin {
            pins: &self.pins,
            from,
        }
    }

    /// The oldest segment a spanning batch being written pins, if any. Read it after the
    /// active segment, so that a batch that began meanwhile is seen.
    pub fn oldest_pinned_segment(&self) -> Option<u64> {
        lock(&self.pins).keys().next().copied()
    }

    /// Whether this engine only reads (opened beside a writer, without the lock).
    pub fn is_read_only(&self) -> bool {
        self.lock.is_none()
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The storage seam.
    pub fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// What recovery found on open.
    pub fn open_report(&self) -> &OpenReport {
        &self.open_report
    }

    /// The index, shared.
    pub fn index_read(&self) -> RwLockReadGuard<'_, Index> {
        read(&self.index)
    }

    /// The index, exclusively.
    pub fn index_write(&self) -> RwLockWriteGuard<'_, Index> {
        write(&self.index)
    }

    /// A copy of `aggregate`'s chain without the deltas of retracted batches: what every fold
    /// reads (the index lock is held only for the copy).
    pub fn chain(&self, aggregate: &str) -> Option<Chain> {
        let mut chain = self.chain_with_retracted(aggregate)?;
        self.leave_out_retracted(&mut chain);
        Some(chain)
    }

    /// A copy of `aggregate`'s chain, deltas of retracted batches included (history).
    pub fn chain_with_retracted(&self, aggregate: &str) -> Option<Chain> {
        self.index_read().chain(aggregate).cloned()
    }

    /// Drops from `chain` the deltas of retracted batches.
    pub fn leave_out_retracted(&self, chain: &mut Chain) {
        read(&self.retractions).filter(chain);
    }

    /// The retraction registers and places, shared.
    pub fn retractions(&self) -> RwLockReadGuard<'_, Retractions> {
        read(&self.retractions)
    }

    /// The retraction registers and places, exclusively.
    pub fn retractions_mut(&self) -> RwLockWriteGuard<'_, Retractions> {
        write(&self.retractions)
    }

    /// Adds the places of `batch`'s spans of retracted names: call before its deltas are
    /// indexed.
    pub fn note_named_batch(&self, batch: &BatchRecord<'_>) {
        // The exclusive lock only when a name is retracted: writers of named batches (every
        // follower batch) do not queue behind readers otherwise. Registers change under the
        // exclusive commit gate, which writers exclude.
        if !batch.names.is_empty() && read(&self.retractions).retracted_names() > 0 {
            write(&self.retractions).note_batch(batch);
        }
    }

    /// Finds in the log the places of the retracted names whose places are not known yet (a
    /// retraction record read by recovery, a refresh or an import after their batches).
    pub fn place_unplaced(&self) -> Result<()> {
        let unplaced = read(&self.retractions).unplaced().clone();
        let found = self.find_places(&unplaced)?;
        write(&self.retractions).place(&unplaced, &found);
        Ok(())
    }

    /// Places the unplaced names of `retractions`, a copy not installed yet.
    pub fn place_unplaced_in(&self, retractions: &mut Retractions) -> Result<()> {
        let unplaced = retractions.unplaced().clone();
        let found = self.find_places(&unplaced)?;
        retractions.place(&unplaced, &found);
        Ok(())
    }

    /// The places in the whole log of `names` (none read when there is none).
    fn find_places(&self, names: &BTreeSet<String>) -> Result<BTreeMap<String, NameDeltas>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        find_named(
            &self.log,
            names,
            RecordLocation::START,
            self.options.recovery,
        )
    }

    /// The declared reference pointers.
    pub fn declared_references(&self) -> BTreeSet<String> {
        lock(&self.references).clone()
    }

    /// Adds declared reference pointers (a references record just appended, or read).
    pub fn declare_references(&self, pointers: &[String]) {
        lock(&self.references).extend(pointers.iter().cloned());
    }

    /// The commit gate, shared: held by a writer while it appends and indexes.
    pub fn gate_shared(&self) -> RwLockReadGuard<'_, ()> {
        read(&self.gate)
    }

    /// The commit gate, exclusively: no write is between its append and its indexing.
    pub fn gate_exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        write(&self.gate)
    }

    /// Keeps segments from being deleted while the guard lives.
    pub fn reading(&self) -> RwLockReadGuard<'_, ()> {
        read(&self.deletion)
    }

    /// Waits for every reader of a copied chain, and keeps new ones out, to delete segments.
    pub fn deleting(&self) -> RwLockWriteGuard<'_, ()> {
        write(&self.deletion)
    }

    /// The seal in force.
    pub fn seal(&self) -> u64 {
        self.seal.load(Ordering::SeqCst)
    }

    /// Raises the seal (the caller holds the exclusive gate and made the seal durable).
    pub fn raise_seal(&self, seal: u64) {
        let previous = self.seal.fetch_max(seal, Ordering::SeqCst);
        debug_assert!(previous <= seal, "a seal never moves back");
    }

    /// Every source position, in (topic, partition) order.
    pub fn source_positions(&self) -> Vec<SourcePosition> {
        lock(&self.sources).positions()
    }

    /// Applies the source ranges of a batch just appended (under the commit gate).
    pub fn apply_source_ranges(&self, ranges: &[SourceRange]) {
        if !ranges.is_empty() {
            let mut sources = lock(&self.sources);
            ranges.iter().for_each(|r| sources.apply_range(r));
        }
    }

    /// Raises the source positions to `positions` (a sources record just appended, under the
    /// commit gate).
    pub fn apply_source_positions(&self, positions: &[SourcePosition]) {
        lock(&self.sources).apply_positions(positions);
    }

    /// The source positions, to build on in a refresh.
    pub fn sources(&self) -> Sources {
        lock(&self.sources).clone()
    }

    /// Replaces the source positions with what a refresh built on them.
    pub fn set_sources(&self, sources: Sources) {
        *lock(&self.sources) = sources;
    }

    /// The highest delta seq written so far.
    pub fn max_seq(&self) -> u64 {
        self.max_seq.load(Ordering::SeqCst)
    }

    /// Batch records in the log.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Bytes appended by writes through this handle.
    pub fn bytes_appended(&self) -> u64 {
        self.bytes_appended.load(Ordering::Relaxed)
    }

    /// Counts a committed batch of `stored_bytes` whose highest seq is `top_seq`.
    pub fn count_write(&self, top_seq: u64, stored_bytes: u64) {
        self.max_seq.fetch_max(top_seq, Ordering::SeqCst);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.bytes_appended
            .fetch_add(stored_bytes, Ordering::Relaxed);
        self.bytes_since_checkpoint
            .fetch_add(stored_bytes, Ordering::Relaxed);
    }

    /// Counts `batches` batch records read by a refresh or an import, with `top_seq` the
    /// highest seq of any record read, and a seal read with them.
    pub fn note_records(&self, batches: u64, top_seq: u64, seal: u64) {
        self.batches.fetch_add(batches, Ordering::Relaxed);
        self.max_seq.fetch_max(top_seq, Ordering::SeqCst);
        self.seal.fetch_max(seal, Ordering::SeqCst);
    }

    /// Whether enough log was written since the last checkpoint for an automatic one.
    pub fn checkpoint_due(&self) -> bool {
        let every = self.options.checkpoint_every_bytes;
        every != 0 && self.bytes_since_checkpoint.load(Ordering::Relaxed) >= every
    }

    /// Restarts the count towards the next automatic checkpoint (under the exclusive gate).
    pub fn checkpoint_taken(&self) {
        self.bytes_since_checkpoint.store(0, Ordering::SeqCst);
        self.redelivered_since_checkpoint.store(0, Ordering::SeqCst);
    }

    /// Counts `deltas` deltas of a redelivered batch, which was not stored.
    pub fn note_redelivered(&self, deltas: u64) {
        self.redelivered_since_checkpoint
            .fetch_add(deltas, Ordering::Relaxed);
    }

    /// Whether redeliveries were counted that no checkpoint holds yet.
    pub fn redeliveries_unsaved(&self) -> bool {
        self.redelivered_since_checkpoint.load(Ordering::Relaxed) > 0
    }

    /// The maintenance state, waiting for a running checkpoint or compaction.
    pub fn maintenance(&self) -> MutexGuard<'_, Maintenance> {
        lock(&self.maintenance)
    }

    /// The maintenance state, unless a checkpoint or compaction is running.
    pub fn try_maintenance(&self) -> Option<MutexGuard<'_, Maintenance>> {
        match self.maintenance.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        }
    }

    /// The maintenance counters.
    pub fn maintenance_stats(&self) -> MutexGuard<'_, MaintenanceStats> {
        lock(&self.maintenance_stats)
    }

    /// Records a maintenance failure for `stats` (the operation that failed reported it too).
    pub fn record_maintenance_error(&self, error: String) {
        self.maintenance_stats().last_error = Some(error);
    }

    /// Tells background work to stop at its next step.
    pub fn start_closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Whether the handle is closing.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// The database-wide facts a checkpoint taken now would hold (call under the exclusive
    /// gate).
    pub fn facts(&self) -> Facts {
        let retractions = self.retractions();
        let entries = retractions.entries();
        Facts {
            sources: self.source_positions(),
            retractions: entries.map(|(n, r, p)| (n.to_owned(), r, p)).collect(),
            references: self.declared_references().into_iter().collect(),
        }
    }

    /// The fixed fields a checkpoint taken now would record (call under the exclusive gate).
    pub fn checkpoint_meta(&self, number: u64, index: &Index) -> CheckpointMeta {
        CheckpointMeta {
            number,
            position: self.log.end(),
            seal: self.seal(),
            max_seq: self.max_seq(),
            created_unix_ms: unix_ms(),
            counters: index.counters(),
            batches: self.batches(),
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
