//! The compact binary form of JSON values, in which patch bodies are stored and folded.
//!
//! # Format
//!
//! Every value is one tag byte followed by its payload. All lengths and counts are unsigned
//! LEB128 varints (7 bits per byte, least significant group first, high bit set on every byte
//! but the last; at most 10 bytes; canonical: no trailing `0x00` group, and the 10th byte is 0
//! or 1).
//!
//! | tag  | value              | payload                                                          |
//! |------|--------------------|------------------------------------------------------------------|
//! | `00` | `null`             | none                                                             |
//! | `01` | `false`            | none                                                             |
//! | `02` | `true`             | none                                                             |
//! | `03` | integer `n >= 0`   | varint `n` (a `u64`)                                             |
//! | `04` | integer `n < 0`    | varint `-(n + 1)` (an `i64`'s magnitude minus one, `<= i64::MAX`) |
//! | `05` | float              | 8 bytes: the `f64`, little-endian; must be finite                 |
//! | `06` | string             | varint byte length, then that many bytes of UTF-8                 |
//! | `07` | array              | varint item count, then each item (a value)                       |
//! | `08` | object             | varint entry count, then per entry: varint key byte length, the key's UTF-8, the value |
//!
//! Object keys are written in strictly ascending byte order (serde_json's default `Map` order),
//! so duplicate keys cannot occur. The decoder accepts only this canonical form (sorted keys,
//! shortest varints), so re-encoding what it decodes gives back the same bytes. A patch body is
//! an encoded object (tag `08`) that spans the whole body.
//!
//! Example: `{"a":[1,-2],"b":"é"}` is
//! `08 02  01 61 07 02 03 01 04 01  01 62 06 02 c3 a9`.
//!
//! Numbers keep their serde_json kind: a `u64` comes back as a `u64`, a negative `i64` as an
//! `i64`, an `f64` (even `1.0`) as an `f64`.
//!
//! # Untrusted input
//!
//! Decoding never panics and never allocates more than the input can justify: every length and
//! count is checked against the bytes that remain before it is used (each item takes at least
//! one byte), nesting is bounded by [`MAX_DEPTH`], strings are validated as UTF-8, varints are
//! bounded to 10 bytes. Failures are [`ModelError`]s carrying the byte offset within the body.

use std::ops::Range;

use serde_json::{Map, Number, Value};

use crate::varint::VarintError;

use super::ModelError;

/// The deepest nesting of arrays and objects that decodes (the outermost container is level 1).
pub const MAX_DEPTH: usize = 128;

/// The value tags of the binary form (the table above); state records use the same ones.
pub(crate) const TAG_NULL: u8 = 0;
pub(crate) const TAG_FALSE: u8 = 1;
pub(crate) const TAG_TRUE: u8 = 2;
pub(crate) const TAG_UINT: u8 = 3;
pub(crate) const TAG_NEG_INT: u8 = 4;
pub(crate) const TAG_F64: u8 = 5;
pub(crate) const TAG_STRING: u8 = 6;
pub(crate) const TAG_ARRAY: u8 = 7;
pub(crate) const TAG_OBJECT: u8 = 8;

/// Appends the binary form of `value` to `out`.
///
/// Values nested deeper than [`MAX_DEPTH`] encode but do not decode; check the depth first
/// (as [`encode_patch`](super::merge_patch::encode_patch) does) for values of unknown origin.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Number(number) => encode_number(number, out),
        Value::String(text) => {
            out.push(TAG_STRING);
            encode_str(text, out);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            write_varint(items.len() as u64, out);
            items.iter().for_each(|item| encode_value(item, out));
        }
        Value::Object(map) => encode_object(map, out),
    }
}

/// Appends the binary form of the object `map` (the form of a patch body) to `out`.
///
/// Keys are written in ascending byte order whatever the map's iteration order.
pub(crate) fn encode_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    out.push(TAG_OBJECT);
    write_varint(map.len() as u64, out);
    let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
    if sorted {
        map.iter()
            .for_each(|(key, value)| encode_entry(key, value, out));
    } else {
        // Only reachable when serde_json's `preserve_order` feature is on.
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
            .into_iter()
            .for_each(|(key, value)| encode_entry(key, value, out));
    }
}

