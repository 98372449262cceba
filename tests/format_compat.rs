//! A database written by an older format version opens with the same states and deltas, and
//! keeps working: it takes new writes and reopens.

mod common;

use std::fs;
use std::path::Path;

use aggrelog::jsonl::read_batch;
use aggrelog::{Db, Options};
use common::{copy_dir, replay_lines};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v1");

fn scan_lines(db: &Db) -> String {
    db.scan()
        .map(|item| {
            let (id, state) = item.unwrap();
            let line = serde_json::json!({"aggregate": id, "seq": state.seq, "state": state.state});
            line.to_string() + "\n"
        })
        .collect()
}

/// Opens a copy of `fixture`'s database in `dir`, checks its states and deltas against the
/// fixture's `scan.jsonl` and `replay.jsonl`, and returns it with its directory and the
/// expected replay.
fn open_fixture(fixture: &str, dir: &Path) -> (Db, std::path::PathBuf, String) {
    let db_dir = dir.join("db");
    copy_dir(&Path::new(fixture).join("db"), &db_dir);
    let expected_scan = fs::read_to_string(Path::new(fixture).join("scan.jsonl")).unwrap();
    let expected_replay = fs::read_to_string(Path::new(fixture).join("replay.jsonl")).unwrap();
    let db = Db::open(&db_dir, Options::default()).unwrap();
    assert_eq!(scan_lines(&db), expected_scan);
    assert_eq!(replay_lines(&db), expected_replay);
    (db, db_dir, expected_replay)
}

#[test]
fn a_format_1_database_opens_with_the_same_states_and_takes_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (db, db_dir, expected_replay) = open_fixture(FIXTURE, dir.path());

    let new = r#"{"aggregate":"aircraft-0000001","seq":10,"patch":{"engine":{"n":8}}}"#;
    db.write(&read_batch(new.as_bytes()).unwrap()).unwrap();
    db.close().unwrap();

    let db = Db::open(&db_dir, Options::default()).unwrap();
    assert_eq!(replay_lines(&db), expected_replay + new + "\n");
    let state = db.get("aircraft-0000001").unwrap().unwrap();
    assert_eq!(state.seq, 10);
    assert_eq!(state.state["engine"]["n"], 8);
    db.compact().unwrap();
    db.close().unwrap();
    let db = Db::open(&db_dir, Options::default()).unwrap();
    assert_eq!(
        db.get("aircraft-0000001").unwrap().unwrap().state["engine"]["n"],
        8
    );
}

const FIXTURE_V3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v3");

#[test]
fn a_format_3_database_opens_with_the_same_states_and_moves_to_the_current_format() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    copy_dir(&Path::new(FIXTURE_V3).join("db"), &db_dir);
    let expected_scan = fs::read_to_string(Path::new(FIXTURE_V3).join("scan.jsonl")).unwrap();
    let expected_replay = fs::read_to_string(Path::new(FIXTURE_V3).join("replay.jsonl")).unwrap();

    let db = Db::open(&db_dir, Options::default()).unwrap();
    assert_eq!(
        db.stats().checkpoint.map(|c| c.number),
        Some(3),
        "its checkpoint is read"
    );
    assert_eq!(scan_lines(&db), expected_scan);
    assert_eq!(replay_lines(&db), expected_replay);
    // A write goes to a new current-version segment: one with a positions table and a source
    // range.
    let mut batch = aggrelog::Batch::new();
    batch
        .patch_at(
            "aircraft-0000001",
            10,
            3,
            &serde_json::json!({"engine": {"n": 8}}),
        )
        .unwrap()
        .set_source(aggrelog::SourceRange {
            topic: "t".into(),
            partition: 0,
            first_offset: 0,
            next_offset: 1,
            dead_letters: 0,
        })
        .unwrap();
    db.write(&batch).unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();

    let db = Db::open(&db_dir, Options::default()).unwrap();
    assert_eq!(db.source_positions()[0].next_offset, 1);
    let state = db.get("aircraft-0000001").unwrap().unwrap();
    assert_eq!(state.state["engine"]["n"], 8);
    let versions: Vec<u32> = fs::read_dir(db_dir.join("wal"))
        .unwrap()
        .map(|e| {
            let bytes = fs::read(e.unwrap().path()).unwrap();
            u32::from_le_bytes(bytes[8..12].try_into().unwrap())
        })
        .collect();
    assert!(
        versions.contains(&3) && versions.contains(&5),
        "{versions:?}"
    );
}

const FIXTURE_V4: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v4");

fn segment_versions(db_dir: &Path) -> Vec<u32> {
    fs::read_dir(db_dir.join("wal"))
        .unwrap()
        .map(|e| {
            let bytes = fs::read(e.unwrap().path()).unwrap();
            u32::from_le_bytes(bytes[8..12].try_into().unwrap())
        })
        .collect()
}

#[test]
fn a_format_4_database_opens_with_the_same_states_and_names_and_takes_a_retraction() {
    let dir = tempfile::tempdir().unwrap();
    let (db, db_dir, expected_replay) = open_fixture(FIXTURE_V4, dir.path());
    assert_eq!(
        db.stats().checkpoint.map(|c| c.number),
        Some(3),
        "its version 2 checkpoint is read"
    );
    assert_eq!(replay_lines(&db), expected_replay);
    // Its named batches are found: one with a positions table is retracted, in a new segment.
    let before = db.get("aircraft-0000003").unwrap().unwrap();
    assert_eq!(before.state["cabin"]["seats"], 180);
    let retraction = db.retract("tabled").unwrap();
    assert_eq!(retraction.deltas, 2);
    assert_ne!(db.get("aircraft-0000003").unwrap(), Some(before));
    db.close().unwrap();
    let db = Db::open(&db_dir, Options::default()).unwrap();
    assert_eq!(db.retracted_batches(), vec!["tabled".to_owned()]);
    assert_ne!(
        db.get("aircraft-0000003").unwrap().unwrap().state["cabin"]["seats"],
        180
    );
    let versions = segment_versions(&db_dir);
    assert!(
        versions.contains(&4) && versions.contains(&5),
        "{versions:?}"
    );
}
