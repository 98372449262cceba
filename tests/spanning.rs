//! Batches larger than a segment (DESIGN.md, section 3.6): written as fragments, made whole by
//! their batch commit, invisible until it, whole after it, through reopen, checkpoints,
//! compaction, read-only refresh, replay, export, damage and a crash at every step.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aggrelog::model::MergePatch;
use aggrelog::testing::SimStorage;
use aggrelog::{Db, Error, LargeBatch, Options, RecordLocation, RecoveryMode};
use common::crashing::Crashing;
use common::{batch_of, copy_dir, oracle, scan_all, TestDelta};
use serde_json::{json, Value};

/// Small segments, so that a batch of a few hundred deltas spans several.
fn options() -> Options {
    Options::default()
        .segment_size_bytes(8192)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
}

/// Ordinary batches written before (and after) the large one.
fn small_batches(seqs: std::ops::Range<u64>) -> Vec<Vec<TestDelta>> {
    seqs.map(|seq| {
        (0..4)
            .map(|i| {
                let id = format!("air-{}", (seq + i) % 7);
                common::patch(
                    &id,
                    seq,
                    json!({"engine": {"hours": seq * 10 + i}, "tag": null}),
                )
            })
            .collect()
    })
    .collect()
}

/// One upstream batch of `n` deltas (about 60 bytes each): a snapshot over many aggregates,
/// some of them the small batches' aggregates, a few deletes, marker aggregates first and last.
fn large(n: u64, seq: u64) -> Vec<TestDelta> {
    let mut deltas = vec![common::patch("big-first", seq, json!({"marker": true}))];
    for i in 0..n {
        let id = format!("air-{}", i % 40);
        if i % 97 == 96 {
            deltas.push(common::delete(&id, seq));
        } else {
            deltas.push(common::patch(
                &id,
                seq,
                json!({"cabin": {"row": i, "pad": "x".repeat(20)}}),
            ));
        }
    }
    deltas.push(common::patch("big-last", seq, json!({"marker": true})));
    deltas
}

fn add_all(batch: &mut LargeBatch<'_, MergePatch>, deltas: &[TestDelta]) {
    for d in deltas {
        match &d.patch {
            Some(p) => batch.patch(&d.aggregate, d.seq, p).unwrap(),
            None => batch.delete(&d.aggregate, d.seq).unwrap(),
        };
    }
}

fn write_large(db: &Db, deltas: &[TestDelta]) -> aggrelog::WriteReceipt {
    let mut batch = db.large_batch().unwrap();
    add_all(&mut batch, deltas);
    batch.commit().unwrap()
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("wal")).unwrap().count()
}

fn expected(
    before: &[Vec<TestDelta>],
    big: Option<&[TestDelta]>,
) -> BTreeMap<String, (u64, Value)> {
    let mut all = before.to_vec();
    all.extend(big.map(<[TestDelta]>::to_vec));
    oracle(&all)
}

#[test]
fn a_spanning_batch_is_invisible_until_committed_and_whole_after() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let before = small_batches(1..6);
    for b in &before {
        db.write(&batch_of(b)).unwrap();
    }
    let reader = Db::open_read_only(dir.path(), options()).unwrap();
    let segments_before = segment_count(dir.path());
    let big = large(600, 3);
    let mut batch = db.large_batch().unwrap();
    add_all(&mut batch, &big);
    assert!(
        segment_count(dir.path()) >= segments_before + 3,
        "the fragments span segments"
    );
    assert_eq!(
        scan_all(&db),
        expected(&before, None),
        "the writer sees none of it"
    );
    reader.refresh().unwrap();
    assert_eq!(
        scan_all(&reader),
        expected(&before, None),
        "a reader sees none of it"
    );

    let receipt = batch.commit().unwrap();
    assert_eq!(receipt.deltas, big.len());
    let whole = expected(&before, Some(&big));
    assert_eq!(scan_all(&db), whole);
    reader.refresh().unwrap();
    assert_eq!(scan_all(&reader), whole, "a refresh reads it whole");
    assert_eq!(db.stats().batches, 6);
    drop(reader);
    db.close().unwrap();

    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(scan_all(&db), whole, "reopened");
    assert_eq!(db.stats().batches, 6);
    // Replay yields the batch at its commit, positions running over the whole batch.
    let replayed: Vec<_> = db
        .replay(RecordLocation::START)
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        replayed.len(),
        before.iter().map(Vec::len).sum::<usize>() + big.len()
    );
    let spanning = &replayed[replayed.len() - big.len()..];
    assert!(spanning
        .iter()
        .zip(0u32..)
        .all(|(d, n)| d.position == n && d.seq == 3));
    assert_eq!(spanning[0].aggregate, "big-first");
    assert!(aggrelog::check(dir.path()).unwrap().is_clean());
}

