//! The trailer of a batch payload (frame flag `FLAG_TRAILER`, DESIGN.md section 3.3): entries
//! `tag:u8 len:u32 value` back to back, then the trailer's length.
//!
//! ```text
//! trailer   := entry* trailer_len:u32
//! entry     := tag:u8 len:u32 value[len]
//! tag 1     := source range (crate::sources)            batch frames only
//! tag 2     := name_len:u16 name first_delta:u32 count:u32
//! ```
//! A *name span* says that the deltas `first_delta..first_delta + count` of the frame belong to
//! the upstream batch called `name`. Unknown tags are damage; every value must fill its length.

use crate::decode::{DecodeError, Decoded, Reader};
use crate::index::DeltaRef;
use crate::sources::{decode_range_value, encode_range_value, range_value_bytes, SourceRange};

/// Longest batch name in bytes.
pub const MAX_BATCH_NAME_BYTES: usize = 1024;
const TAG_SOURCE_RANGE: u8 = 1;
const TAG_NAME_SPAN: u8 = 2;
/// Bytes of an entry's tag and length.
const ENTRY_HEADER_BYTES: usize = 5;
/// Bytes of a name span around its name.
const SPAN_FIXED_BYTES: usize = 2 + 4 + 4;

/// Deltas of a frame that belong to one named upstream batch
/// ([`ReplayedBatch::names`](crate::ReplayedBatch::names)), its name borrowed from the frame's
/// payload (decoding a frame allocates no name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NameSpan<'a> {
    /// The batch's name.
    pub name: &'a str,
    /// Index in the frame of its first delta.
    pub first_delta: u32,
    /// Number of its deltas in the frame (at least 1).
    pub count: u32,
}

impl NameSpan<'_> {
    /// Whether the delta at `index` of the frame belongs to it.
    pub fn holds(&self, index: u32) -> bool {
        index.wrapping_sub(self.first_delta) < self.count
    }
}

/// What a payload's trailer holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trailer<'a> {
    /// Source ranges (batch frames only).
    pub sources: Vec<SourceRange>,
    /// Name spans.
    pub names: Vec<NameSpan<'a>>,
}

/// Where a name's span of deltas lies in one frame: the span's first and last delta records,
/// by their offsets in the payload (a span is contiguous).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Place {
    /// Segment id of the frame.
    pub segment: u32,
    /// Offset of the frame in its segment.
    pub record_offset: u32,
    /// Payload offset of the span's first delta record.
    pub first_delta_offset: u32,
    /// Payload offset of the span's last delta record.
    pub last_delta_offset: u32,
}

impl Place {
    /// Whether `delta` lies in this place.
    pub fn holds(&self, delta: &DeltaRef) -> bool {
        (delta.segment, delta.record_offset) == (self.segment, self.record_offset)
            && (self.first_delta_offset..=self.last_delta_offset).contains(&delta.delta_offset)
    }
}

/// Checks a batch name: 1 to 1024 bytes.
pub fn validate_batch_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_BATCH_NAME_BYTES {
        return Err(format!(
            "a batch name takes 1 to {MAX_BATCH_NAME_BYTES} bytes, not {}",
            name.len()
        ));
    }
    Ok(())
}

/// Appends a trailer of `sources` and the name spans `(name, first delta, count)` to `out`:
/// the entries, then the trailer's length.
pub fn encode<'n>(
    sources: &[SourceRange],
    spans: impl Iterator<Item = (&'n str, u32, u32)>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    for range in sources {
        let value_len = range_value_bytes(range);
        entry_header(out, TAG_SOURCE_RANGE, value_len);
        encode_range_value(range, out);
    }
    for (name, first_delta, count) in spans {
        debug_assert!(validate_batch_name(name).is_ok() && count > 0);
        entry_header(out, TAG_NAME_SPAN, SPAN_FIXED_BYTES + name.len());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&first_delta.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
    }
    let trailer_len = (out.len() - start) as u32;
    out.extend_from_slice(&trailer_len.to_le_bytes());
}

impl<'a> Trailer<'a> {
    /// Appends the entries and the trailer's length to `out` (tests; writers call [`encode`]).
    #[cfg(test)]
    pub fn encode(&self, out: &mut Vec<u8>) {
        let spans = (self.names.iter()).map(|s| (s.name, s.first_delta, s.count));
        encode(&self.sources, spans, out);
    }

