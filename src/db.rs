//! [`Db`]: the public handle wiring the log, the index and the model together.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::index::{DeltaRef, Index};
use crate::model::{DeltaView, MergePatch, Model, Stamp};
use crate::options::{Options, MAX_SEGMENT_SIZE_BYTES, MIN_SEGMENT_SIZE_BYTES};
use crate::reader::DeltaReader;
use crate::replay::Replay;
use crate::storage::{DirLock, FsStorage, Storage};
use crate::wal::batch::{compress_payload, BatchDecoder};
use crate::wal::format::FLAG_ZSTD;
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

/// Counters and findings of a database handle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segment files.
    pub segments: u64,
    /// Bytes in segment files (committed).
    pub log_bytes: u64,
    /// Aggregates with at least one delta (deleted ones included).
    pub aggregates: u64,
    /// Deltas indexed, duplicates included.
    pub deltas: u64,
    /// Batch records in the log.
    pub batches: u64,
    /// Deltas identical to an earlier one (same aggregate, seq, position and checksum).
    pub duplicates: u64,
    /// Deltas that differ from another with the same aggregate, seq and position.
    pub conflicts: u64,
    /// Bytes of a torn tail truncated away by this open.
    pub torn_bytes_dropped: u64,
    /// Damaged ranges skipped by this open (only under `RecoveryMode::SkipCorrupt`).
    pub skipped: Vec<Damage>,
}

/// An open aggrelog database. `Send + Sync`: share it between threads behind an `Arc`; readers
/// proceed while writers append.
pub struct Db<M: Model = MergePatch> {
    dir: PathBuf,
    options: Options,
    model: M,
    log: Arc<Log>,
    index: RwLock<Index>,
    batches: AtomicU64,
    torn_bytes_dropped: u64,
    skipped: Vec<Damage>,
    _lock: Box<dyn DirLock>,
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
        let mut index = Index::default();
        let (log, scan) = Log::open(storage, &dir, &options, &mut |record| {
            index_batch(&mut index, record)
        })?;
        if let Some(torn) = &scan.torn {
            log::warn!("dropped a torn tail: {torn}");
        }
        for damage in &scan.damage {
            log::warn!("skipped corrupt data: {damage}");
        }
        Ok(Db {
            dir,
            options,
            model,
            log,
            index: RwLock::new(index),
            batches: AtomicU64::new(scan.batches),
            torn_bytes_dropped: scan.torn.as_ref().map_or(0, |t| t.bytes),
            skipped: scan.damage,
            _lock: lock,
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `batch` atomically. Returns once it is committed under the configured sync mode;
    /// from then on every reader sees it.
    pub fn write(&self, batch: &Batch) -> Result<WriteReceipt> {
        if batch.is_empty() {
            return Ok(WriteReceipt {
                location: None,
                deltas: 0,
            });
        }
        let payload = batch.payload();
        let (flags, body) = match self.options.compression {
            Some(c) if payload.len() >= c.min_batch_bytes => {
                let stored = compress_payload(payload, c.level)
                    .map_err(|e| Error::InvalidInput(format!("compression failed: {e}")))?;
                (FLAG_ZSTD, stored)
            }
            _ => (0, payload.to_vec()),
        };
        let location = self.log.append(flags, body)?;
        let deltas = BatchDecoder::new(payload)
            .and_then(|d| d.collect::<Result<Vec<_>, _>>())
            .map_err(Error::InvalidInput)?;
        let record = BatchRecord {
            segment: location.segment,
            offset: location.offset,
            compressed: flags != 0,
            stored_bytes: 0,
            deltas: &deltas,
        };
        index_batch(
            &mut self.index.write().unwrap_or_else(PoisonError::into_inner),
            &record,
        );
        self.batches.fetch_add(1, Ordering::Relaxed);
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
    /// absent then.
    pub fn get_as_of(
        &self,
        aggregate: &str,
        as_of: u64,
    ) -> Result<Option<AggregateState<M::Output>>> {
        let chain: Vec<DeltaRef> = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            match index.chain(aggregate) {
                Some(chain) => chain
                    .iter()
                    .take_while(|r| r.seq <= as_of)
                    .copied()
                    .collect(),
                None => return Ok(None),
            }
        };
        self.fold_chain(aggregate, &chain, &mut DeltaReader::new(&self.log))
    }

    /// Folds the deltas of `chain` (all of `aggregate`) with the model.
    pub(crate) fn fold_chain(
        &self,
        aggregate: &str,
        chain: &[DeltaRef],
        reader: &mut DeltaReader<'_>,
    ) -> Result<Option<AggregateState<M::Output>>> {
        let mut state = M::State::default();
        let mut seq = None;
        for delta_ref in chain {
            let folded = {
                let delta = reader.read(aggregate, delta_ref)?;
                seq = seq.max(Some(delta.seq));
                let view = DeltaView {
                    stamp: Stamp::new(delta.seq, delta_ref.position, delta.checksum),
                    kind: delta.kind,
                    body: delta.body,
                };
                self.model.fold(&mut state, view)
            };
            folded.map_err(|e| reader.corruption(delta_ref, e.to_string()))?;
        }
        let Some(seq) = seq else { return Ok(None) };
        Ok(self
            .model
            .output(&state)
            .map(|state| AggregateState { seq, state }))
    }

    /// Every live aggregate with its state, in id order. The iterator takes the index lock
    /// briefly per aggregate, so writers are not blocked for the whole scan.
    pub fn scan(&self) -> Scan<'_, M> {
        Scan {
            db: self,
            reader: DeltaReader::new(&self.log),
            after: None,
            done: false,
        }
    }

    /// Every delta in log order from `from` (use [`RecordLocation::START`] for the whole log),
    /// as committed when this call was made.
    pub fn replay(&self, from: RecordLocation) -> Replay {
        Replay::new(&self.log, from, self.options.recovery)
    }

    /// Counters of this handle.
    pub fn stats(&self) -> Stats {
        let segments = self.log.segments();
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        Stats {
            segments: segments.len() as u64,
            log_bytes: segments.iter().map(|(_, _, len)| len).sum(),
            aggregates: index.aggregates(),
            deltas: index.deltas(),
            batches: self.batches.load(Ordering::Relaxed),
            duplicates: index.duplicates(),
            conflicts: index.conflicts(),
            torn_bytes_dropped: self.torn_bytes_dropped,
            skipped: self.skipped.clone(),
        }
    }

    /// Makes every acknowledged write durable now (useful with `SyncMode::Interval`/`Never`).
    pub fn sync(&self) -> Result<()> {
        self.log.sync()
    }

    /// Syncs and closes the database, releasing its lock. Dropping a `Db` does the same but
    /// cannot report a failed sync.
    pub fn close(self) -> Result<()> {
        self.log.close()
    }
}

/// Iterator over live aggregates returned by [`Db::scan`].
pub struct Scan<'db, M: Model> {
    db: &'db Db<M>,
    reader: DeltaReader<'db>,
    after: Option<String>,
    done: bool,
}

