//! Unsigned LEB128 varints, shared by every binary format of the crate: 7 bits per byte, least
//! significant group first, high bit set on every byte but the last. Only the canonical
//! (shortest) form decodes, at most 10 bytes, and the 10th byte may only be `0x01`.

/// The longest varint: 10 groups of 7 bits cover a `u64`.
pub const MAX_BYTES: usize = 10;

/// Why a varint did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended at byte offset `at` before the varint did.
    Truncated {
        /// Offset of the missing byte.
        at: usize,
    },
    /// The varint starting at `start` is not canonical or overflows a `u64`.
    Invalid {
        /// Offset of the varint's first byte.
        start: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

impl std::fmt::Display for VarintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VarintError::Truncated { at } => write!(f, "input ends inside a varint at byte {at}"),
            VarintError::Invalid { start, reason } => write!(f, "{reason} at byte {start}"),
        }
    }
}

/// Appends `n` as a varint.
pub fn write(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads the varint at `*pos`, advancing `pos` past it.
pub fn read(bytes: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    let start = *pos;
    let mut value = 0u64;
    for index in 0..MAX_BYTES {
        let byte = *bytes.get(*pos).ok_or(VarintError::Truncated { at: *pos })?;
        *pos += 1;
        if index == MAX_BYTES - 1 && byte > 1 {
            let reason = "varint overflows u64";
            return Err(VarintError::Invalid { start, reason });
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            if byte == 0 && index > 0 {
                let reason = "overlong varint";
                return Err(VarintError::Invalid { start, reason });
            }
            return Ok(value);
        }
    }
    let reason = "varint longer than 10 bytes";
    Err(VarintError::Invalid { start, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_boundary_and_rejects_non_canonical_forms() {
        for n in [0, 1, 127, 128, 16383, 16384, u64::MAX / 2, u64::MAX] {
            let mut out = Vec::new();
            write(n, &mut out);
            assert!(out.len() <= MAX_BYTES);
            let mut pos = 0;
            assert_eq!(read(&out, &mut pos), Ok(n));
            assert_eq!(pos, out.len());
            for cut in 0..out.len() {
                assert!(matches!(
                    read(&out[..cut], &mut 0),
                    Err(VarintError::Truncated { .. })
                ));
            }
        }
        assert!(read(&[0x80, 0x00], &mut 0).is_err());
        assert!(read(
            &[0xff; 9].iter().copied().chain([0x02]).collect::<Vec<_>>(),
            &mut 0
        )
        .is_err());
        assert!(read(&[0xff; 11], &mut 0).is_err());
    }
}