#[test]
fn an_abandoned_spanning_batch_is_absent_and_its_fragments_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let before = small_batches(1..6);
    for b in &before {
        db.write(&batch_of(b)).unwrap();
    }
    let mut batch = db.large_batch().unwrap();
    add_all(&mut batch, &large(600, 3));
    drop(batch);
    let after = small_batches(6..9);
    for b in &after {
        db.write(&batch_of(b)).unwrap();
    }
    let all: Vec<_> = before.iter().chain(&after).cloned().collect();
    assert_eq!(scan_all(&db), oracle(&all));
    let grown = segment_count(dir.path());
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(scan_all(&db), oracle(&all), "absent after reopen");
    db.compact().unwrap();
    assert!(
        segment_count(dir.path()) < grown - 2,
        "aborted fragments reclaimed"
    );
    drop(db);
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(scan_all(&db), oracle(&all));
}

#[test]
fn checkpoints_and_compaction_between_the_fragments_and_the_commit_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let before = small_batches(1..30);
    for b in &before {
        db.write(&batch_of(b)).unwrap();
    }
    let big = large(800, 40);
    let (first, second) = big.split_at(400);
    let mut batch = db.large_batch().unwrap();
    add_all(&mut batch, first);
    // A full compaction seals the active segment and reclaims every dead one: not the pinned
    // segments holding the fragments, which the index does not know yet.
    db.compact().unwrap();
    db.checkpoint().unwrap();
    let late = small_batches(30..33);
    for b in &late {
        db.write(&batch_of(b)).unwrap();
    }
    add_all(&mut batch, second);
    batch.commit().unwrap();
    let mut all = before.clone();
    all.extend(late.iter().cloned());
    all.push(big.clone());
    let whole = oracle(&all);
    assert_eq!(scan_all(&db), whole);
    db.close().unwrap();

    // Opened from the checkpoint taken between fragments and commit: the commit's locations
    // lead to fragments before the checkpoint position.
    let db = Db::open(dir.path(), options()).unwrap();
    assert!(db.stats().checkpoint.is_some());
    assert_eq!(scan_all(&db), whole, "from the checkpoint");
    // Folding the batch lets compaction delete the fragment segments while the commit stays
    // or goes; either way every reopen (with and without checkpoints) gives the same states.
    db.compact().unwrap();
    assert_eq!(scan_all(&db), whole, "after compaction");
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(scan_all(&db), whole, "reopened after compaction");
    drop(db);
    std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(scan_all(&db), whole, "full replay after compaction");
    assert!(aggrelog::check(dir.path()).unwrap().is_clean());
}

#[test]
fn a_spanning_batch_exports_and_imports_with_the_same_states() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let before = small_batches(1..5);
    for b in &before {
        db.write(&batch_of(b)).unwrap();
    }
    let big = large(500, 2);
    write_large(&db, &big);
    let mut exported = Vec::new();
    let report = db.export(&mut exported).unwrap();
    assert_eq!(report.deltas as usize, 16 + big.len());
    let copy = tempfile::tempdir().unwrap();
    let imported = Db::open(copy.path(), options()).unwrap();
    imported.import(&mut exported.as_slice()).unwrap();
    assert_eq!(scan_all(&imported), scan_all(&db));
    // A late delta folds the same in both.
    let late = [common::patch("air-3", 2, json!({"cabin": {"row": -1}}))];
    db.write(&batch_of(&late)).unwrap();
    imported.write(&batch_of(&late)).unwrap();
    assert_eq!(scan_all(&imported), scan_all(&db));
}

/// The segment holding the first fragment of the database's spanning batch, and its offset.
fn first_fragment(dir: &Path) -> (std::path::PathBuf, u64) {
    use aggrelog::testing::internals::format::{RecordType, SEGMENT_HEADER_BYTES};
    use aggrelog::testing::internals::frame::{FrameScanner, ScanEvent};
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let id: u64 = path.file_stem().unwrap().to_string_lossy().parse().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for event in FrameScanner::new(&bytes, id, SEGMENT_HEADER_BYTES) {
            if let ScanEvent::Frame(f) = event {
                if f.header.record_type == RecordType::Fragment {
                    return (path, f.offset);
                }
            }
        }
    }
    panic!("no fragment");
}

