//! A crash at every step of compaction (folding, state records, segment reclamation) and of
//! checkpoint writing loses nothing: after reopening, every acknowledged batch is there.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aggrelog::model::MergePatch;
use aggrelog::testing::SimStorage;
use aggrelog::{Db, Options, SyncMode};
use common::crashing::Crashing;
use common::{batch_of, copy_dir, delete, oracle, patch, scan_all, TestDelta};
use serde_json::json;

fn options() -> Options {
    Options::default()
        .segment_size_bytes(4096)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
}

/// Enough overwrites, deletes and nulls over few aggregates to fill several small segments.
fn batches() -> Vec<Vec<TestDelta>> {
    (1..=24u64)
        .map(|seq| {
            let mut batch: Vec<TestDelta> = (0..6)
                .map(|i| {
                    let id = format!("air-{}", (seq as usize + i) % 5);
                    patch(&id, seq, json!({"engine": {"hours": seq * 10 + i as u64, "pad": "x".repeat(60)}, "cabin": {"seat": if i % 3 == 0 { json!(null) } else { json!(i) }}}))
                })
                .collect();
            if seq % 7 == 0 {
                batch.push(delete("air-1", seq));
            }
            batch
        })
        .collect()
}

/// Writes every batch, checkpoints once on the way, and seals at 3.
fn fill(db: &Db, all: &[Vec<TestDelta>]) {
    for (i, b) in all.iter().enumerate() {
        db.write(&batch_of(b)).unwrap();
        if i == 8 {
            db.checkpoint().unwrap();
        }
    }
    db.seal(3).unwrap();
}

/// A filled database on the real file system.
fn prepare(dir: &std::path::Path, all: &[Vec<TestDelta>]) {
    let db = Db::open(dir, options()).unwrap();
    fill(&db, all);
    db.close().unwrap();
}

/// Compacts fully then checkpoints, through `storage`; returns the operations performed.
fn maintenance_run(dir: &std::path::Path, storage: Arc<Crashing>) -> u64 {
    let performed = Arc::clone(&storage.performed);
    if let Ok(db) = Db::open_with(dir, options(), MergePatch, storage) {
        let _ = db.compact().and_then(|_| db.checkpoint());
        drop(db);
    }
    performed.load(Ordering::SeqCst)
}

#[test]
fn a_crash_at_any_step_of_compaction_and_checkpointing_loses_nothing() {
    let all = batches();
    let expected = oracle(&all);
    let template = tempfile::tempdir().unwrap();
    prepare(template.path(), &all);

    // A dry run counts the mutating operations of a full maintenance run.
    let dry = tempfile::tempdir().unwrap();
    copy_dir(template.path(), dry.path());
    let total = maintenance_run(dry.path(), Arc::new(Crashing::default()));
    eprintln!("a full compaction + checkpoint performs {total} mutating operations");
    assert!(total > 10, "only {total} operations");
    let db = Db::open(dry.path(), options()).unwrap();
    assert_eq!(scan_all(&db), expected);
    drop(db);
    let before = segment_files(template.path());
    let after = segment_files(dry.path());
    assert!(
        before.len() >= 4,
        "the workload spans several segments: {before:?}"
    );
    assert!(
        after.iter().all(|s| !before.contains(s)),
        "a full compaction reclaims every old segment: {before:?} -> {after:?}"
    );

    for crash_at in 1..=total {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let storage = Arc::new(Crashing::default());
        storage.crash_at.store(crash_at, Ordering::SeqCst);
        let journal = Arc::clone(&storage.journal);
        maintenance_run(dir.path(), storage);
        let last = journal.lock().unwrap().last().cloned().unwrap_or_default();

        let db = Db::open(dir.path(), options())
            .unwrap_or_else(|e| panic!("reopen after crash at {crash_at} (after {last}): {e}"));
        assert_eq!(
            scan_all(&db),
            expected,
            "crash at operation {crash_at}, after {last}"
        );
        assert_eq!(db.stats().seal, 3, "seal kept after crash at {crash_at}");
        // The database stays fully usable: maintenance completes and nothing changes.
        db.compact().unwrap();
        db.checkpoint().unwrap();
        assert_eq!(
            scan_all(&db),
            expected,
            "crash at {crash_at}, after a new compaction"
        );
        db.close().unwrap();
        let db = Db::open(dir.path(), options()).unwrap();
        assert_eq!(scan_all(&db), expected, "crash at {crash_at}, reopened");
        assert!(
            aggrelog::check(dir.path()).unwrap().is_clean(),
            "check runs beside a writer"
        );
        drop(db);
        assert!(aggrelog::check(dir.path()).unwrap().is_clean());
    }
}

