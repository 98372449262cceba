//! The reference index (DESIGN.md, section 6c) at growing sizes: heap bytes per reference
//! (counted by this binary's allocator), the first query (the build: every aggregate folded)
//! and a query after 1000 aggregates were written (an update). Hierarchical master data:
//! aircraft whose `/parent` names a fleet and whose `/components/*/ref` name two engines,
//! every fifth engine not written (dangling).
//!
//! `cargo bench --bench references` prints one line per size (the update: the median of five,
//! each after its own 1000 writes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use aggrelog::{Batch, Db, Options, SyncMode};
use serde_json::json;

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A database of `aircraft` aircraft, each with three references, and their engines.
fn fleet(dir: &std::path::Path, aircraft: u64) -> Db {
    let options = Options::default()
        .sync(SyncMode::Never)
        .background_compaction(false);
    let db = Db::open(dir, options).expect("open");
    db.declare_references(&["/parent", "/components/*/ref"])
        .expect("declare");
    for first in (0..aircraft).step_by(1000) {
        let mut batch = Batch::new();
        for n in first..(first + 1000).min(aircraft) {
            let engines = [
                format!("engine-{:08}", 2 * n),
                format!("engine-{:08}", 2 * n + 1),
            ];
            let aircraft = json!({
                "parent": format!("fleet-{:04}", n % 100),
                "components": [{"ref": engines[0]}, {"ref": engines[1]}],
                "model": "A320",
            });
            batch
                .patch(&format!("aircraft-{n:08}"), 1, &aircraft)
                .expect("patch");
            for (i, engine) in engines.iter().enumerate() {
                if !(2 * n + i as u64).is_multiple_of(5) {
                    batch
                        .patch(engine, 1, &json!({"thrust_kn": 120}))
                        .expect("patch");
                }
            }
        }
        db.write(&batch).expect("write");
    }
    db.compact().expect("compact");
    db
}

/// Writes a new model for 1000 aircraft at `seq`.
fn update(db: &Db, seq: u64) {
    let mut batch = Batch::new();
    for n in 0..1000u64 {
        let patch = json!({"model": format!("A321-{seq}")});
        batch
            .patch(&format!("aircraft-{n:08}"), seq, &patch)
            .expect("patch");
    }
    db.write(&batch).expect("write");
}

fn main() {
    println!("aircraft  references  heap B/reference  build ms  update ms  dangling");
    for aircraft in [10_000u64, 100_000, 300_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = fleet(dir.path(), aircraft);
        let before = LIVE_BYTES.load(Ordering::SeqCst);
        let started = Instant::now();
        let refs = db.references("aircraft-00000000").expect("query");
        let build_ms = started.elapsed().as_secs_f64() * 1e3;
        let heap = LIVE_BYTES.load(Ordering::SeqCst) - before;
        assert_eq!(refs.outgoing.len(), 3);
        let references = 3 * aircraft;
        let mut updates: Vec<f64> = (2..7)
            .map(|seq| {
                update(&db, seq);
                let started = Instant::now();
                db.references("aircraft-00000000").expect("query");
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        updates.sort_by(f64::total_cmp);
        let dangling = db.dangling().expect("dangling").len();
        println!(
            "{aircraft:>8}  {references:>10}  {:>16.1}  {build_ms:>8.1}  {:>9.2}  {dangling:>8}",
            heap as f64 / references as f64,
            updates[2]
        );
    }
}
