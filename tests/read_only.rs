//! Readers beside the writer: a read-only handle takes no lock, writes nothing, sees what was
//! written before it opened and, after each refresh, everything written before the refresh,
//! while the writer appends, checkpoints and compacts (deleting segments under it).
//! `READ_ONLY_SECONDS=60 cargo test --release --test read_only` races for a minute.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use aggrelog::{Db, Error};
use common::{batch_of, oracle, patch, present_batches, scan_all, small_log_options, TestDelta};
use serde_json::json;

/// Batch `n`: marker aggregates first and last, shared aggregates between (some deleted).
fn batch(n: usize) -> Vec<TestDelta> {
    let seq = n as u64 + 1;
    let mut deltas = vec![patch(&format!("m{n}-first"), seq, json!({"n": n}))];
    for i in 0..5 {
        let id = format!("shared-{}", (n * 7 + i) % 13);
        let value = if (n + i).is_multiple_of(11) {
            json!(null)
        } else {
            json!(n)
        };
        deltas.push(patch(&id, seq, json!({"v": value, "i": i})));
    }
    deltas.push(patch(&format!("m{n}-last"), seq, json!({"n": n})));
    deltas
}

/// Checks a reader's states: no batch partly there, every batch acknowledged before `floor`
/// there, no batch from `written` on, and the states equal the oracle over exactly the batches
/// there.
fn check_reader(reader: &Db, floor: usize, written: usize) -> usize {
    let states = scan_all(reader);
    let present: BTreeSet<usize> = present_batches(&states, written).into_iter().collect();
    assert!(
        (0..floor).all(|n| present.contains(&n)),
        "a batch written before is missing"
    );
    assert!(
        !states.contains_key(&format!("m{written}-first")),
        "batch {written} was not written yet"
    );
    let expected: Vec<Vec<TestDelta>> = present.iter().map(|&n| batch(n)).collect();
    assert_eq!(states, oracle(&expected), "reader states over {present:?}");
    present.len()
}

/// Batches the writer has written or may be writing now: those acknowledged and the one whose
/// write may be waiting for its fsync, which a reader may already see (DESIGN.md section 6b).
fn written_or_in_flight(acknowledged: &AtomicUsize) -> usize {
    acknowledged.load(Ordering::SeqCst) + 1
}

#[test]
fn a_reader_beside_a_writer_that_appends_checkpoints_and_compacts() {
    let seconds: u64 = std::env::var("READ_ONLY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let writer = Arc::new(Db::open(&dir, small_log_options()).unwrap());
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (writer, acknowledged, stop) = (writer.clone(), acknowledged.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                writer.write(&batch_of(&batch(n))).unwrap();
                n += 1;
                acknowledged.store(n, Ordering::SeqCst);
                match n % 97 {
                    0 => drop(writer.checkpoint().unwrap()),
                    31 => drop(writer.compact_by_policy().unwrap()),
                    64 => drop(writer.compact().unwrap()),
                    _ => {}
                }
            }
        })
    };
    while acknowledged.load(Ordering::SeqCst) < 50 {
        thread::yield_now();
    }
    let floor = acknowledged.load(Ordering::SeqCst);
    let reader = Db::open_read_only(&dir, small_log_options()).unwrap();
    assert!(reader.is_read_only());
    let mut checks = 0u32;
    let mut seen = check_reader(&reader, floor, written_or_in_flight(&acknowledged));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let floor = acknowledged.load(Ordering::SeqCst);
        reader.refresh().unwrap();
        let now = check_reader(&reader, floor, written_or_in_flight(&acknowledged));
        assert!(now >= seen, "a refresh never loses a batch");
        seen = now;
        checks += 1;
        if checks.is_multiple_of(5) {
            // A fresh reader opened now sees at least as much.
            let fresh = Db::open_read_only(&dir, small_log_options()).unwrap();
            check_reader(&fresh, floor, written_or_in_flight(&acknowledged));
            // `check` beside the writer finds no damage (an append in progress is a torn tail).
            let report = aggrelog::check(&dir).unwrap();
            assert!(report.is_clean(), "{:?}", report.damage);
        }
    }
    stop.store(true, Ordering::SeqCst);
    writing.join().unwrap();
    let compactions = writer.stats().compaction_runs;
    eprintln!("{checks} refreshes checked, {seen} batches seen, {compactions} compactions");
    assert!(checks > 3 && compactions > 0);

    // Every write of a reader is refused, and it never wrote a byte.
    assert!(matches!(
        reader.write(&batch_of(&batch(0))),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(reader.checkpoint(), Err(Error::ReadOnly)));
    assert!(matches!(reader.compact(), Err(Error::ReadOnly)));
    assert!(matches!(reader.seal(1), Err(Error::ReadOnly)));
    reader.refresh().unwrap();
    check_reader(
        &reader,
        acknowledged.load(Ordering::SeqCst),
        acknowledged.load(Ordering::SeqCst),
    );
}

#[test]
fn a_reader_needs_no_write_permission_and_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open(&dir, small_log_options()).unwrap();
    for n in 0..20 {
        db.write(&batch_of(&batch(n))).unwrap();
    }
    db.checkpoint().unwrap();
    db.close().unwrap();
    // A torn tail a writer would truncate: the reader only does not read it.
    let segment = dir.join("wal").join("00000000000000000003.seg");
    let segment = if segment.exists() {
        segment
    } else {
        fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap()
    };
    let mut bytes = fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[0x77; 9]);
    fs::write(&segment, &bytes).unwrap();
    let listing = |dir: &std::path::Path| -> Vec<(String, u64)> {
        let mut files: Vec<_> = walk(dir);
        files.sort();
        files
    };
    let before = listing(&dir);
    for path in walk_paths(&dir) {
        let mode = if path.is_dir() { 0o500 } else { 0o400 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    let reader = Db::open_read_only(&dir, small_log_options()).unwrap();
    check_reader(&reader, 20, 20);
    assert_eq!(reader.stats().torn_bytes_dropped, 0);
    reader.refresh().unwrap();
    drop(reader);
    for path in walk_paths(&dir) {
        let mode = if path.is_dir() { 0o700 } else { 0o600 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    assert_eq!(listing(&dir), before, "the reader changed no file");
    assert!(matches!(
        Db::open_read_only(tmp.path().join("absent"), small_log_options()),
        Err(Error::NotFound { .. })
    ));
}

fn walk_paths(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut paths = vec![dir.to_path_buf()];
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(walk_paths(&path));
        } else {
            paths.push(path);
        }
    }
    paths
}

fn walk(dir: &std::path::Path) -> Vec<(String, u64)> {
    walk_paths(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), fs::metadata(&p).unwrap().len()))
        .collect()
}