fn encode_entry(key: &str, value: &Value, out: &mut Vec<u8>) {
    encode_str(key, out);
    encode_value(value, out);
}

fn encode_number(number: &Number, out: &mut Vec<u8>) {
    if let Some(unsigned) = number.as_u64() {
        out.push(TAG_UINT);
        write_varint(unsigned, out);
    } else if let Some(signed) = number.as_i64() {
        // `as_u64` failed, so `signed < 0` and `!signed == -(signed + 1) >= 0`.
        out.push(TAG_NEG_INT);
        write_varint(!signed as u64, out);
    } else {
        // Neither integer kind: an `f64` (serde_json numbers are always finite).
        out.push(TAG_F64);
        out.extend_from_slice(&number.as_f64().unwrap_or(0.0).to_le_bytes());
    }
}

fn encode_str(text: &str, out: &mut Vec<u8>) {
    write_varint(text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

fn write_varint(n: u64, out: &mut Vec<u8>) {
    crate::varint::write(n, out);
}

/// Decodes one value that must span all of `bytes`.
pub fn decode_value(bytes: &[u8]) -> Result<Value, ModelError> {
    let mut pos = 0;
    let value = decode_at(bytes, &mut pos, 0)?;
    expect_end(bytes, pos)?;
    Ok(value)
}

/// Checks that `bytes` is exactly one well-formed encoded object (a valid patch body).
#[doc(hidden)]
pub fn validate_object(bytes: &[u8]) -> Result<(), ModelError> {
    if bytes.first() != Some(&TAG_OBJECT) {
        return Err(ModelError::new(0, "body is not an encoded object"));
    }
    let span = value_span(bytes, 0)?;
    expect_end(bytes, span.end)
}

/// The exact byte range of the (fully validated) encoded value that starts at `start`.
#[doc(hidden)]
pub fn value_span(bytes: &[u8], start: usize) -> Result<Range<usize>, ModelError> {
    let mut pos = start;
    skip_value(bytes, &mut pos, 0)?;
    Ok(start..pos)
}

pub(super) fn expect_end(bytes: &[u8], pos: usize) -> Result<(), ModelError> {
    if pos == bytes.len() {
        Ok(())
    } else {
        Err(ModelError::new(pos, "trailing bytes after value"))
    }
}

/// One level deeper, or an error at `at` if that exceeds [`MAX_DEPTH`].
pub(super) fn enter(depth: usize, at: usize) -> Result<usize, ModelError> {
    if depth >= MAX_DEPTH {
        return Err(ModelError::new(at, "nesting deeper than MAX_DEPTH"));
    }
    Ok(depth + 1)
}

pub(super) fn read_byte(bytes: &[u8], pos: &mut usize) -> Result<u8, ModelError> {
    let byte = *bytes
        .get(*pos)
        .ok_or_else(|| ModelError::new(*pos, "unexpected end of body"))?;
    *pos += 1;
    Ok(byte)
}

pub(super) fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<u64, ModelError> {
    crate::varint::read(bytes, pos).map_err(|e| match e {
        VarintError::Truncated { at } => ModelError::new(at, "unexpected end of body"),
        VarintError::Invalid { start, reason } => ModelError::new(start, reason),
    })
}

/// A length or count, which can never exceed the bytes that remain after it.
pub(super) fn read_len(bytes: &[u8], pos: &mut usize) -> Result<usize, ModelError> {
    let start = *pos;
    let len = read_varint(bytes, pos)?;
    let remaining = bytes.len().saturating_sub(*pos);
    match usize::try_from(len) {
        Ok(len) if len <= remaining => Ok(len),
        _ => Err(ModelError::new(start, "length exceeds remaining bytes")),
    }
}

pub(super) fn read_str<'a>(bytes: &'a [u8], pos: &mut usize) -> Result<&'a str, ModelError> {
    let len = read_len(bytes, pos)?;
    let start = *pos;
    let raw = bytes
        .get(start..start + len)
        .ok_or_else(|| ModelError::new(start, "unexpected end of body"))?;
    let text =
        crate::text::from_utf8(raw).ok_or_else(|| ModelError::new(start, "invalid UTF-8"))?;
    *pos = start + len;
    Ok(text)
}

