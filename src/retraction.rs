//! Retraction state (DESIGN.md, section 5f): every batch name's register, the places of the
//! deltas of retracted names, the filter every fold reads chains through, the scan that finds
//! a name's places in the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::error::Result;
use crate::index::{Chain, DeltaRef};
use crate::layout::index_location;
use crate::options::RecoveryMode;
use crate::wal::admin_records::{Register, RetractionRecord};
use crate::wal::batch::DeltaRecord;
use crate::wal::replay::Replay;
use crate::wal::trailer::{NameSpan, Place};
use crate::wal::{BatchRecord, Log, RecordLocation};

/// The place of `span` among `deltas` of the frame at `segment`, `offset`.
fn place_of_span(
    segment: u64,
    offset: u64,
    deltas: &[DeltaRecord<'_>],
    span: &NameSpan,
) -> Option<Place> {
    let first = span.first_delta as usize;
    let last = first.checked_add(span.count as usize)?.checked_sub(1)?;
    let (segment, record_offset) = index_location(segment, offset);
    Some(Place {
        segment,
        record_offset,
        first_delta_offset: deltas.get(first)?.offset,
        last_delta_offset: deltas.get(last)?.offset,
    })
}

/// Whether one of `places`, a name's (which never overlap), holds `delta`: the last place
/// starting at or before it is the only candidate (logarithmic in the places).
fn holds_one(places: &BTreeSet<Place>, delta: &DeltaRef) -> bool {
    let at = Place {
        segment: delta.segment,
        record_offset: delta.record_offset,
        first_delta_offset: delta.delta_offset,
        last_delta_offset: u32::MAX,
    };
    places
        .range(..=at)
        .next_back()
        .is_some_and(|p| p.holds(delta))
}

/// Every register, and the places of every retracted name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Retractions {
    registers: BTreeMap<String, Register>,
    /// Retracted names only (a name may have no place yet: its batch did not arrive).
    places: BTreeMap<String, BTreeSet<Place>>,
    /// The places by frame, `(segment, frame offset) -> (first, last)` delta offsets: what the
    /// fold filter looks up.
    by_frame: HashMap<(u32, u32), Vec<(u32, u32)>>,
    /// Retracted names whose places in the log already read are not known yet (a register
    /// turned retracted while the log was replayed): a scan must find them.
    unplaced: BTreeSet<String>,
    /// Bumped whenever deltas already indexed may be left out or brought back (a batch noted
    /// before its deltas are indexed does not bump it: those aggregates are in the index's
    /// change log anyway).
    epoch: u64,
}

impl Retractions {
    /// Registers and places as a checkpoint holds them.
    pub fn from_entries(entries: Vec<(String, Register, Vec<Place>)>) -> Self {
        let mut retractions = Retractions::default();
        for (name, register, places) in entries {
            if register.retracted {
                retractions
                    .places
                    .insert(name.clone(), places.into_iter().collect());
            }
            retractions.registers.insert(name, register);
        }
        retractions.index_frames();
        retractions
    }

