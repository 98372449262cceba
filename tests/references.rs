//! References reported, not rejected (DESIGN.md, section 6c): a child before its parent is
//! accepted and reported dangling until the parent arrives; a deleted or retracted target
//! makes it dangle again; the declaration is durable and shared by every handle.

mod common;

use aggrelog::{Batch, Db, History, Reference};
use common::{named, small_log_options};
use serde_json::json;

fn reference(aggregate: &str, pointer: &str, target: &str) -> Reference {
    Reference::new(aggregate, pointer, target)
}

fn options() -> aggrelog::Options {
    small_log_options().history(History::All)
}

#[test]
fn a_child_before_its_parent_dangles_until_the_parent_arrives_and_again_when_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    db.declare_references(&["/parent", "/components/*/ref"])
        .unwrap();
    db.write(&named(
        "Bch1",
        &[("G", 1, json!({"parent": "F", "model": "A320"}))],
    ))
    .unwrap();
    assert_eq!(db.dangling().unwrap(), vec![reference("G", "/parent", "F")]);
    let refs = db.references("G").unwrap();
    assert_eq!(refs.outgoing, vec![reference("G", "/parent", "F")]);
    assert!(refs.incoming.is_empty());

    db.write(&named(
        "Bch2",
        &[("F", 2, json!({"components": [{"ref": "G"}, {"ref": "E"}]}))],
    ))
    .unwrap();
    assert_eq!(
        db.dangling().unwrap(),
        vec![reference("F", "/components/1/ref", "E")],
        "G resolves by itself; F's reference to E dangles"
    );
    let refs = db.references("F").unwrap();
    assert_eq!(refs.incoming, vec![reference("G", "/parent", "F")]);

    let mut delete = Batch::new();
    delete.name("Bch3").unwrap().delete("F", 3).unwrap();
    db.write(&delete).unwrap();
    assert_eq!(db.dangling().unwrap(), vec![reference("G", "/parent", "F")]);
    db.retract("Bch3").unwrap();
    assert_eq!(db.dangling().unwrap().len(), 1, "F is back: only E dangles");
    db.retract("Bch2").unwrap();
    assert_eq!(db.dangling().unwrap(), vec![reference("G", "/parent", "F")]);
    db.unretract("Bch2").unwrap();
    db.close().unwrap();

    // The declaration and the index's outcome survive a reopen, a checkpoint and compaction.
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(
        db.declared_references(),
        vec!["/components/*/ref", "/parent"]
    );
    assert_eq!(
        db.dangling().unwrap(),
        vec![reference("F", "/components/1/ref", "E")]
    );
    db.checkpoint().unwrap();
    db.compact().unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), small_log_options()).unwrap();
    db.compact().unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), small_log_options()).unwrap();
    assert_eq!(db.declared_references().len(), 2);
    assert_eq!(
        db.dangling().unwrap(),
        vec![reference("F", "/components/1/ref", "E")]
    );
}

#[test]
fn a_read_only_handle_reads_the_declaration_and_bad_pointers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    assert!(db.declare_references(&["parent"]).is_err());
    assert!(db.declare_references(&[]).is_err());
    let reader = Db::open_read_only(dir.path(), options()).unwrap();
    db.declare_references(&["/parent"]).unwrap();
    db.write(&named("b", &[("G", 1, json!({"parent": "F"}))]))
        .unwrap();
    assert!(reader.dangling().unwrap().is_empty(), "nothing read yet");
    reader.refresh().unwrap();
    assert_eq!(reader.declared_references(), vec!["/parent"]);
    assert_eq!(
        reader.dangling().unwrap(),
        vec![reference("G", "/parent", "F")]
    );
    assert!(reader.declare_references(&["/x"]).is_err());
    // A value that is not a string is not a reference.
    db.write(&named("c", &[("H", 2, json!({"parent": 7}))]))
        .unwrap();
    assert!(db.references("H").unwrap().outgoing.is_empty());
}
