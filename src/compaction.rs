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

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::checkpoint::validate::drop_unusable_checkpoints;
use crate::checkpoint::write::write_checkpoint_locked;
use crate::engine::{Engine, Maintenance};
use crate::error::Result;
use crate::fold::{FoldBuffers, FoldSet};
use crate::index::{Chain, DeltaRef, StateRef};
use crate::layout::index_location;
use crate::model::Model;
use crate::options::History;
use crate::wal::admin_records::MAX_POINTERS_PER_RECORD;
use crate::wal::format::{RecordType, FRAME_HEADER_BYTES};
use crate::wal::fragments::fragment_segments_listed;
use crate::wal::log::NewRecord;
use crate::wal::reader::{DeltaReader, PassViews};
use crate::wal::records::{encode_state_body, StateBody};

/// Aggregates installed per exclusive-gate section (short, so writers wait little).
const STEP_AGGREGATES: usize = 256;

/// Aggregates folded together, their deltas read in log order: a compressed batch is
/// decompressed once per round. Memory: one round's states and gathered delta bodies.
const ROUND_AGGREGATES: usize = 8192;

/// Bytes of state records and deltas folded together at most (one aggregate larger than this
/// is a round of its own): bounds a round's gathered bodies whatever the chains' lengths.
const ROUND_BYTES: u64 = 4 << 20;

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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
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
    engine: &Engine<M>,
    scope: Scope,
    rate: Option<u64>,
) -> Result<CompactionReport> {
    let mut maintenance = engine.maintenance();
    engine.log().check_writable()?;
    let started = Instant::now();
    let mut report = CompactionReport::default();
    if let Some(horizon) = fold_horizon(engine) {
        if scope == Scope::Full {
            engine.log().rotate_now()?;
        }
        let candidates = plan(engine, scope, horizon);
        // Every round reads through the same views: a segment is mapped once per compaction.
        let views = PassViews::default();
        'rounds: for round in rounds(&candidates) {
            let ids: Vec<String> = round.iter().map(|(id, _)| id.clone()).collect();
            let mut folded = fold_step(engine, &ids, horizon, &views, &mut report)?;
            while !folded.is_empty() {
                if scope == Scope::Policy && engine.is_closing() {
                    // The handle is closing: stop between steps; the next open resumes it.
                    break 'rounds;
                }
                let step: Vec<_> = folded.drain(..STEP_AGGREGATES.min(folded.len())).collect();
                install(engine, step, horizon, &mut report)?;
                throttle(rate, started, report.bytes_read + report.bytes_written);
            }
        }
    }
    reclaim(engine, &mut maintenance, &mut report)?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    let mut stats = engine.maintenance_stats();
    stats.compaction_runs += 1;
    stats.bytes_rewritten += report.bytes_written;
    stats.segments_deleted += report.segments_deleted;
    Ok(report)
}