/// Reads an object key, which must sort strictly after the previous key of the same object.
pub(super) fn read_key<'a>(
    bytes: &'a [u8],
    pos: &mut usize,
    previous: &mut Option<&'a str>,
) -> Result<&'a str, ModelError> {
    let start = *pos;
    let key = read_str(bytes, pos)?;
    if previous.is_some_and(|prev| prev >= key) {
        return Err(ModelError::new(start, "object keys not strictly ascending"));
    }
    *previous = Some(key);
    Ok(key)
}

pub(super) fn read_neg_int(bytes: &[u8], pos: &mut usize) -> Result<i64, ModelError> {
    let start = *pos;
    let magnitude = read_varint(bytes, pos)?;
    let magnitude = i64::try_from(magnitude)
        .map_err(|_| ModelError::new(start, "negative int out of range"))?;
    Ok(!magnitude)
}

pub(super) fn read_f64(bytes: &[u8], pos: &mut usize) -> Result<Number, ModelError> {
    let start = *pos;
    let raw: [u8; 8] = bytes
        .get(start..start + 8)
        .and_then(|raw| raw.try_into().ok())
        .ok_or_else(|| ModelError::new(start, "unexpected end of body"))?;
    let number = Number::from_f64(f64::from_le_bytes(raw))
        .ok_or_else(|| ModelError::new(start, "non-finite float"))?;
    *pos = start + 8;
    Ok(number)
}

pub(super) fn unknown_tag(tag: u8, at: usize) -> ModelError {
    ModelError::new(at, format!("unknown tag {tag}"))
}

fn decode_at(bytes: &[u8], pos: &mut usize, depth: usize) -> Result<Value, ModelError> {
    let at = *pos;
    let value = match read_byte(bytes, pos)? {
        TAG_NULL => Value::Null,
        TAG_FALSE => Value::Bool(false),
        TAG_TRUE => Value::Bool(true),
        TAG_UINT => Value::from(read_varint(bytes, pos)?),
        TAG_NEG_INT => Value::from(read_neg_int(bytes, pos)?),
        TAG_F64 => Value::Number(read_f64(bytes, pos)?),
        TAG_STRING => Value::String(read_str(bytes, pos)?.to_owned()),
        TAG_ARRAY => Value::Array(decode_array(bytes, pos, enter(depth, at)?)?),
        TAG_OBJECT => Value::Object(decode_object(bytes, pos, enter(depth, at)?)?),
        tag => return Err(unknown_tag(tag, at)),
    };
    Ok(value)
}

fn decode_array(bytes: &[u8], pos: &mut usize, depth: usize) -> Result<Vec<Value>, ModelError> {
    let count = read_len(bytes, pos)?;
    // `count <= remaining bytes`, so the capacity is bounded by the input's size.
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(decode_at(bytes, pos, depth)?);
    }
    Ok(items)
}

fn decode_object(
    bytes: &[u8],
    pos: &mut usize,
    depth: usize,
) -> Result<Map<String, Value>, ModelError> {
    let count = read_len(bytes, pos)?;
    let mut map = Map::new();
    let mut previous = None;
    for _ in 0..count {
        let key = read_key(bytes, pos, &mut previous)?;
        map.insert(key.to_owned(), decode_at(bytes, pos, depth)?);
    }
    Ok(map)
}

/// Validates the value at `*pos` and moves past it, without allocating.
fn skip_value(bytes: &[u8], pos: &mut usize, depth: usize) -> Result<(), ModelError> {
    let at = *pos;
    match read_byte(bytes, pos)? {
        TAG_NULL | TAG_FALSE | TAG_TRUE => Ok(()),
        TAG_UINT => read_varint(bytes, pos).map(drop),
        TAG_NEG_INT => read_neg_int(bytes, pos).map(drop),
        TAG_F64 => read_f64(bytes, pos).map(drop),
        TAG_STRING => read_str(bytes, pos).map(drop),
        TAG_ARRAY => {
            let depth = enter(depth, at)?;
            let count = read_len(bytes, pos)?;
            (0..count).try_for_each(|_| skip_value(bytes, pos, depth))
        }
        TAG_OBJECT => {
            let depth = enter(depth, at)?;
            let count = read_len(bytes, pos)?;
            skip_entries(bytes, pos, count, depth, &mut None)
        }
        tag => Err(unknown_tag(tag, at)),
    }
}

