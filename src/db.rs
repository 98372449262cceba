//! [`Db`]: the public handle wiring the log, the index, the model, checkpoints and compaction.
//!
//! Concurrency: writers hold the *commit gate* shared while they append and index a batch;
//! checkpoints, seals and compaction's state installs hold it exclusively, so that at those
//! moments every record in the log is also in the index ("in log => in index"). The index has
//! its own `RwLock`, held only to copy a chain or to insert.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::batch::Batch;
use crate::checkpoint::{self, CheckpointMeta, CHECKPOINT_DIR};
use crate::compaction::{self, CompactionReport, Scope};
use crate::error::{Error, Result};
use crate::index::{Chain, DeltaRef, Index, StateRef};
use crate::index_builder::{IndexBuilder, PARALLEL_FROM_BYTES};
use crate::maintenance::{self, Maintenance, MaintenanceStats, Worker};
use crate::materialize::{take_partition, FoldBuffers, FoldSet, Materialize};
use crate::model::{DeltaView, MergePatch, Model, ModelError, Stamp};
use crate::options::{Options, MAX_SEGMENT_SIZE_BYTES, MIN_SEGMENT_SIZE_BYTES};
use crate::reader::DeltaReader;
use crate::replay::Replay;
use crate::stats::{self, Stats};
use crate::storage::{DirLock, FsStorage, Storage};
use crate::wal::batch::{compress_payload, BatchDecoder, Checksums};
use crate::wal::format::{RecordType, FLAG_ZSTD, FRAME_HEADER_BYTES};
use crate::wal::log::{lock, NewRecord};
use crate::wal::records::encode_seal_body;
use crate::wal::recovery::LogRecord;
use crate::wal::segment::{list_segments, segment_path, WAL_DIR};
use crate::wal::{BatchRecord, Damage, Log, RecordLocation};

/// Name of the lock file inside the database directory.
pub const LOCK_FILE: &str = "LOCK";

/// The state of one aggregate as a reader sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateState<O = serde_json::Value> {
    /// The highest `seq` among the deltas folded into this state.
    pub seq: u64,
    /// The folded state (a JSON object for [`MergePatch`]).
    pub state: O,
}

/// What a successful [`Db::write`] committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteReceipt {
    /// Where the batch record starts (`None` for an empty batch, which writes nothing).
    pub location: Option<RecordLocation>,
    /// Number of deltas committed.
    pub deltas: usize,
}

/// What recovery found on open.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpenReport {
    pub torn_bytes_dropped: u64,
    pub skipped: Vec<Damage>,
    pub checkpoint_used: Option<u64>,
    pub checkpoints_rejected: Vec<String>,
}

/// Engine state shared by the handle and the maintenance thread.
pub(crate) struct Shared<M: Model> {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub options: Options,
    pub model: M,
    pub log: Arc<Log>,
    pub index: RwLock<Index>,
    pub gate: RwLock<()>,
    /// Readers hold it shared while they read records through a copied chain; compaction holds
    /// it exclusively while deleting segments, so no read finds its segment gone.
    pub deletion: RwLock<()>,
    pub seal: AtomicU64,
    pub max_seq: AtomicU64,
    pub batches: AtomicU64,
    pub bytes_appended: AtomicU64,
    pub bytes_since_checkpoint: AtomicU64,
    pub maintenance: Mutex<Maintenance>,
    pub maintenance_stats: Mutex<MaintenanceStats>,
    /// Set when the handle closes: background work stops at its next step.
    pub closing: AtomicBool,
    pub open_report: OpenReport,
    _lock: Box<dyn DirLock>,
}

