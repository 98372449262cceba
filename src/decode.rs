//! [`DecodeError`]: why bytes read from disk did not decode. Every codec (segment and frame
//! headers, record bodies, batch payloads, checkpoint files) returns it; the caller, which knows
//! the file and the record's place in it, turns it into [`Error::Corruption`](crate::Error) or a
//! damaged range.

use std::fmt;

/// A decode failure: the byte offset within the decoded buffer where it was found, and what was
/// wrong. Displays as the reason alone (the caller names the file and the record's offset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset within the buffer handed to the decoder.
    pub offset: usize,
    /// What was wrong, one phrase.
    pub reason: String,
}

impl DecodeError {
    /// A failure at `offset` of the decoded buffer.
    #[cold]
    pub fn new(offset: usize, reason: impl Into<String>) -> Self {
        DecodeError {
            offset,
            reason: reason.into(),
        }
    }

    /// The same failure seen from a buffer in which the decoded one starts at `base`.
    pub fn shifted(self, base: usize) -> Self {
        DecodeError {
            offset: base + self.offset,
            reason: self.reason,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// A decode result.
pub type Decoded<T> = Result<T, DecodeError>;
