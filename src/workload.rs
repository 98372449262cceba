//! The "mfg" workload in Rust (the distribution of `../shared/workload/mfg.py`, not its bytes):
//! aircraft aggregates with six components; each delta patches 1-6 attributes (5 % of values
//! `null`), 0.5 % of deltas delete their aggregate, 80 % of deltas go to the hottest 20 % of
//! aggregates, batches of 1000 deltas with `seq` = the batch's upstream number, and about 5 % of
//! batches arrive late (swapped with one up to 10 places later). Deterministic for a seed.

use serde_json::{Map, Value};

use crate::batch::Batch;
use crate::error::Result;
use crate::rng::Rng;

const COMPONENTS: [(&str, [&str; 8]); 6] = [
    (
        "engine",
        [
            "serial",
            "model",
            "thrust_kn",
            "cycles",
            "hours",
            "position",
            "status",
            "lessor",
        ],
    ),
    (
        "cabin",
        [
            "layout",
            "seats",
            "galleys",
            "lavatories",
            "ife",
            "class_split",
            "color",
            "status",
        ],
    ),
    (
        "avionics",
        [
            "fms", "radar", "tcas", "adsb", "software", "hours", "status", "vendor",
        ],
    ),
    (
        "landing_gear",
        [
            "serial",
            "cycles",
            "overhaul_due",
            "tires",
            "brakes",
            "status",
            "vendor",
            "model",
        ],
    ),
    (
        "wing",
        [
            "span_m",
            "flaps",
            "slats",
            "winglets",
            "fuel_l",
            "inspection",
            "status",
            "model",
        ],
    ),
    (
        "fuselage",
        [
            "sections",
            "doors",
            "paint",
            "inspection",
            "corrosion",
            "status",
            "length_m",
            "model",
        ],
    ),
];
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-";

/// The shape of a generated workload.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadSpec {
    /// Distinct aggregates.
    pub aggregates: u64,
    /// Deltas in total.
    pub deltas: u64,
    /// Deltas per batch.
    pub batch_size: u64,
    /// Seed.
    pub seed: u64,
}

/// One generated batch, ready to write, with the size of its deltas as JSON Lines.
pub struct GeneratedBatch {
    /// The batch.
    pub batch: Batch,
    /// Its upstream seq.
    pub seq: u64,
    /// Bytes of its deltas in the JSON Lines input format (the "payload").
    pub json_bytes: u64,
}

fn value(rng: &mut Rng) -> Value {
    let k = rng.unit();
    if k < 0.45 {
        let len = 6 + rng.below(19) as usize;
        let text: String = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
            .collect();
        Value::from(text)
    } else if k < 0.8 {
        Value::from((rng.unit() * 10_000_000.0).round() / 100.0)
    } else if k < 0.9 {
        Value::from(rng.below(5001))
    } else {
        Value::from(rng.below(2) == 0)
    }
}

