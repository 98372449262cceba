//! Criterion benches of the costs that grow with an aggregate's shape rather than the log's
//! size: `get` of one wide aggregate (10k attributes, 100k deltas, uncompacted and compacted)
//! and full compaction of one aggregate's long chain (100k deltas). Both were superlinear once
//! (sorted-vector children, a linear search per delta at install); these keep them measured.
//! `cargo bench --bench shapes`.

use std::hint::black_box;

use aggrelog::{Batch, Db, Options, SyncMode};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;

const DELTAS: u64 = 100_000;
const ATTRIBUTES: u64 = 10_000;

fn options() -> Options {
    Options::default()
        .sync(SyncMode::Never)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
}

/// One aggregate, `DELTAS` deltas of 1000 per batch; delta `i` sets the attribute `key(i)`.
fn fill(dir: &std::path::Path, key: impl Fn(u64) -> u64) -> Db {
    let db = Db::open(dir, options()).expect("open");
    for first in (0..DELTAS).step_by(1000) {
        let mut batch = Batch::new();
        for i in first..first + 1000 {
            let patch = json!({ format!("attr{}", key(i)): i });
            batch.patch("wide", i + 1, &patch).expect("patch");
        }
        db.write(&batch).expect("write");
    }
    db
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("shapes");
    group.sample_size(10);
    let wide_dir = tempfile::tempdir().expect("temp dir");
    // Attributes in a scattered order: every key lands in the middle of the node.
    let wide = fill(wide_dir.path(), |i| (i * 7919) % ATTRIBUTES);
    group.throughput(Throughput::Elements(DELTAS));
    group.bench_function("get_10k_attributes_100k_deltas_uncompacted", |b| {
        b.iter(|| black_box(wide.get("wide").expect("get")))
    });
    wide.compact().expect("compact");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_10k_attributes_compacted", |b| {
        b.iter(|| black_box(wide.get("wide").expect("get")))
    });
    group.throughput(Throughput::Elements(DELTAS));
    group.bench_function("compact_one_chain_of_100k_deltas", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("temp dir");
                let db = fill(dir.path(), |i| i % 100);
                (dir, db)
            },
            |(dir, db)| {
                db.compact().expect("compact");
                (dir, db)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(shapes, benches);
criterion_main!(shapes);
