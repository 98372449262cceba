//! Opening a database (DESIGN.md, sections 5 and 5a): validate the options, create or find the
//! directory, take its lock, load the newest valid checkpoint, replay the log after it through
//! recovery while the index is rebuilt (on several threads for a long replay), and hand
//! everything to a new [`Engine`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::format::Facts;
use crate::checkpoint::format::{self as checkpoint, CheckpointMeta};
use crate::checkpoint::validate::newest_valid_checkpoint;
use crate::engine::{Counters, Engine, EngineParts, OpenReport};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::index_builder::{apply_record, IndexBuilder, PARALLEL_FROM_BYTES};
use crate::layout::{
    checkpoint_dir, prepare_dir, require_database, segment_lengths, sync_dirs, take_lock,
};
use crate::model::Model;
use crate::options::{Options, MAX_SEGMENT_SIZE_BYTES, MIN_SEGMENT_SIZE_BYTES};
use crate::retraction::Retractions;
use crate::retry::retrying_vanished;
use crate::sources::Sources;
use crate::storage::Storage;
use crate::wal::recovery::{LogRecord, LogScan};
use crate::wal::{Log, RecordLocation};

/// How a database is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// The one writer: takes the lock, recovers (truncating a torn tail), appends.
    Write,
    /// A reader beside a writer (DESIGN.md, section 6b): no lock, nothing written.
    ReadOnly,
}

/// Opens the database in `dir` read-only, retrying when the writer's compaction deleted a file
/// between its listing and its reading.
pub(crate) fn open_read_only<M: Model + Clone>(
    dir: PathBuf,
    options: Options,
    model: M,
    storage: Arc<dyn Storage>,
) -> Result<Engine<M>> {
    retrying_vanished(|| {
        let (dir, options, model) = (dir.clone(), options.clone(), model.clone());
        open(dir, options, model, Arc::clone(&storage), Access::ReadOnly)
    })
}

/// Opens the database in `dir`: recovery as DESIGN.md describes it, then the engine.
pub(crate) fn open<M: Model>(
    dir: PathBuf,
    options: Options,
    model: M,
    storage: Arc<dyn Storage>,
    access: Access,
) -> Result<Engine<M>> {
    validate_options(&options)?;
    let lock = match access {
        Access::Write => {
            prepare_dir(&*storage, &dir, &options)?;
            require_database(&*storage, &dir, &options)?;
            let lock = take_lock(&*storage, &dir)?;
            sync_dirs(&*storage, &dir)?;
            Some(lock)
        }
        Access::ReadOnly => {
            let existing = options.clone().create_if_missing(false);
            prepare_dir(&*storage, &dir, &existing)?;
            require_database(&*storage, &dir, &existing)?;
            None
        }
    };
    let mut report = OpenReport::default();
    let (checkpoint, rejected) = newest_valid_checkpoint(&*storage, &dir)?;
    report.checkpoints_rejected = rejected;
    let mut recovered = Recovered::default();
    let mut index = Index::default();
    let from = match checkpoint {
        Some(c) => {
            report.checkpoint_used = Some(c.meta.number);
            recovered = Recovered::from_checkpoint(&c.meta, c.facts);
            index = Index::from_parts(c.chains, c.meta.counters);
            c.meta.position
        }
        None => RecordLocation::START,
    };
    let parts = index_parts(&*storage, &dir, from)?;
    let (opened, index) = std::thread::scope(|scope| {
        let mut builder = IndexBuilder::start(scope, index, parts);
        let mut apply = |r: &LogRecord<'_>| recovered.apply(r, &mut builder);
        let opened = match access {
            Access::Write => Log::open(Arc::clone(&storage), &dir, &options, from, &mut apply),
            Access::ReadOnly => {
                Log::open_read_only(Arc::clone(&storage), &dir, &options, from, &mut apply)
            }
        };
        (opened, builder.finish())
    });
    let (log, scan) = opened?;
    log_findings(&scan, access);
    if access == Access::Write {
        report.torn_bytes_dropped = [&scan.torn, &scan.incomplete_segment]
            .iter()
            .filter_map(|d| d.as_ref().map(|d| d.bytes))
            .sum();
    }
    report.skipped = scan.damage;
    recovered.counters.batches = recovered.counters.batches.saturating_add(scan.batches);
    let next_checkpoint = next_checkpoint_number(&*storage, &dir)?;
    let engine = Engine::new(EngineParts {
        dir,
        storage,
        options,
        model,
        log,
        index,
        counters: recovered.counters,
        last_checkpoint: recovered.checkpoint,
        next_checkpoint,
        open_report: report,
        lock,
    });
    // Retraction records in the replayed log may name batches before them (DESIGN.md,
    // section 5f).
    engine.place_unplaced()?;
    Ok(engine)
}

/// Opens the log of the existing database in `dir` read-only from its first segment, handing
/// every valid record to `on_record`, without a checkpoint or an index (`LogReader`).
pub(crate) fn open_log(
    dir: &Path,
    options: &Options,
    storage: Arc<dyn Storage>,
    on_record: &mut dyn FnMut(&LogRecord<'_>),
) -> Result<Arc<Log>> {
    validate_options(options)?;
    let existing = options.clone().create_if_missing(false);
    prepare_dir(&*storage, dir, &existing)?;
    require_database(&*storage, dir, &existing)?;
    let (log, scan) = Log::open_read_only(storage, dir, options, RecordLocation::START, on_record)?;
    log_findings(&scan, Access::ReadOnly);
    Ok(log)
}

/// Reports what the scan of an open found besides valid records.
fn log_findings(scan: &LogScan, access: Access) {
    for torn in scan.torn.iter().chain(&scan.incomplete_segment) {
        match access {
            Access::Write => log::warn!("dropped a torn tail: {torn}"),
            Access::ReadOnly => log::debug!("not reading an unfinished append: {torn}"),
        }
    }
    for damage in &scan.damage {
        log::warn!("skipped corrupt data: {damage}");
    }
}

/// Above every checkpoint on disk, used or rejected: a rejected one numbered higher would
/// otherwise stay "newest" and could pass validation once the log has grown past it.
fn next_checkpoint_number(storage: &dyn Storage, dir: &Path) -> Result<u64> {
    let highest_on_disk = checkpoint::list(storage, &checkpoint_dir(dir))?
        .checkpoints
        .first()
        .map(|(number, _)| *number);
    Ok(highest_on_disk.map_or(1, |n| n.saturating_add(1)))
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
    counters: Counters,
    checkpoint: Option<CheckpointMeta>,
}

impl Recovered {
    fn from_checkpoint(meta: &CheckpointMeta, facts: Facts) -> Self {
        let mut sources = Sources::default();
        sources.apply_positions(&facts.sources);
        Recovered {
            counters: Counters {
                seal: meta.seal,
                max_seq: meta.max_seq,
                batches: meta.batches,
                sources,
                retractions: Retractions::from_entries(facts.retractions),
                references: facts.references.into_iter().collect(),
            },
            checkpoint: Some(*meta),
        }
    }

    /// Applies one replayed record.
    fn apply(&mut self, record: &LogRecord<'_>, index: &mut IndexBuilder<'_>) {
        apply_record(record, index, &mut self.counters);
    }
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
