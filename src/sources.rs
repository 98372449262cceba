//! Source positions (DESIGN.md, section 5e): which part of an upstream queue partition a batch
//! holds ([`SourceRange`], an entry of the batch payload's trailer, `crate::wal::trailer`), the
//! engine's map of how far each partition was applied ([`Sources`], shown as
//! [`SourcePosition`]s), and their encodings:
//!
//! ```text
//! source range   := topic_len:u16 topic partition:u32 first_offset:u64 next_offset:u64
//!                   dead_letters:u64
//! sources record := count:u32 (topic_len:u16 topic partition:u32 next_offset:u64
//!                   dead_letters:u64 reapplied:u64){count}
//! ```

use std::collections::BTreeMap;

use crate::decode::{DecodeError, Decoded, Reader};

/// Longest topic name in bytes (Kafka's limit).
pub const MAX_TOPIC_BYTES: usize = 249;
/// Bytes of a source range around its topic.
const RANGE_FIXED_BYTES: usize = 2 + 4 + 8 + 8 + 8;
/// Bytes of a sources record entry around its topic.
const POSITION_FIXED_BYTES: usize = 2 + 4 + 8 + 8 + 8;

/// The messages `first_offset..next_offset` of one queue partition, whose deltas a batch
/// holds: set with [`Batch::set_source`](crate::Batch::set_source) and committed in the same
/// atomic write as the deltas, so that a follower can resume exactly where the log ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRange {
    /// Topic (1 to 249 bytes).
    pub topic: String,
    /// Partition of the topic.
    pub partition: u32,
    /// Offset of the batch's first message.
    pub first_offset: u64,
    /// Offset after the batch's last message (greater than `first_offset`).
    pub next_offset: u64,
    /// Messages of the partition below `next_offset` that were not valid input, in all.
    pub dead_letters: u64,
}

/// How far one queue partition was applied: what
/// [`Db::source_positions`](crate::Db::source_positions) returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SourcePosition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The offset to read next: every message below it was applied.
    pub next_offset: u64,
    /// Messages below `next_offset` that were not valid input (dead letters).
    pub dead_letters: u64,
    /// Messages applied a second time: batches whose range began below the position already
    /// stored (0 for a follower that resumes from the stored positions).
    pub reapplied: u64,
}

/// Where one partition stands, in [`Sources`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Standing {
    next_offset: u64,
    dead_letters: u64,
    reapplied: u64,
}

/// The engine's map `(topic, partition) -> standing`, built by applying batch ranges and
/// sources records in log order (DESIGN.md, section 5e).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sources {
    map: BTreeMap<(String, u32), Standing>,
}

impl Sources {
    /// Applies one batch's range: the position rises to its end, and messages it holds below
    /// the position already stored count as reapplied.
    pub fn apply_range(&mut self, range: &SourceRange) {
        let key = (range.topic.clone(), range.partition);
        let standing = self.map.entry(key).or_default();
        if range.first_offset < standing.next_offset {
            let overlap = range.next_offset.min(standing.next_offset) - range.first_offset;
            standing.reapplied += overlap;
        }
        if range.next_offset > standing.next_offset {
            standing.next_offset = range.next_offset;
            standing.dead_letters = range.dead_letters;
        }
    }

    /// Applies a sources record (or a checkpoint's section): each field rises to its value.
    pub fn apply_positions(&mut self, positions: &[SourcePosition]) {
        for p in positions {
            let key = (p.topic.clone(), p.partition);
            let standing = self.map.entry(key).or_default();
            if p.next_offset > standing.next_offset {
                standing.next_offset = p.next_offset;
                standing.dead_letters = p.dead_letters;
            }
            standing.reapplied = standing.reapplied.max(p.reapplied);
        }
    }

    /// Every partition's position, in (topic, partition) order.
    pub fn positions(&self) -> Vec<SourcePosition> {
        (self.map.iter())
            .map(|((topic, partition), s)| SourcePosition {
                topic: topic.clone(),
                partition: *partition,
                next_offset: s.next_offset,
                dead_letters: s.dead_letters,
                reapplied: s.reapplied,
            })
            .collect()
    }
}

/// Checks a source range before it is stored.
pub(crate) fn validate_range(range: &SourceRange) -> Result<(), String> {
    validate_topic(&range.topic)?;
    if range.next_offset <= range.first_offset {
        return Err(format!(
            "a source range must hold a message: next offset {} is not above first offset {}",
            range.next_offset, range.first_offset
        ));
    }
    Ok(())
}

pub(crate) fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "a topic takes 1 to {MAX_TOPIC_BYTES} bytes, not {}",
            topic.len()
        ));
    }
    Ok(())
}

/// Appends the value of a trailer entry holding `range` (its tag and length are the
/// trailer's, `crate::wal::trailer`).
pub(crate) fn encode_range_value(range: &SourceRange, out: &mut Vec<u8>) {
    put_topic(out, &range.topic);
    put_u32(out, range.partition);
    for value in [range.first_offset, range.next_offset, range.dead_letters] {
        put_u64(out, value);
    }
}

