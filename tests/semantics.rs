//! Duplicates, conflicts, concurrency, replay positions, compression and limits.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use aggrelog::{Batch, Compression, Db, Error, Options, RecordLocation, SyncMode};
use common::{batch_of, oracle, patch, scan_all, TestDelta};
use serde_json::json;

#[test]
fn db_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Db>();
}

#[test]
fn redelivered_batches_are_idempotent_and_counted_as_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let batch = vec![
        patch("a", 1, json!({"x": 1, "y": {"z": null}})),
        patch("a", 1, json!({"x": 2})),
    ];
    let later = vec![patch("a", 2, json!({"y": {"w": 3}}))];
    for b in [&batch, &later, &batch, &batch] {
        db.write(&batch_of(b)).unwrap();
    }
    assert_eq!(scan_all(&db), oracle(&[batch.clone(), later.clone()]));
    let stats = db.stats();
    assert_eq!(stats.duplicates, 4);
    assert_eq!(stats.conflicts, 0);
}

#[test]
fn conflicting_deltas_resolve_the_same_way_in_every_arrival_order() {
    let x = vec![patch(
        "k",
        5,
        json!({"v": 1, "only_x": true, "n": {"a": 1}}),
    )];
    let y = vec![patch("k", 5, json!({"v": 2, "n": null}))];
    let mut results = Vec::new();
    for order in [[&x, &y], [&y, &x]] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        for b in order {
            db.write(&batch_of(b)).unwrap();
        }
        assert_eq!(db.stats().conflicts, 1);
        let state = scan_all(&db);
        db.close().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(scan_all(&db), state, "stable across reopen");
        assert_eq!(db.stats().conflicts, 1);
        results.push(state);
    }
    assert_eq!(results[0], results[1]);
    // The winner is one of the two sequential outcomes, not a mix.
    let x_then_y = oracle(&[vec![x[0].clone(), y[0].clone()]]);
    let y_then_x = oracle(&[vec![y[0].clone(), x[0].clone()]]);
    assert!(
        results[0] == x_then_y || results[0] == y_then_x,
        "{results:?}"
    );
}

#[test]
fn concurrent_writers_and_readers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let writers = 6;
    let per_writer = 20;
    let batches: Vec<Vec<TestDelta>> = (0..writers * per_writer)
        .map(|i| {
            let seq = i as u64 + 1;
            vec![
                patch(
                    &format!("agg-{}", i % 7),
                    seq,
                    json!({"w": i, "s": {"k": i % 3}}),
                ),
                patch("shared", seq, json!({format!("f{}", i % 5): i})),
            ]
        })
        .collect();
    let batches = Arc::new(batches);
    let mut handles = Vec::new();
    for w in 0..writers {
        let (db, batches) = (Arc::clone(&db), Arc::clone(&batches));
        handles.push(thread::spawn(move || {
            for i in (w..batches.len()).step_by(writers) {
                db.write(&batch_of(&batches[i])).unwrap();
            }
        }));
    }
    let reader = {
        let db = Arc::clone(&db);
        thread::spawn(move || {
            let mut reads = 0;
            for _ in 0..200 {
                if db.get("shared").unwrap().is_some() {
                    reads += 1;
                }
                db.scan().for_each(|item| drop(item.unwrap()));
            }
            reads
        })
    };
    handles.into_iter().for_each(|h| h.join().unwrap());
    reader.join().unwrap();
    let expected = oracle(&batches);
    assert_eq!(scan_all(&db), expected);
    assert_eq!(db.stats().batches, (writers * per_writer) as u64);
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(scan_all(&db), expected);
}

#[test]
fn replay_yields_deltas_in_log_order_with_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_size_bytes(4096);
    let db = Db::open(dir.path(), options).unwrap();
    let mut written = Vec::new();
    for seq in (1..=30).rev() {
        let b = vec![
            patch("r", seq, json!({"pad": "p".repeat(200), "seq": seq})),
            common::delete("q", seq),
        ];
        let receipt = db.write(&batch_of(&b)).unwrap();
        written.push((receipt.location.unwrap(), b));
    }
    assert!(db.stats().segments > 1);
    let replayed: Vec<_> = db
        .replay(RecordLocation::START)
        .collect::<aggrelog::Result<_>>()
        .unwrap();
    assert_eq!(replayed.len(), 60);
    for (i, delta) in replayed.iter().enumerate() {
        let (location, batch) = &written[i / 2];
        assert_eq!(delta.location, *location);
        assert_eq!(delta.position as usize, i % 2);
        assert_eq!(delta.aggregate, batch[i % 2].aggregate);
        assert_eq!(delta.seq, batch[i % 2].seq);
    }
    let from = written[10].0;
    let tail: Vec<_> = db.replay(from).map(|d| d.unwrap().location).collect();
    assert_eq!(tail.len(), 40);
    assert_eq!(tail[0], from);
}

#[test]
fn compressed_batches_read_back_identically_and_take_less_space() {
    let batches: Vec<Vec<TestDelta>> = (1..=20)
        .map(|seq| {
            (0..50)
                .map(|i| {
                    patch(
                        &format!("c{i}"),
                        seq,
                        json!({"engine": {"status": "serviceable", "hours": seq * i}}),
                    )
                })
                .collect()
        })
        .collect();
    let mut sizes = Vec::new();
    let compress = Compression {
        level: 1,
        min_batch_bytes: 1024,
    };
    for compression in [None, Some(compress)] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().compression(compression);
        let db = Db::open(dir.path(), options.clone()).unwrap();
        for b in &batches {
            db.write(&batch_of(b)).unwrap();
        }
        assert_eq!(scan_all(&db), oracle(&batches));
        sizes.push(db.stats().log_bytes);
        db.close().unwrap();
        let db = Db::open(dir.path(), options).unwrap();
        assert_eq!(scan_all(&db), oracle(&batches));
        assert_eq!(db.replay(RecordLocation::START).count(), 1000);
    }
    assert!(
        sizes[1] * 2 < sizes[0],
        "compressed {} vs plain {}",
        sizes[1],
        sizes[0]
    );
}

