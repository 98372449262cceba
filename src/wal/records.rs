//! Bodies of the non-batch records (see DESIGN.md, section 3.4):
//!
//! ```text
//! state record := id_len:varint id horizon_code:varint max_seq:varint folded:varint state
//! seal record  := seal:u64
//! ```
//! `horizon_code` is 0 for "every seq" (`u64::MAX`) and `horizon + 1` otherwise. A state record
//! holds one aggregate's folded state as encoded by the model. It *supersedes* every delta of
//! that aggregate with `seq <= horizon` that precedes it in the log, and any earlier state
//! record of the aggregate. `max_seq` is the highest seq folded into it (`get_as_of` below it
//! cannot be answered any more); `folded` counts the deltas it absorbed (for stats).

use super::batch::validate_aggregate_id;
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
}
