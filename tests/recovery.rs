//! Recovery on open: torn tails are truncated, earlier damage is refused (Strict) or skipped
//! (SkipCorrupt), never silently dropped.

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use aggrelog::testing::internals::format::COMMIT_FRAME_BYTES;
use aggrelog::{Db, Error, Options, RecordLocation, RecoveryMode, SyncMode};
use common::{batch_of, oracle, patch, scan_all, TestDelta};
use serde_json::json;

fn batches() -> Vec<Vec<TestDelta>> {
    (1..=3)
        .map(|seq| {
            vec![
                patch("a", seq, json!({"n": seq, "tag": format!("batch-{seq}")})),
                patch("b", seq, json!({"m": {"k": seq}})),
            ]
        })
        .collect()
}

fn segment(dir: &Path, id: u64) -> PathBuf {
    dir.join("wal").join(format!("{id:020}.seg"))
}

/// Writes the batches; returns the location of each.
fn write_all(dir: &Path, options: &Options, batches: &[Vec<TestDelta>]) -> Vec<RecordLocation> {
    let db = Db::open(dir, options.clone()).unwrap();
    let locations = batches
        .iter()
        .map(|b| db.write(&batch_of(b)).unwrap().location.unwrap())
        .collect();
    db.close().unwrap();
    locations
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_torn_tail_at_every_byte_of_the_last_record_is_truncated() {
    let template = tempfile::tempdir().unwrap();
    let all = batches();
    let locations = write_all(template.path(), &Options::default(), &all);
    let seg = segment(template.path(), 1);
    let full_len = fs::metadata(&seg).unwrap().len();
    let last_start = locations[2].offset;
    let expected = oracle(&all[..2]);
    for cut in last_start..full_len {
        for zero_fill in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let copy = dir.path().join("wal");
            fs::create_dir(&copy).unwrap();
            let mut bytes = fs::read(&seg).unwrap();
            bytes.truncate(cut as usize);
            if zero_fill {
                bytes.resize(full_len as usize, 0);
            }
            fs::write(segment(dir.path(), 1), &bytes).unwrap();

            let db = Db::open(dir.path(), Options::default()).unwrap();
            let stats = db.stats();
            assert_eq!(
                stats.torn_bytes_dropped,
                bytes.len() as u64 - last_start,
                "cut {cut}"
            );
            assert_eq!(scan_all(&db), expected, "cut {cut}");
            // The log is usable after recovery: append and reopen.
            db.write(&batch_of(&all[2])).unwrap();
            db.close().unwrap();
            let db = Db::open(dir.path(), Options::default()).unwrap();
            assert_eq!(db.stats().torn_bytes_dropped, 0);
            assert_eq!(scan_all(&db), oracle(&all), "cut {cut} after re-append");
        }
    }
}

#[test]
fn a_bit_flip_before_valid_records_fails_strict_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let all = batches();
    let locations = write_all(dir.path(), &Options::default(), &all);
    let seg = segment(dir.path(), 1);
    // Flip a byte in the body of the first record.
    flip_byte(&seg, locations[0].offset + 20);
    let len_before = fs::metadata(&seg).unwrap().len();

    let err = Db::open(dir.path(), Options::default()).err().unwrap();
    match &err {
        Error::Corruption { file, offset, .. } => {
            assert_eq!(file, &seg);
            assert_eq!(*offset, locations[0].offset);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("00000000000000000001.seg"), "{message}");
    assert!(
        message.contains(&format!("offset {}", locations[0].offset)),
        "{message}"
    );
    // Nothing was truncated or changed by the failed open.
    assert_eq!(fs::metadata(&seg).unwrap().len(), len_before);

    let options = Options::default().recovery(RecoveryMode::SkipCorrupt);
    let db = Db::open(dir.path(), options).unwrap();
    let stats = db.stats();
    assert_eq!(stats.skipped.len(), 1);
    assert_eq!(stats.skipped[0].offset, locations[0].offset);
    // Up to the next valid frame: the commit record that opens the second batch's write.
    assert_eq!(
        stats.skipped[0].bytes,
        locations[1].offset - COMMIT_FRAME_BYTES as u64 - locations[0].offset
    );
    assert_eq!(stats.torn_bytes_dropped, 0);
    assert_eq!(scan_all(&db), oracle(&all[1..]));
}