/// Validates and skips `count` object entries whose values sit at nesting `depth`.
fn skip_entries<'a>(
    bytes: &'a [u8],
    pos: &mut usize,
    count: usize,
    depth: usize,
    previous: &mut Option<&'a str>,
) -> Result<(), ModelError> {
    for _ in 0..count {
        read_key(bytes, pos, previous)?;
        skip_value(bytes, pos, depth)?;
    }
    Ok(())
}

/// Moves past one value of an already validated body using only its tags and lengths: no
/// UTF-8, float or key-order checks. Every access stays bounds-checked (misuse gives an error,
/// never a panic), and validation bounded the nesting.
fn skip_trusted(bytes: &[u8], pos: &mut usize) -> Result<(), ModelError> {
    let at = *pos;
    match read_byte(bytes, pos)? {
        TAG_NULL | TAG_FALSE | TAG_TRUE => Ok(()),
        TAG_UINT | TAG_NEG_INT => read_varint(bytes, pos).map(drop),
        TAG_F64 => advance(bytes, pos, 8),
        TAG_STRING => skip_raw_str(bytes, pos),
        TAG_ARRAY => {
            let count = read_len(bytes, pos)?;
            (0..count).try_for_each(|_| skip_trusted(bytes, pos))
        }
        TAG_OBJECT => {
            let count = read_len(bytes, pos)?;
            (0..count).try_for_each(|_| {
                skip_raw_str(bytes, pos)?;
                skip_trusted(bytes, pos)
            })
        }
        tag => Err(unknown_tag(tag, at)),
    }
}

fn skip_raw_str(bytes: &[u8], pos: &mut usize) -> Result<(), ModelError> {
    let len = read_len(bytes, pos)?;
    advance(bytes, pos, len)
}

fn advance(bytes: &[u8], pos: &mut usize, len: usize) -> Result<(), ModelError> {
    if len > bytes.len().saturating_sub(*pos) {
        return Err(ModelError::new(*pos, "unexpected end of body"));
    }
    *pos += len;
    Ok(())
}

/// One entry's value as an [`ObjectReader`] sees it, borrowed from the encoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ValueRef<'a> {
    /// `null`: in a patch, the removal of the key.
    Null,
    /// A nested object, walked by its own reader (see [`ObjectReader::resume_after`]).
    Object(ObjectReader<'a>),
    /// Any other value (scalar or array): its complete, validated encoded bytes, tag included.
    Leaf(&'a [u8]),
}

/// A zero-allocation cursor over the entries of one encoded object.
///
/// Yields entries in key order. Every key and leaf it yields has been validated; an error stops
/// the walk at the offending offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObjectReader<'a> {
    /// The whole body, so that offsets in errors are body offsets.
    bytes: &'a [u8],
    /// Offset of the first entry (just after the count).
    start: usize,
    /// Offset of the next unread entry (or of a pending child's first entry).
    pos: usize,
    /// Entries not yet yielded.
    left: usize,
    /// Nesting level of this object (the outermost is 1).
    depth: usize,
    /// The last key yielded, to enforce strictly ascending keys.
    previous: Option<&'a str>,
    /// Entry count of a yielded nested object whose entries `pos` has not moved past yet.
    pending: Option<usize>,
    /// The whole body was validated up front: skip values without re-checking them.
    trusted: bool,
}

impl<'a> ObjectReader<'a> {
    #[cfg(test)]
    /// A reader over the object at offset 0 of `bytes` (a patch body). It does not check what
    /// follows the object: use [`validate_object`] or [`ObjectReader::end`] for that.
    pub fn new(bytes: &'a [u8]) -> Result<Self, ModelError> {
        if bytes.first() != Some(&TAG_OBJECT) {
            return Err(ModelError::new(0, "body is not an encoded object"));
        }
        Self::open(bytes, 1, 1, false)
    }