    /// Every register with the places of its name (empty unless retracted), in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Register, Vec<Place>)> {
        self.registers.iter().map(|(name, register)| {
            let places = self.places.get(name);
            let places = places.map_or_else(Vec::new, |p| p.iter().copied().collect());
            (name.as_str(), *register, places)
        })
    }

    /// The register of `name`.
    pub fn register(&self, name: &str) -> Register {
        self.registers.get(name).copied().unwrap_or_default()
    }

    /// Every register as a record, to write again (compaction).
    pub fn records(&self) -> Vec<RetractionRecord> {
        let records = self
            .registers
            .iter()
            .map(|(name, register)| RetractionRecord {
                name: name.clone(),
                register: *register,
            });
        records.collect()
    }

    /// Names retracted now.
    pub fn retracted_names(&self) -> usize {
        self.places.len()
    }

    /// Changes whenever deltas already indexed may be left out or brought back (the reference
    /// index rebuilds).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The names retracted now, in order.
    pub fn retracted(&self) -> impl Iterator<Item = &str> {
        self.places.keys().map(String::as_str)
    }

    /// Applies a retraction record: the register rises to it. A name that turns retracted is
    /// *unplaced* until [`Retractions::place`] gives it the places already in the log; one that
    /// turns unretracted loses its places. Returns whether the name's status changed.
    pub fn apply(&mut self, record: &RetractionRecord) -> bool {
        let old = self.register(&record.name);
        let new = old.join(record.register);
        self.registers.insert(record.name.clone(), new);
        if old.retracted == new.retracted {
            return false;
        }
        if new.retracted {
            self.places.insert(record.name.clone(), BTreeSet::new());
            self.unplaced.insert(record.name.clone());
        } else {
            self.places.remove(&record.name);
            self.unplaced.remove(&record.name);
            self.index_frames();
        }
        self.epoch += 1;
        true
    }

    /// Adds the places of `batch`'s spans of retracted names (call before its deltas are
    /// indexed, so no reader sees them).
    pub fn note_batch(&mut self, batch: &BatchRecord<'_>) {
        if self.places.is_empty() || batch.names.is_empty() {
            return;
        }
        for span in batch.names {
            let Some(places) = self.places.get_mut(span.name) else {
                continue;
            };
            let place = place_of_span(batch.segment, batch.offset, batch.deltas, span);
            debug_assert!(place.is_some(), "the trailer decoder bounds spans");
            // No epoch change: these deltas are left out before they are indexed, so no state
            // changes; the index's change log still names their aggregates.
            if let Some(place) = place.filter(|p| places.insert(*p)) {
                let frame = (place.segment, place.record_offset);
                let ranges = self.by_frame.entry(frame).or_default();
                ranges.push((place.first_delta_offset, place.last_delta_offset));
            }
        }
    }

    /// Takes `newer`, a copy of these retractions made at epoch `copied_at` and brought up to
    /// date meanwhile (a read-only refresh), keeping the epoch rising: if either side changed
    /// since the copy, the epoch moves past both, so an epoch a reader saw is never seen again
    /// with other contents.
    pub fn replace_with(&mut self, newer: Retractions, copied_at: u64) {
        let changed = self.epoch != copied_at || newer.epoch != copied_at;
        let epoch = match changed {
            true => self.epoch.max(newer.epoch) + 1,
            false => self.epoch,
        };
        *self = newer;
        self.epoch = epoch;
    }

    /// The retracted names whose places in the log already read are not known yet: the
    /// caller finds them and gives them to [`Retractions::place`].
    pub fn unplaced(&self) -> &BTreeSet<String> {
        &self.unplaced
    }

    /// Adds the places `found` in the whole log for `names`, which are placed from then on,
    /// to each name still retracted.
    pub fn place(&mut self, names: &BTreeSet<String>, found: &BTreeMap<String, NameDeltas>) {
        if names.is_empty() {
            return;
        }
        for (name, deltas) in found {
            if let Some(places) = self.places.get_mut(name) {
                places.extend(deltas.places.iter().copied());
            }
        }
        self.unplaced.retain(|name| !names.contains(name));
        self.index_frames();
        self.epoch += 1;
    }

    /// Marks frozen every retracted name holding one of `folded`, deltas compaction supersedes
    /// while they are left out (under the exclusive gate, before the state record is
    /// installed): those names can never be unretracted.
    pub fn freeze(&mut self, folded: &[DeltaRef]) {
        let frozen: Vec<String> = (self.places.iter())
            .filter(|(_, places)| folded.iter().any(|d| holds_one(places, d)))
            .map(|(name, _)| name.clone())
            .collect();
        for name in frozen {
            if let Some(register) = self.registers.get_mut(&name) {
                register.frozen = true;
            }
        }
    }

    /// Forgets the places in segments that are deleted (their deltas are folded).
    pub fn forget_segments(&mut self, deleted: &BTreeSet<u32>) {
        for places in self.places.values_mut() {
            places.retain(|p| !deleted.contains(&p.segment));
        }
        self.index_frames();
    }

    /// Whether `delta` belongs to a retracted batch.
    pub fn leaves_out(&self, delta: &DeltaRef) -> bool {
        self.by_frame
            .get(&(delta.segment, delta.record_offset))
            .is_some_and(|ranges| {
                let at = delta.delta_offset;
                ranges
                    .iter()
                    .any(|&(first, last)| first <= at && at <= last)
            })
    }

    /// Drops from `chain` the deltas of retracted batches (one branch when there are none).
    pub fn filter(&self, chain: &mut Chain) {
        if !self.by_frame.is_empty() {
            chain.deltas.retain(|d| !self.leaves_out(d));
        }
    }

    /// Rebuilds the by-frame lookup from the places.
    fn index_frames(&mut self) {
        self.by_frame.clear();
        for place in self.places.values().flatten() {
            let frame = (place.segment, place.record_offset);
            let range = (place.first_delta_offset, place.last_delta_offset);
            self.by_frame.entry(frame).or_default().push(range);
        }
    }
}

/// One delta of a named batch found in the log: its aggregate and where it lies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NamedDelta {
    /// Its aggregate.
    pub aggregate: String,
    /// Segment id, frame offset and payload offset: [`DeltaRef::place`].
    pub place: (u32, u32, u32),
    /// Its seq.
    pub seq: u64,
}

/// What the log holds of one batch name.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameDeltas {
    /// Its spans' places.
    pub places: BTreeSet<Place>,
    /// Its deltas.
    pub deltas: BTreeSet<NamedDelta>,
}

