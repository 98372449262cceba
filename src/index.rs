//! The in-memory aggregate-keyed index: aggregate id -> where its state and deltas live.
//!
//! Each aggregate has a [`Chain`]: an optional *base* (the newest compaction state record) and
//! the deltas not folded into it, sorted by `(seq, position, checksum)` so that `get_as_of`
//! reads a prefix and duplicate/conflict detection is a binary search. Chains are not what makes
//! reads order-independent (the model's fold is); sorting only makes them cheap.
//!
//! Lookup is a hash table (SwissTable, seeded foldhash) of *slots* into a dense vector of
//! entries, so a lookup costs one hash and about one cache miss whatever the number of
//! aggregates. Id order, which only scans need, is a sorted array of slots built on the first
//! ordered access and dropped when a new aggregate arrives.
//!
//! The index also keeps the live bytes of every segment (bytes of records some chain still
//! points at), which compaction uses to find segments worth reclaiming.
//! Memory per aggregate is measured in docs/benchmarks.md ("DESIGN.md section 6").

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, HashTable};

/// Where one delta lives in the log, with the parts of its stamp the index needs. 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaRef {
    /// Upstream sequence number.
    pub seq: u64,
    /// Segment id of the batch record holding the delta.
    pub segment: u32,
    /// Index of the delta within its batch.
    pub position: u32,
    /// CRC32 of the delta record (conflict tie-breaker).
    pub checksum: u32,
    /// Offset of the batch frame within its segment.
    pub record_offset: u32,
    /// Offset of the delta record within the batch payload.
    pub delta_offset: u32,
    /// Length of the delta record in bytes (for live-byte accounting).
    pub len: u32,
}

impl DeltaRef {
    fn order_key(&self) -> (u64, u32, u32) {
        (self.seq, self.position, self.checksum)
    }

    /// Where the delta lies in the log: segment, batch record, offset in the payload. Two
    /// references with the same place are the same delta.
    pub fn place(&self) -> (u32, u32, u32) {
        (self.segment, self.record_offset, self.delta_offset)
    }

    fn same_place(&self, other: &DeltaRef) -> bool {
        self.place() == other.place()
    }
}

/// Where an aggregate's compaction state record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateRef {
    /// Segment id.
    pub segment: u32,
    /// Offset of the state frame within its segment.
    pub record_offset: u32,
    /// Frame length in bytes.
    pub len: u32,
    /// Deltas with `seq <= horizon` before the record are folded into it.
    pub horizon: u64,
    /// Highest seq folded into it: `get_as_of` below it cannot be answered.
    pub max_seq: u64,
}

/// An aggregate's state record (if compacted) and its unfolded deltas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// The newest state record, if the aggregate was compacted.
    pub base: Option<StateRef>,
    /// Deltas not folded into the base, sorted by stamp.
    pub deltas: Vec<DeltaRef>,
}

impl Chain {
    /// Bytes of unfolded deltas.
    pub fn unfolded_bytes(&self) -> u64 {
        self.deltas.iter().map(|d| u64::from(d.len)).sum()
    }
}

/// What inserting a delta found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insertion {
    /// The first delta with this `(seq, position)` for the aggregate.
    New,
    /// An identical delta (same stamp and checksum) was already indexed.
    Duplicate,
    /// A different delta with the same `(seq, position)` was already indexed.
    Conflict,
    /// This very delta (same log location) was already indexed: nothing changed.
    AlreadyIndexed,
}

/// Counters kept by the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexCounters {
    /// Deltas ever indexed (duplicates included).
    pub deltas: u64,
    /// Deltas that repeated an unfolded indexed one.
    pub duplicates: u64,
    /// Deltas that differ from an unfolded indexed one with the same `(seq, position)`.
    pub conflicts: u64,
}

/// One aggregate: its id (inline up to 24 bytes, so a lookup compares it without another
/// cache miss) and chain.
#[derive(Debug)]
struct Entry {
    id: CompactString,
    chain: Chain,
}

