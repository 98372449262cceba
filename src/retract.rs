//! `Db::retract` and `Db::unretract` (DESIGN.md, section 5f): a batch name's register set by a
//! durable retraction record, after the name's deltas are found in the log and checked to be
//! unfolded; the aggregates whose state changed are reported.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::engine::{AggregateState, Engine};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::retraction::{find_named, NameDeltas};
use crate::wal::admin_records::{Register, RetractionRecord};
use crate::wal::log::NewRecord;
use crate::wal::reader::DeltaReader;
use crate::wal::trailer::validate_batch_name;
use crate::wal::RecordLocation;

/// What a retract or an unretract did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Retraction {
    /// The batch name.
    pub name: String,
    /// Whether the name is retracted now.
    pub retracted: bool,
    /// Whether a retraction record was written (false when the name already had that status).
    pub recorded: bool,
    /// Deltas of batches with that name in the log (0: none arrived yet; a retraction applies
    /// to them when they arrive).
    pub deltas: u64,
    /// The aggregates whose state changed, in id order.
    pub changed: Vec<String>,
}

/// What a call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// Retract (true) or unretract (false).
    pub retract: bool,
    /// Record it even when no delta of the name is in the log (a batch yet to arrive).
    pub pending: bool,
}

/// Retracts or unretracts the batches named `name`.
pub(crate) fn set_retracted<M: Model>(
    engine: &Engine<M>,
    name: &str,
    request: Request,
) -> Result<Retraction>
where
    M::Output: PartialEq,
{
    validate_batch_name(name).map_err(Error::InvalidInput)?;
    if engine.is_read_only() {
        return Err(Error::ReadOnly);
    }
    // No compaction between finding the deltas unfolded and recording the change.
    let _maintenance = engine.maintenance();
    engine.log().check_writable()?;
    let names = BTreeSet::from([name.to_owned()]);
    let mode = engine.options().recovery;
    // Most of the log is read without the gate; under it, only what was appended meanwhile.
    let scanned_to = engine.log().end();
    let mut found = find_named(engine.log(), &names, RecordLocation::START, mode)?;
    let _gate = engine.gate_exclusive();
    let _reading = engine.reading();
    for (n, tail) in find_named(engine.log(), &names, scanned_to, mode)? {
        let entry = found.entry(n).or_default();
        entry.places.extend(tail.places);
        entry.deltas.extend(tail.deltas);
    }
    let named = found.remove(name).unwrap_or_default();
    let register = engine.retractions().register(name);
    let mut outcome = Retraction {
        name: name.to_owned(),
        retracted: request.retract,
        recorded: false,
        deltas: named.deltas.len() as u64,
        changed: Vec::new(),
    };
    // Asking for the status the name has changes nothing, so nothing can be out of reach.
    if register.retracted == request.retract {
        return Ok(outcome);
    }
    check_in_reach(engine, name, &named, register, request)?;
    let aggregates: BTreeSet<String> = named.deltas.iter().map(|d| d.aggregate.clone()).collect();
    let before = fold_states(engine, &aggregates)?;
    let record = RetractionRecord {
        name: name.to_owned(),
        register: Register {
            version: register.version.saturating_add(1),
            retracted: request.retract,
            frozen: false,
        },
    };
    engine
        .log()
        .append_records(vec![NewRecord::retraction(&record)], true)?;
    engine.log().sync()?;
    {
        let mut retractions = engine.retractions_mut();
        retractions.apply(&record);
        retractions.place(&names, &BTreeMap::from([(name.to_owned(), named)]));
    }
    let after = fold_states(engine, &aggregates)?;
    outcome.recorded = true;
    outcome.changed = (aggregates.iter().zip(before.iter().zip(&after)))
        .filter(|(_, (b, a))| b != a)
        .map(|(id, _)| id.clone())
        .collect();
    Ok(outcome)
}

/// Fails, writing nothing, when the change cannot be made exactly (DESIGN.md, section 5f): the
/// name is frozen (compaction folded its deltas while retracted), a delta of the name is not
/// in its aggregate's chain or has a seq at or below the highest its state record folded
/// (compaction folded it, or may have folded a copy of it), or no delta of the name is in the log and the request is not
/// for a batch yet to arrive (a batch whose segments compaction reclaimed looks the same).
fn check_in_reach<M: Model>(
    engine: &Engine<M>,
    name: &str,
    named: &NameDeltas,
    register: Register,
    request: Request,
) -> Result<()> {
    let history = engine.options().history;
    if register.frozen && !request.retract {
        return Err(Error::InvalidInput(format!(
            "batch {name:?} is out of reach of retraction: compaction folded its deltas while \
             it was retracted (history: {history:?}), so it stays retracted"
        )));
    }
    debug_assert_ne!(register.retracted, request.retract, "a change, not a no-op");
    if named.deltas.is_empty() && !request.pending {
        return Err(Error::InvalidInput(format!(
            "no delta of batch {name:?} is in the log: either it has not arrived (record the \
             retraction for when it arrives with the pending form: `--pending`) or \
             compaction folded it (history: {history:?}) and it is out of reach"
        )));
    }
    let folded = count_folded(engine, named);
    if folded == 0 {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "batch {name:?} is out of reach of retraction: compaction folded {folded} of its {} \
         deltas into state records (history: {history:?}); retraction needs a batch's deltas \
         unfolded, within the history window",
        named.deltas.len(),
    )))
}

/// How many of `named`'s deltas are not in their aggregate's chain, or have a seq at or below
/// the highest its state record folded (it may be a copy of a folded delta, redelivered).
fn count_folded<M: Model>(engine: &Engine<M>, named: &NameDeltas) -> usize {
    let index = engine.index_read();
    let mut folded = 0usize;
    let mut deltas = named.deltas.iter().peekable();
    // The deltas are sorted by aggregate: one look at each aggregate's chain.
    while let Some(first) = deltas.peek() {
        let aggregate = first.aggregate.clone();
        let chain = index.chain(&aggregate);
        // A copy of a delta folded into the state record has a seq at or below its highest.
        let folded_seq = chain.and_then(|c| c.base).map(|base| base.max_seq);
        let places: HashSet<(u32, u32, u32)> = chain
            .map(|c| c.deltas.iter().map(|d| d.place()).collect())
            .unwrap_or_default();
        while let Some(d) = deltas.next_if(|d| d.aggregate == aggregate) {
            let below = folded_seq.is_some_and(|top| d.seq <= top);
            folded += usize::from(below || !places.contains(&d.place));
        }
    }
    folded
}

/// The state of each of `aggregates`, in order.
fn fold_states<M: Model>(
    engine: &Engine<M>,
    aggregates: &BTreeSet<String>,
) -> Result<Vec<Option<AggregateState<M::Output>>>> {
    let mut reader = DeltaReader::new(engine.log());
    let fold = |aggregate: &String| match engine.chain(aggregate) {
        Some(chain) => engine.fold_chain(aggregate, &chain, u64::MAX, &mut reader),
        None => Ok(None),
    };
    aggregates.iter().map(fold).collect()
}
