//! The per-aggregate fold: an aggregate's state record and deltas read back and folded with the
//! model, one aggregate at a time (`get`) or a set at a time in log order ([`FoldSet`]: `scan`,
//! `materialize` and compaction).
//!
//! A set's deltas are *gathered* in log order (each read verified by its CRC and checked
//! against its index entry, bodies copied into one buffer), then folded per aggregate, with the
//! aggregate's state hot in the cache. The fold is order-independent, so the order of reads is
//! free to choose, and log order makes them sequential: the pages of each batch are read
//! together, and a compressed batch is decompressed once per set instead of once per delta.

use std::ops::Range;

use crate::engine::{AggregateState, Engine};
use crate::error::{Error, Result};
use crate::index::{Chain, DeltaRef, StateRef};
use crate::model::{DeltaKind, DeltaView, Model, ModelError, Stamp};
use crate::retraction::Retractions;
use crate::wal::reader::DeltaReader;

impl<M: Model> Engine<M> {
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
        // Chains are sorted by stamp, seq first: the deltas to fold are a prefix.
        let end = chain.deltas.iter().position(|d| d.seq > as_of);
        let folded = &chain.deltas[..end.unwrap_or(chain.deltas.len())];
        reader.prefetch(folded);
        for delta_ref in folded {
            self.fold_delta(aggregate, delta_ref, &mut state, reader)?;
            seq = seq.max(Some(delta_ref.seq));
        }
        let Some(seq) = seq else { return Ok(None) };
        Ok(self
            .model()
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
            self.model().output_encoded_state(encoded)
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
                self.log().segment_path(u64::from(base.segment)),
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
            self.model().join_encoded_state(state, encoded)
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
            self.model().fold(state, view)
        };
        folded.map_err(|e| reader.corruption(delta_ref, e.to_string()))
    }
}

/// Unfolded delta bytes per partition at most (a partition takes at least one aggregate). A
/// worker holds one partition's bodies and states: this and [`PARTITION_AGGREGATES`] bound its
/// memory (DESIGN.md, section 6a, has the figures).
const PARTITION_BYTES: u64 = 8 << 20;

/// Aggregates per partition at most.
const PARTITION_AGGREGATES: usize = 4_096;

/// The first of `chains` that make a partition: at most [`PARTITION_AGGREGATES`], taken while
/// less than [`PARTITION_BYTES`] of unfolded deltas are (a partition has at least one); each
/// copied without the deltas `retractions` leaves out.
pub(crate) fn take_partition<'a>(
    chains: impl Iterator<Item = (&'a str, &'a Chain)>,
    retractions: &Retractions,
) -> Vec<(String, Chain)> {
    let mut bytes = 0;
    chains
        .take(PARTITION_AGGREGATES)
        .take_while(|(_, chain)| {
            let room = bytes < PARTITION_BYTES;
            bytes += chain.unfolded_bytes();
            room
        })
        .map(|(id, chain)| {
            let mut chain = chain.clone();
            retractions.filter(&mut chain);
            (id.to_owned(), chain)
        })
        .collect()
}

/// One gathered delta: the set member it belongs to, its index entry, its kind and where its
/// body sits in the gather buffer.
struct Gathered {
    at: u32,
    delta: DeltaRef,
    kind: DeltaKind,
    body: Range<usize>,
}

/// Reused buffers of a worker.
#[derive(Default)]
pub(crate) struct FoldBuffers {
    order: Vec<(DeltaRef, u32)>,
    gathered: Vec<Gathered>,
    bodies: Vec<u8>,
}

/// Aggregates folded together, their deltas read in log order (materialize and compaction).
pub(crate) struct FoldSet<M: Model> {
    pub ids: Vec<String>,
    pub chains: Vec<Chain>,
    pub states: Vec<M::State>,
    /// Highest seq folded into each state, base included (`None`: nothing folded).
    pub seqs: Vec<Option<u64>>,
    /// Deltas folded into each state (the base not counted).
    pub folded: Vec<u32>,
}

impl<M: Model> FoldSet<M> {
    /// A set of `(id, chain)` with nothing folded yet.
    pub fn new(members: Vec<(String, Chain)>) -> Self {
        let (ids, chains): (Vec<_>, Vec<_>) = members.into_iter().unzip();
        FoldSet {
            states: chains.iter().map(|_| M::State::default()).collect(),
            seqs: vec![None; chains.len()],
            folded: vec![0; chains.len()],
            ids,
            chains,
        }
    }

    /// Joins every base and folds the deltas `include` selects: gathered in log order (each
    /// read verified by its CRC and checked against its index entry), folded per aggregate.
    pub fn fold(
        &mut self,
        engine: &Engine<M>,
        include: impl Fn(&DeltaRef) -> bool,
        reader: &mut DeltaReader<'_>,
        buffers: &mut FoldBuffers,
    ) -> Result<()> {
        for (at, chain) in self.chains.iter().enumerate() {
            if let Some(base) = &chain.base {
                engine.join_state(&self.ids[at], base, &mut self.states[at], reader)?;
                self.seqs[at] = self.seqs[at].max(Some(base.max_seq));
            }
        }
        self.gather(&include, reader, buffers)?;
        // Each aggregate's deltas together (their order within it does not matter).
        buffers.gathered.sort_unstable_by_key(|g| g.at);
        for g in &buffers.gathered {
            let at = g.at as usize;
            let view = DeltaView {
                stamp: Stamp::new(g.delta.seq, g.delta.position, g.delta.checksum),
                kind: g.kind,
                body: &buffers.bodies[g.body.clone()],
            };
            engine
                .model()
                .fold(&mut self.states[at], view)
                .map_err(|e| reader.corruption(&g.delta, e.to_string()))?;
            self.seqs[at] = self.seqs[at].max(Some(g.delta.seq));
            self.folded[at] += 1;
        }
        Ok(())
    }

    /// Each aggregate with something folded and a visible state, with its state.
    pub fn outputs<'m>(
        self,
        model: &'m M,
    ) -> impl Iterator<Item = (String, AggregateState<M::Output>)> + 'm
    where
        M::State: 'm,
    {
        let folded = self.ids.into_iter().zip(self.states).zip(self.seqs);
        folded.filter_map(move |((id, state), seq)| {
            let state = model.output(&state)?;
            Some((id, AggregateState { seq: seq?, state }))
        })
    }

    /// Reads the included deltas in log order into `buffers` (bodies copied).
    fn gather(
        &self,
        include: &impl Fn(&DeltaRef) -> bool,
        reader: &mut DeltaReader<'_>,
        buffers: &mut FoldBuffers,
    ) -> Result<()> {
        let FoldBuffers {
            order,
            gathered,
            bodies,
        } = buffers;
        order.clear();
        gathered.clear();
        bodies.clear();
        for (at, chain) in self.chains.iter().enumerate() {
            let included = chain.deltas.iter().filter(|d| include(d));
            order.extend(included.map(|d| (*d, at as u32)));
        }
        order.sort_unstable_by_key(|(d, _)| d.place());
        for &(delta, at) in order.iter() {
            let record = reader.read(&self.ids[at as usize], &delta)?;
            let start = bodies.len();
            bodies.extend_from_slice(record.body);
            gathered.push(Gathered {
                at,
                delta,
                kind: record.kind,
                body: start..bodies.len(),
            });
        }
        Ok(())
    }
}
