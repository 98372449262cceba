//! The in-memory aggregate-keyed index: aggregate id -> where each of its deltas is stored.
//!
//! Each aggregate has a chain of [`DeltaRef`]s kept sorted by `(seq, position, checksum)`, so
//! `get_as_of` reads a prefix and duplicate/conflict detection is a binary search. Chains are not
//! what makes reads order-independent (the model's fold is); sorting only makes them cheap.
//! Memory per aggregate is measured in DESIGN.md ("The index").

use std::collections::BTreeMap;
use std::ops::Bound;

/// Where one delta lives in the log, with the parts of its stamp the index needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaRef {
    /// Upstream sequence number.
    pub seq: u64,
    /// Segment id of the batch record holding the delta.
    pub segment: u64,
    /// Index of the delta within its batch.
    pub position: u32,
    /// CRC32 of the delta record (conflict tie-breaker).
    pub checksum: u32,
    /// Offset of the batch frame within its segment.
    pub record_offset: u32,
    /// Offset of the delta record within the batch payload.
    pub delta_offset: u32,
}

impl DeltaRef {
    fn order_key(&self) -> (u64, u32, u32) {
        (self.seq, self.position, self.checksum)
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
}

/// The aggregate index.
#[derive(Debug, Default)]
pub struct Index {
    chains: BTreeMap<Box<str>, Vec<DeltaRef>>,
    deltas: u64,
    duplicates: u64,
    conflicts: u64,
}

impl Index {
    /// Adds a delta of `aggregate`. Duplicates are kept too (the fold is idempotent); they are
    /// only counted, so the count never depends on which copy arrived first.
    pub fn insert(&mut self, aggregate: &str, delta: DeltaRef) -> Insertion {
        let chain = match self.chains.get_mut(aggregate) {
            Some(chain) => chain,
            // Most aggregates have few deltas: start with room for exactly one.
            None => self
                .chains
                .entry(aggregate.into())
                .or_insert_with(|| Vec::with_capacity(1)),
        };
        let outcome = classify(chain, &delta);
        let at = chain.partition_point(|r| r.order_key() <= delta.order_key());
        chain.insert(at, delta);
        self.deltas += 1;
        match outcome {
            Insertion::New => {}
            Insertion::Duplicate => self.duplicates += 1,
            Insertion::Conflict => self.conflicts += 1,
        }
        outcome
    }

    /// The chain of `aggregate`, sorted by stamp.
    pub fn chain(&self, aggregate: &str) -> Option<&[DeltaRef]> {
        self.chains.get(aggregate).map(Vec::as_slice)
    }

    /// The first aggregate id strictly after `after` (or the first of all), with its chain.
    pub fn next_after(&self, after: Option<&str>) -> Option<(&str, &[DeltaRef])> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.chains
            .range::<str, _>((lower, Bound::Unbounded))
            .next()
            .map(|(id, chain)| (&**id, chain.as_slice()))
    }

    /// Number of aggregates with at least one delta.
    pub fn aggregates(&self) -> u64 {
        self.chains.len() as u64
    }

    /// Number of indexed deltas (duplicates included).
    pub fn deltas(&self) -> u64 {
        self.deltas
    }

    /// Deltas that repeated an already indexed one.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Deltas that differ from an already indexed one with the same `(seq, position)`.
    pub fn conflicts(&self) -> u64 {
        self.conflicts
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
        if existing.checksum == delta.checksum {
            return Insertion::Duplicate;
        }
        outcome = Insertion::Conflict;
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
            record_offset: 32,
            delta_offset: 4,
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
            .iter()
            .map(|r| (r.seq, r.position))
            .collect();
        assert_eq!(keys, vec![(1, 0), (1, 2), (3, 1), (5, 0), (9, 9)]);
    }

    #[test]
    fn duplicates_and_conflicts_are_counted_independently_of_order() {
        let deltas = [
            delta(2, 0, 7),
            delta(2, 0, 7),
            delta(2, 0, 8),
            delta(2, 0, 9),
        ];
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let mut index = Index::default();
            for i in order {
                index.insert("x", deltas[i]);
            }
            assert_eq!((index.duplicates(), index.conflicts()), (1, 2), "{order:?}");
        }
    }

    #[test]
    fn next_after_walks_ids_in_order() {
        let mut index = Index::default();
        for id in ["b", "a", "c"] {
            index.insert(id, delta(1, 0, 0));
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        while let Some((id, _)) = index.next_after(cursor.as_deref()) {
            seen.push(id.to_owned());
            cursor = Some(id.to_owned());
        }
        assert_eq!(seen, ["a", "b", "c"]);
    }
}
