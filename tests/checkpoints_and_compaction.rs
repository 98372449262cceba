//! Checkpoint fallback, automatic checkpoints, background compaction, seals and history.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use aggrelog::{CompactionOptions, Db, Error, History, Options, SyncMode};
use common::{batch_of, oracle, patch, scan_all, small_workload, TestDelta};
use serde_json::json;

fn options() -> Options {
    Options::default()
        .sync(SyncMode::Never)
        .segment_size_bytes(8192)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
}

fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir.join("checkpoints"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn open_uses_the_newest_valid_checkpoint_and_falls_back_when_it_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let all = small_workload(30);
    let db = Db::open(dir.path(), options()).unwrap();
    for (i, b) in all.iter().enumerate() {
        db.write(&batch_of(b)).unwrap();
        if i == 9 || i == 19 || i == 24 {
            db.checkpoint().unwrap();
        }
    }
    db.close().unwrap();
    let expected = oracle(&all);
    let files = checkpoint_files(dir.path());
    assert_eq!(files.len(), 2, "the newest two are kept: {files:?}");

    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.stats().checkpoint.map(|c| c.number), Some(3));
    assert!(db.stats().checkpoints_rejected.is_empty());
    assert_eq!(scan_all(&db), expected);
    drop(db);

    // Damage the newest: the previous one is used, and the state is the same.
    let mut bytes = fs::read(&files[1]).unwrap();
    bytes[200] ^= 0xff;
    fs::write(&files[1], bytes).unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.stats().checkpoint.map(|c| c.number), Some(2));
    assert_eq!(db.stats().checkpoints_rejected.len(), 1);
    assert!(db.stats().checkpoints_rejected[0].contains("checksum"));
    assert_eq!(scan_all(&db), expected);
    drop(db);

    // Truncate the other one too: full replay, same state.
    let len = fs::metadata(&files[0]).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.stats().checkpoint, None);
    assert_eq!(db.stats().checkpoints_rejected.len(), 2);
    assert_eq!(scan_all(&db), expected);
}

#[test]
fn a_checkpoint_pointing_at_a_deleted_segment_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let all = small_workload(30);
    let db = Db::open(dir.path(), options()).unwrap();
    for b in &all {
        db.write(&batch_of(b)).unwrap();
    }
    db.checkpoint().unwrap();
    db.close().unwrap();
    // Simulate losing a segment the checkpoint refers to (keep a copy to restore the log).
    let seg = dir.path().join("wal").join(format!("{:020}.seg", 1));
    let saved = fs::read(&seg).unwrap();
    fs::remove_file(&seg).unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.stats().checkpoint, None, "the checkpoint is not trusted");
    assert!(db.stats().checkpoints_rejected[0].contains("missing segment"));
    drop(db);
    fs::write(&seg, saved).unwrap();
}

#[test]
fn automatic_checkpoints_follow_the_log_volume() {
    let dir = tempfile::tempdir().unwrap();
    let all = small_workload(40);
    let db = Db::open(dir.path(), options().checkpoint_every_bytes(4096)).unwrap();
    for b in &all {
        db.write(&batch_of(b)).unwrap();
    }
    let number = db.stats().checkpoint.expect("checkpointed").number;
    assert!(number >= 3, "checkpoint number {number}");
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(scan_all(&db), oracle(&all));
}

