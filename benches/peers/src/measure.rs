//! The measurements, the same for every engine: run in a child process of its own, which prints
//! one JSON line of [`Figures`].

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::records::{aggregate_id, batches, point_read_sample, spec, Record};

/// One engine under test, adapted to the comparison.
pub trait Store: Sized {
    /// A batch converted to the engine's form, ready to commit.
    type Batch;

    /// Opens the store in `dir`, creating it when missing.
    fn open(dir: &Path) -> Result<Self>;

    /// Converts records into the engine's batch (not timed).
    fn prepare(&self, records: &[Record]) -> Result<Self::Batch>;

    /// Commits a batch atomically and durably: fsync (or fdatasync) before returning (timed).
    fn commit(&mut self, batch: Self::Batch) -> Result<()>;

    /// Reads back one aggregate: every record of it in (seq, position) order, or (aggrelog) its
    /// state folded from them. Returns the records read, `None` when the engine folds them into
    /// a state instead of returning them.
    fn read_aggregate(&self, aggregate: &str) -> Result<Option<u64>>;

    /// Reads every record in log order, when the engine has such a scan (aggrelog's
    /// `db.replay`); returns the records read.
    fn log_scan(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Closes the store, flushing what its close flushes.
    fn close(self) -> Result<()>;
}

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunSpec {
    /// Distinct aggregates.
    pub aggregates: u64,
    /// Deltas (records) in total.
    pub deltas: u64,
    /// Workload seed.
    pub seed: u64,
    /// Point reads to time.
    pub point_reads: u64,
}

/// What one engine's child process measured (one JSON line on its stdout).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Figures {
    /// Records ingested.
    pub records: u64,
    /// Their JSON Lines bytes.
    pub payload_bytes: u64,
    /// Seconds spent in commits (write + fsync), summed over batches.
    pub ingest_s: f64,
    /// Milliseconds of the first open after ingest and close.
    pub open_ms: f64,
    /// Seconds to read back every aggregate.
    pub replay_s: f64,
    /// Records that read returned (or folded, for aggrelog).
    pub replay_records: u64,
    /// Seconds of the full log scan, when the engine has one.
    pub log_scan_s: Option<f64>,
    /// Point read latency, median, microseconds.
    pub point_p50_us: f64,
    /// Point read latency, 99th percentile, microseconds.
    pub point_p99_us: f64,
    /// Bytes of every file in the engine's directory at the end.
    pub disk_bytes: u64,
    /// Peak resident set (VmHWM) of the child process, MB.
    pub peak_rss_mb: f64,
}

/// Runs every measurement on a fresh store in `dir`.
pub fn run<S: Store>(dir: &Path, run: &RunSpec) -> Result<Figures> {
    let mut f = Figures::default();
    ingest::<S>(dir, run, &mut f)?;
    let started = Instant::now();
    let store = S::open(dir).context("first open after ingest")?;
    f.open_ms = started.elapsed().as_secs_f64() * 1e3;
    progress(&format!("first open in {:.1} ms", f.open_ms));
    replay(&store, run, &mut f)?;
    log_scan(&store, &mut f)?;
    point_reads(&store, run, &mut f)?;
    store.close().context("closing")?;
    f.disk_bytes = dir_bytes(dir)?;
    f.peak_rss_mb = peak_rss_mb()?;
    Ok(f)
}

/// Writes every batch, timing the commits only; closes the store afterwards.
fn ingest<S: Store>(dir: &Path, run: &RunSpec, f: &mut Figures) -> Result<()> {
    let mut store = S::open(dir).context("creating the store")?;
    let spec = spec(run.aggregates, run.deltas, run.seed);
    let mut committing = Duration::ZERO;
    for records in batches(&spec) {
        f.records += records.len() as u64;
        f.payload_bytes += records.iter().map(Record::payload_bytes).sum::<u64>();
        let batch = store.prepare(&records)?;
        let started = Instant::now();
        store.commit(batch)?;
        committing += started.elapsed();
    }
    f.ingest_s = committing.as_secs_f64();
    progress(&format!(
        "ingested {} records in {:.2} s",
        f.records, f.ingest_s
    ));
    store.close().context("closing after ingest")
}

/// Reads back every aggregate (numbers 0 to `aggregates` - 1, in order).
fn replay<S: Store>(store: &S, run: &RunSpec, f: &mut Figures) -> Result<()> {
    let mut counted = Some(0u64);
    let started = Instant::now();
    for n in 0..run.aggregates {
        let read = store.read_aggregate(&aggregate_id(n))?;
        counted = counted.zip(read).map(|(a, b)| a + b);
    }
    f.replay_s = started.elapsed().as_secs_f64();
    // aggrelog folds every record of the aggregates it reads: all of them.
    f.replay_records = counted.unwrap_or(f.records);
    ensure!(
        f.replay_records == f.records,
        "read back {} records of {}",
        f.replay_records,
        f.records
    );
    progress(&format!("read back every aggregate in {:.2} s", f.replay_s));
    Ok(())
}

/// Times the full log scan, when the engine has one.
fn log_scan<S: Store>(store: &S, f: &mut Figures) -> Result<()> {
    let started = Instant::now();
    let Some(records) = store.log_scan()? else {
        return Ok(());
    };
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        records == f.records,
        "the log scan read {records} records of {}",
        f.records
    );
    f.log_scan_s = Some(seconds);
    progress(&format!("scanned the log in {seconds:.2} s"));
    Ok(())
}

/// Times single aggregate reads of a random sample.
fn point_reads<S: Store>(store: &S, run: &RunSpec, f: &mut Figures) -> Result<()> {
    let sample = point_read_sample(run.aggregates, run.point_reads, run.seed);
    let mut times = Vec::with_capacity(sample.len());
    for id in &sample {
        let started = Instant::now();
        black_box(store.read_aggregate(id)?);
        times.push(started.elapsed());
    }
    times.sort_unstable();
    f.point_p50_us = percentile_us(&times, 0.50);
    f.point_p99_us = percentile_us(&times, 0.99);
    progress(&format!(
        "{} point reads: p50 {:.1} us, p99 {:.1} us",
        times.len(),
        f.point_p50_us,
        f.point_p99_us
    ));
    Ok(())
}

/// The `p` quantile of sorted durations, in microseconds (0 when empty).
fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Peak resident set size of this process (VmHWM), MB.
fn peak_rss_mb() -> Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kb / 1024.0)
}

/// One progress line on stderr.
fn progress(message: &str) {
    eprintln!("    {message}");
}