/// Finds the deltas of the batches named in `names` in the log from `from` (spanning batches
/// at their commits, as replay reads them): only frames with a trailer are decoded.
pub(crate) fn find_named(
    log: &Arc<Log>,
    names: &BTreeSet<String>,
    from: RecordLocation,
    mode: RecoveryMode,
) -> Result<BTreeMap<String, NameDeltas>> {
    let mut found: BTreeMap<String, NameDeltas> = BTreeMap::new();
    if names.is_empty() {
        return Ok(found);
    }
    let mut replay = Replay::new(log, from, mode);
    while let Some(batch) = replay.next_batch() {
        let batch = batch?;
        if !batch.has_trailer() {
            continue;
        }
        // Only the trailer of most frames: their deltas are decoded when a span matches.
        let spans = batch.names()?;
        if !spans.iter().any(|s| names.contains(s.name)) {
            continue;
        }
        let deltas = batch.delta_records()?;
        let location = batch.location;
        for span in spans.iter().filter(|s| names.contains(s.name)) {
            let Some(place) = place_of_span(location.segment, location.offset, &deltas, span)
            else {
                continue;
            };
            let entry = found.entry(span.name.to_owned()).or_default();
            entry.places.insert(place);
            let span_deltas = &deltas[span.first_delta as usize..][..span.count as usize];
            entry.deltas.extend(span_deltas.iter().map(|d| NamedDelta {
                aggregate: d.aggregate.to_owned(),
                place: (place.segment, place.record_offset, d.offset),
                seq: d.seq,
            }));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::admin_records::record;

    #[test]
    fn a_register_is_the_maximum_whatever_the_order_of_its_records() {
        let records = [
            record("b", 1, true),
            record("b", 2, false),
            record("b", 3, true),
            record("b", 3, false),
        ];
        let mut orders = vec![vec![0, 1, 2, 3], vec![3, 2, 1, 0], vec![2, 0, 3, 1]];
        orders.push(vec![1, 1, 3, 0, 2, 2]);
        for order in orders {
            let mut retractions = Retractions::default();
            order.iter().for_each(|&i| {
                retractions.apply(&records[i]);
            });
            let register = retractions.register("b");
            let expected = Register {
                version: 3,
                retracted: true,
                frozen: false,
            };
            assert_eq!(register, expected, "{order:?}");
            assert_eq!(retractions.retracted_names(), 1);
        }
    }

    #[test]
    fn a_delta_is_held_only_by_the_place_that_spans_it() {
        let place = |segment, record_offset, first, last| Place {
            segment,
            record_offset,
            first_delta_offset: first,
            last_delta_offset: last,
        };
        // Two spans of one name in one frame, and one in the next frame.
        let places = BTreeSet::from([
            place(1, 100, 10, 30),
            place(1, 100, 60, 80),
            place(1, 200, 4, 4),
        ]);
        let delta = |record_offset, delta_offset| DeltaRef {
            seq: 1,
            segment: 1,
            position: 0,
            checksum: 0,
            record_offset,
            delta_offset,
            len: 5,
        };
        let held = [(100, 10), (100, 30), (100, 60), (100, 80), (200, 4)];
        let not_held = [
            (100, 4),
            (100, 31),
            (100, 59),
            (100, 81),
            (200, 5),
            (150, 10),
            (300, 4),
        ];
        for (record, offset) in held {
            assert!(
                holds_one(&places, &delta(record, offset)),
                "{record}/{offset}"
            );
        }
        for (record, offset) in not_held {
            assert!(
                !holds_one(&places, &delta(record, offset)),
                "{record}/{offset}"
            );
        }
    }

    #[test]
    fn a_replaced_copy_never_brings_back_an_epoch_already_seen() {
        let mut live = Retractions::default();
        live.apply(&record("a", 1, true));
        let copied_at = live.epoch();
        let mut copy = live.clone();
        // Each side changes once: both reach the same epoch with different contents.
        live.apply(&record("b", 1, true));
        copy.apply(&record("a", 2, false));
        assert_eq!(live.epoch(), copy.epoch());
        let seen = live.epoch();
        live.replace_with(copy.clone(), copied_at);
        assert!(live.epoch() > seen);
        // Nothing changed on either side: the epoch stays.
        let unchanged = live.epoch();
        live.replace_with(live.clone(), unchanged);
        assert_eq!(live.epoch(), unchanged);
    }

    #[test]
    fn the_filter_leaves_out_exactly_the_deltas_in_a_retracted_span() {
        let mut retractions = Retractions::from_entries(vec![(
            "bad".into(),
            Register {
                version: 1,
                retracted: true,
                frozen: false,
            },
            vec![Place {
                segment: 1,
                record_offset: 100,
                first_delta_offset: 10,
                last_delta_offset: 30,
            }],
        )]);
        let delta = |record_offset, delta_offset| DeltaRef {
            seq: 1,
            segment: 1,
            position: 0,
            checksum: 0,
            record_offset,
            delta_offset,
            len: 5,
        };
        let mut chain = Chain {
            base: None,
            deltas: vec![
                delta(100, 4),
                delta(100, 10),
                delta(100, 30),
                delta(100, 31),
            ],
        };
        chain.deltas.push(delta(200, 10));
        retractions.filter(&mut chain);
        let left: Vec<_> = chain.deltas.iter().map(|d| d.place()).collect();
        assert_eq!(left, vec![(1, 100, 4), (1, 100, 31), (1, 200, 10)]);
        assert!(retractions.apply(&record("bad", 2, false)));
        assert!(!retractions.leaves_out(&delta(100, 10)));
    }
}
