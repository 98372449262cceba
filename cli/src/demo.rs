//! `aggrelog demo`: the out-of-order table of README.md, computed for real.
//!
//! Three batches (Bch1, Bch2, Bch3 with seq 1, 2, 3) arrive in the order Bch1, Bch3, Bch2. A
//! naive CRUD pipeline (lookup, merge, save; children rejected while their parent is missing)
//! processes them in arrival order; aggrelog ingests them in the same order. Both are compared
//! with the truth: the same CRUD pipeline fed the batches in seq order. Then the history of B:
//! its deltas in fold order, each with the batch it came in.

use std::collections::BTreeMap;

use aggrelog::{Batch, Db, Options};
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

/// aggrelog's outcome per aggregate after ingesting the batches in `order`, and the history of
/// `audited` (one line per delta, in fold order, with its batch's name).
fn aggrelog_states(
    order: &[usize],
    audited: &str,
) -> aggrelog::Result<(BTreeMap<String, Outcome>, Vec<String>)> {
    let dir = tempfile::tempdir().map_err(|e| aggrelog::Error::io(std::env::temp_dir(), e))?;
    let db = Db::open(dir.path(), Options::default())?;
    let all = batches();
    for &b in order {
        let (name, seq, deltas) = &all[b];
        let mut batch = Batch::new();
        batch.name(name)?;
        for delta in deltas {
            match delta.op {
                Op::Remove => batch.delete(delta.id, *seq)?,
                Op::New | Op::Update => batch.patch(delta.id, *seq, &delta.patch)?,
            };
        }
        db.write(&batch)?;
    }
    let mut states = BTreeMap::new();
    for item in db.scan() {
        let (id, state) = item?;
        states.insert(id, state.state);
    }
    let history = history_lines(&db, audited)?;
    db.close()?;
    Ok((outcomes(&states), history))
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
        format!("  seq {} pos {} {batch}: {what}", d.seq, d.position)
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
    let (ours, history_of_b) = aggrelog_states(&arrival, "B").map_err(|e| e.to_string())?;
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
    println!("\nThe history of B in aggrelog (`aggrelog history`): its deltas in fold order, each");
    println!("with the batch it came in, whatever the order they arrived in:");
    history_of_b.iter().for_each(|line| println!("{line}"));
    if ours_right == truth.len() {
        Ok(())
    } else {
        Err("aggrelog disagreed with the truth".into())
    }
}
