//! [`IndexBuilder`]: rebuilds the index from replayed records on several threads.
//!
//! Rebuilding the index is the bulk of opening with a long log to replay: each delta costs a
//! hash lookup and a chain append, both cache misses. The builder splits aggregates into
//! *parts* by a hash of their id; the replaying thread (which also checks CRCs and decodes)
//! sends each part's deltas and state records, in log order, to that part's thread over a
//! bounded channel; the threads build independent indexes, merged at the end
//! ([`Index::absorb`]: ids are disjoint, so the merge only moves entries). Per aggregate,
//! records keep their log order, which is all the index's rules depend on (the supersede rule
//! orders a state record against the deltas of its own aggregate only).

use std::hash::BuildHasher;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use compact_str::CompactString;
use hashbrown::DefaultHashBuilder;

use crate::engine::Counters;
use crate::index::{DeltaRef, Index, StateRef};
use crate::layout::index_location;
use crate::wal::batch::encoded_delta_bytes;
use crate::wal::records::StateBody;
use crate::wal::recovery::LogRecord;
use crate::wal::{BatchRecord, RecordLocation};

/// Logs shorter than this are indexed on the replaying thread (threads would cost more).
pub(crate) const PARALLEL_FROM_BYTES: u64 = 16 << 20;

/// Messages in flight per part (each about one batch): bounds the builder's memory.
const CHANNEL_DEPTH: usize = 32;

/// The index references of a batch record's deltas, with their aggregates.
pub(crate) fn delta_refs<'a>(
    record: &'a BatchRecord<'_>,
) -> impl Iterator<Item = (&'a str, DeltaRef)> {
    let (segment, record_offset) = index_location(record.segment, record.offset);
    record.deltas.iter().map(move |delta| {
        let len = encoded_delta_bytes(delta.aggregate.len(), delta.body.len()) as u32;
        let delta_ref = DeltaRef {
            seq: delta.seq,
            segment,
            position: delta.position,
            checksum: delta.checksum,
            record_offset,
            delta_offset: delta.offset,
            len,
        };
        (delta.aggregate, delta_ref)
    })
}

/// The index reference of a state record at `location` of `frame_bytes` bytes.
pub(crate) fn state_ref(
    location: RecordLocation,
    frame_bytes: u64,
    body: &StateBody<'_>,
) -> StateRef {
    let (segment, record_offset) = index_location(location.segment, location.offset);
    StateRef {
        segment,
        record_offset,
        len: frame_bytes as u32,
        horizon: body.horizon,
        max_seq: body.max_seq,
    }
}

/// Where the records a scan finds go: the index builder when a database opens, the live index
/// when a reader refreshes.
pub(crate) trait IndexSink {
    /// A batch record whose deltas follow: a sink that readers see notes the places of its
    /// retracted spans first (DESIGN.md, section 5f).
    fn named_batch(&mut self, _batch: &BatchRecord<'_>) {}
    /// Indexes the deltas of one batch record.
    fn deltas<'a>(&mut self, deltas: impl Iterator<Item = (&'a str, DeltaRef)>);
    /// Installs a state record (the supersede rule).
    fn state(&mut self, aggregate: &str, state: StateRef);
    /// The fragments of one spanning batch follow, as batches: a sink that readers see while
    /// it fills shows them all at once.
    fn begin_spanning(&mut self) {}
    /// The spanning batch begun last is complete.
    fn end_spanning(&mut self) {}
}