#[test]
fn a_batch_larger_than_a_segment_is_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default().segment_size_bytes(4096)).unwrap();
    let mut batch = Batch::new();
    batch
        .patch("big", 1, &json!({"blob": "z".repeat(8000)}))
        .unwrap();
    let err = db.write(&batch).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert_eq!(db.stats().deltas, 0);
    assert!(db.get("big").unwrap().is_none());
}

#[test]
fn invalid_ids_and_patches_are_rejected() {
    let mut batch = Batch::new();
    assert!(batch.patch("", 1, &json!({})).is_err());
    assert!(batch.patch(&"x".repeat(1025), 1, &json!({})).is_err());
    assert!(batch.patch(&"x".repeat(1024), 1, &json!({})).is_ok());
    assert!(batch.patch("a", 1, &json!([1, 2])).is_err());
    assert!(batch.patch("a", 1, &json!("s")).is_err());
    assert_eq!(batch.len(), 1);
}

#[test]
fn interval_and_never_sync_modes_commit_and_survive_a_clean_close() {
    for sync in [
        SyncMode::Interval(Duration::from_millis(5)),
        SyncMode::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().sync(sync);
        let db = Db::open(dir.path(), options.clone()).unwrap();
        let b = vec![patch("i", 1, json!({"ok": true}))];
        db.write(&batch_of(&b)).unwrap();
        thread::sleep(Duration::from_millis(20));
        db.close().unwrap();
        let db = Db::open(dir.path(), options).unwrap();
        assert_eq!(scan_all(&db), oracle(&[b]));
    }
}

#[test]
fn an_empty_patch_creates_an_empty_aggregate_and_a_delete_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.write(&batch_of(&[patch("e", 1, json!({}))])).unwrap();
    assert_eq!(db.get("e").unwrap().unwrap().state, json!({}));
    db.write(&batch_of(&[common::delete("e", 2)])).unwrap();
    assert!(db.get("e").unwrap().is_none());
    assert_eq!(db.get_as_of("e", 1).unwrap().unwrap().state, json!({}));
    assert!(db.get_as_of("e", 0).unwrap().is_none());
}

/// An aggregate with hundreds of attributes, set, nested and removed by deltas that arrive out
/// of order: every node wide enough to change its in-memory form, at the top and inside.
#[test]
fn a_wide_aggregate_folds_like_the_oracle_through_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .background_compaction(false)
        .checkpoint_every_bytes(0);
    let batches: Vec<Vec<TestDelta>> = (0..3000u64)
        .map(|i| {
            let seq = (i * 7919) % 3000 + 1;
            let key = format!("attr{}", (i * 104_729) % 400);
            let value = match i % 9 {
                0 => json!(null),
                1 => json!({"nested": {format!("n{}", i % 150): i}}),
                _ => json!(i),
            };
            vec![patch("wide", seq, json!({ key: value }))]
        })
        .collect();
    let expected = oracle(&batches);
    let db = Db::open(dir.path(), options.clone()).unwrap();
    for b in &batches {
        db.write(&batch_of(b)).unwrap();
    }
    assert_eq!(scan_all(&db), expected);
    let width = expected["wide"].1.as_object().unwrap().len();
    assert!(width > 200, "{width} attributes");
    db.compact().unwrap();
    assert_eq!(scan_all(&db), expected, "after compaction");
    db.close().unwrap();
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(scan_all(&db), expected, "reopened");
}

/// A batch delivered again whose deltas are all held unfolded is not stored again: the log does
/// not grow with redeliveries, and the count of duplicates survives a close and reopen.
#[test]
fn a_redelivered_batch_is_recognised_and_not_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .background_compaction(false)
        .checkpoint_every_bytes(0);
    let db = Db::open(dir.path(), options.clone()).unwrap();
    let batch: Vec<TestDelta> = (0..50)
        .map(|i| patch(&format!("a{}", i % 7), 3, json!({"v": i})))
        .collect();
    let first = db.write(&batch_of(&batch)).unwrap();
    assert!(!first.redelivered && first.location.is_some());
    let log_bytes = db.stats().log_bytes;
    for _ in 0..1000 {
        let again = db.write(&batch_of(&batch)).unwrap();
        assert!(again.redelivered && again.location.is_none() && again.deltas == 50);
    }
    assert_eq!(db.stats().log_bytes, log_bytes, "nothing stored again");
    assert_eq!(db.stats().duplicates, 50_000);
    // One new delta makes it a batch to store (its held deltas count as duplicates when
    // indexed, as before).
    let mut grown = batch.clone();
    grown.push(patch("new", 3, json!({"v": -1})));
    assert!(!db.write(&batch_of(&grown)).unwrap().redelivered);
    assert!(db.stats().log_bytes > log_bytes);
    let expected = oracle(&[batch, grown]);
    assert_eq!(scan_all(&db), expected);
    db.close().unwrap();
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(scan_all(&db), expected);
    assert_eq!(
        db.stats().duplicates,
        50_050,
        "close kept the count in a checkpoint"
    );
}
