//! Export and import keep the semantics: random histories (late and duplicate batches,
//! compactions, seals, under every history setting) exported and imported into a new database
//! give the same states and the same `get_as_of` answers; then the same late and duplicate
//! batches applied to both, and compactions, keep them equal.

mod common;

use std::io::BufReader;

use aggrelog::{Db, Error, History, Options, SyncMode};
use common::{batch_of, scan_all, TestDelta};
use proptest::prelude::*;
use serde_json::{json, Value};

fn options(history: History) -> Options {
    Options::default()
        .sync(SyncMode::Never)
        .segment_size_bytes(4096)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
        .history(history)
}

#[derive(Clone, Debug)]
enum Step {
    Write(usize),
    Compact,
    CompactByPolicy,
    Seal(u64),
}

fn delta() -> impl Strategy<Value = TestDelta> {
    (
        prop::sample::select(vec!["x", "y", "z"]),
        1u64..12,
        prop::option::weighted(
            0.85,
            (
                prop::sample::select(vec!["a", "b"]),
                prop::option::of(0i64..5),
            ),
        ),
    )
        .prop_map(|(aggregate, seq, patch)| TestDelta {
            aggregate: aggregate.into(),
            seq,
            patch: patch.map(|(key, value)| json!({ key: value })),
        })
}

fn step(batches: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..batches).prop_map(Step::Write),
        1 => Just(Step::Compact),
        1 => Just(Step::CompactByPolicy),
        1 => (1u64..6).prop_map(Step::Seal),
    ]
}

fn history() -> impl Strategy<Value = History> {
    prop_oneof![
        Just(History::None),
        Just(History::All),
        (1u64..4).prop_map(History::Window)
    ]
}

/// Every answer a reader can get: each aggregate's state as of every seq (or why not).
fn answers(db: &Db) -> Vec<String> {
    let mut out = Vec::new();
    for id in ["x", "y", "z"] {
        for as_of in 0..13 {
            let answer = match db.get_as_of(id, as_of) {
                Ok(state) => format!("{:?}", state.map(|s| (s.seq, s.state))),
                Err(Error::HistoryUnavailable { oldest, .. }) => format!("history from {oldest}"),
                Err(e) => panic!("get_as_of({id}, {as_of}): {e}"),
            };
            out.push(answer);
        }
    }
    out
}

fn apply(db: &Db, batches: &[Vec<TestDelta>], step: &Step) -> String {
    match step {
        Step::Write(b) => match db.write(&batch_of(&batches[*b])) {
            Ok(_) => "ok".into(),
            Err(Error::Sealed { .. }) => "sealed".into(),
            Err(e) => panic!("write: {e}"),
        },
        // How much a compaction folds depends on the physical log, which differs; what it
        // leaves readable must not.
        Step::Compact => db.compact().map(|_| "compacted".into()).unwrap(),
        Step::CompactByPolicy => db.compact_by_policy().map(|_| "compacted".into()).unwrap(),
        Step::Seal(s) => db.seal(*s).map(|()| format!("sealed {s}")).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn an_imported_export_answers_and_folds_like_its_source(
        batches in prop::collection::vec(prop::collection::vec(delta(), 1..5), 2..8),
        history in history(),
        before in prop::collection::vec(step(8), 1..16),
        after in prop::collection::vec(step(8), 1..10),
    ) {
        let batches: Vec<Vec<TestDelta>> = batches;
        let clamp = |s: &Step| match s {
            Step::Write(b) => Step::Write(b % batches.len()),
            other => other.clone(),
        };
        let tmp = tempfile::tempdir().unwrap();
        let source = Db::open(tmp.path().join("source"), options(history)).unwrap();
        for s in &before {
            apply(&source, &batches, &clamp(s));
        }
        let mut exported = Vec::new();
        let sent = source.export(&mut exported).unwrap();
        let copy = Db::open(tmp.path().join("copy"), options(history)).unwrap();
        let received = copy.import(&mut BufReader::new(&exported[..])).unwrap();
        prop_assert_eq!(sent, received);
        prop_assert_eq!(scan_all(&source), scan_all(&copy));
        prop_assert_eq!(answers(&source), answers(&copy));
        prop_assert_eq!(source.stats().seal, copy.stats().seal);

        // The same future on both: late and duplicate batches, compactions, seals.
        for s in &after {
            let s = clamp(s);
            prop_assert_eq!(apply(&source, &batches, &s), apply(&copy, &batches, &s), "{:?}", s);
        }
        prop_assert_eq!(scan_all(&source), scan_all(&copy));
        // How far back history reaches now depends on what each compaction chose to fold
        // (the logs differ physically); within the history both still have, answers agree.
        for (theirs, ours) in answers(&source).iter().zip(answers(&copy)) {
            let both = !theirs.starts_with("history") && !ours.starts_with("history");
            prop_assert!(!both || *theirs == ours, "{} != {}", theirs, ours);
        }
        drop(copy);
        let copy = Db::open(tmp.path().join("copy"), options(history)).unwrap();
        prop_assert_eq!(scan_all(&source), scan_all(&copy));
    }
}

#[test]
fn import_refuses_a_database_that_holds_data_and_names_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), options(History::None)).unwrap();
    let bad = b"{\"batch\":[{\"aggregate\":\"a\",\"seq\":1,\"patch\":{}}]}\n{\"state\":{\"aggregate\":\"a\",\"horizon\":null,\"max_seq\":1,\"folded\":1,\"encoded\":\"AAAA\"}}\n";
    let err = db.import(&mut BufReader::new(&bad[..])).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    let err = db.import(&mut BufReader::new(&b""[..])).unwrap_err();
    assert!(err.to_string().contains("already holds data"), "{err}");
    let value: Value = json!(1);
    assert!(value.is_number());
}
