//! Measures the aggregate index's heap memory with a counting allocator.
//!
//! ```text
//! cargo run --release --example index_memory [AGGREGATES] [DELTAS_PER_AGGREGATE]
//! ```
//! Prints bytes per aggregate (index with one delta each) and the marginal bytes per extra delta.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use aggrelog::testing::internals::{DeltaRef, Index};

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn delta(seq: u64, position: u32) -> DeltaRef {
    DeltaRef {
        seq,
        segment: 1,
        position,
        checksum: seq as u32,
        record_offset: 32,
        delta_offset: 4,
        len: 100,
    }
}

fn build(aggregates: usize, deltas_each: usize) -> (Index, usize) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut index = Index::default();
    for d in 0..deltas_each {
        for a in 0..aggregates {
            index.insert(&format!("aircraft-{a:07}"), delta(d as u64 + 1, a as u32));
        }
    }
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;
    (index, bytes)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let aggregates: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let deltas_each: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let id_len = "aircraft-0000000".len();
    let (one, one_bytes) = build(aggregates, 1);
    drop(one);
    let (many, many_bytes) = build(aggregates, deltas_each);
    let per_aggregate = one_bytes as f64 / aggregates as f64;
    let per_delta = (many_bytes - one_bytes) as f64 / (aggregates * (deltas_each - 1)) as f64;
    println!("aggregates: {aggregates}, id length: {id_len} bytes");
    println!("index with 1 delta each: {one_bytes} bytes = {per_aggregate:.1} bytes/aggregate");
    println!(
        "index with {deltas_each} deltas each: {many_bytes} bytes; marginal {per_delta:.1} bytes/delta \
         (Vec growth included; {} aggregates)",
        many.aggregates()
    );
}
