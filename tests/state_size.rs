//! Size of merge-patch state records on an mfg-like workload, against the plain binary patch of
//! the live state (what a fresh log holding only the live state would store per aggregate).
//!
//! `cargo test --release --test state_size -- --ignored --nocapture` prints the report.

use aggrelog::model::binary::encode_value;
use aggrelog::model::merge_patch::encode_patch;
use aggrelog::model::{DeltaKind, DeltaView, MergePatch, Model, PatchState, Stamp};
use serde_json::{Map, Value};
use std::time::Instant;

const COMPONENTS: [&str; 6] = [
    "engine",
    "cabin",
    "avionics",
    "landing_gear",
    "wing",
    "fuselage",
];

/// Attribute names and the kind of value each holds.
const ATTRIBUTES: [(&str, Kind); 8] = [
    ("serial_number", Kind::Text(10, 16)),
    ("status", Kind::Text(6, 12)),
    ("vendor", Kind::Text(8, 24)),
    ("firmware", Kind::Text(6, 10)),
    ("temperature", Kind::Float),
    ("pressure", Kind::Float),
    ("cycles", Kind::Int),
    ("certified", Kind::Bool),
];

#[derive(Clone, Copy)]
enum Kind {
    Text(usize, usize),
    Float,
    Int,
    Bool,
}

/// Random attribute values, from the crate's seeded generator.
struct Rng(aggrelog::testing::Rng);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn value(&mut self, kind: Kind, null_percent: u64) -> Value {
        if self.below(100) < null_percent {
            return Value::Null;
        }
        match kind {
            Kind::Text(min, max) => {
                let len = min + self.below((max - min + 1) as u64) as usize;
                let text: String = (0..len)
                    .map(|_| {
                        char::from(
                            b"abcdefghijklmnopqrstuvwxyz0123456789-_"[self.below(38) as usize],
                        )
                    })
                    .collect();
                Value::from(text)
            }
            Kind::Float => Value::from((self.below(2_000_000) as f64) / 1000.0 - 50.0 + 0.001),
            Kind::Int => Value::from(self.below(5_000)),
            Kind::Bool => Value::from(self.below(2) == 1),
        }
    }
}

struct Delta {
    stamp: Stamp,
    body: Vec<u8>,
}

/// One hot aggregate: `count` deltas of 1-6 attribute writes each, increasing seqs (gaps of
/// 1-100, one in ten sharing the previous delta's batch), positions below 1000.
fn aggregate(rng: &mut Rng, count: usize, null_percent: u64) -> Vec<Delta> {
    let mut seq = rng.below(100);
    let mut deltas = Vec::with_capacity(count);
    for index in 0..count {
        if index > 0 && rng.below(10) != 0 {
            seq += 1 + rng.below(100);
        }
        let mut patch = Map::new();
        for _ in 0..1 + rng.below(6) {
            let component = COMPONENTS[rng.below(6) as usize];
            let (attribute, kind) = ATTRIBUTES[rng.below(8) as usize];
            let value = rng.value(kind, null_percent);
            let entry = patch
                .entry(component)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(attributes) = entry {
                attributes.insert(attribute.to_owned(), value);
            }
        }
        let mut body = Vec::new();
        encode_patch(&Value::Object(patch), &mut body).expect("an object");
        let position = rng.below(1000) as u32;
        let stamp = Stamp::new(seq, position, crc32fast::hash(&body));
        deltas.push(Delta { stamp, body });
    }
    deltas
}

fn fold(deltas: &[Delta]) -> PatchState {
    let mut state = PatchState::default();
    for delta in deltas {
        let view = DeltaView {
            stamp: delta.stamp,
            kind: DeltaKind::Patch,
            body: &delta.body,
        };
        MergePatch.fold(&mut state, view).expect("valid");
    }
    state
}

#[derive(Clone, Copy)]
enum Seal {
    None,
    Half,
    All,
}

struct Measure {
    state_bytes: usize,
    plain_bytes: usize,
    table_bytes: usize,
    stamps: usize,
    aggregates: usize,
    join_nanos: u128,
}

