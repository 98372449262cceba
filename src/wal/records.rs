//! Bodies of the non-batch records (see DESIGN.md):
//!
//! ```text
//! state record := id_len:u16 id:[u8; id_len] horizon:u64 max_seq:u64 folded:u32 state
//! seal record  := seal:u64
//! ```
//! A state record holds one aggregate's folded state as encoded by the model. It *supersedes*
//! every delta of that aggregate with `seq <= horizon` that precedes it in the log, and any
//! earlier state record of the aggregate. `max_seq` is the highest seq folded into it (`get_as_of`
//! below it cannot be answered any more); `folded` counts the deltas it absorbed (for stats).

use byteorder::{ByteOrder, LittleEndian};

use super::batch::validate_aggregate_id;

const STATE_FIXED_BYTES: usize = 2 + 8 + 8 + 4;

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
    pub folded: u32,
    /// The model's encoded state.
    pub state: &'a [u8],
}

/// Encodes a state record body.
pub fn encode_state_body(body: &StateBody<'_>, out: &mut Vec<u8>) {
    let mut fixed = [0u8; 8];
    LittleEndian::write_u16(&mut fixed[..2], body.aggregate.len() as u16);
    out.extend_from_slice(&fixed[..2]);
    out.extend_from_slice(body.aggregate.as_bytes());
    LittleEndian::write_u64(&mut fixed, body.horizon);
    out.extend_from_slice(&fixed);
    LittleEndian::write_u64(&mut fixed, body.max_seq);
    out.extend_from_slice(&fixed);
    LittleEndian::write_u32(&mut fixed[..4], body.folded);
    out.extend_from_slice(&fixed[..4]);
    out.extend_from_slice(body.state);
}

/// Decodes a state record body, validating the id.
pub fn decode_state_body(bytes: &[u8]) -> Result<StateBody<'_>, String> {
    if bytes.len() < STATE_FIXED_BYTES {
        return Err("state record shorter than its fixed fields".into());
    }
    let id_len = LittleEndian::read_u16(&bytes[..2]) as usize;
    if bytes.len() < STATE_FIXED_BYTES + id_len {
        return Err("state record id runs past its end".into());
    }
    let aggregate = std::str::from_utf8(&bytes[2..2 + id_len])
        .map_err(|_| "state record id is not UTF-8".to_string())?;
    validate_aggregate_id(aggregate)?;
    let rest = &bytes[2 + id_len..];
    Ok(StateBody {
        aggregate,
        horizon: LittleEndian::read_u64(&rest[..8]),
        max_seq: LittleEndian::read_u64(&rest[8..16]),
        folded: LittleEndian::read_u32(&rest[16..20]),
        state: &rest[20..],
    })
}

/// Encodes a seal record body.
pub fn encode_seal_body(seal: u64) -> Vec<u8> {
    seal.to_le_bytes().to_vec()
}

/// Decodes a seal record body.
pub fn decode_seal_body(bytes: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("seal record of {} bytes, expected 8", bytes.len()))?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_bodies_round_trip_and_reject_truncation() {
        let body = StateBody {
            aggregate: "aircraft-7",
            horizon: u64::MAX,
            max_seq: 42,
            folded: 9,
            state: b"\x01\x02\x03",
        };
        let mut bytes = Vec::new();
        encode_state_body(&body, &mut bytes);
        assert_eq!(decode_state_body(&bytes), Ok(body));
        for len in 0..2 + 10 + 20 {
            assert!(decode_state_body(&bytes[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn seal_bodies_round_trip() {
        assert_eq!(decode_seal_body(&encode_seal_body(77)), Ok(77));
        assert!(decode_seal_body(b"1234567").is_err());
    }
}