#[test]
fn damage_in_a_fragment_fails_a_strict_open_and_skips_the_batch_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let before = small_batches(1..5);
    for b in &before {
        db.write(&batch_of(b)).unwrap();
    }
    write_large(&db, &large(600, 2));
    let after = small_batches(5..8);
    for b in &after {
        db.write(&batch_of(b)).unwrap();
    }
    db.close().unwrap();
    let (path, offset) = first_fragment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset as usize + 40] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    match Db::open(dir.path(), options()) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
        other => panic!(
            "expected corruption in {}, got {:?}",
            path.display(),
            other.err()
        ),
    }
    let salvage = options().recovery(RecoveryMode::SkipCorrupt);
    let db = Db::open(dir.path(), salvage).unwrap();
    let mut survivors = before.clone();
    survivors.extend(after.iter().cloned());
    assert_eq!(
        scan_all(&db),
        oracle(&survivors),
        "the spanning batch is skipped whole"
    );
    assert!(
        db.stats().skipped.len() >= 2,
        "the fragment and its batch commit are reported"
    );
    assert!(!aggrelog::check(dir.path()).unwrap().is_clean());
}

#[test]
fn a_batch_with_a_delta_below_a_seal_raised_meanwhile_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let mut batch = db.large_batch().unwrap();
    add_all(&mut batch, &large(300, 5));
    db.seal(10).unwrap();
    assert!(matches!(
        batch.commit(),
        Err(Error::Sealed {
            seq: 5,
            seal: 10,
            ..
        })
    ));
    assert!(scan_all(&db).is_empty());
    drop(db);
    assert!(scan_all(&Db::open(dir.path(), options()).unwrap()).is_empty());
}

/// Writes the small batches, then the large one through `storage`; returns the operations
/// performed and whether the commit was acknowledged.
fn crash_run(dir: &Path, storage: Arc<Crashing>, big: &[TestDelta]) -> (u64, bool) {
    let performed = Arc::clone(&storage.performed);
    let mut acknowledged = false;
    if let Ok(db) = Db::open_with(dir, options(), MergePatch, storage) {
        if let Ok(mut batch) = db.large_batch() {
            let added = big.iter().try_for_each(|d| match &d.patch {
                Some(p) => batch.patch(&d.aggregate, d.seq, p).map(drop),
                None => batch.delete(&d.aggregate, d.seq).map(drop),
            });
            acknowledged = added.is_ok() && batch.commit().is_ok();
        }
    }
    (performed.load(Ordering::SeqCst), acknowledged)
}

#[test]
fn a_crash_or_power_loss_at_any_step_of_a_spanning_batch_leaves_it_absent_or_whole() {
    let before = small_batches(1..6);
    let big = large(500, 4);
    let absent = expected(&before, None);
    let whole = expected(&before, Some(&big));
    let template = tempfile::tempdir().unwrap();
    let db = Db::open(template.path(), options()).unwrap();
    for b in &before {
        db.write(&batch_of(b)).unwrap();
    }
    db.close().unwrap();
    let dry = tempfile::tempdir().unwrap();
    copy_dir(template.path(), dry.path());
    let (total, acknowledged) = crash_run(dry.path(), Arc::new(Crashing::default()), &big);
    assert!(acknowledged && total > 10, "{total} operations");

    for crash_at in 1..=total {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let storage = Arc::new(Crashing::default());
        storage.crash_at.store(crash_at, Ordering::SeqCst);
        let (_, acknowledged) = crash_run(dir.path(), storage, &big);
        let db = Db::open(dir.path(), options())
            .unwrap_or_else(|e| panic!("reopen after a crash at {crash_at}: {e}"));
        let states = scan_all(&db);
        assert!(
            states == absent || states == whole,
            "crash at {crash_at}: partly present"
        );
        assert!(
            !acknowledged || states == whole,
            "crash at {crash_at}: acknowledged, then lost"
        );
        drop(db);
        assert!(
            aggrelog::check(dir.path()).unwrap().is_clean(),
            "crash at {crash_at}"
        );
    }

    // The same points as a power loss on the simulated disk: unsynced sectors persist in any
    // subset, holes included.
    let root = Path::new("/db");
    let mut outcomes = [0u32; 2];
    // total + 1: the run completes, then the power fails.
    for crash_at in 1..=total + 1 {
        for seed in 0..4 {
            let sim = SimStorage::new(seed * 7919 + crash_at);
            let db = Db::open_with(root, options(), MergePatch, Arc::new(sim.clone())).unwrap();
            for b in &before {
                db.write(&batch_of(b)).unwrap();
            }
            db.close().unwrap();
            let storage = Crashing::over(Arc::new(sim.clone()));
            storage.crash_at.store(crash_at, Ordering::SeqCst);
            let (_, acknowledged) = crash_run(root, Arc::new(storage), &big);
            sim.crash();
            let db = Db::open_with(root, options(), MergePatch, Arc::new(sim.clone()))
                .unwrap_or_else(|e| panic!("power loss at {crash_at}, seed {seed}: {e}"));
            let states = scan_all(&db);
            assert!(
                states == absent || states == whole,
                "power loss at {crash_at}: partly present"
            );
            assert!(
                !acknowledged || states == whole,
                "power loss at {crash_at}: acknowledged, then lost"
            );
            outcomes[usize::from(states == whole)] += 1;
        }
    }
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "both outcomes occur: {outcomes:?}"
    );
}