impl<M: Model> Shared<M> {
    pub fn index_read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn index_write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn gate_shared(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn gate_exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps segments from being deleted while the guard lives.
    pub fn reading(&self) -> RwLockReadGuard<'_, ()> {
        self.deletion.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of `aggregate`'s chain (the lock is held only for the copy).
    pub fn chain(&self, aggregate: &str) -> Option<Chain> {
        self.index_read().chain(aggregate).cloned()
    }

    /// Folds `chain` (all of `aggregate`) with the model, using only deltas with
    /// `seq <= as_of`.
    pub fn fold_chain(
        &self,
        aggregate: &str,
        chain: &Chain,
        as_of: u64,
        reader: &mut DeltaReader<'_>,
    ) -> Result<Option<AggregateState<M::Output>>> {
        let mut state = M::State::default();
        let mut seq = None;
        if let Some(base) = &chain.base {
            if as_of < base.max_seq {
                return Err(Error::HistoryUnavailable {
                    aggregate: aggregate.to_owned(),
                    requested: as_of,
                    oldest: base.max_seq,
                });
            }
            if chain.deltas.first().is_none_or(|d| d.seq > as_of) {
                // The state record alone: the model may read its output straight from it.
                let output = self.state_output(aggregate, base, reader)?;
                return Ok(output.map(|state| AggregateState {
                    seq: base.max_seq,
                    state,
                }));
            }
            self.join_state(aggregate, base, &mut state, reader)?;
            seq = Some(base.max_seq);
        }
        for delta_ref in chain.deltas.iter().take_while(|d| d.seq <= as_of) {
            self.fold_delta(aggregate, delta_ref, &mut state, reader)?;
            seq = seq.max(Some(delta_ref.seq));
        }
        let Some(seq) = seq else { return Ok(None) };
        Ok(self
            .model
            .output(&state)
            .map(|state| AggregateState { seq, state }))
    }

    /// The output of the state record `base` alone.
    fn state_output(
        &self,
        aggregate: &str,
        base: &StateRef,
        reader: &mut DeltaReader<'_>,
    ) -> Result<Option<M::Output>> {
        self.with_state_record(aggregate, base, reader, |encoded| {
            self.model.output_encoded_state(encoded)
        })
    }

    /// Reads the state record `base` of `aggregate` and passes its encoded state to `use_it`;
    /// a model error is a corruption error at the record.
    fn with_state_record<T>(
        &self,
        aggregate: &str,
        base: &StateRef,
        reader: &mut DeltaReader<'_>,
        use_it: impl FnOnce(&[u8]) -> std::result::Result<T, ModelError>,
    ) -> Result<T> {
        let used = {
            let body = reader.read_state(aggregate, base)?;
            use_it(body.state)
        };
        used.map_err(|error| {
            Error::corruption(
                self.log.segment_path(u64::from(base.segment)),
                u64::from(base.record_offset),
                format!("state record of {aggregate:?}: {error}"),
            )
        })
    }

    /// Joins the state record `base` into `state`.
    pub fn join_state(
        &self,
        aggregate: &str,
        base: &StateRef,
        state: &mut M::State,
        reader: &mut DeltaReader<'_>,
    ) -> Result<()> {
        self.with_state_record(aggregate, base, reader, |encoded| {
            self.model.join_encoded_state(state, encoded)
        })
    }

    /// Folds one delta into `state`.
    pub fn fold_delta(
        &self,
        aggregate: &str,
        delta_ref: &DeltaRef,
        state: &mut M::State,
        reader: &mut DeltaReader<'_>,
    ) -> Result<()> {
        let folded = {
            let delta = reader.read(aggregate, delta_ref)?;
            let view = DeltaView {
                stamp: Stamp::new(delta.seq, delta_ref.position, delta.checksum),
                kind: delta.kind,
                body: delta.body,
            };
            self.model.fold(state, view)
        };
        folded.map_err(|e| reader.corruption(delta_ref, e.to_string()))
    }

    /// The fixed fields a checkpoint taken now would record (call under the exclusive gate).
    pub fn checkpoint_meta(&self, number: u64, index: &Index) -> CheckpointMeta {
        CheckpointMeta {
            number,
            position: self.log.end(),
            seal: self.seal.load(Ordering::SeqCst),
            max_seq: self.max_seq.load(Ordering::SeqCst),
            created_unix_ms: maintenance::unix_ms(),
            counters: index.counters(),
            batches: self.batches.load(Ordering::SeqCst),
        }
    }
}

/// An open aggrelog database. `Send + Sync`: share it between threads behind an `Arc`; readers
/// proceed while writers append.
pub struct Db<M: Model = MergePatch> {
    shared: Arc<Shared<M>>,
    worker: Option<Worker>,
}

impl Db<MergePatch> {
    /// Opens the database in `path` with the merge-patch model on the real file system,
    /// creating it if missing (unless `options.create_if_missing` is false).
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        Db::open_with(path, options, MergePatch, Arc::new(FsStorage))
    }
}

