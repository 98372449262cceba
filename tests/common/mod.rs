//! Shared test helpers: the independent oracle and small utilities.
#![allow(dead_code)]

pub mod crashing;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use aggrelog::jsonl::render_line;
use aggrelog::model::{binary, DeltaKind};
use aggrelog::{Batch, Db, Options, RecordLocation, SyncMode};
use serde_json::{json, Value};

/// Options of a test with a small log: no fsync, 8 KiB segments (so that a few batches rotate
/// and fragment), no background maintenance or automatic checkpoints.
pub fn small_log_options() -> Options {
    Options::default()
        .sync(SyncMode::Never)
        .segment_size_bytes(8 << 10)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
}

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

/// A batch named `name` of patches `(aggregate, seq, patch)`.
pub fn named(name: &str, patches: &[(&str, u64, Value)]) -> Batch {
    let mut batch = Batch::new();
    batch.name(name).unwrap();
    for (aggregate, seq, patch) in patches {
        batch.patch(aggregate, *seq, patch).unwrap();
    }
    batch
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

/// Every delta of `db.replay()` in the JSON Lines input format, one line each.
pub fn replay_lines(db: &Db) -> String {
    db.replay(RecordLocation::START)
        .map(|delta| {
            let d = delta.unwrap();
            let patch = match d.kind {
                DeltaKind::Patch => Some(binary::decode_value(&d.body).unwrap()),
                DeltaKind::Delete => None,
            };
            render_line(&d.aggregate, d.seq, patch.as_ref()) + "\n"
        })
        .collect()
}

/// The batches (numbered `0..written`, each with marker aggregates `m{n}-first` and `m{n}-last`)
/// present in `states`; panics if one is partly present.
pub fn present_batches(states: &BTreeMap<String, (u64, Value)>, written: usize) -> Vec<usize> {
    (0..written)
        .filter(|n| {
            let first = states.contains_key(&format!("m{n}-first"));
            let last = states.contains_key(&format!("m{n}-last"));
            assert_eq!(first, last, "batch {n} is partly present");
            first
        })
        .collect()
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `batches` batches of 8 patches over 11 aggregates (some fields set to null), every tenth
/// with a delete: enough for several small segments.
pub fn small_workload(batches: u64) -> Vec<Vec<TestDelta>> {
    (1..=batches)
        .map(|seq| {
            let mut b: Vec<TestDelta> = (0..8u64)
                .map(|i| {
                    let id = format!("a{}", (seq * 3 + i) % 11);
                    let removed = if (seq + i) % 9 == 0 {
                        json!(null)
                    } else {
                        json!(seq)
                    };
                    patch(
                        &id,
                        seq,
                        json!({"engine": {"hours": seq * i, "status": removed}}),
                    )
                })
                .collect();
            if seq % 10 == 0 {
                b.push(delete(&format!("a{}", seq % 11), seq));
            }
            b
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
