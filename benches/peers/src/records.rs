//! The records every engine stores: the mfg workload of `aggrelog::workload`, generated lazily
//! batch by batch, with the key the key-value peers use.

use aggrelog::workload::{generate_raw, WorkloadSpec};
use anyhow::{Context, Result};

/// Deltas per batch (one durable commit each).
pub const BATCH_SIZE: u64 = 1000;

/// What every aggregate id looks like (`aggrelog::workload` names them this way).
const ID_PREFIX: &str = "aircraft-";

/// One delta as the peers see it.
pub struct Record {
    /// Aggregate id.
    pub aggregate: String,
    /// Upstream seq (the batch's number).
    pub seq: u64,
    /// Key-value key: see [`key`].
    pub key: Vec<u8>,
    /// The delta as one JSON Lines line, without the newline (the value the peers store).
    pub json: String,
}

impl Record {
    /// Payload bytes of the record: its JSON line with the newline, as `aggrelog bench` counts.
    pub fn payload_bytes(&self) -> u64 {
        self.json.len() as u64 + 1
    }
}

/// The workload's shape for the command-line sizes.
pub fn spec(aggregates: u64, deltas: u64, seed: u64) -> WorkloadSpec {
    WorkloadSpec {
        aggregates,
        deltas,
        batch_size: BATCH_SIZE,
        seed,
    }
}

/// Every batch in arrival order, generated on demand so no engine holds the whole workload.
pub fn batches(spec: &WorkloadSpec) -> impl Iterator<Item = Vec<Record>> + '_ {
    generate_raw(spec).map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(position, (aggregate, seq, json))| {
                let key = key(&aggregate, seq, position as u32);
                Record {
                    aggregate,
                    seq,
                    key,
                    json,
                }
            })
            .collect()
    })
}

/// Key of a record: aggregate id, a 0 byte (so that no id's keys fall inside another id's
/// prefix), big-endian seq, big-endian position in the batch. Keys sort by aggregate, then seq,
/// then position: the order in which an aggregate's deltas are folded.
pub fn key(aggregate: &str, seq: u64, position: u32) -> Vec<u8> {
    let mut key = aggregate_prefix(aggregate);
    key.extend_from_slice(&seq.to_be_bytes());
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// The prefix every key of `aggregate` starts with.
pub fn aggregate_prefix(aggregate: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(aggregate.len() + 13);
    prefix.extend_from_slice(aggregate.as_bytes());
    prefix.push(0);
    prefix
}

/// Id of the `n`th aggregate (0-based), as the workload generator names it.
pub fn aggregate_id(n: u64) -> String {
    format!("{ID_PREFIX}{n:07}")
}

/// Inverse of [`aggregate_id`].
pub fn aggregate_number(id: &str) -> Result<u64> {
    id.strip_prefix(ID_PREFIX)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected aggregate id {id:?}"))
}

/// The aggregates point reads ask for: `count` numbers below `aggregates`, the same sequence
/// for every engine (xorshift, as `aggrelog bench`).
pub fn point_read_sample(aggregates: u64, count: u64, seed: u64) -> Vec<String> {
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            aggregate_id(state % aggregates.max(1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_aggregate_then_seq_then_position() {
        let mut keys = [
            key("aircraft-0000002", 1, 0),
            key("aircraft-0000001", 300, 0),
            key("aircraft-0000001", 2, 7),
            key("aircraft-0000001", 2, 3),
        ];
        keys.sort();
        assert_eq!(keys[0], key("aircraft-0000001", 2, 3));
        assert_eq!(keys[1], key("aircraft-0000001", 2, 7));
        assert_eq!(keys[2], key("aircraft-0000001", 300, 0));
        assert!(keys[3].starts_with(&aggregate_prefix("aircraft-0000002")));
        assert!(!key("aircraft-00000010", 1, 0).starts_with(&aggregate_prefix("aircraft-0000001")));
    }

    #[test]
    fn the_raw_records_are_the_deltas_aggrelog_bench_generates() {
        let spec = spec(500, 5_500, 3);
        let generated = aggrelog::workload::generate(&spec).expect("generate");
        let raw: Vec<Vec<Record>> = batches(&spec).collect();
        assert_eq!(raw.len(), generated.len());
        for (records, batch) in raw.iter().zip(&generated) {
            assert_eq!(records.len(), batch.batch.len());
            assert!(records.iter().all(|r| r.seq == batch.seq));
            let payload: u64 = records.iter().map(Record::payload_bytes).sum();
            assert_eq!(payload, batch.json_bytes);
        }
    }

    #[test]
    fn aggregate_ids_round_trip() {
        assert_eq!(aggregate_number(&aggregate_id(4711)).ok(), Some(4711));
        assert!(aggregate_number("plane-1").is_err());
    }
}