fn segment_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn sync_mode_is_irrelevant_to_the_crash_argument() {
    // State records are appended unsynced; reclamation must sync them before deleting segments
    // even when the user asked for SyncMode::Never.
    let all = batches();
    let dir = tempfile::tempdir().unwrap();
    let never = options().sync(SyncMode::Never);
    let db = Db::open(dir.path(), never.clone()).unwrap();
    for b in &all {
        db.write(&batch_of(b)).unwrap();
    }
    db.sync().unwrap();
    let storage = Arc::new(Crashing::default());
    let journal = Arc::clone(&storage.journal);
    drop(db);
    let db = Db::open_with(dir.path(), never, MergePatch, storage).unwrap();
    db.compact().unwrap();
    let ops = journal.lock().unwrap().clone();
    let is_segment = |o: &String| o.ends_with(".seg");
    let first_remove = ops
        .iter()
        .position(|o| o.starts_with("remove ") && is_segment(o))
        .expect("a segment removed");
    let last_state_append = ops[..first_remove]
        .iter()
        .rposition(|o| o.starts_with("append") && is_segment(o))
        .unwrap();
    assert!(
        ops[last_state_append..first_remove]
            .iter()
            .any(|o| o.starts_with("sync ") && is_segment(o)),
        "no sync between the state records and the first segment removal: {ops:#?}"
    );
}

/// The same crash points as a power loss: after the process dies at each mutating operation of
/// a compaction plus checkpoint, the simulated disk keeps only what was synced, and of the rest
/// any subset of sectors in any order (holes), a prefix, or nothing. Every acknowledged batch
/// survives, a Strict open succeeds, and `check` finds no damage.
#[test]
fn a_power_loss_at_any_step_of_compaction_and_checkpointing_loses_nothing() {
    let all = batches();
    let expected = oracle(&all);
    let dir = std::path::Path::new("/db");
    let fresh = |seed: u64| {
        let sim = SimStorage::new(seed);
        let db = Db::open_with(dir, options(), MergePatch, Arc::new(sim.clone())).unwrap();
        fill(&db, &all);
        db.close().unwrap();
        sim
    };
    let total = maintenance_run(dir, Arc::new(Crashing::over(Arc::new(fresh(0)))));
    eprintln!("a full compaction + checkpoint performs {total} mutating operations");
    assert!(total > 10, "only {total} operations");
    let mut holes_survived = 0;
    for crash_at in 1..=total {
        for seed in 0..16 {
            let sim = fresh(seed * 1000 + crash_at);
            let storage = Crashing::over(Arc::new(sim.clone()));
            storage.crash_at.store(crash_at, Ordering::SeqCst);
            maintenance_run(dir, Arc::new(storage));
            let lost_before = sim.stats().bytes_lost;
            sim.crash();
            holes_survived += u64::from(sim.stats().bytes_lost > lost_before);
            let db = Db::open_with(dir, options(), MergePatch, Arc::new(sim.clone()))
                .unwrap_or_else(|e| {
                    panic!("open after a power loss at {crash_at} (seed {seed}): {e}")
                });
            assert_eq!(
                scan_all(&db),
                expected,
                "power loss at {crash_at}, seed {seed}"
            );
            assert_eq!(db.stats().seal, 3);
            db.compact().unwrap();
            assert_eq!(
                scan_all(&db),
                expected,
                "power loss at {crash_at}, compacted again"
            );
        }
    }
    eprintln!(
        "{holes_survived} of {} power losses dropped unsynced bytes",
        total * 16
    );
    assert!(holes_survived > 0, "some power loss dropped unsynced bytes");
}