    /// A reader over a patch body that is first validated whole ([`validate_object`]), so that
    /// an error is reported before any entry is yielded, and the walk then skips values without
    /// checking them a second time.
    pub fn validated(bytes: &'a [u8]) -> Result<Self, ModelError> {
        validate_object(bytes)?;
        Self::open(bytes, 1, 1, true)
    }

    /// A reader whose entry count sits at `pos` (just after the object's tag).
    fn open(bytes: &'a [u8], pos: usize, depth: usize, trusted: bool) -> Result<Self, ModelError> {
        let mut pos = pos;
        let left = read_len(bytes, &mut pos)?;
        Ok(ObjectReader {
            bytes,
            start: pos,
            pos,
            left,
            depth,
            previous: None,
            pending: None,
            trusted,
        })
    }

    /// The next entry, `None` after the last one.
    pub fn next_entry(&mut self) -> Result<Option<(&'a str, ValueRef<'a>)>, ModelError> {
        self.skip_pending()?;
        if self.left == 0 {
            return Ok(None);
        }
        let key = if self.trusted {
            read_str(self.bytes, &mut self.pos)?
        } else {
            read_key(self.bytes, &mut self.pos, &mut self.previous)?
        };
        self.left -= 1;
        let value = self.read_entry_value()?;
        Ok(Some((key, value)))
    }