/// Bytes [`encode_range_value`] writes for `range`.
pub(crate) fn range_value_bytes(range: &SourceRange) -> usize {
    RANGE_FIXED_BYTES + range.topic.len()
}

/// Decodes the value of a source range entry; it must fill `value` exactly.
pub(crate) fn decode_range_value(value: &[u8]) -> Decoded<SourceRange> {
    let mut reader = Reader::new(value);
    let topic = read_topic(&mut reader)?;
    let partition = reader.u32()?;
    let (first_offset, next_offset, dead_letters) = (reader.u64()?, reader.u64()?, reader.u64()?);
    reader.finished()?;
    let range = SourceRange {
        topic,
        partition,
        first_offset,
        next_offset,
        dead_letters,
    };
    validate_range(&range).map_err(|reason| DecodeError::new(0, reason))?;
    Ok(range)
}

/// Encodes a sources record body: every position, in order.
pub(crate) fn encode_sources_record(positions: &[SourcePosition]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, positions.len() as u32);
    for p in positions {
        put_topic(&mut out, &p.topic);
        put_u32(&mut out, p.partition);
        for value in [p.next_offset, p.dead_letters, p.reapplied] {
            put_u64(&mut out, value);
        }
    }
    out
}

/// Decodes a sources record body; the count must fit and the entries fill it exactly.
pub(crate) fn decode_sources_record(bytes: &[u8]) -> Decoded<Vec<SourcePosition>> {
    let mut reader = Reader::new(bytes);
    let count = reader.u32()?;
    let count = reader.count(
        u64::from(count),
        POSITION_FIXED_BYTES + 1,
        "source positions",
    )?;
    let mut positions = Vec::with_capacity(count);
    for _ in 0..count {
        positions.push(SourcePosition {
            topic: read_topic(&mut reader)?,
            partition: reader.u32()?,
            next_offset: reader.u64()?,
            dead_letters: reader.u64()?,
            reapplied: reader.u64()?,
        });
    }
    reader.finished()?;
    Ok(positions)
}

fn put_topic(out: &mut Vec<u8>, topic: &str) {
    debug_assert!(
        validate_topic(topic).is_ok(),
        "topics are validated on entry"
    );
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic.as_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Reads a topic: `topic_len: u16`, then the topic, UTF-8 and 1 to 249 bytes.
fn read_topic(reader: &mut Reader<'_>) -> Decoded<String> {
    let len = usize::from(reader.u16()?);
    Ok(reader.text(len, "topic", validate_topic)?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u64, next: u64, dead: u64) -> SourceRange {
        SourceRange {
            topic: "deltas".into(),
            partition: 3,
            first_offset: first,
            next_offset: next,
            dead_letters: dead,
        }
    }

    #[test]
    fn ranges_and_records_round_trip() {
        let ranges = vec![range(0, 10, 1), range(10, 12, 1)];
        for r in &ranges {
            let mut bytes = Vec::new();
            encode_range_value(r, &mut bytes);
            assert_eq!(bytes.len(), range_value_bytes(r));
            assert_eq!(&decode_range_value(&bytes).unwrap(), r);
        }
        let mut sources = Sources::default();
        ranges.iter().for_each(|r| sources.apply_range(r));
        let positions = sources.positions();
        let record = encode_sources_record(&positions);
        assert_eq!(decode_sources_record(&record).unwrap(), positions);
    }

    #[test]
    fn the_position_is_a_maximum_and_overlaps_count_as_reapplied() {
        let mut sources = Sources::default();
        sources.apply_range(&range(0, 10, 2));
        sources.apply_range(&range(10, 20, 3));
        assert_eq!(sources.positions()[0].reapplied, 0);
        sources.apply_range(&range(5, 15, 2));
        let p = &sources.positions()[0];
        assert_eq!((p.next_offset, p.dead_letters, p.reapplied), (20, 3, 10));
        let mut again = Sources::default();
        again.apply_positions(&sources.positions());
        again.apply_positions(&sources.positions());
        assert_eq!(again, sources);
    }

    #[test]
    fn damaged_entries_are_refused() {
        let mut bytes = Vec::new();
        encode_range_value(&range(0, 10, 0), &mut bytes);
        for cut in 0..bytes.len() {
            assert!(decode_range_value(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut empty_range = Vec::new();
        encode_range_value(&range(4, 4, 0), &mut empty_range);
        assert!(decode_range_value(&empty_range).is_err());
        let record = encode_sources_record(&Sources::default().positions());
        assert!(decode_sources_record(&record[..3]).is_err());
        let mut huge = record.clone();
        huge[0] = 0xff;
        assert!(decode_sources_record(&huge).is_err());
    }
}
