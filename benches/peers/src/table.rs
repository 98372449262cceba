//! The markdown table of every engine's figures.

use anyhow::Result;

use crate::measure::{Figures, RunSpec};
use crate::EngineName;

/// This crate's lock file: the versions the engines were built from.
const CARGO_LOCK: &str = include_str!("../Cargo.lock");

/// The table header.
const HEADER: &str = "| engine | version | ingest MB/s, fsync per batch | ingest records/s | \
first open ms | replay MB/s | replay records/s | point read p50 / p99 us | disk / payload | \
peak RSS MB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|";

/// Renders the whole table, preceded by a line describing the run.
pub fn render(results: &[(EngineName, Result<Figures>)], run: &RunSpec) -> String {
    let mut out = describe_run(results, run);
    out.push_str(HEADER);
    for (engine, result) in results {
        out.push('\n');
        out.push_str(&match result {
            Ok(f) => row(*engine, f),
            Err(e) => format!(
                "| {} | {} | failed: {e:#} |",
                engine.name(),
                version(*engine)
            ),
        });
        if let (EngineName::Aggrelog, Ok(f)) = (engine, result) {
            if let Some(row) = log_scan_row(f) {
                out.push('\n');
                out.push_str(&row);
            }
        }
    }
    out
}

/// One line on the workload, from the first engine that finished.
fn describe_run(results: &[(EngineName, Result<Figures>)], run: &RunSpec) -> String {
    let payload = results
        .iter()
        .find_map(|(_, r)| r.as_ref().ok())
        .map_or(0, |f| f.payload_bytes);
    format!(
        "mfg workload: {} records over {} aggregates, {:.1} MB of JSON payload, seed {}, \
         batches of 1000, {} point reads\n\n",
        run.deltas,
        run.aggregates,
        payload as f64 / 1e6,
        run.seed,
        run.point_reads
    )
}

/// The row of one engine.
fn row(engine: EngineName, f: &Figures) -> String {
    let name = match engine {
        EngineName::Aggrelog => "aggrelog (replay = `get` of every aggregate)".to_owned(),
        other => other.name(),
    };
    format!(
        "| {name} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} / {:.1} | {:.2} | {:.0} |",
        version(engine),
        per_s(f.payload_bytes as f64 / 1e6, f.ingest_s),
        per_s(f.records as f64, f.ingest_s),
        f.open_ms,
        per_s(f.payload_bytes as f64 / 1e6, f.replay_s),
        per_s(f.replay_records as f64, f.replay_s),
        f.point_p50_us,
        f.point_p99_us,
        f.disk_bytes as f64 / f.payload_bytes.max(1) as f64,
        f.peak_rss_mb,
    )
}

/// aggrelog's full log scan (`db.replay`, log order) as a row of its own.
fn log_scan_row(f: &Figures) -> Option<String> {
    let seconds = f.log_scan_s?;
    Some(format!(
        "| aggrelog: `db.replay` full log scan (log order) | {} | - | - | - | {:.1} | {:.0} | - | - | - |",
        version(EngineName::Aggrelog),
        per_s(f.payload_bytes as f64 / 1e6, seconds),
        per_s(f.records as f64, seconds),
    ))
}

/// `amount / seconds`, 0 for no time.
fn per_s(amount: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

/// The engine's crate version as locked (RocksDB also with its C++ library version).
fn version(engine: EngineName) -> String {
    match engine {
        EngineName::Aggrelog => locked("aggrelog"),
        EngineName::Fjall => locked("fjall"),
        EngineName::Rocksdb => {
            let sys = locked("librocksdb-sys");
            let cpp = sys.split_once('+').map_or("?", |(_, v)| v);
            format!("{} (RocksDB {cpp})", locked("rocksdb"))
        }
        EngineName::Redb => locked("redb"),
        EngineName::Sled => locked("sled"),
        EngineName::RaftEngine => locked("raft-engine"),
    }
}

/// The version of `package` in Cargo.lock ("?" when absent).
fn locked(package: &str) -> String {
    let name_line = format!("name = \"{package}\"");
    let mut lines = CARGO_LOCK.lines();
    while let Some(line) = lines.next() {
        if line == name_line {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return v.trim_end_matches('"').to_owned();
            }
        }
    }
    "?".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_lock_file() {
        assert_ne!(locked("fjall"), "?");
        assert!(version(EngineName::Rocksdb).contains("RocksDB"));
        assert_eq!(locked("no-such-crate"), "?");
    }
}