/// The aggregate index.
#[derive(Debug, Default)]
pub struct Index {
    /// Every aggregate, in order of first appearance (a slot never moves).
    entries: Vec<Entry>,
    /// Slots of `entries`, hashed by id.
    slots: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Slots sorted by id, built on the first ordered access after a new aggregate arrived.
    order: OnceLock<Box<[u32]>>,
    live_bytes: BTreeMap<u32, u64>,
    counters: IndexCounters,
    /// Reused by [`Index::insert_all`].
    scratch: Vec<(usize, DeltaRef)>,
    /// The aggregates that gained a delta, once [`Index::track_changes`] was called.
    changes: Option<ChangeLog>,
}

/// Slots whose chain gained a delta since the last [`Index::take_changed`] (the reference
/// index's worklist): one bit per aggregate and the list of marked slots, so its memory is
/// bounded by the aggregates however many writes come between two takes.
#[derive(Debug, Default)]
struct ChangeLog {
    marked: Vec<u64>,
    slots: Vec<u32>,
}

impl ChangeLog {
    fn mark(&mut self, slot: usize) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if word >= self.marked.len() {
            self.marked.resize(word + 1, 0);
        }
        if self.marked[word] & bit == 0 {
            self.marked[word] |= bit;
            self.slots.push(slot as u32);
        }
    }

    fn take(&mut self) -> Vec<u32> {
        for &slot in &self.slots {
            self.marked[slot as usize / 64] &= !(1u64 << (slot % 64));
        }
        std::mem::take(&mut self.slots)
    }
}

impl Index {
    fn slot_of(&self, aggregate: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(aggregate);
        let entries = &self.entries;
        self.slots
            .find(hash, |&slot| entries[slot as usize].id == aggregate)
            .map(|&slot| slot as usize)
    }

    /// The chain of `aggregate`, created empty if it has none.
    fn chain_mut(&mut self, aggregate: &str) -> &mut Chain {
        let slot = self.slot_or_new(aggregate);
        &mut self.entries[slot].chain
    }

    fn add_aggregate(&mut self, aggregate: &str, chain: Chain) -> usize {
        let slot = self.entries.len();
        self.entries.push(Entry {
            id: CompactString::new(aggregate),
            chain,
        });
        let (hasher, entries) = (&self.hasher, &self.entries);
        let hash = hasher.hash_one(aggregate);
        self.slots.insert_unique(hash, slot as u32, |&s| {
            hasher.hash_one(entries[s as usize].id.as_str())
        });
        self.order = OnceLock::new();
        slot
    }