impl Measure {
    fn ratio(&self) -> f64 {
        self.state_bytes as f64 / self.plain_bytes as f64
    }
}

/// Encodes `aggregates` generated states; checks that each record joins back to its state.
fn measure(deltas_per: usize, null_percent: u64, seal: Seal, aggregates: usize) -> Measure {
    let seed = 0x9e37_79b9_7f4a_7c15 ^ (deltas_per as u64) << 8 ^ null_percent;
    let mut rng = Rng(aggrelog::testing::Rng::new(seed));
    let mut total = Measure {
        state_bytes: 0,
        plain_bytes: 0,
        table_bytes: 0,
        stamps: 0,
        aggregates: 0,
        join_nanos: 0,
    };
    for _ in 0..aggregates {
        let deltas = aggregate(&mut rng, deltas_per, null_percent);
        let mut state = fold(&deltas);
        let output = MergePatch.output(&state).expect("present");
        let seal = match seal {
            Seal::None => 0,
            Seal::Half => deltas[deltas.len() / 2].stamp.seq,
            Seal::All => deltas.iter().map(|d| d.stamp.seq).max().unwrap_or(0) + 1,
        };
        MergePatch.forget_below(&mut state, seal);
        assert_eq!(MergePatch.output(&state).as_ref(), Some(&output));
        let mut record = Vec::new();
        MergePatch.encode_state(&state, &mut record);
        let mut joined = PatchState::default();
        let start = Instant::now();
        MergePatch
            .join_encoded_state(&mut joined, &record)
            .expect("decodes");
        total.join_nanos += start.elapsed().as_nanos();
        assert_eq!(joined, state);
        let mut plain = Vec::new();
        encode_value(&output, &mut plain);
        total.state_bytes += record.len();
        total.plain_bytes += plain.len();
        let (stamps, table_bytes) = table_size(&record);
        total.stamps += stamps;
        total.table_bytes += table_bytes;
        total.aggregates += 1;
    }
    total
}

/// The stamp count of a record and the bytes of its header (version, count, stamp table).
fn table_size(record: &[u8]) -> (usize, usize) {
    fn varint(bytes: &[u8], pos: &mut usize) -> u64 {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let byte = bytes[*pos];
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        value
    }
    let mut pos = 1;
    let count = varint(record, &mut pos) as usize;
    for _ in 0..count {
        varint(record, &mut pos);
        varint(record, &mut pos);
        pos += 4;
    }
    (count, pos)
}

#[test]
#[ignore]
fn mfg_state_size_report() {
    println!("deltas nulls seal | plain B | record B | stamps | table B | ratio | join µs");
    for deltas_per in [5, 20, 40, 80] {
        for null_percent in [0, 5] {
            for (seal, name) in [
                (Seal::None, "none"),
                (Seal::Half, "half"),
                (Seal::All, "all "),
            ] {
                let m = measure(deltas_per, null_percent, seal, 500);
                let n = m.aggregates as f64;
                println!(
                    "{deltas_per:6} {null_percent:4}% {name} | {:7.1} | {:8.1} | {:6.1} | {:7.1} | {:.3} | {:.2}",
                    m.plain_bytes as f64 / n,
                    m.state_bytes as f64 / n,
                    m.stamps as f64 / n,
                    m.table_bytes as f64 / n,
                    m.ratio(),
                    m.join_nanos as f64 / n / 1000.0,
                );
            }
        }
    }
}

/// Guards the numbers of the report (the engine's acceptance test allows 1.3 after a full
/// compaction).
#[test]
fn mfg_state_size_bounds() {
    let forgotten = measure(40, 5, Seal::All, 100);
    assert!(
        forgotten.ratio() < 1.05,
        "after forget: {:.3}",
        forgotten.ratio()
    );
    let kept = measure(40, 5, Seal::None, 100);
    assert!(kept.ratio() < 1.3, "all stamps kept: {:.3}", kept.ratio());
}
