//! The JSON Lines input format, one delta per line:
//!
//! ```text
//! {"aggregate":"B","seq":2,"patch":{"engine":{"serial":"ESN-1"},"cabin":{"seat_12C":null}}}
//! {"aggregate":"E","seq":3,"delete":true}
//! ```
//!
//! `aggregate` is a string of 1 to 1024 bytes, `seq` an unsigned 64-bit integer, and exactly one
//! of `patch` (a JSON object) or `"delete": true` is present. An optional `"pos"` (u32) gives
//! the delta's stamp position; without it the position is the delta's index within its file
//! (or, for the Kafka follower, its message). Other fields are rejected, so a typo cannot
//! silently drop data. Blank lines are ignored.
//!
//! Numbers come back exactly as given: a float is parsed correctly rounded (serde_json's
//! `float_roundtrip`) and rendered shortest-round-trip, so every finite double keeps its bits;
//! an integer literal outside the `i64`/`u64` range (which serde_json would silently turn into
//! a float) and a float outside the double range are rejected with the literal named.

use std::io::BufRead;

use serde_json::{Map, Value};

use crate::batch::Batch;
use crate::model::json_text::write_json;
use crate::model::{DeltaKind, ModelError};
use crate::wal::batch::validate_aggregate_id;

/// A bad input line: its 1-based number and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// Why the line was rejected.
    pub reason: String,
}

/// One parsed input line.
#[derive(Clone, Debug, PartialEq)]
pub struct DeltaLine {
    /// Aggregate id.
    pub aggregate: String,
    /// Upstream sequence number.
    pub seq: u64,
    /// The stamp position given by the line's `"pos"` field; without it, the delta's index
    /// within its file or message.
    pub pos: Option<u32>,
    /// `Some(patch)` for a patch, `None` for a delete.
    pub patch: Option<Value>,
}

impl DeltaLine {
    /// Adds the delta to `batch` at its `"pos"`, or at `index` (its index within its file or
    /// message) without one.
    pub fn push_to(&self, batch: &mut Batch, index: u32) -> crate::Result<()> {
        let position = self.pos.unwrap_or(index);
        match &self.patch {
            Some(patch) => batch.patch_at(&self.aggregate, self.seq, position, patch),
            None => batch.delete_at(&self.aggregate, self.seq, position),
        }
        .map(|_| ())
    }
}

/// Parses one line of the format.
pub fn parse_line(line: &str) -> Result<DeltaLine, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| bad_json(&e))?;
    check_integer_literals(line)?;
    let Value::Object(mut fields) = value else {
        return Err("a line must be a JSON object".into());
    };
    let aggregate = take_aggregate(&mut fields)?;
    let seq = match fields.remove("seq") {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            format!(
                "\"seq\" must be an unsigned 64-bit integer, got {}",
                echo(n)
            )
        })?,
        Some(other) => return Err(format!("\"seq\" must be an integer, got {}", echo(other))),
        None => return Err("missing field \"seq\"".into()),
    };
    let pos = match fields.remove("pos") {
        Some(Value::Number(n)) => Some(n.as_u64().and_then(|p| u32::try_from(p).ok()).ok_or_else(
            || {
                format!(
                    "\"pos\" must be an unsigned 32-bit integer, got {}",
                    echo(n)
                )
            },
        )?),
        Some(other) => return Err(format!("\"pos\" must be an integer, got {}", echo(other))),
        None => None,
    };
    let patch = match (fields.remove("patch"), fields.remove("delete")) {
        (Some(Value::Object(patch)), None) => Some(Value::Object(patch)),
        (Some(other), None) => {
            let reason = format!("\"patch\" must be a JSON object, got {}", echo(other));
            return Err(reason);
        }
        (None, Some(Value::Bool(true))) => None,
        (None, Some(other)) => return Err(format!("\"delete\" must be true, got {}", echo(other))),
        (Some(_), Some(_)) => {
            return Err("a line has either \"patch\" or \"delete\", not both".into())
        }
        (None, None) => return Err("missing field \"patch\" (or \"delete\": true)".into()),
    };
    if let Some(unknown) = fields.keys().next() {
        return Err(format!("unknown field {}", echo(format!("{unknown:?}"))));
    }
    Ok(DeltaLine {
        aggregate,
        seq,
        pos,
        patch,
    })
}

/// Longest stretch of input echoed in a reason, in characters.
const ECHO_CHARS: usize = 200;

/// A value as echoed in a reason: its JSON text, cut to about [`ECHO_CHARS`] characters.
fn echo(value: impl std::fmt::Display) -> String {
    let text = value.to_string();
    match text.char_indices().nth(ECHO_CHARS) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text,
    }
}

/// A JSON syntax error as a reason: where in the line (the caller names the line) and what.
fn bad_json(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let what = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(what, _)| what);
    format!("bad JSON at column {}: {what}", error.column())
}

