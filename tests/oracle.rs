//! The engine against the independent oracle (json-patch `merge` applied in seq order):
//! random patches, random arrival orders, duplicate deliveries, reopens, segment rotation and
//! compression.

mod common;

use std::collections::BTreeSet;

use aggrelog::{Compression, Db, Options, SyncMode};
use common::{batch_of, oracle, scan_all, TestDelta};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        "[a-z0-9]{0,8}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[abcd]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn patch() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[abcd]", value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// One delta of a batch whose seq is `seq`: ~10% deletes, aggregates from a small set.
fn delta(seq: u64) -> impl Strategy<Value = TestDelta> {
    (
        prop::sample::select(vec!["x", "y", "z"]),
        prop::option::weighted(0.9, patch()),
    )
        .prop_map(move |(aggregate, patch)| TestDelta {
            aggregate: aggregate.into(),
            seq,
            patch,
        })
}

/// Batches with distinct seqs (so no two deltas share a stamp: conflicts are tested apart).
fn batches() -> impl Strategy<Value = Vec<Vec<TestDelta>>> {
    (1usize..7)
        .prop_flat_map(|n| Just((1..=n as u64).collect::<Vec<_>>()).prop_shuffle())
        .prop_flat_map(|seqs| {
            seqs.into_iter()
                .map(|seq| prop::collection::vec(delta(seq), 1..6))
                .collect::<Vec<_>>()
        })
}

#[derive(Clone, Debug)]
enum Step {
    Deliver(usize),
    Reopen,
}

fn scenario() -> impl Strategy<Value = (Vec<Vec<TestDelta>>, Vec<Step>, bool, bool)> {
    batches().prop_flat_map(|batches| {
        let n = batches.len();
        let step = prop_oneof![
            6 => (0..n).prop_map(Step::Deliver),
            1 => Just(Step::Reopen),
        ];
        (
            Just(batches),
            prop::collection::vec(step, 1..(3 * n + 2)),
            any::<bool>(),
            any::<bool>(),
        )
    })
}

fn options(small_segments: bool, compress: bool) -> Options {
    let segment_size_bytes = if small_segments { 4096 } else { 64 << 20 };
    Options::default()
        .sync(SyncMode::Never)
        .segment_size_bytes(segment_size_bytes)
        .compression(compress.then_some(Compression {
            level: 1,
            min_batch_bytes: 64,
        }))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn states_equal_the_oracle_whatever_the_arrival_order(
        (batches, steps, small_segments, compress) in scenario()
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = options(small_segments, compress);
        let mut db = Db::open(dir.path(), options.clone()).unwrap();
        let mut delivered = BTreeSet::new();
        for step in &steps {
            match step {
                Step::Deliver(b) => {
                    db.write(&batch_of(&batches[*b])).unwrap();
                    delivered.insert(*b);
                }
                Step::Reopen => {
                    db.close().unwrap();
                    db = Db::open(dir.path(), options.clone()).unwrap();
                }
            }
        }
        let present: Vec<_> = delivered.iter().map(|&b| batches[b].clone()).collect();
        let expected = oracle(&present);
        prop_assert_eq!(&scan_all(&db), &expected);
        for id in ["x", "y", "z"] {
            let got = db.get(id).unwrap().map(|s| (s.seq, s.state));
            prop_assert_eq!(got.as_ref(), expected.get(id));
        }
        // get_as_of equals the oracle over the deltas with seq <= as_of.
        for as_of in 0..=batches.len() as u64 {
            let older: Vec<Vec<TestDelta>> = present
                .iter()
                .map(|b| b.iter().filter(|d| d.seq <= as_of).cloned().collect())
                .collect();
            let expected_then = oracle(&older);
            for id in ["x", "y", "z"] {
                let got = db.get_as_of(id, as_of).unwrap().map(|s| (s.seq, s.state));
                prop_assert_eq!(got.as_ref(), expected_then.get(id), "as of {}", as_of);
            }
        }
        db.close().unwrap();
        let db = Db::open(dir.path(), options).unwrap();
        prop_assert_eq!(scan_all(&db), expected);
    }
}
