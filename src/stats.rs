//! [`Stats`]: what a database handle reports about itself.

use crate::checkpoint::CheckpointMeta;
use crate::engine::{unix_ms, Engine};
use crate::model::Model;
use crate::sources::SourcePosition;
use crate::wal::{Damage, RecordLocation};

/// Upper bounds (inclusive) of the chain-length histogram buckets; the last is open-ended.
pub const CHAIN_BUCKETS: [u64; 8] = [0, 1, 3, 7, 15, 31, 63, u64::MAX];

/// The last checkpoint this handle wrote or opened from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CheckpointStats {
    /// Checkpoint number.
    pub number: u64,
    /// Log position it covers.
    pub position: RecordLocation,
    /// Seconds since it was written.
    pub age_secs: u64,
}

/// Counters and findings of a database handle.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Stats {
    /// Segment files.
    pub segments: u64,
    /// Bytes in segment files (committed).
    pub log_bytes: u64,
    /// Bytes of records the index still points at.
    pub live_bytes: u64,
    /// `log_bytes - live_bytes`: reclaimable by compaction (headers included).
    pub dead_bytes: u64,
    /// `log_bytes / live_bytes` (1.0 when nothing is live).
    pub space_amplification: f64,
    /// Aggregates with a chain (deleted ones included).
    pub aggregates: u64,
    /// Deltas ever indexed, duplicates included.
    pub deltas: u64,
    /// Deltas not yet folded into a state record.
    pub unfolded_deltas: u64,
    /// Aggregates whose state includes a compaction state record: their folded deltas are no
    /// longer in the log one by one (`replay` does not yield them).
    pub folded_aggregates: u64,
    /// Batch records written.
    pub batches: u64,
    /// Estimated heap bytes of the in-memory index (see `Index::approx_heap_bytes`).
    pub index_heap_bytes: u64,
    /// Deltas identical to an unfolded earlier one (same aggregate, seq, position, checksum).
    pub duplicates: u64,
    /// Deltas that differ from an unfolded one with the same aggregate, seq and position.
    pub conflicts: u64,
    /// Aggregates per unfolded-chain length: `chain_histogram[i]` counts chains of length up to
    /// `CHAIN_BUCKETS[i]` (and above the previous bound).
    pub chain_histogram: [u64; 8],
    /// The seal in force (0 = none).
    pub seal: u64,
    /// Compaction runs by this handle.
    pub compaction_runs: u64,
    /// Bytes appended by writes (frames included) through this handle.
    pub bytes_appended: u64,
    /// Bytes written by compaction (state records) through this handle.
    pub bytes_rewritten: u64,
    /// `(bytes_appended + bytes_rewritten) / bytes_appended` (1.0 before any write).
    pub write_amplification: f64,
    /// Segments deleted by compaction through this handle.
    pub segments_deleted: u64,
    /// The newest checkpoint known to this handle.
    pub checkpoint: Option<CheckpointStats>,
    /// The last background maintenance failure, if any.
    pub last_maintenance_error: Option<String>,
    /// Bytes of a torn tail truncated away by this open.
    pub torn_bytes_dropped: u64,
    /// Damaged ranges skipped by this open (only under `RecoveryMode::SkipCorrupt`).
    pub skipped: Vec<Damage>,
    /// How far each upstream queue partition was applied (DESIGN.md, section 5e), in
    /// (topic, partition) order.
    pub sources: Vec<SourcePosition>,
    /// How many batch names are retracted now (DESIGN.md, section 5f; `Db::retracted_batches`
    /// lists them).
    pub retracted_batches: u64,
    /// Declared reference pointers (DESIGN.md, section 6c).
    pub reference_pointers: Vec<String>,
    /// Checkpoints this open could not use, and why (it fell back to an older one or a full
    /// replay).
    pub checkpoints_rejected: Vec<String>,
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        1.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn checkpoint_stats(meta: &CheckpointMeta) -> CheckpointStats {
    CheckpointStats {
        number: meta.number,
        position: meta.position,
        age_secs: unix_ms().saturating_sub(meta.created_unix_ms) / 1000,
    }
}

/// Gathers the stats of `engine`.
pub(crate) fn collect<M: Model>(engine: &Engine<M>) -> Stats {
    let segments = engine.log().segments();
    let log_bytes: u64 = segments.iter().map(|(_, _, len)| len).sum();
    let mut stats = Stats {
        segments: segments.len() as u64,
        log_bytes,
        ..Stats::default()
    };
    {
        let index = engine.index_read();
        stats.live_bytes = index.live_bytes().values().sum();
        let counters = index.counters();
        stats.aggregates = index.aggregates();
        stats.index_heap_bytes = index.approx_heap_bytes();
        stats.deltas = counters.deltas;
        stats.duplicates = counters.duplicates;
        stats.conflicts = counters.conflicts;
        for (_, chain) in index.iter_unordered() {
            let len = chain.deltas.len() as u64;
            stats.unfolded_deltas += len;
            stats.folded_aggregates += u64::from(chain.base.is_some());
            let bucket = CHAIN_BUCKETS.iter().position(|&b| len <= b).unwrap_or(7);
            stats.chain_histogram[bucket] += 1;
        }
    }
    stats.dead_bytes = log_bytes.saturating_sub(stats.live_bytes);
    stats.retracted_batches = engine.retractions().retracted_names() as u64;
    stats.reference_pointers = engine.declared_references().into_iter().collect();
    stats.space_amplification = ratio(log_bytes, stats.live_bytes);
    stats.batches = engine.batches();
    stats.seal = engine.seal();
    stats.sources = engine.source_positions();
    stats.bytes_appended = engine.bytes_appended();
    {
        let maintenance = engine.maintenance_stats();
        stats.compaction_runs = maintenance.compaction_runs;
        stats.bytes_rewritten = maintenance.bytes_rewritten;
        stats.segments_deleted = maintenance.segments_deleted;
        stats.checkpoint = maintenance.last_checkpoint.as_ref().map(checkpoint_stats);
        stats.last_maintenance_error = maintenance.last_error.clone();
    }
    stats.write_amplification = ratio(
        stats.bytes_appended + stats.bytes_rewritten,
        stats.bytes_appended,
    );
    let report = engine.open_report();
    stats.torn_bytes_dropped = report.torn_bytes_dropped;
    stats.skipped = report.skipped.clone();
    stats.checkpoints_rejected = report.checkpoints_rejected.clone();
    stats
}