/// Rejects an integer literal (no fraction, no exponent) that fits neither `i64` nor `u64`:
/// serde_json would read it as the nearest double, changing its value. `line` is valid JSON.
fn check_integer_literals(line: &str) -> Result<(), String> {
    let bytes = line.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => at = string_end(bytes, at),
            b'-' | b'0'..=b'9' => {
                let start = at;
                at += 1;
                while at < bytes.len()
                    && matches!(bytes[at], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    at += 1;
                }
                let literal = &line[start..at];
                let is_integer = !literal.contains(['.', 'e', 'E']);
                if is_integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err()
                {
                    return Err(format!(
                        "the integer {} does not fit in 64 bits (i64 or u64)",
                        echo(literal)
                    ));
                }
            }
            _ => at += 1,
        }
    }
    Ok(())
}

/// The offset just past the string literal that opens at `start` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
    at
}

fn take_aggregate(fields: &mut Map<String, Value>) -> Result<String, String> {
    match fields.remove("aggregate") {
        Some(Value::String(id)) => {
            validate_aggregate_id(&id)?;
            Ok(id)
        }
        Some(other) => Err(format!(
            "\"aggregate\" must be a string, got {}",
            echo(other)
        )),
        None => Err("missing field \"aggregate\"".into()),
    }
}

/// A batch read from JSON Lines, with the 1-based line number of each delta (by position), so
/// that a rejection of the batch can name the line.
#[derive(Clone, Debug, Default)]
pub struct NumberedBatch {
    /// The deltas, in line order.
    pub batch: Batch,
    /// `lines[i]` is the line of the delta at index `i` of the batch.
    pub lines: Vec<u64>,
}

/// Reads a whole JSON Lines stream into one batch. Fails on the first bad line, so a batch is
/// either built from every line or not at all.
pub fn read_batch(input: impl BufRead) -> Result<Batch, LineError> {
    read_numbered_batch(input).map(|numbered| numbered.batch)
}