#[test]
fn background_compaction_folds_and_reclaims_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let options = options().compaction(CompactionOptions {
        background: true,
        max_unfolded_deltas: 4,
        interval: Duration::from_millis(10),
        ..CompactionOptions::default()
    });
    let all = small_workload(120);
    let db = Db::open(dir.path(), options.clone()).unwrap();
    for b in &all {
        db.write(&batch_of(b)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.stats().segments_deleted == 0 || db.stats().unfolded_deltas > 11 * 5 {
        assert!(
            Instant::now() < deadline,
            "no background progress: {:?}",
            db.stats()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let stats = db.stats();
    assert!(
        stats.compaction_runs > 0 && stats.bytes_rewritten > 0,
        "{stats:?}"
    );
    assert!(stats.write_amplification > 1.0);
    assert_eq!(stats.last_maintenance_error, None);
    assert_eq!(scan_all(&db), oracle(&all));
    db.close().unwrap();
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(scan_all(&db), oracle(&all));
}

#[test]
fn a_seal_rejects_older_deltas_and_survives_reopen_and_reclamation() {
    let dir = tempfile::tempdir().unwrap();
    let all = small_workload(20);
    let db = Db::open(dir.path(), options()).unwrap();
    for b in &all {
        db.write(&batch_of(b)).unwrap();
    }
    db.seal(15).unwrap();
    db.seal(4).unwrap(); // never moves back
    let late = vec![
        patch("fresh", 16, json!({})),
        patch("a1", 14, json!({"late": true})),
    ];
    let err = db.write(&batch_of(&late)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Sealed {
                seq: 14,
                seal: 15,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("below the seal"));
    assert!(
        db.get("fresh").unwrap().is_none(),
        "nothing of the rejected batch applied"
    );
    let before = db.stats().log_bytes;
    db.compact().unwrap();
    assert!(db.stats().log_bytes < before);
    assert_eq!(scan_all(&db), oracle(&all));
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.stats().seal, 15);
    assert!(db.write(&batch_of(&late)).is_err());
    assert_eq!(scan_all(&db), oracle(&all));
    // Without the checkpoints, the re-recorded seal record still carries it.
    drop(db);
    fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.stats().seal, 15);
    assert_eq!(scan_all(&db), oracle(&all));
}

#[test]
fn history_decides_what_get_as_of_can_answer_after_compaction() {
    let all = small_workload(20);
    for history in [History::None, History::Window(5), History::All] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options().history(history)).unwrap();
        for b in &all {
            db.write(&batch_of(b)).unwrap();
        }
        db.compact().unwrap();
        assert_eq!(scan_all(&db), oracle(&all));
        for as_of in [3u64, 12, 16, 20] {
            let older: Vec<Vec<TestDelta>> = all
                .iter()
                .map(|b| b.iter().filter(|d| d.seq <= as_of).cloned().collect())
                .collect();
            let then = oracle(&older);
            let answerable = match history {
                History::None => as_of >= 20,
                History::Window(w) => as_of >= 20 - w,
                History::All => true,
            };
            for id in ["a0", "a5", "a7"] {
                match db.get_as_of(id, as_of) {
                    Ok(got) => {
                        assert_eq!(got.map(|s| (s.seq, s.state)).as_ref(), then.get(id));
                    }
                    Err(Error::HistoryUnavailable { oldest, .. }) => {
                        assert!(!answerable, "{history:?} as of {as_of}");
                        assert!(oldest > as_of);
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        if history == History::All {
            assert_eq!(db.stats().unfolded_deltas, db.stats().deltas);
        }
    }
}

#[test]
fn reads_never_fail_while_compaction_deletes_segments() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), options().segment_size_bytes(4096)).unwrap());
    let all = Arc::new(small_workload(400));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, all) = (Arc::clone(&db), Arc::clone(&all));
        thread::spawn(move || {
            for b in all.iter() {
                db.write(&batch_of(b)).unwrap();
            }
        })
    };
    let compactor = {
        let (db, done) = (Arc::clone(&db), Arc::clone(&done));
        thread::spawn(move || {
            let mut deleted = 0;
            while !done.load(Ordering::SeqCst) {
                deleted += db.compact().unwrap().segments_deleted;
            }
            deleted
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (db, done) = (Arc::clone(&db), Arc::clone(&done));
            thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    for id in ["a1", "a4", "a9"] {
                        db.get(id).unwrap();
                    }
                    db.scan().for_each(|item| drop(item.unwrap()));
                    db.replay(aggrelog::RecordLocation::START)
                        .for_each(|d| drop(d.unwrap()));
                }
            })
        })
        .collect();
    writer.join().unwrap();
    done.store(true, Ordering::SeqCst);
    readers.into_iter().for_each(|r| r.join().unwrap());
    let deleted = compactor.join().unwrap();
    assert!(deleted > 0, "compaction deleted segments during the reads");
    assert_eq!(scan_all(&db), oracle(&all));
}

/// At-least-once delivery: a batch redelivered after a seal below its seq is accepted as the
/// duplicate it is while the database holds its deltas unfolded; a new delta below the seal is
/// still rejected (naming its position), and so is a redelivery once compaction folded it.
#[test]
fn a_redelivered_batch_below_the_seal_is_a_duplicate_a_new_delta_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let old = vec![
        patch("a", 3, json!({"x": 1})),
        patch("b", 3, json!({"y": 2})),
    ];
    let fresh = patch("c", 20, json!({"z": 3}));
    db.write(&batch_of(&old)).unwrap();
    db.seal(10).unwrap();
    let duplicates = db.stats().duplicates;
    db.write(&batch_of(&old)).unwrap();
    assert_eq!(db.stats().duplicates, duplicates + 2);
    // The old deltas in their places plus a new one above the seal: accepted.
    let mut mixed = old.clone();
    mixed.push(fresh);
    db.write(&batch_of(&mixed)).unwrap();
    let mut redelivered_with_new = old.clone();
    redelivered_with_new[1] = patch("b", 3, json!({"y": "changed"}));
    match db.write(&batch_of(&redelivered_with_new)).unwrap_err() {
        Error::Sealed {
            aggregate,
            position,
            seq,
            seal,
        } => assert_eq!((aggregate.as_str(), position, seq, seal), ("b", 1, 3, 10)),
        other => panic!("expected Sealed, got {other}"),
    }
    assert_eq!(db.get("b").unwrap().unwrap().state, json!({"y": 2}));
    db.compact().unwrap();
    assert!(matches!(
        db.write(&batch_of(&old)),
        Err(Error::Sealed { .. })
    ));
    assert_eq!(scan_all(&db), oracle(&[old, mixed]));
}