#[test]
fn a_batch_commit_outlives_the_live_fragments_it_lists() {
    // The batch's first fragments hold recent deltas (kept unfolded by the history window),
    // its last fragment old ones (folded): the segment of the last fragment and the batch
    // commit is then dead, and deleting it would leave the live fragments without their commit.
    let dir = tempfile::tempdir().unwrap();
    let options = options().history(aggrelog::History::Window(5));
    let db = Db::open(dir.path(), options.clone()).unwrap();
    let recent: Vec<TestDelta> = (0..300)
        .map(|i| {
            common::patch(
                &format!("hi-{}", i % 30),
                198,
                json!({"n": i, "pad": "y".repeat(20)}),
            )
        })
        .collect();
    let old: Vec<TestDelta> = (0..120)
        .map(|i| {
            common::patch(
                &format!("lo-{}", i % 12),
                1,
                json!({"n": i, "pad": "z".repeat(20)}),
            )
        })
        .collect();
    let big: Vec<TestDelta> = recent.iter().chain(&old).cloned().collect();
    let top = vec![common::patch("top", 198, json!({"n": 0}))];
    db.write(&batch_of(&top)).unwrap();
    write_large(&db, &big);
    let whole = oracle(&[top, big]);
    let report = db.compact().unwrap();
    assert!(report.deltas_folded > 0, "{report:?}");
    assert_eq!(scan_all(&db), whole);
    db.close().unwrap();
    let _ = std::fs::remove_dir_all(dir.path().join("checkpoints"));
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(scan_all(&db), whole, "full replay after compaction");
}

/// The large batch of the multi-GiB test: whole-state patches (about 1 KiB) of 1000 aggregates
/// at seq 50, between markers, until `bytes` of payload were added; returns the deltas added.
fn add_large(batch: &mut LargeBatch<'_, MergePatch>, bytes: u64) -> aggrelog::Result<u64> {
    let note = "n".repeat(1000);
    batch.patch("huge-first", 50, &json!({"marker": true}))?;
    let mut i = 0u64;
    while i * 1050 < bytes {
        let id = format!("aircraft-{:04}", i % 1000);
        batch.patch(&id, 50, &json!({"note": note, "i": i}))?;
        i += 1;
    }
    batch.patch("huge-last", 50, &json!({"marker": true}))?;
    Ok(i + 2)
}

/// Runs the large batch through `storage`; returns the operations performed and whether the
/// commit was acknowledged.
fn huge_run(dir: &Path, options: &Options, storage: Arc<Crashing>, bytes: u64) -> (u64, bool) {
    let performed = Arc::clone(&storage.performed);
    let mut acknowledged = false;
    if let Ok(db) = Db::open_with(dir, options.clone(), MergePatch, storage) {
        if let Ok(mut batch) = db.large_batch() {
            acknowledged = add_large(&mut batch, bytes).is_ok() && batch.commit().is_ok();
        }
    }
    (performed.load(Ordering::SeqCst), acknowledged)
}