/// [`read_batch`], keeping each delta's line number.
pub fn read_numbered_batch(input: impl BufRead) -> Result<NumberedBatch, LineError> {
    let mut batch = Batch::new();
    let mut lines = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line_no = n as u64 + 1;
        let err = |reason: String| LineError {
            line: line_no,
            reason,
        };
        let line = line.map_err(|e| err(format!("cannot read line: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let delta = parse_line(&line).map_err(err)?;
        let index = u32::try_from(lines.len()).map_err(|_| err("more than 2^32 deltas".into()))?;
        delta
            .push_to(&mut batch, index)
            .map_err(|e| err(e.to_string()))?;
        lines.push(line_no);
    }
    Ok(NumberedBatch { batch, lines })
}

/// Appends a delta in the input format, its patch written straight from the model's binary form
/// (`body`; empty for a delete) without building a `Value`: the text [`render_line`] gives for the
/// decoded patch, at a fraction of the cost (what `aggrelog replay` writes). A body that does not
/// decode is an error, and `out` may then hold part of the line.
pub fn write_line(
    out: &mut Vec<u8>,
    aggregate: &str,
    seq: u64,
    kind: DeltaKind,
    body: &[u8],
) -> Result<(), ModelError> {
    out.extend_from_slice(b"{\"aggregate\":");
    serde_json::to_writer(&mut *out, aggregate)
        .map_err(|e| ModelError::new(0, format!("cannot write JSON: {e}")))?;
    out.extend_from_slice(b",\"seq\":");
    serde_json::to_writer(&mut *out, &seq)
        .map_err(|e| ModelError::new(0, format!("cannot write JSON: {e}")))?;
    match kind {
        DeltaKind::Patch => {
            out.extend_from_slice(b",\"patch\":");
            write_json(body, out)?;
        }
        DeltaKind::Delete => out.extend_from_slice(b",\"delete\":true"),
    }
    out.push(b'}');
    Ok(())
}

/// Renders a delta in the input format from its decoded patch (the workload generator's lines):
/// the inverse of [`parse_line`]. [`write_line`] writes the same text from the binary form.
pub fn render_line(aggregate: &str, seq: u64, patch: Option<&Value>) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("{\"aggregate\":");
    out.push_str(&Value::from(aggregate).to_string());
    out.push_str(",\"seq\":");
    out.push_str(&seq.to_string());
    match patch {
        Some(patch) => {
            out.push_str(",\"patch\":");
            out.push_str(&patch.to_string());
        }
        None => out.push_str(",\"delete\":true"),
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_patches_and_deletes() {
        let line = r#"{"aggregate":"B","seq":2,"patch":{"engine":{"serial":"ESN-1"}}}"#;
        let delta = parse_line(line).unwrap();
        assert_eq!(delta.aggregate, "B");
        assert_eq!(delta.seq, 2);
        assert_eq!(render_line("B", 2, delta.patch.as_ref()), line);
        let delete = parse_line(r#"{"aggregate":"E","seq":3,"delete":true}"#).unwrap();
        assert_eq!(delete.patch, None);
    }

    #[test]
    fn rejects_malformed_lines_with_a_reason() {
        let cases = [
            ("not json", "bad JSON"),
            ("[1]", "JSON object"),
            (r#"{"seq":1,"patch":{}}"#, "missing field \"aggregate\""),
            (r#"{"aggregate":"","seq":1,"patch":{}}"#, "empty"),
            (r#"{"aggregate":7,"seq":1,"patch":{}}"#, "must be a string"),
            (r#"{"aggregate":"a","patch":{}}"#, "missing field \"seq\""),
            (r#"{"aggregate":"a","seq":-1,"patch":{}}"#, "unsigned"),
            (r#"{"aggregate":"a","seq":"1","patch":{}}"#, "integer"),
            (r#"{"aggregate":"a","seq":1,"patch":[1]}"#, "JSON object"),
            (r#"{"aggregate":"a","seq":1}"#, "missing field \"patch\""),
            (
                r#"{"aggregate":"a","seq":1,"delete":false}"#,
                "must be true",
            ),
            (
                r#"{"aggregate":"a","seq":1,"patch":{},"delete":true}"#,
                "not both",
            ),
            (
                r#"{"aggregate":"a","seq":1,"patch":{},"extra":1}"#,
                "unknown field",
            ),
        ];
        for (line, expected) in cases {
            let reason = parse_line(line).unwrap_err();
            assert!(reason.contains(expected), "{line}: {reason}");
        }
        let long_id = format!(
            r#"{{"aggregate":"{}","seq":1,"patch":{{}}}}"#,
            "x".repeat(1025)
        );
        assert!(parse_line(&long_id).unwrap_err().contains("1024"));
    }

    #[test]
    fn integers_outside_64_bits_and_floats_outside_doubles_are_rejected() {
        for (value, expected) in [
            ("18446744073709551616", "does not fit in 64 bits"),
            ("-9223372036854775809", "does not fit in 64 bits"),
            ("1e400", "out of range"),
        ] {
            let line = format!(r#"{{"aggregate":"a","seq":1,"patch":{{"v":{value}}}}}"#);
            let reason = parse_line(&line).unwrap_err();
            assert!(reason.contains(expected), "{value}: {reason}");
        }
        for value in [
            "18446744073709551615",
            "-9223372036854775808",
            "1.8446744073709552e19",
        ] {
            let line = format!(
                r#"{{"aggregate":"a","seq":1,"patch":{{"v":{value},"s":"-99999999999999999999\"9"}}}}"#
            );
            assert!(parse_line(&line).is_ok(), "{value}");
        }
    }

    #[test]
    fn doubles_round_trip_bit_for_bit() {
        let mut rng = crate::rng::Rng::new(0x5eed);
        let mut checked = 0;
        while checked < 100_000 {
            let number = f64::from_bits(rng.next_u64());
            if !number.is_finite() {
                continue;
            }
            let line = render_line("a", 1, Some(&serde_json::json!({ "v": number })));
            let parsed = parse_line(&line).unwrap().patch.unwrap();
            let back = parsed["v"].as_f64().unwrap();
            assert_eq!(back.to_bits(), number.to_bits(), "{line}");
            checked += 1;
        }
    }

    #[test]
    fn bad_json_names_the_column_once_and_long_values_are_cut() {
        let reason = parse_line(r#"{"aggregate":"a","seq":1,"patch":{"x":}}"#).unwrap_err();
        assert!(reason.starts_with("bad JSON at column 39: "), "{reason}");
        assert!(!reason.contains("line"), "{reason}");
        let long = format!(
            r#"{{"aggregate":"a","seq":1,"patch":"{}"}}"#,
            "x".repeat(5000)
        );
        let reason = parse_line(&long).unwrap_err();
        assert!(
            reason.len() < 300 && reason.ends_with("(5002 bytes)"),
            "{reason}"
        );
    }

    #[test]
    fn numbered_batches_know_the_line_of_each_delta() {
        let input = "{\"aggregate\":\"a\",\"seq\":1,\"patch\":{}}\n\n{\"aggregate\":\"b\",\"seq\":1,\"delete\":true}\n";
        let numbered = read_numbered_batch(input.as_bytes()).unwrap();
        assert_eq!(numbered.lines, [1, 3]);
        assert_eq!(numbered.batch.len(), 2);
    }

    #[test]
    fn read_batch_names_the_first_bad_line() {
        let input = "{\"aggregate\":\"a\",\"seq\":1,\"patch\":{}}\n\n{oops\n";
        let err = read_batch(input.as_bytes()).unwrap_err();
        assert_eq!(err.line, 3);
    }
}
