//! Bodies of the non-batch records (see DESIGN.md, section 3.4):
//!
//! ```text
//! state record := id_len:varint id horizon_code:varint max_seq:varint folded:varint state
//! seal record  := seal:u64
//! batch commit := fragments:u32 deltas:u64 (segment:u64 offset:u32 crc:u32){fragments}
//! ```
//! `horizon_code` is 0 for "every seq" (`u64::MAX`) and `horizon + 1` otherwise. A state record
//! holds one aggregate's folded state as encoded by the model. It *supersedes* every delta of
//! that aggregate with `seq <= horizon` that precedes it in the log, and any earlier state
//! record of the aggregate. `max_seq` is the highest seq folded into it (`get_as_of` below it
//! cannot be answered any more); `folded` counts the deltas it absorbed (for stats).

use byteorder::{ByteOrder, LittleEndian};

use super::batch::validate_aggregate_id;
use super::format::RecordLocation;
use crate::decode::{DecodeError, Decoded};
use crate::varint;

/// A decoded state record body, borrowing from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateBody<'a> {
    /// The aggregate.
    pub aggregate: &'a str,
    /// Deltas with `seq <= horizon` before this record are superseded by it.
    pub horizon: u64,
    /// Highest seq folded into the state.
    pub max_seq: u64,
    /// Number of deltas folded (informational).
    pub folded: u64,
    /// The model's encoded state.
    pub state: &'a [u8],
}

/// Encodes a horizon: 0 for `u64::MAX`, `horizon + 1` otherwise (one byte in the usual case).
pub fn encode_horizon(horizon: u64) -> u64 {
    horizon.checked_add(1).unwrap_or(0)
}

/// Decodes [`encode_horizon`]'s form.
pub fn decode_horizon(code: u64) -> u64 {
    code.checked_sub(1).unwrap_or(u64::MAX)
}

/// Encodes a state record body.
pub fn encode_state_body(body: &StateBody<'_>, out: &mut Vec<u8>) {
    varint::write(body.aggregate.len() as u64, out);
    out.extend_from_slice(body.aggregate.as_bytes());
    varint::write(encode_horizon(body.horizon), out);
    varint::write(body.max_seq, out);
    varint::write(body.folded, out);
    out.extend_from_slice(body.state);
}

/// Decodes a state record body, validating the id.
pub fn decode_state_body(bytes: &[u8]) -> Decoded<StateBody<'_>> {
    let mut pos = 0;
    let id_len = varint::read(bytes, &mut pos)
        .map_err(|e| DecodeError::new(0, format!("state record id length: {e}")))?;
    let id_start = pos;
    let id_end = usize::try_from(id_len)
        .ok()
        .and_then(|len| id_start.checked_add(len))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| DecodeError::new(id_start, "state record id runs past its end"))?;
    let aggregate = std::str::from_utf8(&bytes[id_start..id_end])
        .map_err(|_| DecodeError::new(id_start, "state record id is not UTF-8"))?;
    validate_aggregate_id(aggregate).map_err(|reason| DecodeError::new(id_start, reason))?;
    pos = id_end;
    let mut next = |what: &str| {
        let at = pos;
        varint::read(bytes, &mut pos)
            .map_err(|e| DecodeError::new(at, format!("state record {what}: {e}")))
    };
    let horizon = decode_horizon(next("horizon")?);
    let max_seq = next("max seq")?;
    let folded = next("folded count")?;
    Ok(StateBody {
        aggregate,
        horizon,
        max_seq,
        folded,
        state: &bytes[pos..],
    })
}

/// Encodes a seal record body.
pub fn encode_seal_body(seal: u64) -> Vec<u8> {
    seal.to_le_bytes().to_vec()
}

/// Decodes a seal record body.
pub fn decode_seal_body(bytes: &[u8]) -> Decoded<u64> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| {
        DecodeError::new(
            0,
            format!("seal record of {} bytes, expected 8", bytes.len()),
        )
    })?;
    Ok(u64::from_le_bytes(bytes))
}

/// Bytes of a batch commit body before its fragment list.
const BATCH_COMMIT_FIXED_BYTES: usize = 12;
/// Bytes per fragment in a batch commit body.
const FRAGMENT_REF_BYTES: usize = 16;

/// Where one fragment of a spanning batch lies, and its frame CRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentRef {
    /// The fragment's frame.
    pub location: RecordLocation,
    /// Its frame CRC.
    pub crc: u32,
}

/// A decoded batch commit body: the fragments of one spanning batch (DESIGN.md, section 3.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchCommitBody {
    /// The deltas of all fragments together.
    pub deltas: u64,
    /// The fragments, in order.
    pub fragments: Vec<FragmentRef>,
}

