//! Criterion benches of the engine's hot paths on a small mfg-like workload (20k deltas over
//! 2k aggregates, batches of 1000): append, open (full replay + index rebuild), replay,
//! materialize (scan) and point get. `cargo bench --bench engine`.

use std::hint::black_box;

use aggrelog::{Batch, Db, Options, RecordLocation, SyncMode};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};

const AGGREGATES: u64 = 2_000;
const DELTAS: u64 = 20_000;
const BATCH: u64 = 1_000;

/// A small deterministic generator (xorshift) with the mfg shape: hot aggregates, 1-6
/// component attributes per patch, some nulls, rare deletes.
struct Workload(u64);

impl Workload {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn aggregate(&mut self) -> String {
        let hot = AGGREGATES / 5;
        let n = if self.next() % 10 < 8 {
            self.next() % hot
        } else {
            self.next() % AGGREGATES
        };
        format!("aircraft-{n:07}")
    }

    fn patch(&mut self) -> Value {
        let components = [
            "engine",
            "cabin",
            "avionics",
            "landing_gear",
            "wing",
            "fuselage",
        ];
        let attributes = [
            "serial", "model", "cycles", "hours", "status", "vendor", "position",
        ];
        let mut patch = json!({});
        for _ in 0..1 + self.next() % 6 {
            let c = components[(self.next() % 6) as usize];
            let a = attributes[(self.next() % 7) as usize];
            let v = match self.next() % 20 {
                0 => Value::Null,
                1..=9 => json!(format!("SN-{:x}", self.next() % 1_000_000)),
                _ => json!((self.next() % 10_000_000) as f64 / 100.0),
            };
            patch[c][a] = v;
        }
        patch
    }

    fn batch(&mut self, seq: u64) -> Batch {
        let mut batch = Batch::new();
        for _ in 0..BATCH {
            let id = self.aggregate();
            if self.next().is_multiple_of(200) {
                batch.delete(&id, seq).expect("valid delete");
            } else {
                batch.patch(&id, seq, &self.patch()).expect("valid patch");
            }
        }
        batch
    }
}

fn batches() -> Vec<Batch> {
    let mut workload = Workload(0x9e37_79b9_7f4a_7c15);
    (1..=DELTAS / BATCH)
        .map(|seq| workload.batch(seq))
        .collect()
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
    group.bench_function("materialize_all_aggregates", |b| {
        b.iter(|| black_box(db.scan().count()))
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_hot_aggregate", |b| {
        b.iter(|| black_box(db.get("aircraft-0000007").expect("get")))
    });
    group.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
