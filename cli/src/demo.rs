//! `aggrelog demo`: the out-of-order table of README.md, computed for real.
//!
//! Three batches (Bch1, Bch2, Bch3 with seq 1, 2, 3) arrive in the order Bch1, Bch3, Bch2. A
//! naive CRUD pipeline (lookup, merge, save; children rejected while their parent is missing)
//! processes them in arrival order; aggrelog ingests them in the same order. Both are compared
//! with the truth: the same CRUD pipeline fed the batches in seq order; aggrelog's children come
//! from its reference index. Then aggrelog's dangling references after each arrival (G's parent
//! F is absent until Bch2), a fourth batch with wrong values taken back by `retract`, and the
//! history of B: its deltas in fold order, each with the batch it came in.

use std::collections::BTreeMap;

use aggrelog::{Batch, Db, History, Options};
use serde_json::{json, Value};

/// What a batch does to one aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    New,
    Update,
    Remove,
}

struct Delta {
    id: &'static str,
    op: Op,
    patch: Value,
}

/// The three batches, in seq order: (name, seq, deltas).
fn batches() -> Vec<(&'static str, u64, Vec<Delta>)> {
    let d = |id, op, patch| Delta { id, op, patch };
    vec![
        (
            "Bch1",
            1,
            vec![
                d(
                    "A",
                    Op::New,
                    json!({"model": "A320", "engine": {"serial": "ESN-100"}}),
                ),
                d(
                    "B",
                    Op::New,
                    json!({"model": "A321", "engine": {"serial": "ESN-200"}}),
                ),
                d("C", Op::New, json!({"model": "A319"})),
                d(
                    "D",
                    Op::New,
                    json!({"model": "A350", "cabin": {"layout": "3-3-3"}}),
                ),
            ],
        ),
        (
            "Bch2",
            2,
            vec![
                d("B", Op::Update, json!({"engine": {"serial": "ESN-201"}})),
                d("C", Op::Remove, Value::Null),
                d("D", Op::Remove, Value::Null),
                d("E", Op::New, json!({"model": "B787"})),
                d("F", Op::New, json!({"model": "A330"})),
            ],
        ),
        (
            "Bch3",
            3,
            vec![
                d("B", Op::Update, json!({"engine": {"serial": "ESN-202"}})),
                d(
                    "D",
                    Op::New,
                    json!({"model": "A350", "cabin": {"layout": "3-4-3"}}),
                ),
                d("E", Op::Remove, Value::Null),
                d(
                    "G",
                    Op::New,
                    json!({"part": "engine", "parent": "F", "serial": "ESN-900"}),
                ),
            ],
        ),
    ]
}

/// A CRUD master-data store: lookup, merge, save, in arrival order.
#[derive(Default)]
struct CrudStore {
    rows: BTreeMap<String, Value>,
    rejected: BTreeMap<String, String>,
}

impl CrudStore {
    fn apply(&mut self, delta: &Delta) {
        let parent = delta.patch.get("parent").and_then(Value::as_str);
        match delta.op {
            Op::New if parent.is_some_and(|p| !self.rows.contains_key(p)) => {
                let reason = format!("parent {} not there yet", parent.unwrap_or_default());
                self.rejected.insert(delta.id.into(), reason);
            }
            Op::New | Op::Update => {
                let row = self
                    .rows
                    .entry(delta.id.into())
                    .or_insert_with(|| json!({}));
                json_patch::merge(row, &delta.patch);
            }
            Op::Remove => {
                self.rows.remove(delta.id);
            }
        }
    }
}

/// An aggregate's state and the children that name it as parent.
#[derive(Clone, Debug, PartialEq)]
struct Outcome {
    state: Option<Value>,
    children: Vec<String>,
}

fn outcomes(states: &BTreeMap<String, Value>) -> BTreeMap<String, Outcome> {
    let ids = ["A", "B", "C", "D", "E", "F", "G"];
    ids.iter()
        .map(|&id| {
            let children = states
                .iter()
                .filter(|(_, s)| s.get("parent").and_then(Value::as_str) == Some(id))
                .map(|(child, _)| child.clone())
                .collect();
            let state = states.get(id).cloned();
            (id.to_string(), Outcome { state, children })
        })
        .collect()
}

