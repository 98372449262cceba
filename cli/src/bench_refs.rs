//! The reference index figures of `aggrelog bench` (DESIGN.md, section 6c): declaring
//! `/*/status` (the status of every component, a string) on the bench's database, the first
//! query's build time, and the time of a query after a batch of writes (an update, not a
//! rebuild). Memory per reference is measured by `cargo bench --bench references`, whose
//! allocator counts bytes (a resident-set difference here mostly shows reused memory).

use std::time::Instant;

use aggrelog::{Batch, Db};
use serde_json::json;

/// What the reference index step measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefFigures {
    /// References the index holds.
    pub references: u64,
    /// The first query: every aggregate folded.
    pub build_ms: f64,
    /// A query after `UPDATED` aggregates were written.
    pub update_ms: f64,
}

/// Aggregates written between the build and the timed update.
pub const UPDATED: usize = 1000;

/// Declares the reference field on `db` and measures the index.
pub fn measure(db: &Db, next_seq: u64) -> Result<RefFigures, String> {
    let fail = |e: aggrelog::Error| e.to_string();
    db.declare_references(&["/*/status"]).map_err(fail)?;
    let started = Instant::now();
    db.references("").map_err(fail)?;
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    // No status names an aggregate: every reference dangles.
    let references = db.dangling().map_err(fail)?.len() as u64;
    let ids: Vec<String> = (db.scan().take(UPDATED))
        .map(|item| item.map(|(id, _)| id))
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let mut batch = Batch::new();
    for id in &ids {
        let patch = json!({"engine": {"status": "bench-updated"}});
        batch.patch(id, next_seq, &patch).map_err(fail)?;
    }
    db.write(&batch).map_err(fail)?;
    let started = Instant::now();
    db.references("").map_err(fail)?;
    let update_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(RefFigures {
        references,
        build_ms,
        update_ms,
    })
}