    /// Slots sorted by id.
    fn order(&self) -> &[u32] {
        self.order.get_or_init(|| {
            let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| {
                self.entries[a as usize]
                    .id
                    .cmp(&self.entries[b as usize].id)
            });
            order.into_boxed_slice()
        })
    }

    /// Adds a delta of `aggregate`. Duplicates are kept too (the fold is idempotent); they are
    /// only counted, so the count never depends on which copy arrived first.
    pub fn insert(&mut self, aggregate: &str, delta: DeltaRef) -> Insertion {
        let slot = self.slot_or_new(aggregate);
        let outcome = self.insert_at(slot, delta);
        if outcome != Insertion::AlreadyIndexed {
            *self.live_bytes.entry(delta.segment).or_default() += u64::from(delta.len);
        }
        outcome
    }

    /// Adds several deltas, as [`Index::insert`] would one by one, in two passes: first the
    /// slot of every delta's aggregate, then every chain's insert. Each pass's iterations are
    /// independent of each other, so the processor overlaps more of their cache misses (hash
    /// table and entry in the first, chain tail in the second) than one-by-one insertion does.
    pub fn insert_all<'a>(&mut self, deltas: impl Iterator<Item = (&'a str, DeltaRef)>) {
        let mut slotted = std::mem::take(&mut self.scratch);
        slotted.clear();
        slotted.extend(deltas.map(|(aggregate, delta)| (self.slot_or_new(aggregate), delta)));
        // Live bytes per segment, summed over runs of deltas in one segment (a batch is one).
        let mut run: Option<(u32, u64)> = None;
        for &(slot, delta) in &slotted {
            if self.insert_at(slot, delta) == Insertion::AlreadyIndexed {
                continue;
            }
            match &mut run {
                Some((segment, bytes)) if *segment == delta.segment => {
                    *bytes += u64::from(delta.len)
                }
                _ => {
                    if let Some((segment, bytes)) = run.take() {
                        *self.live_bytes.entry(segment).or_default() += bytes;
                    }
                    run = Some((delta.segment, u64::from(delta.len)));
                }
            }
        }
        if let Some((segment, bytes)) = run {
            *self.live_bytes.entry(segment).or_default() += bytes;
        }
        self.scratch = slotted;
    }

    fn slot_or_new(&mut self, aggregate: &str) -> usize {
        match self.slot_of(aggregate) {
            Some(slot) => slot,
            // Most aggregates have few deltas: start with room for exactly one.
            None => self.add_aggregate(
                aggregate,
                Chain {
                    base: None,
                    deltas: Vec::with_capacity(1),
                },
            ),
        }
    }

    /// Inserts into the chain in `slot` and counts; the caller counts the live bytes.
    fn insert_at(&mut self, slot: usize, delta: DeltaRef) -> Insertion {
        let chain = &mut self.entries[slot].chain;
        // Deltas mostly arrive in stamp order: appending past the last one needs neither a
        // search nor a classification (an equal (seq, position) cannot exist before it).
        let appends = chain
            .deltas
            .last()
            .is_none_or(|last| (last.seq, last.position) < (delta.seq, delta.position));
        let outcome = if appends {
            chain.deltas.push(delta);
            Insertion::New
        } else {
            let outcome = classify(&chain.deltas, &delta);
            if outcome == Insertion::AlreadyIndexed {
                return outcome;
            }
            let at = chain
                .deltas
                .partition_point(|r| r.order_key() <= delta.order_key());
            chain.deltas.insert(at, delta);
            debug_assert!(
                chain.deltas[at.saturating_sub(1)..]
                    .iter()
                    .take(3)
                    .is_sorted_by_key(|d| d.order_key()),
                "a chain stays sorted by stamp after an insert"
            );
            outcome
        };
        // Counters may come from a checkpoint file: never overflow on untrusted values.
        self.counters.deltas = self.counters.deltas.saturating_add(1);
        match outcome {
            Insertion::Duplicate => {
                self.counters.duplicates = self.counters.duplicates.saturating_add(1)
            }
            Insertion::Conflict => {
                self.counters.conflicts = self.counters.conflicts.saturating_add(1)
            }
            Insertion::New | Insertion::AlreadyIndexed => {}
        }
        if let Some(changes) = &mut self.changes {
            changes.mark(slot);
        }
        outcome
    }

    /// From now on, records which aggregates gain a delta (only an insert changes a state:
    /// compaction's installs fold what the chain held), forgetting what was recorded so far.
    pub fn track_changes(&mut self) {
        self.changes = Some(ChangeLog::default());
    }

    /// The slots of the aggregates that gained a delta since tracking began or the last take
    /// (empty when not tracking).
    pub fn take_changed(&mut self) -> Vec<u32> {
        self.changes
            .as_mut()
            .map(ChangeLog::take)
            .unwrap_or_default()
    }

    /// Installs a state record for `aggregate`: it replaces the previous base and every delta
    /// with `seq <= state.horizon`. Returns the number of deltas it superseded.
    pub fn install_state(&mut self, aggregate: &str, state: StateRef) -> usize {
        let chain = self.chain_mut(aggregate);
        let mut freed: Vec<(u32, u64)> = Vec::new();
        if let Some(old) = chain.base.replace(state) {
            freed.push((old.segment, u64::from(old.len)));
        }
        let before = chain.deltas.len();
        chain.deltas.retain(|d| {
            let superseded = d.seq <= state.horizon;
            if superseded {
                freed.push((d.segment, u64::from(d.len)));
            }
            !superseded
        });
        let superseded = before - chain.deltas.len();
        *self.live_bytes.entry(state.segment).or_default() += u64::from(state.len);
        for (segment, bytes) in freed {
            self.release(segment, bytes);
        }
        superseded
    }

    fn release(&mut self, segment: u32, bytes: u64) {
        debug_assert!(
            self.live_bytes
                .get(&segment)
                .is_some_and(|&live| live >= bytes),
            "released bytes of segment {segment} were counted live"
        );
        if let Some(live) = self.live_bytes.get_mut(&segment) {
            *live = live.saturating_sub(bytes);
            if *live == 0 {
                self.live_bytes.remove(&segment);
            }
        }
    }

    /// The chain of `aggregate`.
    pub fn chain(&self, aggregate: &str) -> Option<&Chain> {
        self.slot_of(aggregate)
            .map(|slot| &self.entries[slot].chain)
    }

    /// Counts `deltas` deltas delivered again whose batch was not stored (every one was held
    /// already): as duplicates, as if they had been indexed.
    pub fn count_redelivered(&mut self, deltas: u64) {
        self.counters.deltas = self.counters.deltas.saturating_add(deltas);
        self.counters.duplicates = self.counters.duplicates.saturating_add(deltas);
    }

    /// Whether an unfolded delta of `aggregate` has exactly this stamp `(seq, position,
    /// checksum)`: the same delta, stored before (a state record's deltas are not known one by
    /// one, so a folded delta is not found).
    pub fn holds(&self, aggregate: &str, seq: u64, position: u32, checksum: u32) -> bool {
        let Some(chain) = self.chain(aggregate) else {
            return false;
        };
        let key = (seq, position, checksum);
        chain
            .deltas
            .binary_search_by(|d| d.order_key().cmp(&key))
            .is_ok()
    }

    /// The aggregates with ids strictly after `after` (all if `None`), in id order. The first
    /// call after a new aggregate arrived sorts the ids (O(n log n)); later calls are a binary
    /// search.
    pub fn iter_after(&self, after: Option<&str>) -> impl Iterator<Item = (&str, &Chain)> {
        let order = self.order();
        let at = match after {
            None => 0,
            Some(after) => {
                order.partition_point(|&s| self.entries[s as usize].id.as_str() <= after)
            }
        };
        order[at..].iter().map(|&slot| {
            let entry = &self.entries[slot as usize];
            (entry.id.as_str(), &entry.chain)
        })
    }

    /// Every aggregate and its chain, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Chain)> {
        self.order().iter().map(|&slot| {
            let entry = &self.entries[slot as usize];
            (&*entry.id, &entry.chain)
        })
    }

    /// The aggregate in `slot` (slots number aggregates from 0 in order of first appearance;
    /// an aggregate keeps its slot for the life of the index).
    pub fn entry_at(&self, slot: usize) -> Option<(&str, &Chain)> {
        self.entries.get(slot).map(|e| (e.id.as_str(), &e.chain))
    }

    /// Every aggregate and its chain, in no particular order (cheaper than [`Index::iter`]).
    pub fn iter_unordered(&self) -> impl Iterator<Item = (&str, &Chain)> {
        self.entries.iter().map(|e| (&*e.id, &e.chain))
    }

    /// Live bytes per segment (segments without live bytes are absent).
    pub fn live_bytes(&self) -> &BTreeMap<u32, u64> {
        &self.live_bytes
    }

    /// Number of aggregates with a chain (deleted ones included).
    pub fn aggregates(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The counters.
    pub fn counters(&self) -> IndexCounters {
        self.counters
    }

    /// Rebuilds an index from chains and counters (checkpoint load).
    pub fn from_parts(chains: Vec<(Box<str>, Chain)>, counters: IndexCounters) -> Self {
        let mut index = Index {
            counters,
            ..Index::default()
        };
        index.entries.reserve(chains.len());
        let (entries, hasher) = (&index.entries, &index.hasher);
        index.slots.reserve(chains.len(), |&s| {
            hasher.hash_one(entries[s as usize].id.as_str())
        });
        for (id, chain) in chains {
            index.adopt(&id, chain);
        }
        index
    }

    /// Takes `chain` as the chain of `aggregate` (replacing any) and counts its live bytes.
    fn adopt(&mut self, aggregate: &str, chain: Chain) {
        if let Some(base) = chain.base {
            *self.live_bytes.entry(base.segment).or_default() += u64::from(base.len);
        }
        for d in &chain.deltas {
            *self.live_bytes.entry(d.segment).or_default() += u64::from(d.len);
        }
        match self.slot_of(aggregate) {
            Some(slot) => self.entries[slot].chain = chain,
            None => {
                self.add_aggregate(aggregate, chain);
            }
        }
    }

    /// Splits the index into `parts` indexes by `part_of(id)` (taken modulo `parts`), for
    /// building them on separate threads; the counters go to the first part.
    pub fn split(self, parts: usize, part_of: impl Fn(&str) -> usize) -> Vec<Index> {
        let parts = parts.max(1);
        let mut out: Vec<Index> = (0..parts).map(|_| Index::default()).collect();
        out[0].counters = self.counters;
        for entry in self.entries {
            out[part_of(&entry.id) % parts].adopt(&entry.id, entry.chain);
        }
        out
    }

    /// Merges `other`, an index over other aggregates (a part of [`Index::split`]), into this
    /// one; counters add up. An aggregate in both (not produced by `split`) gets the other's
    /// deltas inserted and its base installed, as if they had been replayed here.
    pub fn absorb(&mut self, other: Index) {
        // The other's counters already count its deltas, wherever they land here.
        let (mine, theirs) = (self.counters, other.counters);
        for entry in other.entries {
            if self.slot_of(&entry.id).is_none() {
                self.adopt(&entry.id, entry.chain);
                continue;
            }
            for delta in entry.chain.deltas {
                self.insert(&entry.id, delta);
            }
            if let Some(base) = entry.chain.base {
                self.install_state(&entry.id, base);
            }
        }
        self.counters = IndexCounters {
            deltas: mine.deltas.saturating_add(theirs.deltas),
            duplicates: mine.duplicates.saturating_add(theirs.duplicates),
            conflicts: mine.conflicts.saturating_add(theirs.conflicts),
        };
    }

    /// Estimated heap bytes of the index from capacities: entries, hash slots (4 bytes and a
    /// control byte each), the sorted order if built, ids, delta capacities and per-segment
    /// live counters. Not an allocator measurement (`examples/index_memory.rs` measures).
    pub fn approx_heap_bytes(&self) -> u64 {
        let entries = (self.entries.capacity() * std::mem::size_of::<Entry>()) as u64;
        let slots = self.slots.capacity() as u64 * 5;
        let order = self.order.get().map_or(0, |o| o.len() as u64 * 4);
        let chains: u64 = self
            .entries
            .iter()
            .map(|e| {
                let heap_id = if e.id.is_heap_allocated() {
                    e.id.len()
                } else {
                    0
                };
                heap_id as u64
                    + (e.chain.deltas.capacity() * std::mem::size_of::<DeltaRef>()) as u64
            })
            .sum();
        entries + slots + order + chains + self.live_bytes.len() as u64 * 24
    }
}

