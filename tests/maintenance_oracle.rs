//! The oracle property test with checkpoints, compactions, seals and reopens interleaved at
//! random points: states must still equal json-patch `merge` applied in seq order.

mod common;

use std::collections::BTreeSet;

use aggrelog::{Db, Error, History, Options, SyncMode};
use common::{batch_of, oracle, scan_all, TestDelta};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..2).prop_map(Value::Array),
            prop::collection::btree_map("[abc]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn delta(seq: u64) -> impl Strategy<Value = TestDelta> {
    (
        prop::sample::select(vec!["x", "y", "z", "w"]),
        prop::option::weighted(
            0.9,
            prop::collection::btree_map("[abc]", value(), 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ),
    )
        .prop_map(move |(aggregate, patch)| TestDelta {
            aggregate: aggregate.into(),
            seq,
            patch,
        })
}

#[derive(Clone, Debug)]
enum Step {
    Deliver(usize),
    Reopen,
    Checkpoint,
    Compact,
    CompactByPolicy,
    Seal(u64),
}

fn scenario() -> impl Strategy<Value = (Vec<Vec<TestDelta>>, Vec<Step>, u8)> {
    (2usize..9)
        .prop_flat_map(|n| Just((1..=n as u64).collect::<Vec<_>>()).prop_shuffle())
        .prop_flat_map(|seqs| {
            let n = seqs.len();
            let batches: Vec<_> = seqs
                .into_iter()
                .map(|seq| prop::collection::vec(delta(seq), 1..5))
                .collect();
            let step = prop_oneof![
                8 => (0..n).prop_map(Step::Deliver),
                1 => Just(Step::Reopen),
                1 => Just(Step::Checkpoint),
                2 => Just(Step::Compact),
                1 => Just(Step::CompactByPolicy),
                1 => (0..=n as u64 + 1).prop_map(Step::Seal),
            ];
            (batches, prop::collection::vec(step, 1..(3 * n + 4)), 0u8..3)
        })
}

fn options(history: u8) -> Options {
    let mut options = Options::default()
        .sync(SyncMode::Never)
        .segment_size_bytes(4096)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
        .history(match history {
            0 => History::None,
            1 => History::Window(2),
            _ => History::All,
        });
    options.compaction.max_unfolded_deltas = 2;
    options
}

/// Checks every aggregate against the oracle, and get_as_of for every seq: either the oracle's
/// state then, or an explicit HistoryUnavailable.
fn check(db: &Db, present: &[Vec<TestDelta>], max_seq: u64) -> Result<(), TestCaseError> {
    let expected = oracle(present);
    prop_assert_eq!(&scan_all(db), &expected);
    for as_of in 0..=max_seq {
        let older: Vec<Vec<TestDelta>> = present
            .iter()
            .map(|b| b.iter().filter(|d| d.seq <= as_of).cloned().collect())
            .collect();
        let then = oracle(&older);
        for id in ["x", "y", "z", "w"] {
            match db.get_as_of(id, as_of) {
                Ok(got) => {
                    let got = got.map(|s| (s.seq, s.state));
                    prop_assert_eq!(got.as_ref(), then.get(id), "{} as of {}", id, as_of);
                }
                Err(Error::HistoryUnavailable { oldest, .. }) => prop_assert!(oldest > as_of),
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn states_equal_the_oracle_through_checkpoints_compactions_seals_and_reopens(
        (batches, steps, history) in scenario()
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options = options(history);
        let mut db = Db::open(dir.path(), options.clone()).unwrap();
        let mut delivered = BTreeSet::new();
        let mut seal = 0;
        for step in &steps {
            match step {
                Step::Deliver(b) => {
                    let batch = &batches[*b];
                    match db.write(&batch_of(batch)) {
                        Ok(_) => {
                            // Below the seal only deltas already delivered, in the same place
                            // of a batch, are accepted again (as duplicates).
                            let redelivered = |p: usize, d: &TestDelta| {
                                delivered.iter().any(|&o: &usize| batches[o].get(p) == Some(d))
                            };
                            let accepted = batch.iter().enumerate();
                            prop_assert!(accepted.clone().all(|(p, d)| d.seq >= seal || redelivered(p, d)));
                            delivered.insert(*b);
                        }
                        Err(Error::Sealed { seq, .. }) => prop_assert!(seq < seal),
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                }
                Step::Reopen => {
                    db.close().unwrap();
                    db = Db::open(dir.path(), options.clone()).unwrap();
                }
                Step::Checkpoint => drop(db.checkpoint().unwrap()),
                Step::Compact => drop(db.compact().unwrap()),
                Step::CompactByPolicy => drop(db.compact_by_policy().unwrap()),
                Step::Seal(s) => {
                    db.seal(*s).unwrap();
                    seal = seal.max(*s);
                }
            }
        }
        let present: Vec<_> = delivered.iter().map(|&b| batches[b].clone()).collect();
        check(&db, &present, batches.len() as u64)?;
        prop_assert_eq!(db.stats().seal, seal);
        db.close().unwrap();
        let db = Db::open(dir.path(), options).unwrap();
        check(&db, &present, batches.len() as u64)?;
        prop_assert_eq!(db.stats().seal, seal);
    }
}