fn patch(rng: &mut Rng) -> Value {
    let mut root = Map::new();
    for _ in 0..1 + rng.below(6) {
        let (component, attributes) = COMPONENTS[rng.below(6) as usize];
        let attribute = attributes[rng.below(8) as usize];
        let v = if rng.unit() < 0.05 {
            Value::Null
        } else {
            value(rng)
        };
        let entry = root
            .entry(component.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(map) = entry {
            map.insert(attribute.to_owned(), v);
        }
    }
    Value::Object(root)
}

fn aggregate(rng: &mut Rng, aggregates: u64) -> String {
    let hot = (aggregates / 5).max(1);
    let n = if rng.unit() < 0.8 {
        rng.below(hot)
    } else {
        rng.below(aggregates)
    };
    format!("aircraft-{n:07}")
}

/// The batches' seqs in arrival order: about 5 % swapped with one up to 10 places later.
fn arrival_order(spec: &WorkloadSpec) -> Vec<u64> {
    let batches = spec.deltas.div_ceil(spec.batch_size.max(1));
    let mut order: Vec<u64> = (1..=batches).collect();
    let mut rng = Rng::new(spec.seed);
    for i in 0..order.len() {
        if rng.unit() < 0.05 {
            let j = (i + 1 + rng.below(10) as usize).min(order.len() - 1);
            order.swap(i, j);
        }
    }
    order
}

/// The deltas of batch `seq` in batch order: aggregate id and patch (`None` = delete).
fn batch_deltas(spec: &WorkloadSpec, seq: u64) -> Vec<(String, Option<Value>)> {
    let mut rng = Rng::new(spec.seed.wrapping_mul(1_000_003).wrapping_add(seq));
    let count = spec
        .batch_size
        .min(spec.deltas - (seq - 1) * spec.batch_size);
    (0..count)
        .map(|_| {
            let id = aggregate(&mut rng, spec.aggregates);
            let p = (rng.unit() >= 0.005).then(|| patch(&mut rng));
            (id, p)
        })
        .collect()
}

/// Generates batch `seq` of the workload.
fn generate_batch(spec: &WorkloadSpec, seq: u64) -> Result<GeneratedBatch> {
    let mut batch = Batch::new();
    let mut json_bytes = 0u64;
    for (id, p) in batch_deltas(spec, seq) {
        match &p {
            Some(p) => batch.patch(&id, seq, p)?,
            None => batch.delete(&id, seq)?,
        };
        json_bytes += crate::jsonl::render_line(&id, seq, p.as_ref()).len() as u64 + 1;
    }
    Ok(GeneratedBatch {
        batch,
        seq,
        json_bytes,
    })
}

/// Every batch of the workload, in arrival order.
pub fn generate(spec: &WorkloadSpec) -> Result<Vec<GeneratedBatch>> {
    stream(spec).collect()
}

/// The batches of [`generate`], generated one at a time (memory stays at one batch).
pub fn stream(spec: &WorkloadSpec) -> impl Iterator<Item = Result<GeneratedBatch>> + '_ {
    arrival_order(spec)
        .into_iter()
        .map(move |seq| generate_batch(spec, seq))
}

/// Every batch of the workload in arrival order, generated lazily, as raw records for other
/// engines (the peer comparison in `benches/peers`): per delta, in batch order, its aggregate id,
/// its seq and its line in the JSON Lines input format (without the newline). The same deltas
/// as [`generate`].
pub fn generate_raw(spec: &WorkloadSpec) -> impl Iterator<Item = Vec<(String, u64, String)>> + '_ {
    arrival_order(spec).into_iter().map(move |seq| {
        batch_deltas(spec, seq)
            .into_iter()
            .map(|(id, p)| {
                let line = crate::jsonl::render_line(&id, seq, p.as_ref());
                (id, seq, line)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_has_the_mfg_shape() {
        let spec = WorkloadSpec {
            aggregates: 1000,
            deltas: 20_000,
            batch_size: 1000,
            seed: 1,
        };
        let batches = generate(&spec).unwrap();
        assert_eq!(batches.len(), 20);
        assert_eq!(batches.iter().map(|b| b.batch.len()).sum::<usize>(), 20_000);
        let mut seqs: Vec<u64> = batches.iter().map(|b| b.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "every batch once");
        let mean_json = batches.iter().map(|b| b.json_bytes).sum::<u64>() / 20_000;
        assert!(
            (100..250).contains(&mean_json),
            "about 150 bytes of JSON per delta: {mean_json}"
        );
        let again = generate(&spec).unwrap();
        assert_eq!(
            again[3].batch.payload_bytes(),
            batches[3].batch.payload_bytes()
        );
    }

    #[test]
    fn about_five_percent_of_batches_arrive_late() {
        let spec = WorkloadSpec {
            aggregates: 1000,
            deltas: 1_000_000,
            batch_size: 1000,
            seed: 7,
        };
        let order = arrival_order(&spec);
        let moved = order
            .iter()
            .enumerate()
            .filter(|(i, &s)| s != *i as u64 + 1)
            .count();
        // Each swap moves two batches (sometimes a batch moves twice): 5 % swaps, ~10 % moved.
        assert!(
            (40..200).contains(&moved),
            "{moved} of 1000 batches out of place"
        );
        assert!(order
            .iter()
            .enumerate()
            .all(|(i, &s)| (s as i64 - i as i64 - 1).abs() <= 20));
    }
}
