//! Named batches (`Batch::name`): the name of each delta's upstream batch is stored with it, in
//! batch records and in the fragments of a spanning batch, and read back in log order, through
//! a reopen and an export and import.

mod common;

use common::small_log_options;

use aggrelog::{Batch, Db, RecordLocation};
use serde_json::json;

/// Every delta's `(aggregate, batch name)` in log order.
fn names(db: &Db) -> Vec<(String, Option<String>)> {
    let mut replay = db.replay(RecordLocation::START);
    let mut out = Vec::new();
    while let Some(batch) = replay.next_batch() {
        let batch = batch.unwrap();
        let spans = batch.names().unwrap();
        for (index, delta) in batch.deltas().enumerate() {
            let delta = delta.unwrap();
            let index = index as u32;
            let name = (spans.iter())
                .find(|span| span.holds(index))
                .map(|span| span.name.to_owned());
            out.push((delta.aggregate.to_owned(), name));
        }
    }
    out
}

fn pairs(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    (list.iter())
        .map(|(a, n)| (a.to_string(), n.map(str::to_owned)))
        .collect()
}

#[test]
fn names_are_stored_with_the_deltas_they_name() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path().join("db"), small_log_options()).unwrap();
    let mut whole = Batch::new();
    whole.name("bch1.jsonl").unwrap();
    whole.patch("a", 1, &json!({"x": 1})).unwrap();
    whole.patch("b", 1, &json!({"x": 2})).unwrap();
    db.write(&whole).unwrap();
    // One batch grouping three messages, one without a name: spans per message.
    let mut grouped = Batch::new();
    grouped.patch("u", 2, &json!({})).unwrap();
    grouped.name("deltas/0/7").unwrap();
    grouped.patch_at("c", 2, 0, &json!({"y": 1})).unwrap();
    grouped.patch_at("c", 2, 1, &json!({"y": 2})).unwrap();
    grouped.name("deltas/0/8").unwrap();
    grouped.delete_at("d", 2, 0).unwrap();
    db.write(&grouped).unwrap();
    let expected = pairs(&[
        ("a", Some("bch1.jsonl")),
        ("b", Some("bch1.jsonl")),
        ("u", None),
        ("c", Some("deltas/0/7")),
        ("c", Some("deltas/0/7")),
        ("d", Some("deltas/0/8")),
    ]);
    assert_eq!(names(&db), expected);

    // A spanning batch: every fragment names its deltas.
    let mut large = db.large_batch().unwrap();
    large.name("big.jsonl").unwrap();
    for i in 0..300u64 {
        large
            .patch("e", 3, &json!({"i": i, "pad": "y".repeat(40)}))
            .unwrap();
    }
    assert!(large.fragments_written() > 1);
    large.commit().unwrap();
    let all = names(&db);
    assert_eq!(all.len(), 306);
    assert!(all[6..]
        .iter()
        .all(|(_, n)| n.as_deref() == Some("big.jsonl")));
    db.close().unwrap();

    let db = Db::open(tmp.path().join("db"), small_log_options()).unwrap();
    assert_eq!(names(&db), all, "through a reopen");
    let mut exported = Vec::new();
    db.export(&mut exported).unwrap();
    let copy = Db::open(tmp.path().join("copy"), small_log_options()).unwrap();
    copy.import(&mut std::io::BufReader::new(&exported[..]))
        .unwrap();
    assert_eq!(names(&copy), all, "through export and import");
}

#[test]
fn bad_names_are_refused() {
    let mut batch = Batch::new();
    assert!(batch.name("").is_err());
    assert!(batch.name(&"n".repeat(1025)).is_err());
    assert!(batch.name(&"n".repeat(1024)).is_ok());
}

#[test]
fn history_lists_the_deltas_of_an_aggregate_in_fold_order_with_their_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), small_log_options()).unwrap();
    // Arrival order differs from fold order: seq 5 first, then seq 2 (two deltas), unnamed 9.
    let mut late = Batch::new();
    late.name("bch3").unwrap();
    late.patch("b", 5, &json!({"v": 5})).unwrap();
    db.write(&late).unwrap();
    let mut early = Batch::new();
    early.name("bch1").unwrap();
    early.patch_at("b", 2, 1, &json!({"w": 1})).unwrap();
    early.patch_at("b", 2, 0, &json!({"v": 2})).unwrap();
    early.patch("other", 2, &json!({})).unwrap();
    db.write(&early).unwrap();
    db.write(Batch::new().delete("b", 9).unwrap()).unwrap();
    let history = db.history("b").unwrap();
    assert_eq!(history.folded_through_seq, None);
    let got: Vec<(u64, u32, Option<&str>)> = (history.deltas.iter())
        .map(|d| (d.seq, d.position, d.batch.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, 0, Some("bch1")),
            (2, 1, Some("bch1")),
            (5, 0, Some("bch3")),
            (9, 0, None)
        ]
    );
    assert_eq!(history.deltas[3].kind, aggrelog::DeltaKind::Delete);
    assert!(db.history("nobody").unwrap().deltas.is_empty());

    // After compaction the folded deltas leave the history; the fold's top seq is said.
    db.compact().unwrap();
    let folded = db.history("b").unwrap();
    assert_eq!(folded.folded_through_seq, Some(9));
    assert!(folded.deltas.is_empty());
}