/// Applies one scanned record by the rules of recovery: a batch's deltas indexed and its
/// source ranges applied and its retracted spans noted, a state record installed, a seal
/// raised, source positions raised, a retraction register raised, reference pointers declared;
/// `counters` keeps them.
pub(crate) fn apply_record(
    record: &LogRecord<'_>,
    sink: &mut impl IndexSink,
    counters: &mut Counters,
) {
    match record {
        LogRecord::Batch(batch) => {
            counters.retractions.note_batch(batch);
            sink.named_batch(batch);
            sink.deltas(delta_refs(batch));
            let top = batch.deltas.iter().map(|d| d.seq).max().unwrap_or(0);
            counters.max_seq = counters.max_seq.max(top);
            batch
                .sources
                .iter()
                .for_each(|r| counters.sources.apply_range(r));
        }
        LogRecord::State {
            location,
            frame_bytes,
            body,
        } => {
            sink.state(body.aggregate, state_ref(*location, *frame_bytes, body));
            counters.max_seq = counters.max_seq.max(body.max_seq);
        }
        LogRecord::Seal { seal } => counters.seal = counters.seal.max(*seal),
        LogRecord::Sources(positions) => counters.sources.apply_positions(positions),
        LogRecord::Retraction(record) => {
            counters.retractions.apply(record);
        }
        LogRecord::References(pointers) => counters.references.extend(pointers.iter().cloned()),
        LogRecord::SpanningStart => sink.begin_spanning(),
        LogRecord::SpanningEnd => sink.end_spanning(),
    }
}

impl IndexSink for IndexBuilder<'_> {
    fn deltas<'a>(&mut self, deltas: impl Iterator<Item = (&'a str, DeltaRef)>) {
        IndexBuilder::deltas(self, deltas);
    }

    fn state(&mut self, aggregate: &str, state: StateRef) {
        IndexBuilder::state(self, aggregate, state);
    }
}

/// What a part's thread applies, in log order.
pub(crate) enum Work {
    /// Deltas of one batch record.
    Deltas(Vec<(CompactString, DeltaRef)>),
    /// A compaction state record.
    State(CompactString, StateRef),
}

/// Where index updates go while the log is replayed.
pub(crate) enum IndexBuilder<'scope> {
    /// Straight into one index, on the replaying thread.
    Direct(Index),
    /// To one thread per part.
    Parallel {
        splitter: DefaultHashBuilder,
        senders: Vec<SyncSender<Work>>,
        threads: Vec<ScopedJoinHandle<'scope, Index>>,
    },
}

impl<'scope> IndexBuilder<'scope> {
    /// A builder continuing `index` (empty, or loaded from a checkpoint) on `parts` threads
    /// spawned in `scope`; `parts <= 1` builds on the caller's thread.
    pub fn start<'env>(scope: &'scope Scope<'scope, 'env>, index: Index, parts: usize) -> Self {
        if parts <= 1 {
            return IndexBuilder::Direct(index);
        }
        let splitter = DefaultHashBuilder::default();
        let (mut senders, mut threads) = (Vec::new(), Vec::new());
        for part in index.split(parts, |id| part_of(&splitter, id, parts)) {
            let (sender, receiver) = sync_channel(CHANNEL_DEPTH);
            senders.push(sender);
            threads.push(scope.spawn(move || build_part(part, receiver)));
        }
        IndexBuilder::Parallel {
            splitter,
            senders,
            threads,
        }
    }

    /// Adds the deltas of one batch record: `(aggregate, reference)` in batch order.
    pub fn deltas<'a>(&mut self, deltas: impl Iterator<Item = (&'a str, DeltaRef)>) {
        match self {
            IndexBuilder::Direct(index) => index.insert_all(deltas),
            IndexBuilder::Parallel {
                splitter, senders, ..
            } => {
                let parts = senders.len();
                let mut split: Vec<Vec<_>> = (0..parts).map(|_| Vec::new()).collect();
                for (id, delta) in deltas {
                    let part = part_of(splitter, id, parts);
                    split[part].push((CompactString::new(id), delta));
                }
                for (sender, deltas) in senders.iter().zip(split) {
                    if !deltas.is_empty() {
                        // A part's thread only stops early by panicking; `finish` reports it.
                        let _ = sender.send(Work::Deltas(deltas));
                    }
                }
            }
        }
    }

    /// Installs a state record of `aggregate`.
    pub fn state(&mut self, aggregate: &str, state: StateRef) {
        match self {
            IndexBuilder::Direct(index) => {
                index.install_state(aggregate, state);
            }
            IndexBuilder::Parallel {
                splitter, senders, ..
            } => {
                let part = part_of(splitter, aggregate, senders.len());
                let _ = senders[part].send(Work::State(CompactString::new(aggregate), state));
            }
        }
    }

    /// Waits for the parts and merges them into one index. A part's thread panicking is a bug
    /// in the index, not a property of the data: the panic carries on in this thread.
    pub fn finish(self) -> Index {
        let (senders, threads) = match self {
            IndexBuilder::Direct(index) => return index,
            IndexBuilder::Parallel {
                senders, threads, ..
            } => (senders, threads),
        };
        drop(senders);
        let mut merged: Option<Index> = None;
        for thread in threads {
            let part = thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            match &mut merged {
                Some(index) => index.absorb(part),
                None => merged = Some(part),
            }
        }
        merged.unwrap_or_default()
    }
}