    /// Decodes the entries (without the length field) of a frame holding `deltas` deltas:
    /// every entry must fill its length, carry a known tag, and a name span must lie within
    /// the frame's deltas.
    pub fn decode(bytes: &'a [u8], deltas: u32) -> Decoded<Trailer<'a>> {
        let mut trailer = Trailer::default();
        let mut reader = Reader::new(bytes);
        while reader.at() < bytes.len() {
            let at = reader.at();
            let tag = reader.u8()?;
            let len = reader.u32()? as usize;
            let value = reader.take(len)?;
            let shifted = |e: DecodeError| e.shifted(at + ENTRY_HEADER_BYTES);
            match tag {
                TAG_SOURCE_RANGE => trailer
                    .sources
                    .push(decode_range_value(value).map_err(shifted)?),
                TAG_NAME_SPAN => trailer
                    .names
                    .push(decode_span(value, deltas).map_err(shifted)?),
                other => return Err(DecodeError::new(at, format!("unknown trailer tag {other}"))),
            }
        }
        Ok(trailer)
    }
}

/// Bytes of the entries of `sources`.
pub fn sources_bytes(sources: &[SourceRange]) -> usize {
    (sources.iter())
        .map(|r| ENTRY_HEADER_BYTES + range_value_bytes(r))
        .sum()
}

/// Bytes of the entry of a name span whose name takes `name_len` bytes.
pub fn name_span_bytes(name_len: usize) -> usize {
    ENTRY_HEADER_BYTES + SPAN_FIXED_BYTES + name_len
}

fn entry_header(out: &mut Vec<u8>, tag: u8, value_len: usize) {
    out.push(tag);
    out.extend_from_slice(&(value_len as u32).to_le_bytes());
}

fn decode_span(value: &[u8], deltas: u32) -> Decoded<NameSpan<'_>> {
    let mut reader = Reader::new(value);
    let name_len = usize::from(reader.u16()?);
    let name = reader.text(name_len, "batch name", validate_batch_name)?;
    let (first_delta, count) = (reader.u32()?, reader.u32()?);
    reader.finished()?;
    let end = first_delta.checked_add(count);
    if count == 0 || end.is_none_or(|end| end > deltas) {
        let reason = format!("name span {first_delta}+{count} outside the frame's {deltas} deltas");
        return Err(DecodeError::new(0, reason));
    }
    Ok(NameSpan {
        name,
        first_delta,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trailer<'static> {
        Trailer {
            sources: vec![SourceRange {
                topic: "deltas".into(),
                partition: 1,
                first_offset: 5,
                next_offset: 9,
                dead_letters: 0,
            }],
            names: vec![
                NameSpan {
                    name: "deltas/1/5",
                    first_delta: 0,
                    count: 2,
                },
                NameSpan {
                    name: "deltas/1/6",
                    first_delta: 2,
                    count: 1,
                },
            ],
        }
    }

    #[test]
    fn a_trailer_round_trips_and_every_cut_is_refused() {
        let mut bytes = Vec::new();
        sample().encode(&mut bytes);
        let entries = &bytes[..bytes.len() - 4];
        assert_eq!(Trailer::decode(entries, 3).unwrap(), sample());
        // A cut inside an entry is refused; one between entries is a shorter trailer (the
        // trailer's length, which the frame CRC covers, says where it ends).
        for cut in 1..entries.len() {
            if let Ok(shorter) = Trailer::decode(&entries[..cut], 3) {
                let entries = shorter.sources.len() + shorter.names.len();
                assert!(entries < 3, "cut at {cut}");
            }
        }
    }

    #[test]
    fn spans_must_lie_within_the_frame_and_tags_be_known() {
        let mut bytes = Vec::new();
        sample().encode(&mut bytes);
        let entries = &bytes[..bytes.len() - 4];
        assert!(
            Trailer::decode(entries, 2).is_err(),
            "a span past the last delta"
        );
        let mut unknown = entries.to_vec();
        unknown[0] = 9;
        assert!(Trailer::decode(&unknown, 3).is_err());
        let empty = Trailer {
            sources: vec![],
            names: vec![NameSpan {
                name: "x",
                first_delta: 0,
                count: 1,
            }],
        };
        let mut zero = Vec::new();
        empty.encode(&mut zero);
        let at = zero.len() - 8;
        zero[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(
            Trailer::decode(&zero[..zero.len() - 4], 1).is_err(),
            "an empty span"
        );
    }
}