#[test]
fn a_bit_flip_in_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let all = batches();
    let locations = write_all(dir.path(), &Options::default(), &all);
    let seg = segment(dir.path(), 1);
    flip_byte(&seg, locations[2].offset + 30);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert!(db.stats().torn_bytes_dropped > 0);
    assert_eq!(scan_all(&db), oracle(&all[..2]));
    assert_eq!(fs::metadata(&seg).unwrap().len(), locations[2].offset);
}

#[test]
fn damage_at_the_end_of_a_sealed_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_size_bytes(4096);
    let mut all = Vec::new();
    for seq in 1..=40 {
        all.push(vec![patch(
            "a",
            seq,
            json!({"pad": "x".repeat(300), "n": seq}),
        )]);
    }
    let locations = write_all(dir.path(), &options, &all);
    assert!(locations.last().unwrap().segment > 1, "rotation expected");
    let last_in_first = locations.iter().rfind(|l| l.segment == 1).unwrap();
    let seg = segment(dir.path(), 1);
    flip_byte(&seg, last_in_first.offset + 16);

    let err = Db::open(dir.path(), options.clone()).err().unwrap();
    assert!(
        matches!(err, Error::Corruption { ref file, offset, .. } if *file == seg && offset == last_in_first.offset),
        "{err}"
    );
    let db = Db::open(dir.path(), options.recovery(RecoveryMode::SkipCorrupt)).unwrap();
    assert_eq!(db.stats().skipped.len(), 1);
    let lost = locations.iter().position(|l| l == last_in_first).unwrap();
    let mut kept = all.clone();
    kept.remove(lost);
    assert_eq!(scan_all(&db), oracle(&kept));
}

#[test]
fn a_damaged_segment_header_fails_strict_and_is_skipped_with_skip_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let all = batches();
    write_all(dir.path(), &Options::default(), &all);
    let seg = segment(dir.path(), 1);
    flip_byte(&seg, 3);
    let err = Db::open(dir.path(), Options::default()).err().unwrap();
    assert!(matches!(err, Error::Corruption { offset: 0, .. }), "{err}");
    // The frames still verify (their CRC covers the segment id from the file name).
    let options = Options::default().recovery(RecoveryMode::SkipCorrupt);
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(db.stats().skipped.len(), 1);
    assert_eq!(scan_all(&db), oracle(&all));
}

#[test]
fn a_last_segment_with_an_incomplete_header_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let all = batches();
    write_all(dir.path(), &Options::default(), &all);
    let partial = segment(dir.path(), 2);
    fs::write(&partial, b"AGGR").unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.stats().torn_bytes_dropped, 4);
    assert!(!partial.exists());
    assert_eq!(scan_all(&db), oracle(&all));
}

#[test]
fn records_from_another_segment_file_do_not_validate() {
    // Stale bytes: segment 2 holding a copy of segment 1's bytes (as a reused file would).
    let dir = tempfile::tempdir().unwrap();
    let all = batches();
    write_all(dir.path(), &Options::default(), &all);
    let mut bytes = fs::read(segment(dir.path(), 1)).unwrap();
    // Give the copy a valid header for segment 2 so only the frames are stale.
    let header = {
        let other = tempfile::tempdir().unwrap();
        let opts = Options::default().segment_size_bytes(4096);
        let mut many = Vec::new();
        for seq in 1..=20 {
            many.push(vec![patch("p", seq, json!({"pad": "y".repeat(400)}))]);
        }
        write_all(other.path(), &opts, &many);
        fs::read(segment(other.path(), 2)).unwrap()[..32].to_vec()
    };
    bytes[..32].copy_from_slice(&header);
    fs::write(segment(dir.path(), 2), &bytes).unwrap();
    // A segment 2 with a valid header proves segment 1 was sealed, yet segment 1 has no end
    // record: Strict refuses, naming segment 1 where its records end.
    let err = Db::open(dir.path(), Options::default()).err().unwrap();
    let seg1_len = fs::metadata(segment(dir.path(), 1)).unwrap().len();
    match &err {
        Error::Corruption {
            file,
            offset,
            reason,
        } => {
            assert_eq!(
                (file, *offset),
                (&segment(dir.path(), 1), seg1_len),
                "{err}"
            );
            assert!(reason.contains("end record"), "{err}");
        }
        other => panic!("expected corruption, got {other}"),
    }
    // SkipCorrupt opens: every stale frame fails its CRC (the segment id differs), nothing valid
    // follows them, so they are dropped as a torn tail; every real batch is intact.
    let options = Options::default().recovery(RecoveryMode::SkipCorrupt);
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(db.stats().torn_bytes_dropped, bytes.len() as u64 - 32);
    assert_eq!(db.stats().skipped.len(), 1);
    assert_eq!(scan_all(&db), oracle(&all));
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let err = Db::open(dir.path(), Options::default()).err().unwrap();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("locked"));
    db.close().unwrap();
    Db::open(dir.path(), Options::default()).unwrap();
}

