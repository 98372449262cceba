//! The binary form of a value (`binary`) written straight to JSON text, validated as it goes and
//! without building a `serde_json::Value`: what `aggrelog replay` writes for every delta.
//! The text is the one `serde_json` writes for the decoded `Value` (the same escaping and
//! number formatting, keys in the same ascending order), so both paths agree byte for byte.

use serde_json::Number;

use super::binary::{
    enter, expect_end, read_byte, read_f64, read_key, read_len, read_neg_int, read_str,
    read_varint, unknown_tag, TAG_ARRAY, TAG_F64, TAG_FALSE, TAG_NEG_INT, TAG_NULL, TAG_OBJECT,
    TAG_STRING, TAG_TRUE, TAG_UINT,
};
use super::ModelError;

/// Appends the JSON text of the one encoded value that spans all of `bytes` to `out`; on an
/// error, `out` holds part of it.
pub fn write_json(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ModelError> {
    let mut pos = 0;
    write_at(bytes, &mut pos, 0, out)?;
    expect_end(bytes, pos)
}

fn write_at(
    bytes: &[u8],
    pos: &mut usize,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), ModelError> {
    let at = *pos;
    match read_byte(bytes, pos)? {
        TAG_NULL => out.extend_from_slice(b"null"),
        TAG_FALSE => out.extend_from_slice(b"false"),
        TAG_TRUE => out.extend_from_slice(b"true"),
        TAG_UINT => write_number(&Number::from(read_varint(bytes, pos)?), out, at)?,
        TAG_NEG_INT => write_number(&Number::from(read_neg_int(bytes, pos)?), out, at)?,
        TAG_F64 => write_number(&read_f64(bytes, pos)?, out, at)?,
        TAG_STRING => write_str(read_str(bytes, pos)?, out, at)?,
        TAG_ARRAY => {
            let depth = enter(depth, at)?;
            out.push(b'[');
            for n in 0..read_len(bytes, pos)? {
                if n > 0 {
                    out.push(b',');
                }
                write_at(bytes, pos, depth, out)?;
            }
            out.push(b']');
        }
        TAG_OBJECT => {
            let depth = enter(depth, at)?;
            out.push(b'{');
            let mut previous = None;
            for n in 0..read_len(bytes, pos)? {
                if n > 0 {
                    out.push(b',');
                }
                let key_at = *pos;
                write_str(read_key(bytes, pos, &mut previous)?, out, key_at)?;
                out.push(b':');
                write_at(bytes, pos, depth, out)?;
            }
            out.push(b'}');
        }
        tag => return Err(unknown_tag(tag, at)),
    }
    Ok(())
}

/// A number as `serde_json` writes it.
fn write_number(number: &Number, out: &mut Vec<u8>, at: usize) -> Result<(), ModelError> {
    serde_json::to_writer(out, number).map_err(|e| cannot_write(at, &e))
}

/// A string, quoted and escaped as `serde_json` writes it.
fn write_str(text: &str, out: &mut Vec<u8>, at: usize) -> Result<(), ModelError> {
    serde_json::to_writer(out, text).map_err(|e| cannot_write(at, &e))
}

fn cannot_write(at: usize, error: &serde_json::Error) -> ModelError {
    ModelError::new(at, format!("cannot write JSON: {error}"))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::binary::{decode_value, encode_value};
    use super::*;
    use crate::rng::Rng;

    fn random_value(rng: &mut Rng, depth: u32) -> Value {
        match rng.below(if depth > 3 { 7 } else { 9 }) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 0),
            2 => json!(rng.next_u64()),
            3 => json!(-(rng.below(1 << 62) as i64) - 1),
            4 => json!(
                f64::from_bits(rng.next_u64() >> 2) * if rng.below(2) == 0 { 1.0 } else { -1.0 }
            ),
            5 => json!(["a\\\"b\n\u{1}", "é", "\u{10ffff}", "x", ""][rng.below(5) as usize]),
            6 => json!(1.0),
            7 => Value::Array(
                (0..rng.below(4))
                    .map(|_| random_value(rng, depth + 1))
                    .collect(),
            ),
            _ => {
                let mut map = serde_json::Map::new();
                for _ in 0..rng.below(5) {
                    let key = ["k", "é", "\"q\"", "", "a\tb"][rng.below(5) as usize];
                    map.insert(key.to_owned(), random_value(rng, depth + 1));
                }
                Value::Object(map)
            }
        }
    }

    #[test]
    fn the_text_is_what_serde_json_writes_for_the_decoded_value() {
        let mut rng = Rng::new(11);
        for _ in 0..20_000 {
            let value = random_value(&mut rng, 0);
            if value.as_f64().is_some_and(|f| !f.is_finite()) {
                continue;
            }
            let mut encoded = Vec::new();
            encode_value(&value, &mut encoded);
            let mut text = Vec::new();
            write_json(&encoded, &mut text).unwrap();
            let expected = serde_json::to_string(&decode_value(&encoded).unwrap()).unwrap();
            assert_eq!(String::from_utf8(text).unwrap(), expected);
        }
    }

    #[test]
    fn damaged_bodies_fail_like_the_decoder() {
        let mut encoded = Vec::new();
        encode_value(&json!({"a": [1, "x"], "b": 2.5}), &mut encoded);
        for len in 0..encoded.len() {
            let cut = &encoded[..len];
            assert_eq!(
                write_json(cut, &mut Vec::new()).is_err(),
                decode_value(cut).is_err()
            );
        }
        for at in 0..encoded.len() {
            let mut flipped = encoded.clone();
            flipped[at] ^= 0x41;
            let ok = write_json(&flipped, &mut Vec::new()).is_ok();
            assert_eq!(ok, decode_value(&flipped).is_ok(), "byte {at}");
        }
    }
}
