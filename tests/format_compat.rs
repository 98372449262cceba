//! A database written by an older format version opens with the same states and deltas, and
//! keeps working: it takes new writes and reopens.

use std::fs;
use std::path::Path;

use aggrelog::jsonl::{read_batch, render_line};
use aggrelog::model::{binary, DeltaKind};
use aggrelog::{Db, Options, RecordLocation};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v1");

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn scan_lines(db: &Db) -> String {
    db.scan()
        .map(|item| {
            let (id, state) = item.unwrap();
            let line = serde_json::json!({"aggregate": id, "seq": state.seq, "state": state.state});
            line.to_string() + "\n"
        })
        .collect()
}

fn replay_lines(db: &Db) -> String {
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
