//! Numbers come back exactly as given: random finite doubles (any bit pattern) and integers over
//! the whole i64/u64 range, read from the JSON Lines format, survive get, scan, replay,
//! checkpoints, compaction and reopen bit for bit.

mod common;

use aggrelog::jsonl::{read_batch, render_line};
use aggrelog::testing::Rng;
use aggrelog::{Db, Options, SyncMode};
use common::replay_lines;
use serde_json::{json, Value};

const AGGREGATES: u64 = 50;
const LINES: u64 = 4000;

/// A random number of one of the three kinds, drawn from raw bits.
fn number(rng: &mut Rng) -> Value {
    loop {
        let bits = rng.next_u64();
        match rng.below(4) {
            0 => return json!(bits),
            1 => return json!(bits as i64),
            _ => {
                let double = f64::from_bits(bits);
                if double.is_finite() {
                    return json!(double);
                }
            }
        }
    }
}

/// The input text and, per aggregate, the value of its field `v` (the last patch wins).
fn workload() -> (String, Vec<Option<Value>>) {
    let mut rng = Rng::new(0xf10a7);
    let mut text = String::new();
    let mut expected = vec![None; AGGREGATES as usize];
    for seq in 1..=LINES {
        let aggregate = rng.below(AGGREGATES);
        let value = number(&mut rng);
        let patch = json!({ "v": value, "nested": { "w": value } });
        text.push_str(&render_line(&format!("a{aggregate}"), seq, Some(&patch)));
        text.push('\n');
        expected[aggregate as usize] = Some(value);
    }
    (text, expected)
}

/// Compares by bits: `Value`'s float equality would accept 0.0 == -0.0.
fn same_number(found: &Value, expected: &Value) -> bool {
    match (found.as_f64(), expected.as_f64(), expected.is_f64()) {
        (Some(a), Some(b), true) => found.is_f64() && a.to_bits() == b.to_bits(),
        _ => found == expected,
    }
}

fn assert_states(db: &Db, expected: &[Option<Value>], when: &str) {
    for (n, value) in expected.iter().enumerate() {
        let Some(value) = value else { continue };
        let state = db.get(&format!("a{n}")).unwrap().expect("present").state;
        assert!(
            same_number(&state["v"], value),
            "{when}: a{n}: {} != {value}",
            state["v"]
        );
        assert!(
            same_number(&state["nested"]["w"], value),
            "{when}: a{n} nested"
        );
    }
    let mut scanned = 0;
    for item in db.scan() {
        let (id, state) = item.unwrap();
        let n: usize = id[1..].parse().unwrap();
        let value = expected[n].as_ref().expect("scanned aggregate was written");
        assert!(same_number(&state.state["v"], value), "{when}: scan {id}");
        scanned += 1;
    }
    assert_eq!(scanned, expected.iter().flatten().count(), "{when}");
}

#[test]
fn every_double_and_64_bit_integer_round_trips_bit_for_bit() {
    let (text, expected) = workload();
    let dir = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .sync(SyncMode::Never)
            .background_compaction(false)
            .checkpoint_every_bytes(0)
    };
    let db = Db::open(dir.path(), options()).unwrap();
    db.write(&read_batch(text.as_bytes()).unwrap()).unwrap();
    assert_states(&db, &expected, "after the write");

    assert_eq!(
        replay_lines(&db),
        text,
        "replay renders the input back byte for byte"
    );

    db.checkpoint().unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_states(&db, &expected, "after a checkpoint and reopen");
    db.compact().unwrap();
    assert_states(&db, &expected, "after compaction");
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_states(&db, &expected, "after compaction and reopen");
}
