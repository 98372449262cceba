//! The README table in every arrival order, each followed by a reopen.

mod common;

use aggrelog::{Db, Options};
use common::{batch_of, oracle, scan_all, table_batches};
use serde_json::json;

const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

#[test]
fn every_arrival_order_gives_the_seq_order_state_before_and_after_reopen() {
    let batches = table_batches();
    let expected = oracle(&batches);
    for order in ORDERS {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        for &b in &order {
            db.write(&batch_of(&batches[b])).unwrap();
        }
        assert_eq!(scan_all(&db), expected, "order {order:?}");
        db.close().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(scan_all(&db), expected, "order {order:?} after reopen");
    }
}

#[test]
fn each_row_of_the_table_comes_out_right() {
    let batches = table_batches();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for b in [0, 2, 1] {
        db.write(&batch_of(&batches[b])).unwrap();
    }
    let state = |id: &str| db.get(id).unwrap().map(|s| s.state);
    assert_eq!(state("A"), Some(json!({"model": "A320"})));
    // B: not stale, the seq-3 value wins although seq 2 arrived last.
    assert_eq!(
        state("B"),
        Some(json!({"engine": {"serial": "ESN-202"}, "model": "A321"}))
    );
    assert_eq!(state("C"), None);
    // D: the re-add at seq 3 survives the delete at seq 2 that arrived after it.
    assert_eq!(
        state("D"),
        Some(json!({"cabin": {"layout": "3-4-3"}, "model": "A350"}))
    );
    // E: no phantom, the delete at seq 3 arrived before the create at seq 2.
    assert_eq!(state("E"), None);
    // F and its child G are both there although G arrived before F.
    assert_eq!(state("F"), Some(json!({"model": "A330"})));
    assert_eq!(state("G"), Some(json!({"parent": "F", "part": "engine"})));
    assert_eq!(db.get("B").unwrap().unwrap().seq, 3);
}
