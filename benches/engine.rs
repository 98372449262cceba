//! Criterion benches of the engine's hot paths on a small mfg workload (20k deltas over
//! 2k aggregates, batches of 1000): append, open (full replay + index rebuild), replay,
//! materialize (scan) and point get. `cargo bench --bench engine`.

use std::hint::black_box;

use aggrelog::workload::{generate, WorkloadSpec};
use aggrelog::{Batch, Db, Options, RecordLocation, SyncMode};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const AGGREGATES: u64 = 2_000;
const DELTAS: u64 = 20_000;
const BATCH: u64 = 1_000;

/// The mfg workload (`aggrelog::workload`, the generator `aggrelog bench` uses), smaller.
fn batches() -> Vec<Batch> {
    let spec = WorkloadSpec {
        aggregates: AGGREGATES,
        deltas: DELTAS,
        batch_size: BATCH,
        seed: 1,
    };
    let generated = generate(&spec).expect("workload");
    generated.into_iter().map(|b| b.batch).collect()
}

fn options() -> Options {
    Options::default().sync(SyncMode::Never)
}

fn filled_db(dir: &std::path::Path, batches: &[Batch]) {
    let db = Db::open(dir, options()).expect("open");
    for batch in batches {
        db.write(batch).expect("write");
    }
    db.close().expect("close");
}

fn benches(c: &mut Criterion) {
    let batches = batches();
    let payload: usize = batches.iter().map(Batch::payload_bytes).sum();
    let dir = tempfile::tempdir().expect("temp dir");
    filled_db(dir.path(), &batches);

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Bytes(batches[0].payload_bytes() as u64));
    group.bench_function("append_1000_delta_batch_nosync", |b| {
        b.iter_batched(
            || {
                let d = tempfile::tempdir().expect("temp dir");
                let db = Db::open(d.path(), options()).expect("open");
                (d, db)
            },
            |(d, db)| {
                db.write(&batches[0]).expect("write");
                (d, db)
            },
            BatchSize::PerIteration,
        )
    });
    group.throughput(Throughput::Bytes(payload as u64));
    group.bench_function("open_full_replay_20k_deltas", |b| {
        b.iter(|| black_box(Db::open(dir.path(), options()).expect("open")))
    });
    let db = Db::open(dir.path(), options()).expect("open");
    group.throughput(Throughput::Elements(DELTAS));
    group.bench_function("replay_20k_deltas", |b| {
        b.iter(|| black_box(db.replay(RecordLocation::START).count()))
    });
    group.bench_function("replay_20k_deltas_borrowed", |b| {
        b.iter(|| {
            let mut replay = db.replay(RecordLocation::START);
            let mut seen = 0u64;
            while let Some(batch) = replay.next_batch() {
                for delta in batch.expect("batch").deltas() {
                    seen += delta.expect("delta").seq;
                }
            }
            black_box(seen)
        })
    });
    group.bench_function("materialize_all_aggregates", |b| {
        b.iter(|| black_box(db.scan().count()))
    });
    group.bench_function("materialize_all_aggregates_2_threads", |b| {
        b.iter(|| black_box(db.materialize(2, |_, _| Ok(())).expect("materialize")))
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_hot_aggregate", |b| {
        b.iter(|| black_box(db.get("aircraft-0000007").expect("get")))
    });
    group.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