impl<M: Model> Iterator for Scan<'_, M> {
    type Item = Result<(String, AggregateState<M::Output>)>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let (id, chain) = {
                let index = self.db.index.read().unwrap_or_else(PoisonError::into_inner);
                match index.next_after(self.after.as_deref()) {
                    Some((id, chain)) => (id.to_owned(), chain.to_vec()),
                    None => {
                        self.done = true;
                        return None;
                    }
                }
            };
            let folded = self.db.fold_chain(&id, &chain, &mut self.reader);
            self.after = Some(id.clone());
            match folded {
                Ok(Some(state)) => return Some(Ok((id, state))),
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Adds every delta of a committed batch record to the index.
fn index_batch(index: &mut Index, record: &BatchRecord<'_>) {
    for (position, delta) in record.deltas.iter().enumerate() {
        let delta_ref = DeltaRef {
            seq: delta.seq,
            segment: record.segment,
            position: position as u32,
            checksum: delta.checksum,
            record_offset: record.offset as u32,
            delta_offset: delta.offset,
        };
        index.insert(delta.aggregate, delta_ref);
    }
}

fn validate_options(options: &Options) -> Result<()> {
    let size = options.segment_size_bytes;
    if !(MIN_SEGMENT_SIZE_BYTES..=MAX_SEGMENT_SIZE_BYTES).contains(&size) {
        return Err(Error::InvalidInput(format!(
            "segment size {size} is outside {MIN_SEGMENT_SIZE_BYTES}..={MAX_SEGMENT_SIZE_BYTES} bytes"
        )));
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
    storage.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        storage.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
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