/// Duplicate/conflict classification: counts are order-independent because a set of `k`
/// distinct checksums at one `(seq, position)` always yields `k - 1` conflicts, and every further
/// copy one duplicate, whatever the arrival order.
fn classify(chain: &[DeltaRef], delta: &DeltaRef) -> Insertion {
    let key = (delta.seq, delta.position);
    let start = chain.partition_point(|r| (r.seq, r.position) < key);
    let same = chain[start..]
        .iter()
        .take_while(|r| (r.seq, r.position) == key);
    let mut outcome = Insertion::New;
    for existing in same {
        if existing.same_place(delta) {
            return Insertion::AlreadyIndexed;
        }
        if existing.checksum == delta.checksum {
            outcome = Insertion::Duplicate;
        } else if outcome == Insertion::New {
            outcome = Insertion::Conflict;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(seq: u64, position: u32, checksum: u32) -> DeltaRef {
        DeltaRef {
            seq,
            segment: 1,
            position,
            checksum,
            record_offset: 32 + seq as u32,
            delta_offset: 4 + checksum,
            len: 10,
        }
    }

    #[test]
    fn chains_stay_sorted_whatever_the_insertion_order() {
        let mut index = Index::default();
        for (seq, pos) in [(5, 0), (1, 2), (3, 1), (1, 0), (9, 9)] {
            index.insert("a", delta(seq, pos, 0));
        }
        let keys: Vec<_> = index
            .chain("a")
            .unwrap()
            .deltas
            .iter()
            .map(|r| (r.seq, r.position))
            .collect();
        assert_eq!(keys, vec![(1, 0), (1, 2), (3, 1), (5, 0), (9, 9)]);
    }

    #[test]
    fn duplicates_and_conflicts_are_counted_independently_of_order() {
        let copy = |d: DeltaRef| DeltaRef {
            record_offset: d.record_offset + 1000,
            ..d
        };
        let deltas = [
            delta(2, 0, 7),
            copy(delta(2, 0, 7)),
            delta(2, 0, 8),
            delta(2, 0, 9),
        ];
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let mut index = Index::default();
            for i in order {
                index.insert("x", deltas[i]);
            }
            let c = index.counters();
            assert_eq!((c.duplicates, c.conflicts), (1, 2), "{order:?}");
        }
    }

    #[test]
    fn insert_all_matches_inserting_one_by_one() {
        let copy = |d: DeltaRef| DeltaRef {
            record_offset: d.record_offset + 1000,
            ..d
        };
        let batch = [
            ("x", delta(5, 0, 1)),
            ("y", delta(1, 1, 2)),
            ("x", delta(2, 2, 3)),
            ("x", copy(delta(5, 0, 1))),
            ("x", delta(5, 0, 9)),
            ("z", delta(7, 5, 4)),
            ("y", delta(1, 1, 2)),
        ];
        let mut one_by_one = Index::default();
        for (id, d) in batch {
            one_by_one.insert(id, d);
        }
        let mut all = Index::default();
        all.insert_all(batch.into_iter());
        assert_eq!(all.counters(), one_by_one.counters());
        assert_eq!(all.live_bytes(), one_by_one.live_bytes());
        for id in ["x", "y", "z"] {
            assert_eq!(all.chain(id), one_by_one.chain(id), "{id}");
        }
        assert_eq!(all.counters().duplicates, 1);
        assert_eq!(all.counters().conflicts, 1);
    }

    #[test]
    fn the_same_location_is_indexed_once() {
        let mut index = Index::default();
        assert_eq!(index.insert("x", delta(1, 0, 5)), Insertion::New);
        assert_eq!(index.insert("x", delta(1, 0, 5)), Insertion::AlreadyIndexed);
        assert_eq!(index.counters().deltas, 1);
        assert_eq!(index.live_bytes()[&1], 10);
    }

    #[test]
    fn a_state_supersedes_deltas_up_to_its_horizon_and_moves_live_bytes() {
        let mut index = Index::default();
        for seq in 1..=4 {
            index.insert("x", delta(seq, 0, 0));
        }
        let state = StateRef {
            segment: 2,
            record_offset: 32,
            len: 50,
            horizon: 3,
            max_seq: 3,
        };
        assert_eq!(index.install_state("x", state), 3);
        let chain = index.chain("x").unwrap();
        assert_eq!(chain.base, Some(state));
        assert_eq!(chain.deltas.len(), 1);
        assert_eq!(index.live_bytes()[&1], 10);
        assert_eq!(index.live_bytes()[&2], 50);
        let newer = StateRef {
            segment: 3,
            horizon: u64::MAX,
            max_seq: 4,
            ..state
        };
        index.install_state("x", newer);
        assert!(!index.live_bytes().contains_key(&1));
        assert!(!index.live_bytes().contains_key(&2));
        assert_eq!(index.live_bytes()[&3], 50);
    }

    #[test]
    fn iter_after_walks_ids_in_order() {
        let mut index = Index::default();
        for id in ["b", "a", "c"] {
            index.insert(id, delta(1, 0, 0));
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        while let Some((id, _)) = index.iter_after(cursor.as_deref()).next() {
            seen.push(id.to_owned());
            cursor = Some(id.to_owned());
        }
        assert_eq!(seen, ["a", "b", "c"]);
    }
}