impl<M: Model> Db<M> {
    /// Opens the database with a custom model and storage implementation.
    ///
    /// Recovery loads the newest valid checkpoint (falling back to the previous one, then to a
    /// full replay) and replays the log after it.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: Options,
        model: M,
        storage: Arc<dyn Storage>,
    ) -> Result<Self> {
        let dir = path.as_ref().to_path_buf();
        validate_options(&options)?;
        prepare_dir(&*storage, &dir, &options)?;
        let lock = take_lock(&*storage, &dir)?;
        sync_dirs(&*storage, &dir)?;
        let mut report = OpenReport::default();
        let (checkpoint, rejected) = maintenance::newest_valid_checkpoint(&*storage, &dir)?;
        report.checkpoints_rejected = rejected;
        let mut recovered = Recovered::default();
        let mut index = Index::default();
        let from = match checkpoint {
            Some(c) => {
                report.checkpoint_used = Some(c.meta.number);
                recovered = Recovered::from_checkpoint(&c.meta);
                index = Index::from_parts(c.chains, c.meta.counters);
                c.meta.position
            }
            None => RecordLocation::START,
        };
        let parts = index_parts(&*storage, &dir, from)?;
        let (opened, index) = std::thread::scope(|scope| {
            let mut builder = IndexBuilder::start(scope, index, parts);
            let opened = Log::open(Arc::clone(&storage), &dir, &options, from, &mut |r| {
                recovered.apply(r, &mut builder)
            });
            (opened, builder.finish())
        });
        let (log, scan) = opened?;
        for torn in scan.torn.iter().chain(&scan.incomplete_segment) {
            log::warn!("dropped a torn tail: {torn}");
        }
        for damage in &scan.damage {
            log::warn!("skipped corrupt data: {damage}");
        }
        report.torn_bytes_dropped = [&scan.torn, &scan.incomplete_segment]
            .iter()
            .filter_map(|d| d.as_ref().map(|d| d.bytes))
            .sum();
        report.skipped = scan.damage;
        // Above every checkpoint on disk, used or rejected: a rejected one numbered higher would
        // otherwise stay "newest" and could pass validation once the log has grown past it.
        let highest_on_disk = checkpoint::list(&*storage, &checkpoint_dir(&dir))?
            .checkpoints
            .first()
            .map(|(number, _)| *number);
        let next_checkpoint = highest_on_disk.map_or(1, |n| n.saturating_add(1));
        let shared = Arc::new(Shared {
            dir,
            storage,
            model,
            log,
            index: RwLock::new(index),
            gate: RwLock::new(()),
            deletion: RwLock::new(()),
            seal: AtomicU64::new(recovered.seal),
            max_seq: AtomicU64::new(recovered.max_seq),
            batches: AtomicU64::new(recovered.batches.saturating_add(scan.batches)),
            bytes_appended: AtomicU64::new(0),
            bytes_since_checkpoint: AtomicU64::new(0),
            maintenance: Mutex::new(Maintenance { next_checkpoint }),
            maintenance_stats: Mutex::new(MaintenanceStats {
                last_checkpoint: recovered.checkpoint,
                ..MaintenanceStats::default()
            }),
            closing: AtomicBool::new(false),
            open_report: report,
            options,
            _lock: lock,
        });
        let worker = shared
            .options
            .compaction
            .background
            .then(|| Worker::start(&shared))
            .transpose()?;
        Ok(Db { shared, worker })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// Writes `batch` atomically. Returns once it is committed under the configured sync mode;
    /// from then on every reader sees it. Fails with [`Error::Sealed`] (writing nothing) if any
    /// delta's seq is below the seal.
    pub fn write(&self, batch: &Batch) -> Result<WriteReceipt> {
        if batch.is_empty() {
            return Ok(WriteReceipt {
                location: None,
                deltas: 0,
            });
        }
        let shared = &*self.shared;
        let payload = batch.payload();
        // `Batch` wrote these records and their CRCs itself: decode the structure only.
        let deltas = BatchDecoder::with_checksums(payload, Checksums::CoveredByFrame)
            .and_then(|d| d.collect::<Result<Vec<_>, _>>())
            .map_err(Error::InvalidInput)?;
        let (flags, body) = match shared.options.compression {
            Some(c) if payload.len() >= c.min_batch_bytes => {
                let stored = compress_payload(payload, c.level)
                    .map_err(|e| Error::InvalidInput(format!("compression failed: {e}")))?;
                (FLAG_ZSTD, stored)
            }
            _ => (0, payload.to_vec()),
        };
        let stored_bytes = (FRAME_HEADER_BYTES + body.len()) as u64;
        let location = {
            let _gate = shared.gate_shared();
            let seal = shared.seal.load(Ordering::SeqCst);
            if let Some(low) = deltas.iter().find(|d| d.seq < seal) {
                return Err(Error::Sealed {
                    aggregate: low.aggregate.to_owned(),
                    seq: low.seq,
                    seal,
                });
            }
            let location = shared.log.append(flags, body)?;
            let record = BatchRecord {
                segment: location.segment,
                offset: location.offset,
                deltas: &deltas,
            };
            index_batch(&mut shared.index_write(), &record);
            location
        };
        let top = deltas.iter().map(|d| d.seq).max().unwrap_or(0);
        shared.max_seq.fetch_max(top, Ordering::SeqCst);
        shared.batches.fetch_add(1, Ordering::Relaxed);
        shared
            .bytes_appended
            .fetch_add(stored_bytes, Ordering::Relaxed);
        shared
            .bytes_since_checkpoint
            .fetch_add(stored_bytes, Ordering::Relaxed);
        if self.worker.is_none() {
            // The batch is committed: a failed automatic checkpoint is a maintenance error
            // (logged, kept for `stats`), not this write's.
            if let Err(e) = maintenance::checkpoint_if_due(shared) {
                log::warn!("automatic checkpoint failed: {e}");
                lock(&shared.maintenance_stats).last_error = Some(e.to_string());
            }
        }
        Ok(WriteReceipt {
            location: Some(location),
            deltas: deltas.len(),
        })
    }

    /// The current state of `aggregate`, or `None` when it is absent.
    pub fn get(&self, aggregate: &str) -> Result<Option<AggregateState<M::Output>>> {
        self.get_as_of(aggregate, u64::MAX)
    }

    /// The state of `aggregate` made of its deltas with `seq <= as_of`, or `None` when it was
    /// absent then. Fails with [`Error::HistoryUnavailable`] when compaction has folded deltas
    /// newer than `as_of` (see [`History`](crate::History)).
    pub fn get_as_of(
        &self,
        aggregate: &str,
        as_of: u64,
    ) -> Result<Option<AggregateState<M::Output>>> {
        let _reading = self.shared.reading();
        let Some(chain) = self.shared.chain(aggregate) else {
            return Ok(None);
        };
        let mut reader = DeltaReader::new(&self.shared.log);
        self.shared
            .fold_chain(aggregate, &chain, as_of, &mut reader)
    }

    /// Every live aggregate with its state, in id order. The iterator folds the aggregates a
    /// partition at a time (reading each partition's deltas in log order, see [`Scan`]) and
    /// takes the index lock briefly per partition, so writers are not blocked for the whole
    /// scan.
    pub fn scan(&self) -> Scan<'_, M> {
        Scan {
            shared: &self.shared,
            reader: DeltaReader::new(&self.shared.log),
            buffers: FoldBuffers::default(),
            after: None,
            ready: Default::default(),
            done: false,
        }
    }

    /// Folds every aggregate on `threads` threads (at least one) and passes each live one with
    /// its state to `visit`, in no particular order. Stops at the first error, of a fold or
    /// returned by `visit`, and returns it; otherwise returns the number of live aggregates
    /// visited. Aggregates created after the call started are not visited.
    ///
    /// Unlike [`Db::scan`], it reads the log in log order within partitions of aggregates (see
    /// `materialize.rs`), so a compressed batch is decompressed once per partition rather than
    /// once per delta. It takes the index lock briefly per partition.
    pub fn materialize<F>(&self, threads: usize, visit: F) -> Result<u64>
    where
        F: Fn(&str, AggregateState<M::Output>) -> Result<()> + Sync,
    {
        Materialize::new(&self.shared).run(threads, &visit)
    }

    /// Every record's deltas in log order from `from` (use [`RecordLocation::START`] for the
    /// whole log), as committed when this call was made. Deltas already folded by compaction
    /// and reclaimed are no longer in the log.
    pub fn replay(&self, from: RecordLocation) -> Replay {
        Replay::new(&self.shared.log, from, self.shared.options.recovery)
    }

    /// Counters of this handle.
    pub fn stats(&self) -> Stats {
        stats::collect(&self.shared)
    }

    /// Makes every acknowledged write durable now (useful with `SyncMode::Interval`/`Never`).
    pub fn sync(&self) -> Result<()> {
        self.shared.log.sync()
    }

    /// Writes a checkpoint now: later opens replay only the log after it.
    pub fn checkpoint(&self) -> Result<CheckpointMeta> {
        maintenance::write_checkpoint(&self.shared)
    }

    /// Compacts everything now: folds every chain into a state record and deletes every segment
    /// this empties (not rate-limited).
    pub fn compact(&self) -> Result<CompactionReport> {
        compaction::compact(&self.shared, Scope::Full, None)
    }

    /// Runs one pass of the background policy now (folds fragmented chains, reclaims sparse
    /// segments).
    pub fn compact_by_policy(&self) -> Result<CompactionReport> {
        compaction::compact(&self.shared, Scope::Policy, None)
    }

    /// Declares that no delta with a seq below `seal` will arrive any more. Later writes of
    /// such deltas fail with [`Error::Sealed`], and compaction may drop tombstones below it.
    /// Durable on return. A seal never moves back: a lower value is ignored.
    pub fn seal(&self, seal: u64) -> Result<()> {
        let shared = &*self.shared;
        let _gate = shared.gate_exclusive();
        if seal <= shared.seal.load(Ordering::SeqCst) {
            return Ok(());
        }
        let record = NewRecord {
            record_type: RecordType::Seal,
            flags: 0,
            body: encode_seal_body(seal),
        };
        shared.log.append_records(vec![record], true)?;
        shared.log.sync()?;
        shared.seal.store(seal, Ordering::SeqCst);
        Ok(())
    }

    /// Stops background work, syncs and closes the database, releasing its lock. Dropping a
    /// `Db` does the same but cannot report a failed sync.
    pub fn close(mut self) -> Result<()> {
        self.shared.closing.store(true, Ordering::SeqCst);
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
        self.shared.log.close()
    }
}

