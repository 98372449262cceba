//! [`DecodeError`]: why bytes read from disk did not decode. Every codec (segment and frame
//! headers, record bodies, batch payloads, checkpoint files) returns it; the caller, which knows
//! the file and the record's place in it, turns it into [`Error::Corruption`](crate::Error) or a
//! damaged range. [`Reader`] is the bounds-checked cursor they read untrusted bytes with.

use std::fmt;

use byteorder::{ByteOrder, LittleEndian};

use crate::varint;

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

/// A bounds-checked cursor over untrusted bytes: every read checks the length first, and a
/// failure says where.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// Where the reader is.
    pub fn at(&self) -> usize {
        self.at
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// A failure at the reader's position.
    pub fn fail(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError::new(self.at, reason)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.fail(format!("truncated at byte {}", self.at)))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    /// The next byte.
    pub fn u8(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }

    /// The next little-endian u16.
    pub fn u16(&mut self) -> Decoded<u16> {
        self.take(2).map(LittleEndian::read_u16)
    }

    /// The next little-endian u32.
    pub fn u32(&mut self) -> Decoded<u32> {
        self.take(4).map(LittleEndian::read_u32)
    }

    /// The next little-endian u64.
    pub fn u64(&mut self) -> Decoded<u64> {
        self.take(8).map(LittleEndian::read_u64)
    }

    /// The next LEB128 varint.
    pub fn varint(&mut self) -> Decoded<u64> {
        let at = self.at;
        varint::read(self.bytes, &mut self.at)
            .map_err(|e| DecodeError::new(at, format!("bad varint: {e}")))
    }

    /// The next varint, which must fit 32 bits.
    pub fn varint_u32(&mut self) -> Decoded<u32> {
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| self.fail(format!("{value} does not fit in 32 bits")))
    }

    /// The next `len` bytes as text, checked by `validate` (`what` names it in errors); every
    /// error is at the text's first byte.
    pub fn text(
        &mut self,
        len: usize,
        what: &str,
        validate: impl Fn(&str) -> Result<(), String>,
    ) -> Decoded<&'a str> {
        let at = self.at;
        let text = crate::text::from_utf8(self.take(len)?)
            .ok_or_else(|| DecodeError::new(at, format!("{what} is not UTF-8")))?;
        validate(text).map_err(|reason| DecodeError::new(at, reason))?;
        Ok(text)
    }

    /// The next varint as the length of text that follows it, checked as [`Reader::text`] does.
    pub fn varint_text(
        &mut self,
        what: &str,
        validate: impl Fn(&str) -> Result<(), String>,
    ) -> Decoded<&'a str> {
        let len = self.varint()?;
        let len = usize::try_from(len)
            .map_err(|_| self.fail(format!("{what} length {len} overflows")))?;
        self.text(len, what, validate)
    }

    /// `count` entries of `what`, each at least `min_entry_bytes` long, checked against the
    /// bytes left, so a damaged count fails here instead of reserving memory the input cannot
    /// fill.
    pub fn count(&self, count: u64, min_entry_bytes: usize, what: &str) -> Decoded<usize> {
        debug_assert!(min_entry_bytes > 0, "every entry takes a byte");
        let remaining = self.remaining();
        match usize::try_from(count) {
            Ok(n) if n <= remaining / min_entry_bytes => Ok(n),
            _ => Err(self.fail(format!("claims {count} {what} in {remaining} bytes"))),
        }
    }

    /// Fails unless every byte was read.
    pub fn finished(&self) -> Decoded<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.fail(format!("{n} trailing bytes"))),
        }
    }
}