#[test]
fn files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, Options::default()).unwrap();
    db.write(&batch_of(&batches()[0])).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    assert_eq!(mode(&path.join("wal")), 0o700);
    assert_eq!(mode(&segment(&path, 1)), 0o600);
    assert_eq!(mode(&path.join("LOCK")), 0o600);
    drop(
        OpenOptions::new()
            .read(true)
            .open(segment(&path, 1))
            .unwrap(),
    );
}

/// The crash LazyFS found: writes that were never synced persisted out of order (page-cache
/// writeback), leaving zeros, then a valid frame, then a torn tail. None of it was acknowledged,
/// so it is a torn tail: Strict open keeps every acknowledged batch and drops the rest. The
/// same zeros inside acknowledged data, which a later commit record proves durable, are
/// corruption.
#[test]
fn unsynced_writes_persisted_out_of_order_are_a_torn_tail_not_corruption() {
    let template = tempfile::tempdir().unwrap();
    let acknowledged = batches();
    let acked_at = write_all(template.path(), &Options::default(), &acknowledged);
    let seg = segment(template.path(), 1);
    let durable_len = fs::metadata(&seg).unwrap().len() as usize;
    // Three more writes, none of them synced before the crash (SyncMode::Never).
    let late: Vec<Vec<TestDelta>> = (4..=6)
        .map(|seq| vec![patch("a", seq, json!({"late": seq}))])
        .collect();
    let never = Options::default().sync(SyncMode::Never);
    let late_at = write_all(template.path(), &never, &late);
    let written = fs::read(&seg).unwrap();
    let write_start = |at: RecordLocation| at.offset as usize - COMMIT_FRAME_BYTES;

    // What the crash left: the first unsynced write lost (zeros), the second persisted, the
    // third cut short.
    let mut crashed = written.clone();
    crashed[durable_len..write_start(late_at[1])].fill(0);
    crashed.truncate(write_start(late_at[2]) + 30);
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("wal")).unwrap();
    fs::write(segment(dir.path(), 1), &crashed).unwrap();

    let report = aggrelog::check(dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    let torn = report.torn.expect("a torn tail");
    assert_eq!(torn.offset, durable_len as u64);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(scan_all(&db), oracle(&acknowledged));
    let dropped = (crashed.len() - durable_len) as u64;
    assert_eq!(db.stats().torn_bytes_dropped, dropped);
    // The log goes on after the truncation, and reopens.
    db.write(&batch_of(&late[0])).unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut expected = acknowledged.clone();
    expected.push(late[0].clone());
    assert_eq!(scan_all(&db), oracle(&expected));
    db.close().unwrap();

    // Zeros inside the last acknowledged batch: the first late write's commit record says the
    // segment was durable past them, so this is damage, named with file and offset.
    let mut damaged = written;
    let victim = acked_at[2].offset as usize;
    damaged[victim + 16..victim + 40].fill(0);
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("wal")).unwrap();
    fs::write(segment(dir.path(), 1), &damaged).unwrap();
    match Db::open(dir.path(), Options::default()).err().unwrap() {
        Error::Corruption { file, offset, .. } => {
            assert_eq!((file, offset), (segment(dir.path(), 1), victim as u64));
        }
        other => panic!("expected corruption, got {other}"),
    }
}

/// The index stores segment ids in 32 bits: a segment file numbered 2^32 + 1 would alias
/// segment 1. It is reported as corruption naming the file, and nothing is changed.
#[test]
fn a_segment_number_beyond_32_bits_is_corruption_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), &Options::default(), &batches());
    let alias = segment(dir.path(), (1u64 << 32) + 1);
    fs::copy(segment(dir.path(), 1), &alias).unwrap();
    for open in [
        Db::open(dir.path(), Options::default()).err(),
        aggrelog::check(dir.path()).err(),
    ] {
        match open.expect("refused") {
            Error::Corruption {
                file,
                offset,
                reason,
            } => {
                assert_eq!((file, offset), (alias.clone(), 0));
                assert!(reason.contains("4294967297"), "{reason}");
            }
            other => panic!("expected corruption, got {other}"),
        }
    }
    assert!(alias.exists());
}
