//! [`Db`]: the public handle. It opens a database (`open.rs`), writes batches through the
//! commit gate, reads by folding (`fold.rs`), and starts the background worker; the engine state
//! it shares with readers and the worker lives in `engine.rs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::backup::{self, BackupReport};
use crate::batch::Batch;
use crate::checkpoint::write::{checkpoint_after_write, checkpoint_if_due, write_checkpoint};
use crate::checkpoint::CheckpointMeta;
use crate::compaction::{self, CompactionReport, Scope};
use crate::engine::{AggregateState, Engine};
use crate::error::Result;
use crate::export::{self, TransferReport};
use crate::history::{self, DeltaHistory};
use crate::large_batch::LargeBatch;
use crate::locks::lock;
use crate::materialize::Materialize;
use crate::model::{MergePatch, Model};
use crate::open::{open, open_read_only, Access};
use crate::options::Options;
use crate::references::{self, Reference, ReferenceIndex, References};
use crate::retract::{self, Retraction};
use crate::scan::Scan;
use crate::sources::SourcePosition;
use crate::stats::{self, Stats};
use crate::storage::{FsStorage, Storage};
use crate::wal::admin_records::MAX_POINTERS_PER_RECORD;
use crate::wal::log::NewRecord;
use crate::wal::reader::DeltaReader;
use crate::wal::replay::Replay;
use crate::wal::RecordLocation;
use crate::worker::Worker;
use crate::write::{write_batch, WriteReceipt};

/// An open aggrelog database. `Send + Sync`: share it between threads behind an `Arc`; readers
/// proceed while writers append.
pub struct Db<M: Model = MergePatch> {
    engine: Arc<Engine<M>>,
    worker: Option<Worker>,
    /// Built by the first reference query, brought up to date by each (DESIGN.md, 6c).
    references: Mutex<ReferenceIndex>,
}

impl Db<MergePatch> {
    /// Opens the database in `path` with the merge-patch model on the real file system,
    /// creating it if missing (unless `options.create_if_missing` is false).
    ///
    /// Open recovers: a torn tail (an append a crash left unfinished) is truncated and
    /// reported in [`Stats::torn_bytes_dropped`]; damage to durable data fails with
    /// [`Error::Corruption`](crate::Error::Corruption) naming the file and offset (or is skipped and reported under
    /// [`RecoveryMode::SkipCorrupt`](crate::RecoveryMode::SkipCorrupt)).
    ///
    /// ```
    /// use aggrelog::{Db, Options, SyncMode};
    ///
    /// # fn main() -> aggrelog::Result<()> {
    /// let dir = tempfile::tempdir().expect("temp dir");
    /// let options = Options::default().sync(SyncMode::Always).checkpoint_every_bytes(64 << 20);
    /// let db = Db::open(dir.path().join("aircraft"), options)?;
    /// assert_eq!(db.stats().torn_bytes_dropped, 0);
    /// db.close()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        Db::open_with(path, options, MergePatch, Arc::new(FsStorage))
    }
}

impl Db<MergePatch> {
    /// Opens the database in `path` read-only, beside a writer that may be running in another
    /// process (DESIGN.md, section 6b): it takes no lock, writes and truncates nothing and
    /// needs only read permission. It sees every batch written before it opened;
    /// [`Db::refresh`] catches up with later ones. Compaction in the writer may delete segments
    /// it reads: they stay readable (mapped) until a refresh finds nothing points into them.
    /// Every method that would write fails with [`Error::ReadOnly`](crate::Error::ReadOnly).
    ///
    /// ```
    /// use aggrelog::{Batch, Db, Options};
    /// use serde_json::json;
    ///
    /// # fn main() -> aggrelog::Result<()> {
    /// let dir = tempfile::tempdir().expect("temp dir");
    /// let writer = Db::open(dir.path(), Options::default())?;
    /// writer.write(Batch::new().patch("a", 1, &json!({"x": 1}))?)?;
    /// let reader = Db::open_read_only(dir.path(), Options::default())?; // beside the writer
    /// writer.write(Batch::new().patch("a", 2, &json!({"x": 2}))?)?;
    /// assert_eq!(reader.get("a")?.unwrap().seq, 1);
    /// reader.refresh()?;
    /// assert_eq!(reader.get("a")?.unwrap().seq, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn open_read_only(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        Db::open_read_only_with(path, options, MergePatch, Arc::new(FsStorage))
    }
}

impl<M: Model + Clone> Db<M> {
    /// [`Db::open_read_only`] with a custom model and storage.
    pub fn open_read_only_with(
        path: impl AsRef<Path>,
        options: Options,
        model: M,
        storage: Arc<dyn Storage>,
    ) -> Result<Self> {
        let dir = path.as_ref().to_path_buf();
        let engine = open_read_only(dir, options, model, storage)?;
        Ok(Db {
            engine: Arc::new(engine),
            worker: None,
            references: Mutex::default(),
        })
    }
}