/// Deltas with `seq <= horizon` may be folded; `None` when history keeps every delta.
fn fold_horizon<M: Model>(engine: &Engine<M>) -> Option<u64> {
    match engine.options().history {
        History::None => Some(u64::MAX),
        History::All => None,
        History::Window(window) => Some(engine.max_seq().saturating_sub(window)),
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

/// `candidates` cut into rounds of at most [`ROUND_AGGREGATES`] aggregates and, but for a
/// round of one, [`ROUND_BYTES`] bytes.
fn rounds(candidates: &[(String, u64)]) -> Vec<&[(String, u64)]> {
    let mut rounds = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (at, (_, size)) in candidates.iter().enumerate() {
        let full = at - start == ROUND_AGGREGATES || bytes + size > ROUND_BYTES;
        if at > start && full {
            rounds.push(&candidates[start..at]);
            (start, bytes) = (at, 0);
        }
        bytes += size;
    }
    if start < candidates.len() {
        rounds.push(&candidates[start..]);
    }
    rounds
}

/// The aggregates to fold, with the bytes a fold of each reads (its base and foldable deltas).
fn plan<M: Model>(engine: &Engine<M>, scope: Scope, horizon: u64) -> Vec<(String, u64)> {
    let active = engine.log().active_segment();
    let policy = &engine.options().compaction;
    let index = engine.index_read();
    let reclaimable: BTreeSet<u32> = engine
        .log()
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
        .filter_map(|(id, chain)| {
            let foldable = || chain.deltas.iter().filter(|d| d.seq <= horizon);
            let count = foldable().count();
            let bytes: u64 = foldable().map(|d| u64::from(d.len)).sum();
            let moves_out = chain.base.is_some_and(|b| reclaimable.contains(&b.segment))
                || foldable().any(|d| reclaimable.contains(&d.segment));
            let fold = match scope {
                Scope::Full => count > 0 || moves_out,
                Scope::Policy => {
                    count > policy.max_unfolded_deltas
                        || bytes > policy.max_unfolded_bytes
                        || moves_out
                }
            };
            let base = chain.base.map_or(0, |b| u64::from(b.len));
            fold.then(|| (id.to_owned(), base + bytes))
        })
        .collect()
}

/// Folds each aggregate's base and deltas up to `horizon`, without holding the gate. The step's
/// deltas are read in log order (see `materialize.rs`), so a compressed batch is decompressed
/// once per step rather than once per delta.
fn fold_step<M: Model>(
    engine: &Engine<M>,
    aggregates: &[String],
    horizon: u64,
    views: &PassViews,
    report: &mut CompactionReport,
) -> Result<Vec<Folded<M::State>>> {
    let members = aggregates
        .iter()
        .filter_map(|id| Some((id.clone(), engine.chain(id)?)))
        .collect();
    let mut set = FoldSet::<M>::new(members);
    let mut reader = DeltaReader::in_pass(engine.log(), views);
    let included = |d: &DeltaRef| d.seq <= horizon;
    set.fold(engine, included, &mut reader, &mut FoldBuffers::default())?;
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
    engine: &Engine<M>,
    folded: Vec<Folded<M::State>>,
    horizon: u64,
    report: &mut CompactionReport,
) -> Result<()> {
    let _gate = engine.gate_exclusive();
    let forget_below = engine.seal().min(horizon.saturating_add(1));
    let mut reader = DeltaReader::new(engine.log());
    let mut records = Vec::with_capacity(folded.len());
    let mut installs = Vec::with_capacity(folded.len());
    let mut left_out = Vec::new();
    for mut f in folded {
        let Some(mut current) = engine.chain_with_retracted(&f.aggregate) else {
            continue;
        };
        // Deltas of retracted batches are superseded with the others, left out of the state.
        {
            let retractions = engine.retractions();
            let below = |d: &&DeltaRef| d.seq <= horizon && retractions.leaves_out(d);
            left_out.extend(current.deltas.iter().filter(below));
            retractions.filter(&mut current);
        }
        // Deltas are told apart by their place in the log (a set: linear in the chain).
        let folded_already: HashSet<(u32, u32, u32)> =
            f.snapshot.deltas.iter().map(DeltaRef::place).collect();
        let arrived = current
            .deltas
            .iter()
            .filter(|d| d.seq <= horizon && !folded_already.contains(&d.place()));
        for delta in arrived {
            engine.fold_delta(&f.aggregate, delta, &mut f.state, &mut reader)?;
            f.max_seq = f.max_seq.max(Some(delta.seq));
            f.folded += 1;
        }
        let Some(max_seq) = f.max_seq else { continue };
        if forget_below > 0 {
            engine.model().forget_below(&mut f.state, forget_below);
        }
        let mut state = Vec::new();
        engine.model().encode_state(&f.state, &mut state);
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
    let locations = engine.log().append_records(records, false)?;
    // The state records leave these deltas out: their names can never be unretracted
    // (DESIGN.md, section 5f).
    engine.retractions_mut().freeze(&left_out);
    let mut index = engine.index_write();
    for ((aggregate, max_seq, len), location) in installs.into_iter().zip(locations) {
        let (segment, record_offset) = index_location(location.segment, location.offset);
        let state = StateRef {
            segment,
            record_offset,
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

/// Leaves out of `dead` every segment holding a batch commit that lists a fragment in a
/// segment that stays: a crash after deleting it would leave that fragment's live deltas without
/// their batch commit (DESIGN.md, section 3.6).
fn keep_batch_commits_of_live_fragments<M: Model>(
    engine: &Engine<M>,
    segments: &[(u64, PathBuf, u64)],
    dead: Vec<(u64, u64)>,
) -> Result<Vec<(u64, u64)>> {
    let dead_ids: BTreeSet<u64> = dead.iter().map(|(id, _)| *id).collect();
    let staying: BTreeSet<u64> = segments
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| !dead_ids.contains(id))
        .collect();
    let mut kept = Vec::with_capacity(dead.len());
    for (id, len) in dead {
        // Not kept mapped: the segment is about to be deleted.
        let view = engine.log().view_for_pass(id, len)?;
        let listed = fragment_segments_listed(&view[..len as usize], id);
        if listed.is_some_and(|listed| listed.is_disjoint(&staying)) {
            kept.push((id, len));
        }
    }
    Ok(kept)
}

/// Deletes sealed segments that nothing points into, after making that safe (module docs).
fn reclaim<M: Model>(
    engine: &Engine<M>,
    maintenance: &mut Maintenance,
    report: &mut CompactionReport,
) -> Result<()> {
    let active = engine.log().active_segment();
    // Read after the active segment: a spanning batch that began meanwhile pinned a segment
    // at or after it (DESIGN.md, section 3.6).
    let pinned_from = engine.oldest_pinned_segment().unwrap_or(u64::MAX);
    let segments = engine.log().segments();
    let dead: Vec<(u64, u64)> = {
        let index = engine.index_read();
        segments
            .iter()
            .filter(|(id, _, _)| *id < active.min(pinned_from))
            .filter(|(id, _, _)| !index.live_bytes().contains_key(&(*id as u32)))
            .map(|(id, _, len)| (*id, *len))
            .collect()
    };
    let dead = keep_batch_commits_of_live_fragments(engine, &segments, dead)?;
    if dead.is_empty() {
        return Ok(());
    }
    // The seal record, the batches that gave the source positions, retraction and references
    // records may sit in dead segments: record them again before deleting.
    let mut again = Vec::new();
    let seal = engine.seal();
    if seal > 0 {
        again.push(NewRecord::seal(seal));
    }
    let sources = engine.source_positions();
    if !sources.is_empty() {
        again.push(NewRecord::sources(&sources));
    }
    let registers = engine.retractions().records();
    again.extend(registers.iter().map(NewRecord::retraction));
    let pointers: Vec<String> = engine.declared_references().into_iter().collect();
    again.extend(
        pointers
            .chunks(MAX_POINTERS_PER_RECORD)
            .map(NewRecord::references),
    );
    if !again.is_empty() {
        engine.log().append_records(again, true)?;
    }
    write_checkpoint_locked(engine, maintenance)?;
    let _no_readers = engine.deleting();
    let deleted: BTreeSet<u32> = dead.iter().map(|(id, _)| *id as u32).collect();
    for (id, len) in dead {
        engine.log().delete_segment(id)?;
        report.segments_deleted += 1;
        report.bytes_reclaimed += len;
    }
    drop(_no_readers);
    // Their deltas were folded (or left out): their places serve no fold any more.
    engine.retractions_mut().forget_segments(&deleted);
    drop_unusable_checkpoints(engine.storage(), engine.dir())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::batch::Batch;
    use crate::model::MergePatch;
    use crate::open::{open, Access};
    use crate::options::Options;
    use crate::storage::FsStorage;
    use crate::write::write_batch;

    fn patch(aggregate: &str, seq: u64, value: serde_json::Value) -> Batch {
        let mut batch = Batch::new();
        batch.patch(aggregate, seq, &value).unwrap();
        batch
    }

    #[test]
    fn rounds_are_bounded_by_aggregates_and_bytes() {
        let candidates: Vec<(String, u64)> = (0..20_000)
            .map(|n| {
                let size = if n == 5 {
                    ROUND_BYTES * 10
                } else {
                    ROUND_BYTES / 10_000
                };
                (format!("a{n}"), size)
            })
            .collect();
        let rounds = rounds(&candidates);
        let sizes: Vec<usize> = rounds.iter().map(|r| r.len()).collect();
        // Before the huge one, it alone, then full rounds by count.
        assert_eq!(&sizes[..3], &[5, 1, 8192]);
        assert_eq!(sizes.iter().sum::<usize>(), 20_000);
        for round in &rounds {
            let bytes: u64 = round.iter().map(|(_, b)| b).sum();
            assert!(round.len() == 1 || bytes <= ROUND_BYTES);
            assert!(round.len() <= ROUND_AGGREGATES);
        }
    }

    /// A delta written after the fold step read the chain and before the install is folded into
    /// the state record the install writes, not superseded by it unread.
    #[test]
    fn deltas_arriving_between_fold_and_install_are_folded() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default()
            .background_compaction(false)
            .checkpoint_every_bytes(0);
        let storage = Arc::new(FsStorage);
        let engine = open(
            dir.path().into(),
            options,
            MergePatch,
            storage,
            Access::Write,
        )
        .unwrap();
        // A long chain, so that the arrivals are found among many folded deltas.
        for seq in 1..=300 {
            let value = json!({"n": seq, format!("k{}", seq % 7): seq});
            write_batch(&engine, &patch("a", seq, value)).unwrap();
        }
        let mut report = CompactionReport::default();
        let folded = fold_step(
            &engine,
            &["a".to_string()],
            u64::MAX,
            &PassViews::default(),
            &mut report,
        )
        .unwrap();
        write_batch(&engine, &patch("a", 301, json!({"late": true}))).unwrap();
        write_batch(&engine, &patch("a", 150, json!({"k0": "early"}))).unwrap();
        install(&engine, folded, u64::MAX, &mut report).unwrap();

        let chain = engine.chain("a").unwrap();
        assert!(chain.base.is_some() && chain.deltas.is_empty(), "{chain:?}");
        let mut reader = DeltaReader::new(engine.log());
        let state = engine
            .fold_chain("a", &chain, u64::MAX, &mut reader)
            .unwrap()
            .unwrap();
        let mut expected = json!({});
        for seq in 1..=300u64 {
            json_patch::merge(
                &mut expected,
                &json!({"n": seq, format!("k{}", seq % 7): seq}),
            );
            if seq == 150 {
                json_patch::merge(&mut expected, &json!({"k0": "early"}));
            }
        }
        json_patch::merge(&mut expected, &json!({"late": true}));
        assert_eq!((state.seq, state.state), (301, expected));
    }
}
