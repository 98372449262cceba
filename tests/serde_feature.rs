//! Feature `serde`: the types a user prints serialize with their field names.

use aggrelog::{Batch, Db, Options};
use serde_json::{json, Value};

#[test]
fn stats_states_and_reports_serialize() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut batch = Batch::new();
    batch.patch("a", 1, &json!({"x": 1})).unwrap();
    let receipt = serde_json::to_value(db.write(&batch).unwrap()).unwrap();
    assert_eq!(receipt["deltas"], 1);
    assert_eq!(receipt["location"]["segment"], 1);
    let state = serde_json::to_value(db.get("a").unwrap().unwrap()).unwrap();
    assert_eq!(state, json!({"seq": 1, "state": {"x": 1}}));
    let report = serde_json::to_value(db.compact().unwrap()).unwrap();
    assert_eq!(report["aggregates_folded"], 1);
    let stats: Value = serde_json::to_value(db.stats()).unwrap();
    assert_eq!(stats["aggregates"], 1);
    assert_eq!(stats["skipped"], json!([]));
    db.close().unwrap();
    let check = serde_json::to_value(aggrelog::check(dir.path()).unwrap()).unwrap();
    assert_eq!(check["damage"], json!([]));
}
