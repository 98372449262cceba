//! Retraction (DESIGN.md, section 5f), case by case: a retracted batch leaves every state, as-of
//! states included, as if it had never arrived, through reopens, checkpoints, read-only
//! refreshes, export and import; a retraction before the batch, a redelivery after it, an
//! unretraction; a batch compaction folded is out of reach with a clear error.

mod common;

use aggrelog::{Batch, Db, Error, History, Options};
use common::{named, small_log_options};
use serde_json::{json, Value};

fn state(db: &Db, id: &str) -> Option<Value> {
    db.get(id).unwrap().map(|s| s.state)
}

fn good() -> Batch {
    named("good", &[("A", 1, json!({"wing": "left", "price": 10}))])
}

fn bad() -> Batch {
    named(
        "bad",
        &[
            ("A", 2, json!({"price": 99999})),
            ("B", 2, json!({"phantom": true})),
        ],
    )
}

fn options() -> Options {
    small_log_options().history(History::All)
}

#[test]
fn a_retracted_batch_is_as_if_it_never_arrived_and_unretract_puts_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    db.write(&good()).unwrap();
    db.write(&bad()).unwrap();
    assert_eq!(
        state(&db, "A"),
        Some(json!({"wing": "left", "price": 99999}))
    );

    let retraction = db.retract("bad").unwrap();
    assert_eq!(retraction.deltas, 2);
    assert_eq!(retraction.changed, vec!["A".to_owned(), "B".to_owned()]);
    assert_eq!(state(&db, "A"), Some(json!({"wing": "left", "price": 10})));
    assert_eq!(state(&db, "B"), None, "B only came in the retracted batch");
    let as_of = db.get_as_of("A", 2).unwrap().unwrap();
    assert_eq!((as_of.seq, as_of.state["price"].clone()), (1, json!(10)));
    assert_eq!(db.retracted_batches(), vec!["bad".to_owned()]);
    let history = db.history("A").unwrap();
    let marks: Vec<bool> = history.deltas.iter().map(|d| d.retracted).collect();
    assert_eq!(marks, vec![false, true]);
    // Retracting again writes nothing.
    assert!(!db.retract("bad").unwrap().recorded);

    let again = db.unretract("bad").unwrap();
    assert_eq!(again.changed, vec!["A".to_owned(), "B".to_owned()]);
    assert_eq!(state(&db, "B"), Some(json!({"phantom": true})));
    db.retract("bad").unwrap();
    db.close().unwrap();

    // Without a checkpoint: recovery reads the retraction records after the batch.
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(state(&db, "A"), Some(json!({"wing": "left", "price": 10})));
    assert_eq!(state(&db, "B"), None);
    db.checkpoint().unwrap();
    db.close().unwrap();
    // From the checkpoint, which holds the register and the places.
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.stats().retracted_batches, 1);
    assert_eq!(state(&db, "B"), None);
}

#[test]
fn a_retraction_before_its_batch_and_a_redelivery_after_it_give_the_same_states() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let error = db.retract("bad").unwrap_err();
    assert!(error.to_string().contains("--pending"), "{error}");
    let pending = db.retract_pending("bad").unwrap();
    assert_eq!((pending.deltas, pending.recorded), (0, true));
    db.write(&good()).unwrap();
    db.write(&bad()).unwrap();
    assert_eq!(state(&db, "B"), None, "the batch arrived retracted");
    db.write(&bad()).unwrap();
    assert_eq!(state(&db, "B"), None, "so did its redelivery");
    assert_eq!(state(&db, "A"), Some(json!({"wing": "left", "price": 10})));
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(state(&db, "B"), None);
    // The same deltas under another name are that batch's: still there.
    let mut twin = bad();
    twin.name("twin").unwrap();
    let mut copy = Batch::new();
    copy.name("twin").unwrap();
    copy.patch("B", 2, &json!({"phantom": true})).unwrap();
    db.write(&copy).unwrap();
    assert_eq!(state(&db, "B"), Some(json!({"phantom": true})));
}