impl<M: Model> Db<M> {
    /// Reads what the writer appended since this read-only handle opened or last refreshed,
    /// and returns the number of batch records read. Fails with `InvalidInput` on a writing
    /// handle (it sees every write already).
    pub fn refresh(&self) -> Result<u64> {
        self.engine.refresh()
    }

    /// Whether this handle was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.engine.is_read_only()
    }

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
        let engine = Arc::new(open(dir, options, model, storage, Access::Write)?);
        let worker = engine
            .options()
            .compaction
            .background
            .then(|| Worker::start(&engine))
            .transpose()?;
        Ok(Db {
            engine,
            worker,
            references: Mutex::default(),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.engine.dir()
    }

    /// Writes `batch` atomically. Returns once it is committed under the configured sync mode;
    /// from then on every reader sees it. Fails with [`Error::Sealed`](crate::Error::Sealed) (writing nothing) if a
    /// delta's seq is below the seal, unless the database already holds that very delta unfolded
    /// (a redelivered batch is accepted as a duplicate). Concurrent writers share one write and
    /// one fsync.
    ///
    /// ```
    /// use aggrelog::{Batch, Db, Options};
    /// use serde_json::json;
    ///
    /// # fn main() -> aggrelog::Result<()> {
    /// let dir = tempfile::tempdir().expect("temp dir");
    /// let db = Db::open(dir.path(), Options::default())?;
    /// let mut batch = Batch::new();
    /// batch.patch("aircraft-1", 7, &json!({"engine": {"serial": "ESN-7"}}))?;
    /// batch.delete("aircraft-2", 7)?;
    /// let receipt = db.write(&batch)?; // durable on return under SyncMode::Always
    /// assert_eq!(receipt.deltas, 2);
    /// // Redelivering the same batch changes nothing: states depend on which deltas arrived.
    /// db.write(&batch)?;
    /// assert_eq!(db.get("aircraft-1")?.unwrap().state, json!({"engine": {"serial": "ESN-7"}}));
    /// assert!(db.get("aircraft-2")?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn write(&self, batch: &Batch) -> Result<WriteReceipt> {
        let receipt = write_batch(&self.engine, batch)?;
        if self.worker.is_none() {
            checkpoint_after_write(&self.engine);
        }
        Ok(receipt)
    }

    /// A batch of any size (DESIGN.md, section 3.6): deltas added to it are written as
    /// fragments of a few MiB as they come, so memory does not grow with the batch, and
    /// [`LargeBatch::commit`] makes them one atomic batch. Until then no reader sees any of it;
    /// a batch dropped uncommitted, or cut by a crash, is absent whole.
    ///
    /// ```
    /// # fn main() -> aggrelog::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use aggrelog::{Db, Options};
    /// use serde_json::json;
    ///
    /// let db = Db::open(dir.path(), Options::default())?;
    /// let mut snapshot = db.large_batch()?;
    /// for n in 0..10_000 {
    ///     snapshot.patch(&format!("aircraft-{n}"), 7, &json!({"engine": {"serial": n}}))?;
    /// }
    /// assert!(db.get("aircraft-1")?.is_none()); // not committed yet
    /// let receipt = snapshot.commit()?;
    /// assert_eq!(receipt.deltas, 10_000);
    /// assert_eq!(db.get("aircraft-1")?.unwrap().state, json!({"engine": {"serial": 1}}));
    /// # Ok(())
    /// # }
    /// ```
    pub fn large_batch(&self) -> Result<LargeBatch<'_, M>> {
        LargeBatch::begin(&self.engine, self.worker.is_none())
    }

    /// The current state of `aggregate`, or `None` when it is absent.
    pub fn get(&self, aggregate: &str) -> Result<Option<AggregateState<M::Output>>> {
        self.get_as_of(aggregate, u64::MAX)
    }

    /// The state of `aggregate` made of its deltas with `seq <= as_of`, or `None` when it was
    /// absent then. Fails with [`Error::HistoryUnavailable`](crate::Error::HistoryUnavailable) when compaction has folded deltas
    /// newer than `as_of` (see [`History`](crate::History)).
    pub fn get_as_of(
        &self,
        aggregate: &str,
        as_of: u64,
    ) -> Result<Option<AggregateState<M::Output>>> {
        let _reading = self.engine.reading();
        let Some(chain) = self.engine.chain(aggregate) else {
            return Ok(None);
        };
        let mut reader = DeltaReader::new(self.engine.log());
        self.engine
            .fold_chain(aggregate, &chain, as_of, &mut reader)
    }

    /// The deltas that built `aggregate`'s state within history, in fold order, each with the
    /// name of the batch it came in (an audit trail). Deltas compaction folded into a state
    /// record are not listed (`folded_through_seq` says up to which seq); keep them with
    /// [`History::All`](crate::History::All) or a window.
    pub fn history(&self, aggregate: &str) -> Result<DeltaHistory> {
        history::history(&self.engine, aggregate)
    }

    /// Declares reference fields: JSON pointers (RFC 6901) into states, a `*` segment matching
    /// any key or index, such as `/parent` or `/components/*/ref`. Durable and shared by every
    /// handle and command; declaring adds to what was declared (DESIGN.md, section 6c).
    pub fn declare_references(&self, pointers: &[&str]) -> Result<()> {
        let pointers = references::check_pointers(pointers)?;
        let engine = &*self.engine;
        let _gate = engine.gate_exclusive();
        let declared = engine.declared_references();
        let new: Vec<String> = (pointers.into_iter())
            .filter(|p| !declared.contains(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let records = new
            .chunks(MAX_POINTERS_PER_RECORD)
            .map(NewRecord::references);
        engine.log().append_records(records.collect(), true)?;
        engine.log().sync()?;
        engine.declare_references(&new);
        Ok(())
    }

    /// The declared reference fields, sorted.
    pub fn declared_references(&self) -> Vec<String> {
        self.engine.declared_references().into_iter().collect()
    }

    /// The batch names retracted now (`Db::retract`), in order.
    pub fn retracted_batches(&self) -> Vec<String> {
        self.engine
            .retractions()
            .retracted()
            .map(str::to_owned)
            .collect()
    }

    /// Every live aggregate with its state, in id order. The iterator folds the aggregates a
    /// partition at a time (reading each partition's deltas in log order, see [`Scan`]) and
    /// takes the index lock briefly per partition, so writers are not blocked for the whole
    /// scan.
    pub fn scan(&self) -> Scan<'_, M> {
        Scan::new(&self.engine)
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
        Materialize::new(&self.engine).run(threads, &visit)
    }

    /// Every record's deltas in log order from `from` (use [`RecordLocation::START`] for the
    /// whole log), as committed when this call was made. Deltas already folded by compaction
    /// and reclaimed are no longer in the log.
    pub fn replay(&self, from: RecordLocation) -> Replay {
        Replay::new(self.engine.log(), from, self.engine.options().recovery)
    }

    /// How far each upstream queue partition was applied, from the source ranges of the
    /// batches in the database ([`Batch::set_source`]), in (topic, partition) order: a queue
    /// consumer resumes from `next_offset` to apply every message exactly once (DESIGN.md,
    /// section 5e). A read-only handle shows what its last refresh read.
    pub fn source_positions(&self) -> Vec<SourcePosition> {
        self.engine.source_positions()
    }

    /// Counters of this handle.
    pub fn stats(&self) -> Stats {
        stats::collect(&self.engine)
    }

    /// Makes every acknowledged write durable now (useful with `SyncMode::Interval`/`Never`).
    pub fn sync(&self) -> Result<()> {
        self.engine.log().sync()
    }

    /// Writes a point-in-time copy of the database into `dest` (a directory that must not
    /// exist) while writers go on: every batch acknowledged before the call is in it, none
    /// partly, and it opens like any database (DESIGN.md, section 5b2). Sealed segments and
    /// checkpoints are hard-linked where the file system allows. Checkpoints and compaction
    /// wait until it returns.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        backup::backup(&self.engine, dest.as_ref())
    }

    /// Writes every record of the log, in log order, to `out` as JSON Lines (batches with their
    /// first stamp position, compaction state records with their horizon and encoded state,
    /// seals; DESIGN.md, section 5b3). [`Db::import`] into a new database gives the same
    /// states, history and future folds. Works on a read-only handle too.
    pub fn export(&self, out: &mut dyn std::io::Write) -> Result<TransferReport> {
        export::export(&self.engine, out)
    }

    /// Reads an export into this database, which must hold nothing yet, record by record in
    /// log order. A bad line fails naming its number; what came before it stays imported.
    pub fn import(&self, input: &mut dyn std::io::BufRead) -> Result<TransferReport> {
        let write = |batch: &Batch| self.write(batch).map(drop);
        let seal = |seal: u64| self.seal(seal);
        export::import(&self.engine, &write, &seal, input)
    }

    /// Writes a checkpoint now: later opens replay only the log after it.
    pub fn checkpoint(&self) -> Result<CheckpointMeta> {
        write_checkpoint(&self.engine)
    }

    /// Compacts everything now: folds every chain into a state record and deletes every segment
    /// this empties (not rate-limited).
    pub fn compact(&self) -> Result<CompactionReport> {
        compaction::compact(&self.engine, Scope::Full, None)
    }

    /// Runs one pass of the background policy now (folds fragmented chains, reclaims sparse
    /// segments).
    pub fn compact_by_policy(&self) -> Result<CompactionReport> {
        compaction::compact(&self.engine, Scope::Policy, None)
    }

    /// Declares that no delta with a seq below `seal` will arrive any more. Later writes of
    /// such deltas fail with [`Error::Sealed`](crate::Error::Sealed), and compaction may drop tombstones below it.
    /// Durable on return. A seal never moves back: a lower value is ignored.
    pub fn seal(&self, seal: u64) -> Result<()> {
        let engine = &*self.engine;
        let _gate = engine.gate_exclusive();
        if seal <= engine.seal() {
            return Ok(());
        }
        engine
            .log()
            .append_records(vec![NewRecord::seal(seal)], true)?;
        engine.log().sync()?;
        engine.raise_seal(seal);
        Ok(())
    }

    /// Stops background work, syncs and closes the database, releasing its lock. A checkpoint
    /// that is due is taken first, and one is taken when redelivered batches were counted
    /// since the last (they are not in the log, so only a checkpoint keeps their count).
    /// Dropping a `Db` does the rest but cannot report a failed sync.
    pub fn close(mut self) -> Result<()> {
        self.engine.start_closing();
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
        let engine = &*self.engine;
        // A read-only or refused log takes no checkpoint (the refusal is reported by the sync).
        let writable = !engine.is_read_only() && engine.log().check_writable().is_ok();
        let checkpointed = match writable {
            true if engine.redeliveries_unsaved() => write_checkpoint(engine).map(drop),
            true => checkpoint_if_due(engine),
            false => Ok(()),
        };
        let closed = engine.log().close();
        checkpointed.and(closed)
    }
}