impl<M: Model> Drop for Db<M> {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}

/// Iterator over live aggregates returned by [`Db::scan`].
///
/// It folds the aggregates a *partition* at a time (the next ids in order, up to
/// `materialize::PARTITION_BYTES` of unfolded deltas), reading each partition's deltas in log
/// order, so a compressed batch is decompressed once per partition; it then yields them one by
/// one.
pub struct Scan<'db, M: Model> {
    shared: &'db Shared<M>,
    reader: DeltaReader<'db>,
    buffers: FoldBuffers,
    after: Option<String>,
    ready: std::collections::VecDeque<(String, AggregateState<M::Output>)>,
    done: bool,
}

impl<M: Model> Scan<'_, M> {
    /// Folds the next partition into `ready`; false when no aggregate is left.
    fn fold_next_partition(&mut self) -> Result<bool> {
        let _reading = self.shared.reading();
        let members = take_partition(self.shared.index_read().iter_after(self.after.as_deref()));
        let Some((last, _)) = members.last() else {
            return Ok(false);
        };
        self.after = Some(last.clone());
        let mut set = FoldSet::<M>::new(members);
        set.fold(self.shared, |_| true, &mut self.reader, &mut self.buffers)?;
        self.ready.extend(set.outputs(&self.shared.model));
        Ok(true)
    }
}