#[test]
fn a_read_only_handle_and_an_import_see_the_retraction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    db.write(&good()).unwrap();
    db.write(&bad()).unwrap();
    let reader = Db::open_read_only(dir.path(), options()).unwrap();
    assert_eq!(state(&reader, "B"), Some(json!({"phantom": true})));
    db.retract("bad").unwrap();
    reader.refresh().unwrap();
    assert_eq!(
        state(&reader, "B"),
        None,
        "a refresh reads the retraction record"
    );

    let mut export = Vec::new();
    db.export(&mut export).unwrap();
    let text = String::from_utf8(export.clone()).unwrap();
    assert!(text.contains(r#""retraction":"bad""#), "{text}");
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = Db::open(copy_dir.path(), options()).unwrap();
    copy.import(&mut export.as_slice()).unwrap();
    assert_eq!(state(&copy, "B"), None);
    assert_eq!(state(&copy, "A"), state(&db, "A"));
    copy.close().unwrap();
    let copy = Db::open(copy_dir.path(), options()).unwrap();
    assert_eq!(copy.retracted_batches(), vec!["bad".to_owned()]);
    copy.unretract("bad").unwrap();
    assert_eq!(state(&copy, "B"), Some(json!({"phantom": true})));

    // A bad line after the retraction: the lines before it stay imported, the retraction in
    // force over the batch imported before it.
    let cut = format!("{text}{{\"nonsense\":1}}\n");
    let cut_dir = tempfile::tempdir().unwrap();
    let cut_copy = Db::open(cut_dir.path(), options()).unwrap();
    let error = cut_copy.import(&mut cut.as_bytes()).unwrap_err();
    let bad_line = format!("line {}:", text.lines().count() + 1);
    assert!(error.to_string().contains(&bad_line), "{error}");
    assert_eq!(state(&cut_copy, "B"), None);
    assert_eq!(state(&cut_copy, "A"), state(&db, "A"));

    // A name span that does not cover its deltas the way Batch::name gives them is refused.
    let span = r#"{"count":2,"first_delta":0,"name":"bad"}"#;
    assert!(text.contains(span), "{text}");
    let short = text.replace(span, r#"{"count":1,"first_delta":0,"name":"bad"}"#);
    let short_dir = tempfile::tempdir().unwrap();
    let short_copy = Db::open(short_dir.path(), options()).unwrap();
    let error = short_copy.import(&mut short.as_bytes()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(r#"name "bad" covers deltas 0+1"#),
        "{error}"
    );
}

#[test]
fn a_spanning_batch_is_retracted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let mut large = db.large_batch().unwrap();
    large.name("snapshot").unwrap();
    for n in 0..2_000u64 {
        large
            .patch(
                &format!("aircraft-{n:05}"),
                3,
                &json!({"n": n, "pad": "x".repeat(40)}),
            )
            .unwrap();
    }
    large.commit().unwrap();
    assert!(db.stats().segments > 3, "the batch spans segments");
    let retraction = db.retract("snapshot").unwrap();
    assert_eq!(
        (retraction.deltas, retraction.changed.len()),
        (2_000, 2_000)
    );
    assert_eq!(db.scan().count(), 0);
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.scan().count(), 0);
}

#[test]
fn a_batch_folded_by_compaction_is_out_of_reach_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_log_options().history(History::Window(5));
    let db = Db::open(dir.path(), options.clone()).unwrap();
    db.write(&named("old", &[("A", 1, json!({"v": 1}))]))
        .unwrap();
    db.write(&named("new", &[("A", 10, json!({"w": 2}))]))
        .unwrap();
    db.compact().unwrap();
    let error = db.retract("old").unwrap_err();
    assert!(matches!(error, Error::InvalidInput(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("\"old\"") && message.contains("Window(5)"),
        "{message}"
    );
    assert!(db.retracted_batches().is_empty());
    // Asking for the status it has is no change, so nothing is out of reach.
    let unchanged = db.unretract("old").unwrap();
    assert!(!unchanged.recorded && !unchanged.retracted, "{unchanged:?}");
    // Within the window, retraction works and survives the next compaction.
    db.retract("new").unwrap();
    db.compact().unwrap();
    assert_eq!(state(&db, "A"), Some(json!({"v": 1})));
    db.close().unwrap();
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(state(&db, "A"), Some(json!({"v": 1})));
}

#[test]
fn a_retracted_delta_that_compaction_folds_stays_out_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_log_options().history(History::Window(5));
    let db = Db::open(dir.path(), options.clone()).unwrap();
    db.write(&named("keep", &[("A", 1, json!({"v": 1}))]))
        .unwrap();
    db.write(&named("drop", &[("A", 2, json!({"v": 2, "x": 1}))]))
        .unwrap();
    db.retract("drop").unwrap();
    db.write(&named("later", &[("B", 20, json!({"b": 1}))]))
        .unwrap();
    db.compact().unwrap();
    assert_eq!(state(&db, "A"), Some(json!({"v": 1})));
    let error = db.unretract("drop").unwrap_err();
    assert!(error.to_string().contains("out of reach"), "{error}");
    db.close().unwrap();
    // The segments are gone and the register re-recorded: the state stays.
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(state(&db, "A"), Some(json!({"v": 1})));
    assert_eq!(db.retracted_batches(), vec!["drop".to_owned()]);
}