fn crud(order: &[usize]) -> (BTreeMap<String, Outcome>, CrudStore) {
    let all = batches();
    let mut store = CrudStore::default();
    for &b in order {
        all[b].2.iter().for_each(|delta| store.apply(delta));
    }
    (outcomes(&store.rows), store)
}

/// What aggrelog shows: its outcome per aggregate (children from its reference index), the
/// dangling references after each arrival, the retraction of a bad fourth batch, and the
/// history of `audited`.
struct Story {
    outcomes: BTreeMap<String, Outcome>,
    /// After each batch, in arrival order: its name and the dangling references.
    dangling: Vec<(&'static str, Vec<String>)>,
    /// The states the fourth batch touched: before it, with it, after its retraction.
    retraction: Vec<String>,
    history: Vec<String>,
}

/// The batch `(name, seq, deltas)` as a named aggrelog batch.
fn named_batch(name: &str, seq: u64, deltas: &[Delta]) -> aggrelog::Result<Batch> {
    let mut batch = Batch::new();
    batch.name(name)?;
    for delta in deltas {
        match delta.op {
            Op::Remove => batch.delete(delta.id, seq)?,
            Op::New | Op::Update => batch.patch(delta.id, seq, &delta.patch)?,
        };
    }
    Ok(batch)
}

/// A fourth batch with wrong values (a typo in B's engine serial, a wrong model for A).
fn bad_batch() -> (&'static str, u64, Vec<Delta>) {
    let d = |id, patch| Delta {
        id,
        op: Op::Update,
        patch,
    };
    let deltas = vec![
        d("A", json!({"model": "A380"})),
        d("B", json!({"engine": {"serial": "ESN-2O2"}})),
    ];
    ("Bch4", 4, deltas)
}

/// Ingests the batches in `order` into a database that declares `/parent` a reference field,
/// then a bad fourth batch, retracted.
fn aggrelog_story(order: &[usize], audited: &str) -> aggrelog::Result<Story> {
    let dir = tempfile::tempdir().map_err(|e| aggrelog::Error::io(std::env::temp_dir(), e))?;
    // Retraction needs the deltas unfolded: keep them all.
    let db = Db::open(dir.path(), Options::default().history(History::All))?;
    db.declare_references(&["/parent"])?;
    let all = batches();
    let mut dangling = Vec::new();
    for &b in order {
        let (name, seq, deltas) = &all[b];
        db.write(&named_batch(name, *seq, deltas)?)?;
        let now = db.dangling()?.into_iter();
        let lines = now.map(|r| format!("{} {} -> {} (absent)", r.aggregate, r.pointer, r.target));
        dangling.push((*name, lines.collect()));
    }
    let outcomes = aggrelog_outcomes(&db)?;
    let (name, seq, deltas) = bad_batch();
    let touched: Vec<&str> = deltas.iter().map(|d| d.id).collect();
    let mut retraction = Vec::new();
    let mut show_states = |when: &str, db: &Db| -> aggrelog::Result<()> {
        for id in &touched {
            let state = db
                .get(id)?
                .map_or_else(|| "(absent)".into(), |s| s.state.to_string());
            retraction.push(format!("  {when:<24} {id} {state}"));
        }
        Ok(())
    };
    show_states("before Bch4:", &db)?;
    db.write(&named_batch(name, seq, &deltas)?)?;
    show_states("with Bch4:", &db)?;
    let retracted = db.retract(name)?;
    show_states("after `retract Bch4`:", &db)?;
    retraction.push(format!("  changed: {:?}", retracted.changed));
    let history = history_lines(&db, audited)?;
    db.close()?;
    Ok(Story {
        outcomes,
        dangling,
        retraction,
        history,
    })
}

/// aggrelog's outcome per aggregate: its state, and its children as the reference index
/// reports them (the aggregates whose `/parent` names it).
fn aggrelog_outcomes(db: &Db) -> aggrelog::Result<BTreeMap<String, Outcome>> {
    let ids = ["A", "B", "C", "D", "E", "F", "G"];
    let mut outcomes = BTreeMap::new();
    for id in ids {
        let state = db.get(id)?.map(|s| s.state);
        let incoming = db.references(id)?.incoming.into_iter();
        let children = incoming.map(|r| r.aggregate).collect();
        outcomes.insert(id.to_string(), Outcome { state, children });
    }
    Ok(outcomes)
}

/// `id`'s deltas in fold order: `seq S pos P BATCH patch` (or `delete`).
fn history_lines(db: &Db, id: &str) -> aggrelog::Result<Vec<String>> {
    let history = db.history(id)?;
    let lines = history.deltas.iter().map(|d| {
        let what = match d.kind {
            aggrelog::DeltaKind::Delete => "delete".to_owned(),
            aggrelog::DeltaKind::Patch => aggrelog::model::binary::decode_value(&d.body)
                .map_or_else(|e| format!("(undecodable: {e})"), |v| v.to_string()),
        };
        let batch = d.batch.as_deref().unwrap_or("(unnamed)");
        let retracted = if d.retracted { " (retracted)" } else { "" };
        format!(
            "  seq {} pos {} {batch}: {what}{retracted}",
            d.seq, d.position
        )
    });
    Ok(lines.collect())
}

/// Names what went wrong for a CRUD outcome compared with the truth.
fn verdict(id: &str, got: &Outcome, truth: &Outcome, store: &CrudStore) -> String {
    if got == truth {
        return "OK".into();
    }
    match (&got.state, &truth.state) {
        (None, Some(_)) => match store.rejected.get(id) {
            Some(reason) => format!("rejected: {reason}"),
            None => "missing: the re-add is lost".into(),
        },
        (Some(_), None) => "phantom: the removed one is back".into(),
        _ if got.children != truth.children => {
            format!(
                "degenerate: children {:?}, should be {:?}",
                got.children, truth.children
            )
        }
        _ => "stale: an older value won".into(),
    }
}

fn show(outcome: &Outcome) -> String {
    let state = outcome
        .state
        .as_ref()
        .map_or_else(|| "(absent)".to_string(), Value::to_string);
    if outcome.children.is_empty() {
        state
    } else {
        format!("{state} children {:?}", outcome.children)
    }
}

/// Runs the demo; fails if aggrelog gets any aggregate wrong.
pub fn run() -> Result<(), String> {
    let arrival = [0, 2, 1];
    let (truth, _) = crud(&[0, 1, 2]);
    let (crud_result, store) = crud(&arrival);
    let story = aggrelog_story(&arrival, "B").map_err(|e| e.to_string())?;
    let ours = &story.outcomes;
    println!("Batches Bch1 (seq 1), Bch2 (seq 2), Bch3 (seq 3) arrive as Bch1, Bch3, Bch2.");
    println!("Truth = the batches applied in seq order.\n");
    let mut crud_right = 0;
    let mut ours_right = 0;
    for (id, expected) in &truth {
        let got = &crud_result[id];
        let mine = &ours[id];
        crud_right += usize::from(got == expected);
        ours_right += usize::from(mine == expected);
        println!(
            "{id}  CRUD:     {:<38} {}",
            verdict(id, got, expected, &store),
            show(got)
        );
        let mark = if mine == expected { "right" } else { "WRONG" };
        println!("   aggrelog: {mark:<38} {}", show(mine));
        println!("   truth:    {:<38} {}", "", show(expected));
    }
    println!("\nCRUD pipeline: {crud_right} of {} right", truth.len());
    println!("aggrelog:      {ours_right} of {} right", truth.len());
    println!("\nReferences in aggrelog (`aggrelog refs declare --db DIR /parent`): nothing is");
    println!("rejected; `aggrelog dangling` after each arrival:");
    for (name, lines) in &story.dangling {
        let shown = if lines.is_empty() {
            "none".into()
        } else {
            lines.join(", ")
        };
        println!("  after {name}: {shown}");
    }
    println!("\nA fourth batch with wrong values arrives, and is taken back (`aggrelog retract`):");
    story.retraction.iter().for_each(|line| println!("{line}"));
    println!("\nThe history of B in aggrelog (`aggrelog history`): its deltas in fold order, each");
    println!("with the batch it came in, whatever the order they arrived in:");
    story.history.iter().for_each(|line| println!("{line}"));
    if ours_right == truth.len() {
        Ok(())
    } else {
        Err("aggrelog disagreed with the truth".into())
    }
}