/// Encodes a batch commit body.
pub fn encode_batch_commit_body(body: &BatchCommitBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch_commit_body_bytes(body.fragments.len()));
    out.extend_from_slice(&(body.fragments.len() as u32).to_le_bytes());
    out.extend_from_slice(&body.deltas.to_le_bytes());
    for fragment in &body.fragments {
        debug_assert!(
            fragment.location.offset <= u64::from(u32::MAX),
            "segment offsets fit 32 bits"
        );
        out.extend_from_slice(&fragment.location.segment.to_le_bytes());
        out.extend_from_slice(&(fragment.location.offset as u32).to_le_bytes());
        out.extend_from_slice(&fragment.crc.to_le_bytes());
    }
    out
}

/// Bytes of the body of a batch commit listing `fragments` fragments.
pub fn batch_commit_body_bytes(fragments: usize) -> usize {
    BATCH_COMMIT_FIXED_BYTES + FRAGMENT_REF_BYTES * fragments
}

/// Decodes the body of the batch commit at `at`: at least one fragment, locations strictly
/// increasing and before `at`.
pub fn decode_batch_commit_body(bytes: &[u8], at: RecordLocation) -> Decoded<BatchCommitBody> {
    if bytes.len() < BATCH_COMMIT_FIXED_BYTES {
        let reason = format!("batch commit of {} bytes", bytes.len());
        return Err(DecodeError::new(0, reason));
    }
    let count = LittleEndian::read_u32(&bytes[0..4]) as usize;
    let deltas = LittleEndian::read_u64(&bytes[4..12]);
    let list = &bytes[BATCH_COMMIT_FIXED_BYTES..];
    if count == 0 || list.len() != count.saturating_mul(FRAGMENT_REF_BYTES) {
        let reason = format!(
            "batch commit lists {count} fragments in {} bytes",
            list.len()
        );
        return Err(DecodeError::new(0, reason));
    }
    let mut fragments = Vec::with_capacity(count);
    let mut previous: Option<RecordLocation> = None;
    for (n, entry) in list.chunks_exact(FRAGMENT_REF_BYTES).enumerate() {
        let location = RecordLocation {
            segment: LittleEndian::read_u64(&entry[0..8]),
            offset: u64::from(LittleEndian::read_u32(&entry[8..12])),
        };
        let ordered =
            previous.is_none_or(|p| (p.segment, p.offset) < (location.segment, location.offset));
        if !ordered || (location.segment, location.offset) >= (at.segment, at.offset) {
            let reason = format!(
                "batch commit fragment {n} at segment {} offset {} is out of order",
                location.segment, location.offset
            );
            return Err(DecodeError::new(
                BATCH_COMMIT_FIXED_BYTES + n * FRAGMENT_REF_BYTES,
                reason,
            ));
        }
        previous = Some(location);
        let crc = LittleEndian::read_u32(&entry[12..16]);
        fragments.push(FragmentRef { location, crc });
    }
    Ok(BatchCommitBody { deltas, fragments })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_bodies_round_trip_and_reject_truncation() {
        for horizon in [u64::MAX, 0, 41] {
            let body = StateBody {
                aggregate: "aircraft-7",
                horizon,
                max_seq: 42,
                folded: 9,
                state: b"",
            };
            let mut bytes = Vec::new();
            encode_state_body(&body, &mut bytes);
            assert_eq!(decode_state_body(&bytes), Ok(body));
            for len in 0..bytes.len() {
                assert!(decode_state_body(&bytes[..len]).is_err(), "len {len}");
            }
        }
    }

    #[test]
    fn seal_bodies_round_trip() {
        assert_eq!(decode_seal_body(&encode_seal_body(77)), Ok(77));
        assert!(decode_seal_body(b"1234567").is_err());
    }

    #[test]
    fn batch_commit_bodies_round_trip_and_reject_bad_lists() {
        let at = RecordLocation {
            segment: 9,
            offset: 500,
        };
        let fragment = |segment, offset, crc| FragmentRef {
            location: RecordLocation { segment, offset },
            crc,
        };
        let body = BatchCommitBody {
            deltas: 12,
            fragments: vec![fragment(7, 32, 1), fragment(8, 40, 2), fragment(9, 100, 3)],
        };
        let bytes = encode_batch_commit_body(&body);
        assert_eq!(bytes.len(), batch_commit_body_bytes(3));
        assert_eq!(decode_batch_commit_body(&bytes, at), Ok(body.clone()));
        for len in 0..bytes.len() {
            assert!(
                decode_batch_commit_body(&bytes[..len], at).is_err(),
                "len {len}"
            );
        }
        let before_its_fragment = RecordLocation {
            segment: 9,
            offset: 100,
        };
        assert!(decode_batch_commit_body(&bytes, before_its_fragment).is_err());
        let mut unordered = body.clone();
        unordered.fragments.swap(0, 1);
        assert!(decode_batch_commit_body(&encode_batch_commit_body(&unordered), at).is_err());
        let empty = BatchCommitBody {
            deltas: 0,
            fragments: Vec::new(),
        };
        assert!(decode_batch_commit_body(&encode_batch_commit_body(&empty), at).is_err());
    }
}
