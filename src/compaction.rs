//! Compaction: folding fragmented delta chains into state records, and reclaiming segments.
//!
//! One run (DESIGN.md, "Compaction"):
//! 1. *plan*: pick aggregates whose unfolded chain is long (more than `max_unfolded_deltas`
//!    deltas or `max_unfolded_bytes` bytes) or that still hold records in a segment worth
//!    reclaiming (live bytes below `min_live_ratio`; every sealed segment for a full run);
//! 2. *fold*, outside any lock writers need: read each chain's base and deltas up to the history
//!    horizon and fold them with the model;
//! 3. *install*, under the exclusive commit gate (so every delta in the log is in the index):
//!    fold the deltas that arrived meanwhile, forget what the seal allows, append the state
//!    records (unsynced), and point the chains at them;
//! 4. *reclaim*: segments no chain points into are deleted, but only after the log is synced
//!    (the state records superseding them are durable), the seal is re-recorded, and a new
//!    checkpoint that does not reference them is in place; older checkpoints that pointed into
//!    them can no longer be used and are removed.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::thread;
use std::time::{Duration, Instant};

use crate::db::{maintenance_lock, Shared};
use crate::error::Result;
use crate::index::{Chain, DeltaRef, StateRef};
use crate::maintenance::{drop_unusable_checkpoints, write_checkpoint_locked, Maintenance};
use crate::materialize::{FoldBuffers, FoldSet};
use crate::model::Model;
use crate::options::History;
use crate::reader::DeltaReader;
use crate::wal::format::{RecordType, FRAME_HEADER_BYTES};
use crate::wal::log::{lock, NewRecord};
use crate::wal::records::{encode_seal_body, encode_state_body, StateBody};

/// Aggregates installed per exclusive-gate section (short, so writers wait little).
const STEP_AGGREGATES: usize = 256;

/// Aggregates folded together, their deltas read in log order: a compressed batch is
/// decompressed once per round. Memory: one round's states and gathered delta bodies.
const ROUND_AGGREGATES: usize = 8192;

/// Which aggregates a run folds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The background policy: fragmented chains and sparse segments.
    Policy,
    /// Everything: every chain with unfolded deltas or records in a sealed segment.
    Full,
}

/// What one compaction run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Aggregates given a new state record.
    pub aggregates_folded: u64,
    /// Deltas folded into state records.
    pub deltas_folded: u64,
    /// Bytes of records read to fold.
    pub bytes_read: u64,
    /// Bytes of state records written.
    pub bytes_written: u64,
    /// Segment files deleted.
    pub segments_deleted: u64,
    /// Bytes of the deleted segment files.
    pub bytes_reclaimed: u64,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
}

/// One aggregate folded outside the gate.
struct Folded<S> {
    aggregate: String,
    state: S,
    snapshot: Chain,
    max_seq: Option<u64>,
    folded: u32,
}

/// Runs one compaction. `rate` limits bytes read plus written per second.
pub(crate) fn compact<M: Model>(
    shared: &Shared<M>,
    scope: Scope,
    rate: Option<u64>,
) -> Result<CompactionReport> {
    let mut maintenance = maintenance_lock(shared);
    shared.log.check_writable()?;
    let started = Instant::now();
    let mut report = CompactionReport::default();
    if let Some(horizon) = fold_horizon(shared) {
        if scope == Scope::Full {
            shared.log.rotate_now()?;
        }
        let candidates = plan(shared, scope, horizon);
        'rounds: for round in candidates.chunks(ROUND_AGGREGATES) {
            let mut folded = fold_step(shared, round, horizon, &mut report)?;
            while !folded.is_empty() {
                if scope == Scope::Policy && shared.closing.load(Ordering::SeqCst) {
                    // The handle is closing: stop between steps; the next open resumes it.
                    break 'rounds;
                }
                let step: Vec<_> = folded.drain(..STEP_AGGREGATES.min(folded.len())).collect();
                install(shared, step, horizon, &mut report)?;
                throttle(rate, started, report.bytes_read + report.bytes_written);
            }
        }
    }
    reclaim(shared, &mut maintenance, &mut report)?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    let mut stats = lock(&shared.maintenance_stats);
    stats.compaction_runs += 1;
    stats.bytes_rewritten += report.bytes_written;
    stats.segments_deleted += report.segments_deleted;
    Ok(report)
}