impl<M: Model> Iterator for Scan<'_, M> {
    type Item = Result<(String, AggregateState<M::Output>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.fold_next_partition() {
                Ok(true) => continue,
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// How many threads rebuild the index: one per core (at most 4) when the log to replay from
/// `from` holds at least [`PARALLEL_FROM_BYTES`], else one.
fn index_parts(storage: &dyn Storage, dir: &Path, from: RecordLocation) -> Result<usize> {
    let lengths = segment_lengths(storage, dir)?;
    let bytes: u64 = lengths.range(from.segment..).map(|(_, len)| len).sum();
    if bytes.saturating_sub(from.offset) < PARALLEL_FROM_BYTES {
        return Ok(1);
    }
    Ok(std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
}

/// The counters rebuilt by recovery (the index is built by an [`IndexBuilder`]).
#[derive(Default)]
struct Recovered {
    seal: u64,
    max_seq: u64,
    batches: u64,
    checkpoint: Option<CheckpointMeta>,
}

impl Recovered {
    fn from_checkpoint(meta: &CheckpointMeta) -> Self {
        Recovered {
            seal: meta.seal,
            max_seq: meta.max_seq,
            batches: meta.batches,
            checkpoint: Some(*meta),
        }
    }

    /// Applies one replayed record.
    fn apply(&mut self, record: &LogRecord<'_>, index: &mut IndexBuilder<'_>) {
        match record {
            LogRecord::Batch(batch) => {
                index.deltas(delta_refs(batch));
                let top = batch.deltas.iter().map(|d| d.seq).max().unwrap_or(0);
                self.max_seq = self.max_seq.max(top);
            }
            LogRecord::State {
                location,
                frame_bytes,
                body,
            } => {
                let state = StateRef {
                    segment: location.segment as u32,
                    record_offset: location.offset as u32,
                    len: *frame_bytes as u32,
                    horizon: body.horizon,
                    max_seq: body.max_seq,
                };
                index.state(body.aggregate, state);
                self.max_seq = self.max_seq.max(body.max_seq);
            }
            LogRecord::Seal { seal, .. } => self.seal = self.seal.max(*seal),
        }
    }
}

/// Adds every delta of a committed batch record to the index.
fn index_batch(index: &mut Index, record: &BatchRecord<'_>) {
    index.insert_all(delta_refs(record));
}

/// The index references of a batch record's deltas, with their aggregates.
fn delta_refs<'a>(record: &'a BatchRecord<'_>) -> impl Iterator<Item = (&'a str, DeltaRef)> {
    record.deltas.iter().enumerate().map(|(position, delta)| {
        let len = (delta.aggregate.len() + delta.body.len() + 19) as u32;
        let delta_ref = DeltaRef {
            seq: delta.seq,
            segment: record.segment as u32,
            position: position as u32,
            checksum: delta.checksum,
            record_offset: record.offset as u32,
            delta_offset: delta.offset,
            len,
        };
        (delta.aggregate, delta_ref)
    })
}

fn validate_options(options: &Options) -> Result<()> {
    let size = options.segment_size_bytes;
    if !(MIN_SEGMENT_SIZE_BYTES..=MAX_SEGMENT_SIZE_BYTES).contains(&size) {
        return Err(Error::InvalidInput(format!(
            "segment size {size} is outside {MIN_SEGMENT_SIZE_BYTES}..={MAX_SEGMENT_SIZE_BYTES} bytes"
        )));
    }
    if options.checkpoints_kept == 0 {
        return Err(Error::InvalidInput(
            "checkpoints_kept must be at least 1".into(),
        ));
    }
    Ok(())
}

fn prepare_dir(storage: &dyn Storage, dir: &Path, options: &Options) -> Result<()> {
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
    // Every directory created needs its entry made durable in its parent, outermost first.
    for made in created.iter().rev() {
        if let Some(parent) = made.parent().filter(|p| !p.as_os_str().is_empty()) {
            storage.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
        }
    }
    Ok(())
}

/// Makes the entries of the database directory and its checkpoint directory durable: what open
/// is about to rely on may have been created by a handle whose directory sync failed.
fn sync_dirs(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let checkpoints = checkpoint_dir(dir);
    for d in [dir, checkpoints.as_path()] {
        if storage.exists(d).map_err(|e| Error::io(d, e))? {
            storage.sync_dir(d).map_err(|e| Error::io(d, e))?;
        }
    }
    Ok(())
}

/// Takes the exclusive lock of the database in `dir`.
pub(crate) fn take_lock(storage: &dyn Storage, dir: &Path) -> Result<Box<dyn DirLock>> {
    let path = dir.join(LOCK_FILE);
    storage
        .try_lock(&path)
        .map_err(|e| Error::io(&path, e))?
        .ok_or_else(|| Error::Locked {
            path: dir.to_path_buf(),
        })
}

/// Lengths of the segment files of the database in `dir`, by id.
pub(crate) fn segment_lengths(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<std::collections::BTreeMap<u64, u64>> {
    let wal_dir = dir.join(WAL_DIR);
    if !storage
        .exists(&wal_dir)
        .map_err(|e| Error::io(&wal_dir, e))?
    {
        return Ok(Default::default());
    }
    let mut lengths = std::collections::BTreeMap::new();
    for id in list_segments(storage, &wal_dir)? {
        let path = segment_path(&wal_dir, id);
        lengths.insert(
            id,
            storage.file_len(&path).map_err(|e| Error::io(&path, e))?,
        );
    }
    Ok(lengths)
}

/// Directory of checkpoint files of the database in `dir`.
pub(crate) fn checkpoint_dir(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_DIR)
}

/// Locks the maintenance state.
pub(crate) fn maintenance_lock<M: Model>(
    shared: &Shared<M>,
) -> std::sync::MutexGuard<'_, Maintenance> {
    lock(&shared.maintenance)
}
