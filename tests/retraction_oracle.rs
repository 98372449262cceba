//! The oracle property test of retraction (DESIGN.md, section 5f): random histories of named
//! batches, redeliveries, retractions and unretractions in random arrival orders, with crashes,
//! reopens, checkpoints and compactions inside the history window. States, as-of states,
//! reference sets and dangling references must equal those of json-patch `merge` applied in
//! seq order to the batches present and not retracted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aggrelog::{Batch, Db, Error, History, MergePatch, Options, Reference, SyncMode};
use common::crashing::Crashing;
use common::{oracle, scan_all, TestDelta};
use proptest::prelude::*;
use serde_json::{Map, Value};

const IDS: [&str; 4] = ["x", "y", "z", "w"];

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i16>().prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from),
        prop::collection::btree_map("[ab]", any::<u8>().prop_map(Value::from), 0..2)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
    ]
}

/// A patch: a few fields, and maybe a reference `/r` to an aggregate (`q` never exists).
fn delta(seq: u64) -> impl Strategy<Value = TestDelta> {
    let target = prop::sample::select(vec!["x", "y", "z", "w", "q"]);
    let reference = prop::option::weighted(0.4, target.prop_map(Value::from));
    let fields = prop::collection::btree_map("[abc]", value(), 0..3);
    let patch = (fields, reference).prop_map(|(m, r)| {
        let mut m: Map<String, Value> = m.into_iter().collect();
        if let Some(r) = r {
            m.insert("r".into(), r);
        }
        Value::Object(m)
    });
    (
        prop::sample::select(IDS.to_vec()),
        prop::option::weighted(0.85, patch),
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
    Retract(usize),
    Unretract(usize),
    Reopen,
    Crash,
    Checkpoint,
    Compact,
    /// Check states and references now (the reference index is then updated, not rebuilt).
    Query,
}

/// Batches (batch `b` named `b{b}`, its deltas at one seq, seqs shuffled), the steps, and the
/// history setting.
fn scenario() -> impl Strategy<Value = (Vec<Vec<TestDelta>>, Vec<Step>, bool)> {
    (2usize..8)
        .prop_flat_map(|n| Just((1..=n as u64).collect::<Vec<_>>()).prop_shuffle())
        .prop_flat_map(|seqs| {
            let n = seqs.len();
            let batches: Vec<_> = seqs
                .into_iter()
                .map(|seq| prop::collection::vec(delta(seq), 1..4))
                .collect();
            let step = prop_oneof![
                8 => (0..n).prop_map(Step::Deliver),
                3 => (0..n).prop_map(Step::Retract),
                2 => (0..n).prop_map(Step::Unretract),
                1 => Just(Step::Reopen),
                1 => Just(Step::Crash),
                1 => Just(Step::Checkpoint),
                2 => Just(Step::Compact),
                2 => Just(Step::Query),
            ];
            (
                batches,
                prop::collection::vec(step, 1..(4 * n + 4)),
                any::<bool>(),
            )
        })
}

fn options(window: bool) -> Options {
    Options::default()
        .sync(SyncMode::Never)
        .segment_size_bytes(4096)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
        .history(if window {
            History::Window(2)
        } else {
            History::All
        })
}

fn named_batch(b: usize, deltas: &[TestDelta]) -> Batch {
    let mut batch = Batch::new();
    batch.name(&format!("b{b}")).unwrap();
    for d in deltas {
        match &d.patch {
            Some(p) => batch.patch(&d.aggregate, d.seq, p).unwrap(),
            None => batch.delete(&d.aggregate, d.seq).unwrap(),
        };
    }
    batch
}

/// A database over a storage that can be made to crash.
struct Handle {
    db: Db,
    storage: Arc<Crashing>,
}

fn open(dir: &std::path::Path, window: bool) -> Handle {
    let storage = Arc::new(Crashing::default());
    let db = Db::open_with(dir, options(window), MergePatch, storage.clone()).unwrap();
    Handle { db, storage }
}

/// The references `/r` of the oracle's states, and those whose target is absent.
fn oracle_references(states: &BTreeMap<String, (u64, Value)>) -> (Vec<Reference>, Vec<Reference>) {
    let all: Vec<Reference> = (states.iter())
        .filter_map(|(id, (_, state))| Some(Reference::new(id, "/r", state.get("r")?.as_str()?)))
        .collect();
    let dangling = (all.iter())
        .filter(|r| !states.contains_key(&r.target))
        .cloned()
        .collect();
    (all, dangling)
}

/// Every aggregate's references both ways, and the dangling list, against the oracle's.
fn check_references(db: &Db, states: &BTreeMap<String, (u64, Value)>) -> Result<(), TestCaseError> {
    let (all, dangling) = oracle_references(states);
    prop_assert_eq!(db.dangling().unwrap(), dangling);
    for id in IDS.iter().chain(&["q"]) {
        let refs = db.references(id).unwrap();
        let outgoing: Vec<_> = all.iter().filter(|r| r.aggregate == *id).cloned().collect();
        let incoming: Vec<_> = all.iter().filter(|r| r.target == *id).cloned().collect();
        prop_assert_eq!(&refs.outgoing, &outgoing, "outgoing of {}", id);
        prop_assert_eq!(&refs.incoming, &incoming, "incoming of {}", id);
    }
    Ok(())
}

/// States, every as-of state and the references against the oracle of `present`.
fn check(db: &Db, present: &[Vec<TestDelta>], max_seq: u64) -> Result<(), TestCaseError> {
    let expected = oracle(present);
    prop_assert_eq!(&scan_all(db), &expected);
    check_references(db, &expected)?;
    for as_of in 0..=max_seq {
        let older: Vec<Vec<TestDelta>> = (present.iter())
            .map(|b| b.iter().filter(|d| d.seq <= as_of).cloned().collect())
            .collect();
        let then = oracle(&older);
        for id in IDS {
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

/// Sets the retraction status of batch `b`, pending when it was never delivered. A refusal
/// must be, with a window only, the out-of-reach one or the one for a batch no longer in the
/// log, and changes nothing.
fn set_status(
    db: &Db,
    b: usize,
    retract: bool,
    delivered: bool,
    window: bool,
    status: &mut BTreeMap<usize, bool>,
) -> Result<(), TestCaseError> {
    let name = format!("b{b}");
    let done = match (retract, delivered) {
        (true, true) => db.retract(&name),
        (true, false) => db.retract_pending(&name),
        (false, true) => db.unretract(&name),
        (false, false) => db.unretract_pending(&name),
    };
    match done {
        Ok(retraction) => {
            prop_assert_eq!(retraction.retracted, retract);
            status.insert(b, retract);
        }
        Err(Error::InvalidInput(reason))
            if window && (reason.contains("out of reach") || reason.contains("no delta")) => {}
        Err(e) => return Err(TestCaseError::fail(e.to_string())),
    }
    Ok(())
}

/// The batches delivered and not retracted.
fn present(
    batches: &[Vec<TestDelta>],
    delivered: &BTreeSet<usize>,
    status: &BTreeMap<usize, bool>,
) -> Vec<Vec<TestDelta>> {
    let retracted = |b: &usize| status.get(b).copied().unwrap_or(false);
    (delivered.iter())
        .filter(|b| !retracted(b))
        .map(|&b| batches[b].clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn states_equal_the_oracle_of_the_batches_present_and_not_retracted(
        (batches, steps, window) in scenario()
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut handle = open(dir.path(), window);
        handle.db.declare_references(&["/r"]).unwrap();
        let mut delivered = BTreeSet::new();
        let mut status: BTreeMap<usize, bool> = BTreeMap::new();
        for step in &steps {
            match step {
                Step::Deliver(b) => {
                    handle.db.write(&named_batch(*b, &batches[*b])).unwrap();
                    delivered.insert(*b);
                }
                Step::Retract(b) | Step::Unretract(b) => {
                    let retract = matches!(step, Step::Retract(_));
                    let was_delivered = delivered.contains(b);
                    set_status(&handle.db, *b, retract, was_delivered, window, &mut status)?;
                }
                Step::Reopen => {
                    handle.db.close().unwrap();
                    handle = open(dir.path(), window);
                }
                Step::Crash => {
                    // The process dies here: nothing more reaches the disk, not even the
                    // closing sync or checkpoint.
                    let performed = handle.storage.performed.load(Ordering::SeqCst);
                    handle.storage.crash_at.store(performed + 1, Ordering::SeqCst);
                    drop(handle);
                    handle = open(dir.path(), window);
                }
                Step::Checkpoint => drop(handle.db.checkpoint().unwrap()),
                Step::Compact => drop(handle.db.compact().unwrap()),
                Step::Query => {
                    let expected = oracle(&present(&batches, &delivered, &status));
                    prop_assert_eq!(&scan_all(&handle.db), &expected);
                    check_references(&handle.db, &expected)?;
                }
            }
        }
        let present = present(&batches, &delivered, &status);
        let max_seq = batches.len() as u64;
        check(&handle.db, &present, max_seq)?;
        let expected: Vec<String> = (status.iter())
            .filter(|(_, &r)| r)
            .map(|(b, _)| format!("b{b}"))
            .collect();
        prop_assert_eq!(handle.db.retracted_batches(), expected.clone());
        handle.db.close().unwrap();
        let handle = open(dir.path(), window);
        check(&handle.db, &present, max_seq)?;
        prop_assert_eq!(handle.db.retracted_batches(), expected);
    }
}
