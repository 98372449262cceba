//! A batch split into parts keeps the stamp positions the whole would have given
//! (`Batch::starting_at`): the same deltas written whole or in parts, once or again, give the
//! same states and count as duplicates, never conflicts, through replay, checkpoints,
//! compaction and reopen.

mod common;

use aggrelog::{Batch, Db, RecordLocation};
use common::{scan_all, small_log_options};
use serde_json::json;

/// One upstream batch: several deltas per aggregate at one seq, so their order is their
/// position.
fn deltas() -> Vec<(String, serde_json::Value)> {
    (0..60u64)
        .map(|n| (format!("a{}", n % 4), json!({"v": n, "last": n % 5 == 0})))
        .collect()
}

/// Every delta's stamp position, in log order.
fn positions(db: &Db) -> Vec<u32> {
    (db.replay(RecordLocation::START))
        .map(|d| d.unwrap().position)
        .collect()
}

fn write_in_parts(db: &Db, part: usize) {
    let all = deltas();
    for (start, chunk) in all.chunks(part).enumerate().map(|(k, c)| (k * part, c)) {
        let mut batch = Batch::starting_at(start as u32);
        for (id, patch) in chunk {
            batch.patch(id, 7, patch).unwrap();
        }
        db.write(&batch).unwrap();
    }
}

#[test]
fn parts_keep_the_positions_of_the_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = Db::open(tmp.path().join("whole"), small_log_options()).unwrap();
    write_in_parts(&whole, usize::MAX);
    let parts = Db::open(tmp.path().join("parts"), small_log_options()).unwrap();
    write_in_parts(&parts, 7);
    assert_eq!(scan_all(&whole), scan_all(&parts));
    // The last delta of each aggregate at seq 7 decides: position order, not write order.
    assert_eq!(
        whole.get("a3").unwrap().unwrap().state,
        json!({"v": 59, "last": false})
    );

    // Replay yields the stamp positions of the whole.
    assert_eq!(positions(&parts), (0..60).collect::<Vec<u32>>());

    // Written again, split differently: duplicates only.
    write_in_parts(&whole, 11);
    write_in_parts(&parts, usize::MAX);
    for db in [&whole, &parts] {
        let stats = db.stats();
        assert_eq!((stats.duplicates, stats.conflicts), (60, 0));
    }
    assert_eq!(scan_all(&whole), scan_all(&parts));

    // Through a checkpoint, a reopen and compaction.
    let expected = scan_all(&whole);
    parts.checkpoint().unwrap();
    parts.close().unwrap();
    let parts = Db::open(tmp.path().join("parts"), small_log_options()).unwrap();
    assert_eq!(scan_all(&parts), expected);
    parts.compact().unwrap();
    parts.close().unwrap();
    let parts = Db::open(tmp.path().join("parts"), small_log_options()).unwrap();
    assert_eq!(scan_all(&parts), expected);
    write_in_parts(&parts, 3);
    assert_eq!(
        scan_all(&parts),
        expected,
        "late duplicates change nothing after compaction"
    );
}

#[test]
fn positions_must_fit_32_bits() {
    let mut batch = Batch::starting_at(u32::MAX - 1);
    batch.patch("a", 1, &json!({})).unwrap();
    assert!(batch.patch("b", 1, &json!({})).is_err());
}

#[test]
fn export_and_import_keep_the_positions_of_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let parts = Db::open(tmp.path().join("parts"), small_log_options()).unwrap();
    write_in_parts(&parts, 7);
    let mut exported = Vec::new();
    parts.export(&mut exported).unwrap();
    assert!(String::from_utf8_lossy(&exported).contains("\"first_position\":7"));
    let copy = Db::open(tmp.path().join("copy"), small_log_options()).unwrap();
    copy.import(&mut std::io::BufReader::new(&exported[..]))
        .unwrap();
    assert_eq!(scan_all(&copy), scan_all(&parts));
    assert_eq!(positions(&copy), positions(&parts));
    write_in_parts(&copy, 60);
    assert_eq!(copy.stats().conflicts, 0);
}

/// Upstream messages, each numbering its own deltas from 0 (several deltas of one aggregate
/// and seq per message, so positions decide their order).
fn messages() -> Vec<Vec<(String, u64, serde_json::Value)>> {
    (0..40u64)
        .map(|m| {
            (0..1 + m % 4)
                .map(|i| {
                    (
                        format!("a{}", m % 5),
                        m / 3,
                        json!({"v": m * 10 + i, "m": m}),
                    )
                })
                .collect()
        })
        .collect()
}