/// `AGGRELOG_SPANNING_MIB` sets the batch size (default 96 MiB over 32 MiB segments; run it at
/// several GiB with `--release`).
#[test]
fn a_crash_at_every_kind_of_point_of_a_multi_segment_batch_leaves_it_absent_or_whole() {
    let mib: u64 = std::env::var("AGGRELOG_SPANNING_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    let bytes = mib << 20;
    let options = Options::default()
        .segment_size_bytes(32 << 20)
        .background_compaction(false)
        .checkpoint_every_bytes(0);
    let template = tempfile::tempdir().unwrap();
    let db = Db::open(template.path(), options.clone()).unwrap();
    let before = small_batches(1..4);
    for b in &before {
        db.write(&batch_of(b)).unwrap();
    }
    let absent = scan_all(&db);
    let base_deltas = db.stats().deltas;
    db.close().unwrap();

    let dry = tempfile::tempdir().unwrap();
    copy_dir(template.path(), dry.path());
    let storage = Arc::new(Crashing::default());
    let journal = Arc::clone(&storage.journal);
    let (total, acknowledged) = huge_run(dry.path(), &options, storage, bytes);
    assert!(acknowledged);
    let whole = scan_all(&Db::open(dry.path(), options.clone()).unwrap());
    let deltas = Db::open(dry.path(), options.clone())
        .unwrap()
        .stats()
        .deltas
        - base_deltas;
    drop(dry);
    // Every kind of point: the first appends, the first, middle and last segment creation
    // (rotation) and the operation after each, the middle of the fragments, and every operation
    // of the commit.
    let ops = journal.lock().unwrap().clone();
    let mut points: BTreeSet<u64> = [1, 2, 3, total / 2, total + 1].into_iter().collect();
    let creates: Vec<u64> = (ops.iter().enumerate())
        .filter(|(_, op)| op.starts_with("create"))
        .map(|(n, _)| n as u64 + 1)
        .collect();
    for at in [0, creates.len() / 2, creates.len().saturating_sub(1)] {
        if let Some(&create) = creates.get(at) {
            points.extend([create, create + 1]);
        }
    }
    points.extend(total.saturating_sub(6)..=total);
    let rotations = creates.len();
    assert!(
        rotations >= 2,
        "the batch spans segments: {rotations} rotations"
    );
    eprintln!("{mib} MiB, {deltas} deltas, {total} operations, {rotations} rotations; crash points {points:?}");

    for crash_at in points {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let storage = Arc::new(Crashing::default());
        storage.crash_at.store(crash_at, Ordering::SeqCst);
        let last = ops.get(crash_at as usize - 1).cloned().unwrap_or_default();
        let (_, acknowledged) = huge_run(dir.path(), &options, storage, bytes);
        let db = Db::open(dir.path(), options.clone())
            .unwrap_or_else(|e| panic!("reopen after a crash at {crash_at} ({last}): {e}"));
        let states = scan_all(&db);
        let present = states == whole;
        assert!(
            present || states == absent,
            "crash at {crash_at} ({last}): partly present"
        );
        assert!(
            !acknowledged || present,
            "crash at {crash_at} ({last}): acknowledged, then lost"
        );
        let expected_deltas = base_deltas + if present { deltas } else { 0 };
        assert_eq!(
            db.stats().deltas,
            expected_deltas,
            "crash at {crash_at} ({last})"
        );
        drop(db);
        assert!(
            aggrelog::check(dir.path()).unwrap().is_clean(),
            "crash at {crash_at}"
        );
    }
}

#[test]
fn a_large_batch_whose_fragment_was_refused_cannot_be_committed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    db.seal(10).unwrap();
    let mut batch = db.large_batch().unwrap();
    let refused = large(300, 5).iter().find_map(|d| {
        batch
            .patch(&d.aggregate, d.seq, d.patch.as_ref().unwrap())
            .err()
    });
    assert!(
        matches!(
            refused,
            Some(Error::Sealed {
                seq: 5,
                seal: 10,
                ..
            })
        ),
        "{refused:?}"
    );
    // The refused fragment's deltas are not in the batch: it must not commit without them.
    assert!(matches!(batch.delete("x", 11), Err(Error::InvalidInput(_))));
    assert!(matches!(batch.commit(), Err(Error::InvalidInput(_))));
    assert!(scan_all(&db).is_empty());
}
