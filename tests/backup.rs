//! Online backup: a copy taken while a writer goes on holds every batch acknowledged before it
//! started, no batch partly, equals the oracle over exactly the batches it holds, checks clean,
//! shares the sealed segments through hard links, and outlives the source's compaction.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use aggrelog::{Db, Options, SyncMode};
use common::{batch_of, oracle, patch, present_batches, scan_all, TestDelta};
use serde_json::json;

fn options() -> Options {
    Options::default()
        .sync(SyncMode::Never)
        .segment_size_bytes(16 << 10)
        .background_compaction(false)
        .checkpoint_every_bytes(64 << 10)
}

/// Batch `n`: marker aggregates at its first and last position, and shared aggregates between.
fn batch(n: usize) -> Vec<TestDelta> {
    let seq = n as u64 + 1;
    let mut deltas = vec![patch(&format!("m{n}-first"), seq, json!({"n": n}))];
    for i in 0..6 {
        let id = format!("shared-{}", (n + i) % 9);
        deltas.push(patch(&id, seq, json!({"v": n, "pad": "p".repeat(40 + i)})));
    }
    deltas.push(patch(&format!("m{n}-last"), seq, json!({"n": n})));
    deltas
}

#[test]
fn a_backup_during_writes_is_a_consistent_point_in_time() {
    const BATCHES: usize = 600;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let db = Arc::new(Db::open(&source, options()).unwrap());
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (db, acknowledged) = (Arc::clone(&db), Arc::clone(&acknowledged));
        thread::spawn(move || {
            for n in 0..BATCHES {
                db.write(&batch_of(&batch(n))).unwrap();
                acknowledged.store(n + 1, Ordering::SeqCst);
            }
        })
    };
    while acknowledged.load(Ordering::SeqCst) < BATCHES / 3 {
        thread::yield_now();
    }
    let before = acknowledged.load(Ordering::SeqCst);
    let dest = tmp.path().join("backup");
    let report = db.backup(&dest).unwrap();
    writer.join().unwrap();
    assert!(report.bytes > 0 && report.linked_bytes > 0, "{report:?}");
    assert!(
        report.linked_bytes < report.bytes,
        "the active segment is copied"
    );

    // The source compacts everything away; the backup keeps its own names of the files.
    db.compact().unwrap();

    let copy = Db::open(&dest, options()).unwrap();
    let states = scan_all(&copy);
    let present: BTreeSet<usize> = present_batches(&states, BATCHES).into_iter().collect();
    assert!(
        (0..before).all(|n| present.contains(&n)),
        "an acknowledged batch is missing"
    );
    assert!(
        present.len() < BATCHES,
        "the backup is not the log at its end"
    );
    let expected: Vec<Vec<TestDelta>> = present.iter().map(|&n| batch(n)).collect();
    assert_eq!(states, oracle(&expected));
    assert_eq!(copy.stats().torn_bytes_dropped, 0);
    copy.close().unwrap();
    assert!(aggrelog::check(&dest).unwrap().is_clean());

    // It is a database of its own: it takes writes and reopens.
    let copy = Db::open(&dest, options()).unwrap();
    copy.write(&batch_of(&batch(BATCHES))).unwrap();
    copy.close().unwrap();
    let copy = Db::open(&dest, options()).unwrap();
    assert!(copy.get(&format!("m{BATCHES}-last")).unwrap().is_some());
}

#[test]
fn a_backup_refuses_an_existing_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path().join("db"), options()).unwrap();
    db.write(&batch_of(&batch(0))).unwrap();
    let err = db.backup(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
}
