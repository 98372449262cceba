//! The records an operator writes to state database-wide facts (DESIGN.md, section 3.4):
//! retraction records, which set a batch name's register (section 5f), and references
//! records, which declare reference fields (section 6c). Their types and codecs.
//!
//! ```text
//! retraction record := version:u64 state:u8 name_len:u16 name
//!     state bit 0: retracted; bit 1: frozen (deltas were folded while retracted)
//! references record := count:u16 (len:u16 pointer) * count
//! ```

use crate::decode::{DecodeError, Decoded, Reader};
use crate::wal::trailer::validate_batch_name;

/// A batch name's register: the highest `(version, retracted)` of its retraction records, and
/// whether any of them says *frozen*.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Register {
    /// Raised by every retract and unretract.
    pub version: u64,
    /// Whether the name's batches are taken back.
    pub retracted: bool,
    /// Compaction folded deltas of the name while it was retracted (left them out of a state
    /// record): it can never be unretracted.
    pub frozen: bool,
}

impl Register {
    /// The join of two registers: the higher `(version, retracted)`, frozen if either is. A
    /// join is commutative, associative and idempotent, so a register depends only on which
    /// records exist.
    pub fn join(self, other: Register) -> Register {
        let key = |r: &Register| (r.version, r.retracted);
        let higher = if key(&other) > key(&self) {
            other
        } else {
            self
        };
        Register {
            frozen: self.frozen || other.frozen,
            ..higher
        }
    }

    /// The state byte of records and checkpoints.
    pub fn state_byte(self) -> u8 {
        u8::from(self.retracted) | u8::from(self.frozen) << 1
    }

    /// A register from its version and state byte (`None` for unknown bits).
    pub fn from_state_byte(version: u64, state: u8) -> Option<Register> {
        (state & !0b11 == 0).then_some(Register {
            version,
            retracted: state & 1 != 0,
            frozen: state & 2 != 0,
        })
    }
}

/// What a retraction record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetractionRecord {
    /// The batch name.
    pub name: String,
    /// The register it sets (the register keeps the maximum).
    pub register: Register,
}

/// Bytes of a retraction record body around its name.
const RECORD_FIXED_BYTES: usize = 8 + 1 + 2;

/// Encodes a retraction record body.
pub(crate) fn encode_retraction_record(record: &RetractionRecord) -> Vec<u8> {
    debug_assert!(validate_batch_name(&record.name).is_ok());
    let mut out = Vec::with_capacity(RECORD_FIXED_BYTES + record.name.len());
    out.extend_from_slice(&record.register.version.to_le_bytes());
    out.push(record.register.state_byte());
    out.extend_from_slice(&(record.name.len() as u16).to_le_bytes());
    out.extend_from_slice(record.name.as_bytes());
    out
}

/// Decodes a retraction record body: known state bits, the name valid and filling the body.
pub(crate) fn decode_retraction_record(bytes: &[u8]) -> Decoded<RetractionRecord> {
    let mut r = Reader::new(bytes);
    let version = r.u64()?;
    let state = r.u8()?;
    let register = Register::from_state_byte(version, state)
        .ok_or_else(|| DecodeError::new(8, format!("retraction state {state:#04x}")))?;
    let len = r.u16()? as usize;
    let name = r.text(len, "batch name", validate_batch_name)?;
    r.finished()?;
    Ok(RetractionRecord {
        name: name.to_owned(),
        register,
    })
}

/// Most pointers one references record declares.
pub(crate) const MAX_POINTERS_PER_RECORD: usize = 256;

/// Longest declared pointer in bytes.
pub(crate) const MAX_POINTER_BYTES: usize = 1024;

/// Checks a declared reference pointer: empty (the whole state) is not a reference field; else
/// 1 to 1024 bytes starting with `/`.
pub(crate) fn validate_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.starts_with('/') || pointer.len() > MAX_POINTER_BYTES {
        return Err(format!(
            "a reference pointer starts with '/' and takes at most {MAX_POINTER_BYTES} bytes: {pointer:?}"
        ));
    }
    Ok(())
}

/// Encodes a references record body.
pub(crate) fn encode_references_record(pointers: &[String]) -> Vec<u8> {
    debug_assert!((1..=MAX_POINTERS_PER_RECORD).contains(&pointers.len()));
    let mut out = Vec::new();
    out.extend_from_slice(&(pointers.len() as u16).to_le_bytes());
    for pointer in pointers {
        debug_assert!(validate_pointer(pointer).is_ok());
        out.extend_from_slice(&(pointer.len() as u16).to_le_bytes());
        out.extend_from_slice(pointer.as_bytes());
    }
    out
}

/// Decodes a references record body: 1 to 256 valid pointers filling it exactly.
pub(crate) fn decode_references_record(bytes: &[u8]) -> Decoded<Vec<String>> {
    let mut r = Reader::new(bytes);
    let count = r.u16()? as usize;
    if !(1..=MAX_POINTERS_PER_RECORD).contains(&count) {
        return Err(DecodeError::new(
            0,
            format!("references record of {count} pointers"),
        ));
    }
    let mut pointers = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u16()? as usize;
        let pointer = r.text(len, "pointer", validate_pointer)?;
        pointers.push(pointer.to_owned());
    }
    r.finished()?;
    Ok(pointers)
}

/// A retraction record of `name` at `version`, not frozen (for tests).
#[cfg(test)]
pub(crate) fn record(name: &str, version: u64, retracted: bool) -> RetractionRecord {
    let register = Register {
        version,
        retracted,
        frozen: false,
    };
    RetractionRecord {
        name: name.into(),
        register,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let r = record("topic/0/17", 9, true);
        let bytes = encode_retraction_record(&r);
        assert_eq!(decode_retraction_record(&bytes).unwrap(), r);
        assert!(decode_retraction_record(&bytes[..bytes.len() - 1]).is_err());
        let mut flag = bytes.clone();
        flag[8] = 4;
        assert!(decode_retraction_record(&flag).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_retraction_record(&longer).is_err());
        let empty = encode_retraction_record(&record("x", 1, false));
        let mut nameless = empty[..RECORD_FIXED_BYTES].to_vec();
        nameless[9..11].copy_from_slice(&0u16.to_le_bytes());
        assert!(decode_retraction_record(&nameless).is_err());
    }

    #[test]
    fn references_records_round_trip_and_damage_is_refused() {
        let pointers = vec!["/parent".to_owned(), "/components/*/ref".to_owned()];
        let bytes = encode_references_record(&pointers);
        assert_eq!(decode_references_record(&bytes).unwrap(), pointers);
        assert!(decode_references_record(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_references_record(&[0, 0]).is_err());
        let mut relative = bytes.clone();
        relative[4] = b'p';
        assert!(decode_references_record(&relative).is_err());
    }
}