/// Writes the messages grouped `per_batch` to a batch, each delta at its position in its
/// message (`Batch::patch_at`).
fn write_grouped(db: &Db, per_batch: usize) {
    for group in messages().chunks(per_batch) {
        let mut batch = Batch::new();
        for message in group {
            for (pos, (id, seq, patch)) in message.iter().enumerate() {
                batch.patch_at(id, *seq, pos as u32, patch).unwrap();
            }
        }
        db.write(&batch).unwrap();
    }
}

#[test]
fn explicit_positions_make_stamps_independent_of_grouping() {
    let tmp = tempfile::tempdir().unwrap();
    let one = Db::open(tmp.path().join("one"), small_log_options()).unwrap();
    write_grouped(&one, 1);
    let grouped = Db::open(tmp.path().join("grouped"), small_log_options()).unwrap();
    write_grouped(&grouped, 7);
    let expected = scan_all(&one);
    assert_eq!(scan_all(&grouped), expected);
    // a3's highest seq is message 38's (seq 12), with 3 deltas: position 2 decides.
    assert_eq!(
        one.get("a3").unwrap().unwrap().state,
        json!({"v": 382, "m": 38})
    );
    let expected_positions: Vec<u32> = (messages().iter())
        .flat_map(|m| 0..m.len() as u32)
        .collect();
    assert_eq!(
        positions(&grouped),
        expected_positions,
        "the table's positions"
    );

    // Grouped differently once more: duplicates only, through a reopen, compaction and export.
    write_grouped(&grouped, 3);
    let stats = grouped.stats();
    assert_eq!(
        (stats.duplicates, stats.conflicts),
        (expected_positions.len() as u64, 0)
    );
    grouped.close().unwrap();
    let grouped = Db::open(tmp.path().join("grouped"), small_log_options()).unwrap();
    assert_eq!(scan_all(&grouped), expected);
    let mut exported = Vec::new();
    grouped.export(&mut exported).unwrap();
    assert!(String::from_utf8_lossy(&exported).contains("\"pos\":3"));
    let copy = Db::open(tmp.path().join("copy"), small_log_options()).unwrap();
    copy.import(&mut std::io::BufReader::new(&exported[..]))
        .unwrap();
    assert_eq!(positions(&copy), positions(&grouped));
    grouped.compact().unwrap();
    write_grouped(&grouped, 40);
    assert_eq!(scan_all(&grouped), expected);
    assert_eq!(scan_all(&copy), expected);
}

#[test]
fn the_pos_field_of_json_lines_sets_the_position() {
    let input = concat!(
        r#"{"aggregate":"a","seq":1,"pos":5,"patch":{"v":"five"}}"#,
        "\n",
        r#"{"aggregate":"a","seq":1,"patch":{"v":"index one"}}"#,
        "\n",
        r#"{"aggregate":"a","seq":1,"pos":0,"patch":{"w":0}}"#,
        "\n"
    );
    let batch = aggrelog::jsonl::read_batch(input.as_bytes()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    db.write(&batch).unwrap();
    assert_eq!(positions(&db), vec![5, 1, 0]);
    // Position 5 is the last of seq 1, whatever the line order.
    assert_eq!(
        db.get("a").unwrap().unwrap().state,
        json!({"v": "five", "w": 0})
    );
    for bad in [
        r#""pos":-1"#,
        r#""pos":4294967296"#,
        r#""pos":"1""#,
        r#""pos":1.5"#,
    ] {
        let line = format!(r#"{{"aggregate":"a","seq":1,{bad},"patch":{{}}}}"#);
        let error = aggrelog::jsonl::parse_line(&line).unwrap_err();
        assert!(error.contains("\"pos\""), "{bad}: {error}");
    }
}

#[test]
fn a_spanning_batch_keeps_explicit_positions_across_its_fragments() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    let mut large = db.large_batch().unwrap();
    // Positions in reverse order: every fragment carries a positions table.
    for i in 0..400u32 {
        let patch = json!({"v": i, "pad": "x".repeat(40)});
        large.patch_at("a", 1, 399 - i, &patch).unwrap();
    }
    assert!(large.fragments_written() > 1);
    large.commit().unwrap();
    let expected: Vec<u32> = (0..400).rev().collect();
    assert_eq!(positions(&db), expected);
    // Position 399 is the first delta written: v = 0 is last in stamp order.
    assert_eq!(db.get("a").unwrap().unwrap().state["v"], 0);
    db.close().unwrap();
    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    assert_eq!(positions(&db), expected);
    assert_eq!(db.get("a").unwrap().unwrap().state["v"], 0);
}
