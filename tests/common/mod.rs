//! Shared test helpers: the independent oracle and small utilities.
#![allow(dead_code)]

pub mod crashing;

use std::collections::BTreeMap;

use aggrelog::{Batch, Db};
use serde_json::{json, Value};

/// One delta as a test describes it: `patch = None` is a delete.
#[derive(Clone, Debug, PartialEq)]
pub struct TestDelta {
    pub aggregate: String,
    pub seq: u64,
    pub patch: Option<Value>,
}

pub fn patch(aggregate: &str, seq: u64, patch: Value) -> TestDelta {
    TestDelta {
        aggregate: aggregate.into(),
        seq,
        patch: Some(patch),
    }
}

pub fn delete(aggregate: &str, seq: u64) -> TestDelta {
    TestDelta {
        aggregate: aggregate.into(),
        seq,
        patch: None,
    }
}

pub fn batch_of(deltas: &[TestDelta]) -> Batch {
    let mut batch = Batch::new();
    for d in deltas {
        match &d.patch {
            Some(p) => batch.patch(&d.aggregate, d.seq, p).unwrap(),
            None => batch.delete(&d.aggregate, d.seq).unwrap(),
        };
    }
    batch
}

/// The model's definition, computed independently: every distinct delta of an aggregate ordered
/// by (seq, position in its batch), applied to `{}` with json-patch's RFC 7396 `merge`; a delete
/// resets to absent. Batches delivered more than once count once.
pub fn oracle(batches: &[Vec<TestDelta>]) -> BTreeMap<String, (u64, Value)> {
    let mut stamped: BTreeMap<String, BTreeMap<(u64, usize), Option<Value>>> = BTreeMap::new();
    for batch in batches {
        for (position, d) in batch.iter().enumerate() {
            stamped
                .entry(d.aggregate.clone())
                .or_default()
                .insert((d.seq, position), d.patch.clone());
        }
    }
    let mut states = BTreeMap::new();
    for (id, deltas) in stamped {
        let mut state: Option<Value> = None;
        let max_seq = deltas.keys().map(|(seq, _)| *seq).max().unwrap_or(0);
        for patch in deltas.values() {
            match patch {
                Some(p) => json_patch::merge(state.get_or_insert_with(|| json!({})), p),
                None => state = None,
            }
        }
        if let Some(state) = state {
            states.insert(id, (max_seq, state));
        }
    }
    states
}

/// Everything `db.scan()` returns, as a map.
pub fn scan_all(db: &Db) -> BTreeMap<String, (u64, Value)> {
    db.scan()
        .map(|item| {
            let (id, state) = item.unwrap();
            (id, (state.seq, state.state))
        })
        .collect()
}

/// The batches of the README table (Bch1, Bch2, Bch3 with seq 1, 2, 3); G names F as parent.
pub fn table_batches() -> Vec<Vec<TestDelta>> {
    vec![
        vec![
            patch("A", 1, json!({"model": "A320"})),
            patch(
                "B",
                1,
                json!({"engine": {"serial": "ESN-200"}, "model": "A321"}),
            ),
            patch("C", 1, json!({"model": "A319"})),
            patch(
                "D",
                1,
                json!({"cabin": {"layout": "3-3-3"}, "model": "A350"}),
            ),
        ],
        vec![
            patch("B", 2, json!({"engine": {"serial": "ESN-201"}})),
            delete("C", 2),
            delete("D", 2),
            patch("E", 2, json!({"model": "B787"})),
            patch("F", 2, json!({"model": "A330"})),
        ],
        vec![
            patch("B", 3, json!({"engine": {"serial": "ESN-202"}})),
            patch(
                "D",
                3,
                json!({"cabin": {"layout": "3-4-3"}, "model": "A350"}),
            ),
            delete("E", 3),
            patch("G", 3, json!({"parent": "F", "part": "engine"})),
        ],
    ]
}