/// Deltas with `seq <= horizon` may be folded; `None` when history keeps every delta.
fn fold_horizon<M: Model>(shared: &Shared<M>) -> Option<u64> {
    match shared.options.history {
        History::None => Some(u64::MAX),
        History::All => None,
        History::Window(window) => {
            Some(shared.max_seq.load(Ordering::SeqCst).saturating_sub(window))
        }
    }
}

/// Sleeps so that `bytes` since `started` stay under `rate` bytes per second.
fn throttle(rate: Option<u64>, started: Instant, bytes: u64) {
    let Some(rate) = rate.filter(|&r| r > 0) else {
        return;
    };
    let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        thread::sleep(wait);
    }
}

/// The aggregates to fold.
fn plan<M: Model>(shared: &Shared<M>, scope: Scope, horizon: u64) -> Vec<String> {
    let active = shared.log.active_segment();
    let policy = &shared.options.compaction;
    let index = shared.index_read();
    let reclaimable: BTreeSet<u32> = shared
        .log
        .segments()
        .into_iter()
        .filter(|(id, _, len)| {
            let live = index.live_bytes().get(&(*id as u32)).copied().unwrap_or(0);
            *id < active
                && (scope == Scope::Full || (live as f64) < policy.min_live_ratio * *len as f64)
        })
        .map(|(id, _, _)| id as u32)
        .collect();
    index
        .iter()
        .filter(|(_, chain)| {
            let foldable = || chain.deltas.iter().filter(|d| d.seq <= horizon);
            let count = foldable().count();
            let bytes: u64 = foldable().map(|d| u64::from(d.len)).sum();
            let moves_out = chain.base.is_some_and(|b| reclaimable.contains(&b.segment))
                || foldable().any(|d| reclaimable.contains(&d.segment));
            match scope {
                Scope::Full => count > 0 || moves_out,
                Scope::Policy => {
                    count > policy.max_unfolded_deltas
                        || bytes > policy.max_unfolded_bytes
                        || moves_out
                }
            }
        })
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// Folds each aggregate's base and deltas up to `horizon`, without holding the gate. The step's
/// deltas are read in log order (see `materialize.rs`), so a compressed batch is decompressed
/// once per step rather than once per delta.
fn fold_step<M: Model>(
    shared: &Shared<M>,
    aggregates: &[String],
    horizon: u64,
    report: &mut CompactionReport,
) -> Result<Vec<Folded<M::State>>> {
    let members = aggregates
        .iter()
        .filter_map(|id| Some((id.clone(), shared.chain(id)?)))
        .collect();
    let mut set = FoldSet::<M>::new(members);
    let mut reader = DeltaReader::new(&shared.log);
    let included = |d: &DeltaRef| d.seq <= horizon;
    set.fold(shared, included, &mut reader, &mut FoldBuffers::default())?;
    for chain in &set.chains {
        report.bytes_read += chain.base.map_or(0, |b| u64::from(b.len));
        let deltas = chain.deltas.iter().filter(|d| included(d));
        report.bytes_read += deltas.map(|d| u64::from(d.len)).sum::<u64>();
    }
    let FoldSet {
        ids,
        chains,
        states,
        seqs,
        folded,
    } = set;
    let members = ids
        .into_iter()
        .zip(chains)
        .zip(states)
        .zip(seqs)
        .zip(folded);
    Ok(members
        .map(
            |((((aggregate, snapshot), state), max_seq), folded)| Folded {
                aggregate,
                state,
                snapshot,
                max_seq,
                folded,
            },
        )
        .collect())
}

/// Completes the folds with deltas that arrived meanwhile, writes the state records and
/// installs them, all under the exclusive commit gate.
fn install<M: Model>(
    shared: &Shared<M>,
    folded: Vec<Folded<M::State>>,
    horizon: u64,
    report: &mut CompactionReport,
) -> Result<()> {
    let _gate = shared.gate_exclusive();
    let forget_below = shared
        .seal
        .load(Ordering::SeqCst)
        .min(horizon.saturating_add(1));
    let mut reader = DeltaReader::new(&shared.log);
    let mut records = Vec::with_capacity(folded.len());
    let mut installs = Vec::with_capacity(folded.len());
    for mut f in folded {
        let Some(current) = shared.chain(&f.aggregate) else {
            continue;
        };
        let arrived = current
            .deltas
            .iter()
            .filter(|d| d.seq <= horizon && !f.snapshot.deltas.contains(d));
        for delta in arrived {
            shared.fold_delta(&f.aggregate, delta, &mut f.state, &mut reader)?;
            f.max_seq = f.max_seq.max(Some(delta.seq));
            f.folded += 1;
        }
        let Some(max_seq) = f.max_seq else { continue };
        if forget_below > 0 {
            shared.model.forget_below(&mut f.state, forget_below);
        }
        let mut state = Vec::new();
        shared.model.encode_state(&f.state, &mut state);
        let mut body = Vec::with_capacity(state.len() + f.aggregate.len() + 22);
        let fields = StateBody {
            aggregate: &f.aggregate,
            horizon,
            max_seq,
            folded: u64::from(f.folded),
            state: &state,
        };
        encode_state_body(&fields, &mut body);
        let len = (FRAME_HEADER_BYTES + body.len()) as u32;
        records.push(NewRecord {
            record_type: RecordType::State,
            flags: 0,
            body,
        });
        installs.push((f.aggregate, max_seq, len));
    }
    let locations = shared.log.append_records(records, false)?;
    let mut index = shared.index_write();
    for ((aggregate, max_seq, len), location) in installs.into_iter().zip(locations) {
        let state = StateRef {
            segment: location.segment as u32,
            record_offset: location.offset as u32,
            len,
            horizon,
            max_seq,
        };
        report.deltas_folded += index.install_state(&aggregate, state) as u64;
        report.aggregates_folded += 1;
        report.bytes_written += u64::from(len);
    }
    Ok(())
}

/// Deletes sealed segments that nothing points into, after making that safe (module docs).
fn reclaim<M: Model>(
    shared: &Shared<M>,
    maintenance: &mut Maintenance,
    report: &mut CompactionReport,
) -> Result<()> {
    let active = shared.log.active_segment();
    let dead: Vec<(u64, u64)> = {
        let index = shared.index_read();
        shared
            .log
            .segments()
            .into_iter()
            .filter(|(id, _, _)| *id < active && !index.live_bytes().contains_key(&(*id as u32)))
            .map(|(id, _, len)| (id, len))
            .collect()
    };
    if dead.is_empty() {
        return Ok(());
    }
    let seal = shared.seal.load(Ordering::SeqCst);
    if seal > 0 {
        // The seal record may sit in a dead segment: record it again before deleting.
        let record = NewRecord {
            record_type: RecordType::Seal,
            flags: 0,
            body: encode_seal_body(seal),
        };
        shared.log.append_records(vec![record], true)?;
    }
    write_checkpoint_locked(shared, maintenance)?;
    let _no_readers = shared
        .deletion
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    for (id, len) in dead {
        shared.log.delete_segment(id)?;
        report.segments_deleted += 1;
        report.bytes_reclaimed += len;
    }
    drop(_no_readers);
    drop_unusable_checkpoints(shared)
}