/// References (DESIGN.md, section 6c): found in JSON states.
impl Db<MergePatch> {
    /// `aggregate`'s references both ways: the strings at its declared reference fields
    /// (`outgoing`, by pointer) and the references other aggregates hold to it (`incoming`).
    /// The reference index is built by the handle's first query and brought up to date by
    /// each: it re-folds the aggregates written since.
    pub fn references(&self, aggregate: &str) -> Result<References> {
        let mut index = lock(&self.references);
        index.update(&self.engine)?;
        Ok(index.references_of(aggregate))
    }

    /// Every reference whose target has no live state (never written, deleted, or only in
    /// retracted batches), sorted by aggregate, pointer and target: nothing is rejected for
    /// it, and each resolves when its target arrives.
    pub fn dangling(&self) -> Result<Vec<Reference>> {
        let mut index = lock(&self.references);
        index.update(&self.engine)?;
        Ok(index.dangling())
    }
}

/// Retraction (DESIGN.md, section 5f): comparing states needs outputs that compare.
impl<M: Model> Db<M>
where
    M::Output: PartialEq,
{
    /// Takes back every batch named `name` (`Batch::name`): durably, every state, `as-of`
    /// states included, is then as if those batches had never arrived, whatever the order in
    /// which the batches and the retraction arrive (DESIGN.md, section 5f).
    ///
    /// Fails with [`Error::InvalidInput`](crate::Error::InvalidInput), writing nothing, when
    /// compaction folded a delta of the name into a state record (retraction works within
    /// `History::All` or `History::Window`), or when no delta of the name is in the log: use
    /// [`Db::retract_pending`] for a batch yet to arrive. An error reading the states after the
    /// retraction record is durable (to list `changed`) is returned with the retraction in
    /// force: calling again reports `recorded: false`.
    pub fn retract(&self, name: &str) -> Result<Retraction> {
        self.set_retracted(name, true, false)
    }

    /// [`Db::retract`], recorded even when no delta of `name` is in the log: the retraction
    /// applies to its batches when they arrive. The caller vouches that no batch of that name
    /// was folded away by compaction (which also leaves no delta in the log).
    pub fn retract_pending(&self, name: &str) -> Result<Retraction> {
        self.set_retracted(name, true, true)
    }

    /// Takes back a retraction of `name`, with the same guarantees as [`Db::retract`]; fails
    /// when compaction folded the name's deltas while it was retracted.
    pub fn unretract(&self, name: &str) -> Result<Retraction> {
        self.set_retracted(name, false, false)
    }

    /// [`Db::unretract`], recorded even when no delta of `name` is in the log.
    pub fn unretract_pending(&self, name: &str) -> Result<Retraction> {
        self.set_retracted(name, false, true)
    }

    fn set_retracted(&self, name: &str, retract: bool, pending: bool) -> Result<Retraction> {
        retract::set_retracted(&self.engine, name, retract::Request { retract, pending })
    }
}

impl<M: Model> Drop for Db<M> {
    fn drop(&mut self) {
        self.engine.start_closing();
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}
