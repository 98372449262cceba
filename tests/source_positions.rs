//! Source positions (DESIGN.md, section 5e): the source range a batch carries is committed with
//! its deltas and raises the database's position for its queue partition; the positions are
//! the same through a reopen, a checkpoint, a compaction that deletes the segments holding the
//! batches, a read-only refresh, export and import; a batch whose range starts below the stored
//! position counts its overlap as reapplied.

mod common;

use aggrelog::{Batch, Db, SourcePosition, SourceRange};
use common::{scan_all, small_log_options};
use serde_json::json;

fn range(partition: u32, first_offset: u64, next_offset: u64, dead_letters: u64) -> SourceRange {
    SourceRange {
        topic: "deltas".into(),
        partition,
        first_offset,
        next_offset,
        dead_letters,
    }
}

/// (partition, next_offset, dead_letters, reapplied) of every position.
fn positions(db: &Db) -> Vec<(u32, u64, u64, u64)> {
    let all: Vec<SourcePosition> = db.source_positions();
    assert_eq!(all, db.stats().sources, "stats shows the same positions");
    (all.iter())
        .map(|p| (p.partition, p.next_offset, p.dead_letters, p.reapplied))
        .collect()
}

/// Writes 100 messages of partitions 0 and 1 in batches of 5, one delta per message but every
/// 7th (a dead letter, which still moves the position).
fn follow(db: &Db) {
    let mut dead = [0u64; 2];
    for partition in 0..2u32 {
        for first in (0..100u64).step_by(5) {
            let mut batch = Batch::new();
            for offset in first..first + 5 {
                if offset % 7 == 6 {
                    dead[partition as usize] += 1;
                    continue;
                }
                let id = format!("p{partition}-{}", offset % 9);
                batch
                    .patch_at(&id, offset, 0, &json!({"offset": offset}))
                    .unwrap();
            }
            let range = range(partition, first, first + 5, dead[partition as usize]);
            db.write(batch.set_source(range).unwrap()).unwrap();
        }
    }
}

#[test]
fn positions_survive_reopen_checkpoint_compaction_and_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    let reader = Db::open_read_only(tmp.path(), small_log_options()).unwrap();
    assert!(reader.source_positions().is_empty());
    follow(&db);
    let expected = vec![(0, 100, 14, 0), (1, 100, 14, 0)];
    assert_eq!(positions(&db), expected);
    reader.refresh().unwrap();
    assert_eq!(positions(&reader), expected);
    drop(reader);
    let states = scan_all(&db);

    // A batch of dead letters only still writes and moves the position.
    let mut dead_only = Batch::new();
    db.write(dead_only.set_source(range(0, 100, 102, 16)).unwrap())
        .unwrap();
    let expected = vec![(0, 102, 16, 0), (1, 100, 14, 0)];
    assert_eq!(positions(&db), expected);
    db.close().unwrap();

    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    assert_eq!(positions(&db), expected, "rebuilt by recovery");
    db.checkpoint().unwrap();
    db.close().unwrap();
    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    assert_eq!(positions(&db), expected, "from the checkpoint");

    // Compaction deletes the segments whose batches gave the positions; without the
    // checkpoints, the log alone must still give them (the sources record).
    let report = db.compact().unwrap();
    assert!(report.segments_deleted > 0, "{report:?}");
    db.close().unwrap();
    std::fs::remove_dir_all(tmp.path().join("checkpoints")).unwrap();
    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    assert_eq!(positions(&db), expected, "from the sources record");
    assert_eq!(scan_all(&db), states);

    // Export and import carry the positions (the sources record and the ranges).
    let mut exported = Vec::new();
    db.export(&mut exported).unwrap();
    let copy = Db::open(tmp.path().join("copy"), small_log_options()).unwrap();
    copy.import(&mut std::io::BufReader::new(&exported[..]))
        .unwrap();
    assert_eq!(positions(&copy), expected);
    copy.close().unwrap();
    let copy = Db::open(tmp.path().join("copy"), small_log_options()).unwrap();
    assert_eq!(positions(&copy), expected);
}

#[test]
fn a_range_below_the_stored_position_counts_as_reapplied() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    follow(&db);
    // Offsets 90..105 again: 10 of them were applied already.
    let mut batch = Batch::new();
    batch
        .patch_at("p0-0", 90, 0, &json!({"offset": 90}))
        .unwrap();
    db.write(batch.set_source(range(0, 90, 105, 15)).unwrap())
        .unwrap();
    assert_eq!(positions(&db)[0], (0, 105, 15, 10));
    db.close().unwrap();
    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    assert_eq!(
        positions(&db)[0],
        (0, 105, 15, 10),
        "recovery counts it the same"
    );
}

#[test]
fn bad_ranges_are_refused_before_anything_is_written() {
    let mut batch = Batch::new();
    for bad in [
        range(0, 5, 5, 0),
        SourceRange {
            topic: String::new(),
            ..range(0, 0, 1, 0)
        },
        SourceRange {
            topic: "t".repeat(250),
            ..range(0, 0, 1, 0)
        },
    ] {
        assert!(matches!(
            batch.set_source(bad),
            Err(aggrelog::Error::InvalidInput(_))
        ));
    }
    assert!(!batch.has_source());
}