    fn read_entry_value(&mut self) -> Result<ValueRef<'a>, ModelError> {
        let at = self.pos;
        match self.bytes.get(at) {
            Some(&TAG_NULL) => {
                self.pos += 1;
                Ok(ValueRef::Null)
            }
            Some(&TAG_OBJECT) => {
                let depth = enter(self.depth, at)?;
                let child = Self::open(self.bytes, at + 1, depth, self.trusted)?;
                self.pos = child.start;
                self.pending = Some(child.left);
                Ok(ValueRef::Object(child))
            }
            _ if self.trusted => {
                skip_trusted(self.bytes, &mut self.pos)?;
                self.leaf_since(at)
            }
            _ => {
                skip_value(self.bytes, &mut self.pos, self.depth)?;
                self.leaf_since(at)
            }
        }
    }

    /// The leaf whose bytes run from `at` to the current position.
    fn leaf_since(&self, at: usize) -> Result<ValueRef<'a>, ModelError> {
        let leaf = self.bytes.get(at..self.pos);
        leaf.map(ValueRef::Leaf)
            .ok_or_else(|| ModelError::new(at, "unexpected end of body"))
    }

    /// Moves past the entries of a yielded nested object that nobody walked to its end.
    fn skip_pending(&mut self) -> Result<(), ModelError> {
        if let Some(count) = self.pending.take() {
            let depth = enter(self.depth, self.pos)?;
            skip_entries(self.bytes, &mut self.pos, count, depth, &mut None)?;
        }
        Ok(())
    }

    /// Continues after `child`, a nested object this reader just yielded and that has been
    /// walked to its end, without scanning its bytes again. Any other `child` is ignored (the
    /// next call to [`next_entry`](Self::next_entry) then skips the nested object by scanning).
    pub fn resume_after(&mut self, child: &ObjectReader<'a>) {
        let walked = child.left == 0 && child.pending.is_none();
        let same_body = std::ptr::eq(self.bytes, child.bytes);
        if walked && same_body && self.pending.is_some() && self.pos == child.start {
            debug_assert!(child.pos >= self.pos);
            self.pos = child.pos;
            self.pending = None;
        }
    }

    #[cfg(test)]
    /// Skips the remaining entries and returns the offset just past the object.
    pub fn end(mut self) -> Result<usize, ModelError> {
        self.skip_pending()?;
        let (bytes, depth) = (self.bytes, self.depth);
        skip_entries(bytes, &mut self.pos, self.left, depth, &mut self.previous)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoded(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(value, &mut out);
        out
    }

    fn round_trip(value: Value) {
        let bytes = encoded(&value);
        assert_eq!(decode_value(&bytes), Ok(value.clone()), "{value}");
        assert_eq!(value_span(&bytes, 0), Ok(0..bytes.len()));
    }

    #[test]
    fn scalars_round_trip_with_their_number_kind() {
        for value in [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(127),
            json!(128),
            json!(u64::MAX),
            json!(i64::MAX),
            json!(-1),
            json!(i64::MIN),
            json!(0.5),
            json!(-0.0),
            json!(1.0),
            json!(1e300),
            json!(f64::MIN_POSITIVE),
            json!(""),
            json!("héllo wörld ✓ 𝄞"),
        ] {
            round_trip(value);
        }
        let float_one = decode_value(&encoded(&json!(1.0))).unwrap();
        assert!(float_one.is_f64());
        assert!(decode_value(&encoded(&json!(-5))).unwrap().is_i64());
        assert!(decode_value(&encoded(&json!(5))).unwrap().is_u64());
    }

    #[test]
    fn containers_round_trip() {
        round_trip(json!([]));
        round_trip(json!({}));
        round_trip(json!([null, 1, [2, {"x": null}], {"é": "ü"}]));
        round_trip(json!({"b": {"c": [1, 2.5, "s"]}, "a": null, "日本": -3}));
    }

    #[test]
    fn documented_example_bytes() {
        let bytes = encoded(&json!({"a": [1, -2], "b": "é"}));
        let expected = [
            0x08, 0x02, 0x01, 0x61, 0x07, 0x02, 0x03, 0x01, 0x04, 0x01, 0x01, 0x62, 0x06, 0x02,
            0xc3, 0xa9,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn varint_boundaries() {
        for n in [0, 1, 127, 128, 16383, 16384, u64::MAX / 2, u64::MAX] {
            let mut out = Vec::new();
            write_varint(n, &mut out);
            assert!(out.len() <= crate::varint::MAX_BYTES);
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos), Ok(n));
            assert_eq!(pos, out.len());
        }
        let overlong = [TAG_UINT, 0x80, 0x00];
        assert!(decode_value(&overlong).is_err());
        let overflow = [
            TAG_UINT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert!(decode_value(&overflow).is_err());
        let too_long = [
            TAG_UINT, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0,
        ];
        assert!(decode_value(&too_long).is_err());
    }

    fn nested_arrays(levels: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..levels - 1 {
            bytes.extend_from_slice(&[TAG_ARRAY, 1]);
        }
        bytes.extend_from_slice(&[TAG_ARRAY, 0]);
        bytes
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(decode_value(&nested_arrays(MAX_DEPTH)).is_ok());
        assert!(value_span(&nested_arrays(MAX_DEPTH), 0).is_ok());
        let too_deep = nested_arrays(MAX_DEPTH + 1);
        let error = decode_value(&too_deep).unwrap_err();
        assert_eq!(error.offset, 2 * MAX_DEPTH);
        assert!(value_span(&too_deep, 0).is_err());
        let mut deep_object = vec![TAG_OBJECT, 1, 1, b'a'];
        deep_object.extend_from_slice(&nested_arrays(MAX_DEPTH));
        assert!(decode_value(&deep_object).is_err());
        assert!(validate_object(&deep_object).is_err());
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let cases: &[(&[u8], usize)] = &[
            (&[], 0),
            (&[9], 0),
            (&[TAG_STRING, 5, b'a'], 1),
            (&[TAG_STRING, 2, 0xc3, 0x28], 2),
            (&[TAG_ARRAY, 0xff, 0xff, 0x03], 1),
            (&[TAG_ARRAY, 3, 0, 0], 1),
            (&[TAG_F64, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f], 1),
            (&[TAG_F64, 0, 0], 1),
            (
                &[
                    TAG_NEG_INT,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0x01,
                ],
                1,
            ),
            (&[TAG_NULL, TAG_NULL], 1),
            (&[TAG_OBJECT, 2, 1, b'b', 0, 1, b'a', 0], 5),
            (&[TAG_OBJECT, 2, 1, b'a', 0, 1, b'a', 0], 5),
        ];
        for (bytes, offset) in cases {
            let error = decode_value(bytes).unwrap_err();
            assert_eq!(error.offset, *offset, "{bytes:?}: {error}");
            let spanned = value_span(bytes, 0).map(|span| span.end);
            assert_ne!(spanned, Ok(bytes.len()), "{bytes:?}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let value = json!({"a": [1, -2, 0.5, "xyz", {"b": null}], "c": {"d": true}});
        let bytes = encoded(&value);
        for len in 0..bytes.len() {
            assert!(decode_value(&bytes[..len]).is_err(), "prefix {len}");
            assert!(validate_object(&bytes[..len]).is_err(), "prefix {len}");
        }
        assert!(validate_object(&bytes).is_ok());
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = crate::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| (next() % 12) as u8).collect();
            let decoded = decode_value(&bytes);
            let spanned = value_span(&bytes, 0);
            assert_eq!(decoded.is_ok(), spanned.map(|s| s.end) == Ok(bytes.len()));
            if let Ok(value) = decoded {
                assert_eq!(encoded(&value), bytes, "decoding is canonical");
            }
            if let Ok(mut reader) = ObjectReader::new(&bytes) {
                while let Ok(Some(_)) = reader.next_entry() {}
            }
        }
    }

    fn collect(reader: &mut ObjectReader<'_>) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        while let Some((key, value)) = reader.next_entry().unwrap() {
            let shown = match value {
                ValueRef::Null => "null".to_owned(),
                ValueRef::Leaf(bytes) => decode_value(bytes).unwrap().to_string(),
                ValueRef::Object(mut child) => {
                    let inner = collect(&mut child);
                    reader.resume_after(&child);
                    format!("{inner:?}")
                }
            };
            seen.push((key.to_owned(), shown));
        }
        seen
    }

    #[test]
    fn reader_walks_entries_and_spans_leaves() {
        let value = json!({"a": null, "b": {"c": [1, {"z": 2}], "d": {}}, "e": "s", "f": -1});
        let bytes = encoded(&value);
        let mut reader = ObjectReader::new(&bytes).unwrap();
        let seen = collect(&mut reader);
        let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "e", "f"]);
        assert_eq!(seen[0].1, "null");
        assert_eq!(seen[1].1, r#"[("c", "[1,{\"z\":2}]"), ("d", "[]")]"#);
        assert_eq!(seen[2].1, "\"s\"");
        assert_eq!(reader.end(), Ok(bytes.len()));
    }

    #[test]
    fn validated_reader_checks_first_then_walks_the_same() {
        let value = json!({"a": [1, "x", {"q": 0.5}], "b": {"c": null, "d": {"e": "é"}}});
        let bytes = encoded(&value);
        let full = collect(&mut ObjectReader::new(&bytes).unwrap());
        let trusted = collect(&mut ObjectReader::validated(&bytes).unwrap());
        assert_eq!(full, trusted);
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() = 0xff; // breaks the UTF-8 of the last string
        assert!(ObjectReader::new(&bad).is_ok());
        assert_eq!(
            ObjectReader::validated(&bad).unwrap_err().offset,
            bytes.len() - 2
        );
        let mut trailing = bytes;
        trailing.push(0);
        assert!(ObjectReader::validated(&trailing).is_err());
    }

    #[test]
    fn reader_skips_unwalked_children() {
        let value = json!({"a": {"x": {"y": 1}, "z": 2}, "b": 3});
        let bytes = encoded(&value);
        let mut reader = ObjectReader::new(&bytes).unwrap();
        let Some(("a", ValueRef::Object(mut child))) = reader.next_entry().unwrap() else {
            panic!("expected object a");
        };
        assert!(child.next_entry().unwrap().is_some());
        reader.resume_after(&child); // not walked to its end: ignored
        let Some(("b", ValueRef::Leaf(leaf))) = reader.next_entry().unwrap() else {
            panic!("expected leaf b");
        };
        assert_eq!(leaf, encoded(&json!(3)).as_slice());
        assert_eq!(reader.clone().end(), Ok(bytes.len()));
        assert_eq!(reader.next_entry(), Ok(None));
    }

    #[test]
    fn reader_rejects_non_objects_and_bad_entries() {
        assert!(ObjectReader::new(&encoded(&json!([1]))).is_err());
        assert!(ObjectReader::new(&[]).is_err());
        let unsorted = [TAG_OBJECT, 2, 1, b'b', 0, 1, b'a', 0];
        let mut reader = ObjectReader::new(&unsorted).unwrap();
        assert!(reader.next_entry().unwrap().is_some());
        assert_eq!(reader.next_entry().unwrap_err().offset, 5);
        assert!(validate_object(&unsorted).is_err());
    }
}
