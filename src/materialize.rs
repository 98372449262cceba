//! [`Db::materialize`](crate::Db::materialize): every aggregate folded, on several threads,
//! reading the log in log order.
//!
//! Workers claim *partitions*: runs of consecutive index slots (aggregates in order of first
//! appearance) holding at most [`PARTITION_BYTES`] of unfolded deltas. For a partition, a worker
//! copies the chains, sorts all their delta references by place in the log and *gathers* them
//! in that order (each read verified by its CRC and checked against the index entry), copying
//! the bodies into one buffer; then it folds each aggregate's deltas together, with the
//! aggregate's state hot in the cache. The fold is order-independent, so the order of reads is
//! free to choose, and log order makes them sequential: the pages of each batch are read
//! together, and a compressed batch is decompressed once per partition instead of once per
//! delta read (what a per-aggregate walk costs, as in raft-engine). Folding in log order
//! straight into the partition's states was 2.6x slower than folding per aggregate: each delta
//! then lands in a cold state. Memory per worker: the gathered bodies and the states of one
//! partition.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::db::{AggregateState, Shared};
use crate::error::{Error, Result};
use crate::index::{Chain, DeltaRef};
use crate::model::{DeltaKind, DeltaView, Model, Stamp};
use crate::reader::DeltaReader;

/// Unfolded delta bytes per partition at most (a partition takes at least one aggregate).
const PARTITION_BYTES: u64 = 32 << 20;

/// Aggregates per partition at most.
const PARTITION_AGGREGATES: usize = 16_384;

/// The first of `chains` that make a partition: at most [`PARTITION_AGGREGATES`], taken while
/// less than [`PARTITION_BYTES`] of unfolded deltas are (a partition has at least one).
pub(crate) fn take_partition<'a>(
    chains: impl Iterator<Item = (&'a str, &'a Chain)>,
) -> Vec<(String, Chain)> {
    let mut bytes = 0;
    chains
        .take(PARTITION_AGGREGATES)
        .take_while(|(_, chain)| {
            let room = bytes < PARTITION_BYTES;
            bytes += chain.unfolded_bytes();
            room
        })
        .map(|(id, chain)| (id.to_owned(), chain.clone()))
        .collect()
}

/// Shared work of one materialization.
pub(crate) struct Materialize<'db, M: Model> {
    shared: &'db Shared<M>,
    total: usize,
    /// The first slot no worker has claimed.
    next: Mutex<usize>,
    visited: AtomicU64,
    error: Mutex<Option<Error>>,
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
        shared: &Shared<M>,
        include: impl Fn(&DeltaRef) -> bool,
        reader: &mut DeltaReader<'_>,
        buffers: &mut FoldBuffers,
    ) -> Result<()> {
        for (at, chain) in self.chains.iter().enumerate() {
            if let Some(base) = &chain.base {
                shared.join_state(&self.ids[at], base, &mut self.states[at], reader)?;
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
            shared
                .model
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
        order.sort_unstable_by_key(|(d, _)| (d.segment, d.record_offset, d.delta_offset));
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

impl<'db, M: Model> Materialize<'db, M> {
    pub fn new(shared: &'db Shared<M>) -> Self {
        Materialize {
            shared,
            total: shared.index_read().aggregates() as usize,
            next: Mutex::new(0),
            visited: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }

    /// Runs on `threads` threads (this one included); returns the live aggregates visited or
    /// the first error.
    pub fn run<F>(self, threads: usize, visit: &F) -> Result<u64>
    where
        F: Fn(&str, AggregateState<M::Output>) -> Result<()> + Sync,
    {
        std::thread::scope(|scope| {
            for _ in 1..threads.max(1) {
                scope.spawn(|| self.work(visit));
            }
            self.work(visit);
        });
        match self
            .error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(error) => Err(error),
            None => Ok(self.visited.into_inner()),
        }
    }

    fn work<F>(&self, visit: &F)
    where
        F: Fn(&str, AggregateState<M::Output>) -> Result<()> + Sync,
    {
        let mut reader = DeltaReader::new(&self.shared.log);
        let mut buffers = FoldBuffers::default();
        loop {
            // Compaction deletes no segment from copying a partition's chains to its last read.
            let _reading = self.shared.reading();
            let Some(members) = self.claim() else { return };
            if self.failed() {
                return;
            }
            if let Err(error) = self.partition(members, &mut reader, &mut buffers, visit) {
                let mut first = self.error.lock().unwrap_or_else(PoisonError::into_inner);
                first.get_or_insert(error);
                return;
            }
        }
    }

    /// The next partition's aggregates and chains, from the first unclaimed slot.
    fn claim(&self) -> Option<Vec<(String, Chain)>> {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let index = self.shared.index_read();
        let slots = *next..self.total;
        let members = take_partition(slots.map_while(|slot| index.entry_at(slot)));
        *next += members.len();
        (!members.is_empty()).then_some(members)
    }

    fn failed(&self) -> bool {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Folds and visits the aggregates of one partition.
    fn partition<F>(
        &self,
        members: Vec<(String, Chain)>,
        reader: &mut DeltaReader<'_>,
        buffers: &mut FoldBuffers,
        visit: &F,
    ) -> Result<()>
    where
        F: Fn(&str, AggregateState<M::Output>) -> Result<()>,
    {
        let mut set = FoldSet::new(members);
        set.fold(self.shared, |_| true, reader, buffers)?;
        for (id, state) in set.outputs(&self.shared.model) {
            self.visited.fetch_add(1, Ordering::Relaxed);
            visit(&id, state)?;
        }
        Ok(())
    }
}