fn part_of(splitter: &DefaultHashBuilder, id: &str, parts: usize) -> usize {
    (splitter.hash_one(id) % parts as u64) as usize
}

/// A part's thread: applies its work in arrival (log) order.
fn build_part(mut index: Index, work: Receiver<Work>) -> Index {
    for item in work {
        match item {
            Work::Deltas(deltas) => {
                index.insert_all(deltas.iter().map(|(id, delta)| (id.as_str(), *delta)));
            }
            Work::State(id, state) => {
                index.install_state(&id, state);
            }
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(seq: u64, position: u32, checksum: u32, segment: u32) -> DeltaRef {
        DeltaRef {
            seq,
            segment,
            position,
            checksum,
            record_offset: 32 + seq as u32,
            delta_offset: 4 + position,
            len: 10,
        }
    }

    /// Batches of deltas over 40 aggregates, duplicates and conflicts included, with state
    /// records between them, applied through a builder of `parts` threads.
    fn build(parts: usize, start: Index) -> Index {
        std::thread::scope(|scope| {
            let mut builder = IndexBuilder::start(scope, start, parts);
            for batch in 0..50u64 {
                let ids: Vec<String> = (0..40)
                    .map(|a| format!("a{}", (a * 7 + batch) % 40))
                    .collect();
                let refs = ids.iter().enumerate().map(|(p, id)| {
                    let seq = batch % 17; // Repeats: duplicates and conflicts.
                    (
                        id.as_str(),
                        delta(
                            seq,
                            p as u32 % 3,
                            (batch % 2) as u32,
                            1 + (batch / 20) as u32,
                        ),
                    )
                });
                builder.deltas(refs);
                if batch % 9 == 8 {
                    let state = StateRef {
                        segment: 9,
                        record_offset: batch as u32,
                        len: 50,
                        horizon: 6,
                        max_seq: 6,
                    };
                    builder.state(&format!("a{}", batch % 40), state);
                }
            }
            builder.finish()
        })
    }

    fn assert_same(a: &Index, b: &Index) {
        assert_eq!(a.counters(), b.counters());
        assert_eq!(a.live_bytes(), b.live_bytes());
        assert_eq!(a.aggregates(), b.aggregates());
        let chains = |i: &Index| -> Vec<(String, crate::index::Chain)> {
            i.iter().map(|(id, c)| (id.to_owned(), c.clone())).collect()
        };
        assert_eq!(chains(a), chains(b));
    }

    #[test]
    fn parts_on_threads_build_the_index_one_thread_builds() {
        let direct = build(1, Index::default());
        assert!(direct.counters().duplicates > 0 && direct.counters().conflicts > 0);
        for parts in [2, 3, 5] {
            assert_same(&build(parts, Index::default()), &direct);
        }
    }

    #[test]
    fn a_loaded_index_is_split_and_merged_back() {
        let loaded = || {
            let mut index = Index::default();
            for a in 0..40 {
                index.insert(&format!("a{a}"), delta(100 + a, 0, 7, 1));
            }
            index
        };
        let direct = build(1, loaded());
        assert_same(&build(3, loaded()), &direct);
    }
}
