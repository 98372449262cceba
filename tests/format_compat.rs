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

#[test]
fn a_format_1_database_opens_with_the_same_states_and_takes_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    copy_dir(&Path::new(FIXTURE).join("db"), &db_dir);
    let expected_scan = fs::read_to_string(Path::new(FIXTURE).join("scan.jsonl")).unwrap();
    let expected_replay = fs::read_to_string(Path::new(FIXTURE).join("replay.jsonl")).unwrap();

    let db = Db::open(&db_dir, Options::default()).unwrap();
    assert_eq!(scan_lines(&db), expected_scan);
    assert_eq!(replay_lines(&db), expected_replay);

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
