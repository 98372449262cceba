//! Decoding a record into deltas: its value is one JSON Lines delta or several (one upstream
//! batch), its key the aggregate id every line must name. A delta's stamp position is its
//! line's `"pos"`, else its index among the message's deltas (blank lines do not count):
//! [`DeltaLine::push_to`] with the delta's index in the returned list.

use aggrelog::jsonl::{parse_line, DeltaLine};

/// Decodes a record's `value` (with its `key`, when present) into its deltas, or says why the
/// message is malformed: not UTF-8, no delta, a bad line (`line N: reason`, 1-based), or a line
/// naming another aggregate than the key.
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Vec<DeltaLine>, String> {
    let bytes = value.ok_or("the record has no value")?;
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("the value is not UTF-8 (at byte {})", e.valid_up_to()))?;
    let mut deltas = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = parse_line(line).map_err(|reason| format!("line {}: {reason}", index + 1))?;
        check_key(key, &parsed).map_err(|reason| format!("line {}: {reason}", index + 1))?;
        deltas.push(parsed);
    }
    if deltas.is_empty() {
        return Err("the value holds no delta".into());
    }
    Ok(deltas)
}

/// A present key must be the line's aggregate id.
fn check_key(key: Option<&[u8]>, line: &DeltaLine) -> Result<(), String> {
    match key {
        Some(key) if key != line.aggregate.as_bytes() => Err(format!(
            "aggregate {} is not the record key {}",
            echo(&line.aggregate),
            echo(&String::from_utf8_lossy(key))
        )),
        _ => Ok(()),
    }
}

/// `text` quoted and cut to about 100 characters, for a reason.
fn echo(text: &str) -> String {
    let quoted = format!("{text:?}");
    match quoted.char_indices().nth(100) {
        Some((at, _)) => format!("{}...", &quoted[..at]),
        None => quoted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn several_lines_are_several_deltas() {
        let value = b"{\"aggregate\":\"a\",\"seq\":3,\"patch\":{\"x\":1}}\n\n{\"aggregate\":\"a\",\"seq\":3,\"delete\":true}\n";
        let deltas = decode(Some(b"a"), Some(value)).unwrap();
        assert_eq!(deltas.len(), 2);
        assert_eq!((deltas[0].pos, deltas[1].pos), (None, None));
        assert_eq!(deltas[0].patch, Some(json!({"x": 1})));
        assert_eq!(deltas[1].patch, None);
    }

    #[test]
    fn malformed_messages_say_why() {
        let good = b"{\"aggregate\":\"a\",\"seq\":1,\"patch\":{}}";
        let key_mismatch = decode(Some(b"b"), Some(good)).unwrap_err();
        assert!(
            key_mismatch.starts_with("line 1: aggregate \"a\" is not the record key \"b\""),
            "{key_mismatch}"
        );
        assert!(decode(None, Some(good)).is_ok());
        let bad_line = decode(
            None,
            Some(b"{\"aggregate\":\"a\",\"seq\":1,\"patch\":{}}\n{oops"),
        )
        .unwrap_err();
        assert!(bad_line.starts_with("line 2: "), "{bad_line}");
        assert!(decode(None, Some(b"\xff")).unwrap_err().contains("UTF-8"));
        assert_eq!(
            decode(None, Some(b" \n")).unwrap_err(),
            "the value holds no delta"
        );
        assert!(decode(None, None).is_err());
    }
}
