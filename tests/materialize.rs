//! `Db::materialize`: every live aggregate exactly once, with the state `scan` gives, on any
//! number of threads, before and after compaction; the first error stops it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aggrelog::{Batch, Compression, Db, Error, Options};
use serde_json::{json, Value};

fn filled_db(dir: &std::path::Path) -> Db {
    filled_db_with(dir, Options::default().background_compaction(false))
}

fn filled_db_with(dir: &std::path::Path, options: Options) -> Db {
    let db = Db::open(dir, options).unwrap();
    for b in 0..30u64 {
        let mut batch = Batch::new();
        for d in 0..40u64 {
            let id = format!("a{:03}", (b * 7 + d * 13) % 211);
            if d % 17 == 3 {
                batch.delete(&id, b * 100 + d).unwrap();
            } else {
                let patch = json!({"c": {"k": b, "d": d}, "x": if d % 5 == 0 { Value::Null } else { json!(d) }});
                batch.patch(&id, b * 100 + d, &patch).unwrap();
            }
        }
        db.write(&batch).unwrap();
    }
    db
}

fn materialized(db: &Db, threads: usize) -> BTreeMap<String, Value> {
    let seen = Mutex::new(BTreeMap::new());
    let visited = db
        .materialize(threads, |id, state| {
            let previous = seen.lock().unwrap().insert(id.to_owned(), state.state);
            assert!(previous.is_none(), "{id} visited twice");
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(visited, seen.len() as u64);
    seen
}

fn scanned(db: &Db) -> BTreeMap<String, Value> {
    db.scan()
        .map(|item| {
            let (id, state) = item.unwrap();
            (id, state.state)
        })
        .collect()
}

#[test]
fn every_live_aggregate_once_with_the_state_scan_gives() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled_db(dir.path());
    let expected = scanned(&db);
    assert!(expected.len() > 100);
    for threads in [0, 1, 2, 5] {
        assert_eq!(materialized(&db, threads), expected, "{threads} threads");
    }
    db.compact().unwrap();
    assert_eq!(materialized(&db, 3), expected, "after compaction");
}

#[test]
fn compressed_batches_give_the_same_states() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .background_compaction(false)
        .compression(Some(Compression::default()));
    let db = filled_db_with(dir.path(), options);
    assert!(db.stats().log_bytes > 0);
    let expected = scanned(&db);
    assert_eq!(materialized(&db, 2), expected);
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = filled_db(plain_dir.path());
    assert_eq!(scanned(&plain), expected, "compression changes no state");
}

#[test]
fn the_first_error_of_visit_stops_it_and_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let db = filled_db(dir.path());
    let calls = Mutex::new(0);
    let outcome = db.materialize(2, |_, _| {
        *calls.lock().unwrap() += 1;
        Err(Error::InvalidInput("stop here".into()))
    });
    match outcome {
        Err(Error::InvalidInput(reason)) => assert_eq!(reason, "stop here"),
        other => panic!("expected the visitor's error, got {other:?}"),
    }
    assert!(
        *calls.lock().unwrap() <= 2,
        "each worker stops at its first error"
    );
}

/// A log long enough for open to rebuild the index on several threads (16 MiB or more), with
/// duplicates, conflicts and compaction state records in it: the reopened database has the
/// states, counters and chains the live one had.
#[test]
fn a_long_log_reopens_to_the_same_states_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .background_compaction(false)
            .checkpoint_every_bytes(0)
            .sync(aggrelog::SyncMode::Never)
    };
    let db = Db::open(dir.path(), options()).unwrap();
    let filler = "f".repeat(600);
    for b in 0..300u64 {
        let mut batch = Batch::new();
        for d in 0..200u64 {
            // Every tenth batch repeats the ids and seqs of an earlier one: conflicts.
            let like = if b % 10 == 9 { b - 5 } else { b };
            let id = format!("agg-{}", (like * 37 + d * 11) % 3000);
            let seq = like * 1000 + d;
            let patch = json!({"p": {"b": b % 3, "f": filler}, "d": d});
            batch.patch(&id, seq, &patch).unwrap();
        }
        db.write(&batch).unwrap();
        if b == 60 {
            db.compact().unwrap();
        }
    }
    let before = scanned(&db);
    let stats = db.stats();
    assert!(stats.log_bytes >= 16 << 20, "{} bytes", stats.log_bytes);
    assert!(stats.duplicates + stats.conflicts > 0);
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(scanned(&db), before);
    let after = db.stats();
    assert_eq!(
        (
            after.deltas,
            after.duplicates,
            after.conflicts,
            after.unfolded_deltas
        ),
        (
            stats.deltas,
            stats.duplicates,
            stats.conflicts,
            stats.unfolded_deltas
        )
    );
    assert_eq!(after.live_bytes, stats.live_bytes);
}
