//! `aggrelog bench`: generates the mfg workload and measures, in one run, ingest (with and
//! without an fsync per batch, and as one spanning batch), open (full replay and from a checkpoint), full-log replay,
//! materializing every aggregate and point reads, and the raw ceiling on the same data: reading
//! the same segment files sequentially into a 1 MiB buffer and computing CRC32 over every byte.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aggrelog::workload::{stream, WorkloadSpec};
use aggrelog::{Batch, Compression, Db, Options, RecordLocation, SyncMode};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::bench_refs::{self, RefFigures};

/// Options of the bench command.
#[derive(Args)]
pub struct BenchArgs {
    /// Parent directory for the databases (default: a temporary directory).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Distinct aggregates.
    #[arg(long, default_value_t = 100_000)]
    pub aggregates: u64,
    /// Deltas in total (batches of 1000).
    #[arg(long, default_value_t = 2_000_000)]
    pub deltas: u64,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sync mode of the main database: "always", "never" or milliseconds (the other ingest
    /// figure uses the opposite).
    #[arg(long, default_value = "always")]
    pub sync: String,
    /// zstd-compress batch records.
    #[arg(long)]
    pub compress: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Run the bench at each of these sizes (deltas, as 2M,8M,32M; aggregates = deltas / 20),
    /// each run in a child process, and print the median of every figure per size beside its
    /// target.
    #[arg(long, value_delimiter = ',', value_name = "DELTAS")]
    pub sizes: Vec<String>,
    /// Runs per size for --sizes: one count, or one per size (3,3,1).
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub runs: Vec<usize>,
    /// With --sizes or --from: draw the table as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// With --plot: the peers' figures, as written by `aggrelog-peers --json FILE`.
    #[arg(long, value_name = "FILE")]
    pub peers: Option<PathBuf>,
    /// Print or draw the table saved from `--sizes ... --json` instead of running the bench.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
}

impl BenchArgs {
    /// Whether these options ask for the scaling table (`--sizes` or `--from`).
    pub fn scaling(&self) -> bool {
        !self.sizes.is_empty() || self.from.is_some()
    }
}

/// What one run measured.
#[derive(Default)]
struct Figures {
    deltas: u64,
    aggregates: u64,
    payload_bytes: u64,
    ingest_sync_s: f64,
    ingest_nosync_s: f64,
    ingest_spanning_s: f64,
    open_ms: f64,
    open_checkpoint_ms: f64,
    replay_bytes: u64,
    replay_deltas: u64,
    replay_s: f64,
    replay_mapped_s: f64,
    ceiling_bytes: u64,
    ceiling_s: f64,
    materialize_s: f64,
    scan_s: f64,
    threads: usize,
    materialized: u64,
    get_p50_us: f64,
    get_p99_us: f64,
    compact_s: f64,
    open_compacted_ms: f64,
    get_compacted_p50_us: f64,
    get_compacted_p99_us: f64,
    index_compacted_bytes: u64,
    disk_compacted_bytes: u64,
    index_bytes: u64,
    disk_bytes: u64,
    peak_rss_mb: f64,
    refs: RefFigures,
}

fn bar(len: u64, what: &str, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

fn options(sync: SyncMode, compress: bool) -> Options {
    Options::default()
        .sync(sync)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
        .compression(compress.then(Compression::default))
}

/// Batches generated ahead of each run of timed writes: large enough that generating does not
/// evict the engine's working set from the caches between writes, small enough to keep the
/// bench's memory far below the workload's size.
const GENERATED_AHEAD: usize = 64;

/// Hands every batch of the workload to `write`, generating them [`GENERATED_AHEAD`] at a
/// time; returns the time spent in `write` (generation is not timed) and the JSON payload
/// bytes of the batches.
fn write_workload(
    spec: &WorkloadSpec,
    bar: &ProgressBar,
    mut write: impl FnMut(&Batch) -> Result<(), String>,
) -> Result<(Duration, u64), String> {
    let mut writing = Duration::ZERO;
    let mut payload_bytes = 0;
    let mut batches = stream(spec).peekable();
    let mut ahead = Vec::with_capacity(GENERATED_AHEAD);
    while batches.peek().is_some() {
        ahead.clear();
        for generated in batches.by_ref().take(GENERATED_AHEAD) {
            ahead.push(generated.map_err(|e| e.to_string())?);
        }
        let started = Instant::now();
        for generated in &ahead {
            write(&generated.batch)?;
        }
        writing += started.elapsed();
        payload_bytes += ahead.iter().map(|g| g.json_bytes).sum::<u64>();
        bar.inc(ahead.len() as u64);
    }
    Ok((writing, payload_bytes))
}

/// Writes the workload into a new database at `dir`, a batch at a time; returns the seconds
/// spent in `write` and the final `sync` (generation is not timed) and the payload bytes.
fn ingest(
    dir: &Path,
    spec: &WorkloadSpec,
    options: Options,
    bar: ProgressBar,
) -> Result<(f64, u64), String> {
    let db = Db::open(dir, options).map_err(|e| e.to_string())?;
    let write = |batch: &Batch| db.write(batch).map(drop).map_err(|e| e.to_string());
    let (mut writing, payload_bytes) = write_workload(spec, &bar, write)?;
    let started = Instant::now();
    db.sync().map_err(|e| e.to_string())?;
    writing += started.elapsed();
    bar.finish_and_clear();
    db.close().map_err(|e| e.to_string())?;
    Ok((writing.as_secs_f64(), payload_bytes))
}

/// Writes the whole workload into a new database at `dir` as one spanning batch
/// (`Db::large_batch`, committed durably once); returns the seconds spent adding deltas and
/// committing (generation is not timed).
fn ingest_spanning(
    dir: &Path,
    spec: &WorkloadSpec,
    options: Options,
    bar: ProgressBar,
) -> Result<f64, String> {
    let db = Db::open(dir, options).map_err(|e| e.to_string())?;
    let mut large = db.large_batch().map_err(|e| e.to_string())?;
    let add = |batch: &Batch| large.extend(batch).map(drop).map_err(|e| e.to_string());
    let (mut writing, _) = write_workload(spec, &bar, add)?;
    let started = Instant::now();
    large.commit().map_err(|e| e.to_string())?;
    writing += started.elapsed();
    bar.finish_and_clear();
    db.close().map_err(|e| e.to_string())?;
    Ok(writing.as_secs_f64())
}

fn timed_open(dir: &Path, options: &Options) -> Result<(Db, f64), String> {
    let started = Instant::now();
    let db = Db::open(dir, options.clone()).map_err(|e| e.to_string())?;
    Ok((db, started.elapsed().as_secs_f64() * 1000.0))
}

/// Reads every segment file with plain reads into a 1 MiB buffer, CRC32 over every byte.
fn ceiling(dir: &Path) -> Result<(u64, f64), String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    let mut buffer = vec![0u8; 1 << 20];
    let mut hasher = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    let started = Instant::now();
    for path in paths {
        let mut file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        loop {
            let n = file.read(&mut buffer).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            bytes += n as u64;
        }
    }
    std::hint::black_box(hasher.finalize());
    Ok((bytes, started.elapsed().as_secs_f64()))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Runs the bench with the main database in `sync` mode.
pub fn run(args: &BenchArgs, sync: SyncMode) -> Result<(), String> {
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = args.db.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let (main, other) = (root.join("main"), root.join("other"));
    for d in [&main, &other, &root.join("spanning")] {
        if d.exists() {
            return Err(format!(
                "{} already exists: bench writes a fresh database",
                d.display()
            ));
        }
    }
    let spec = WorkloadSpec {
        aggregates: args.aggregates,
        deltas: args.deltas,
        batch_size: 1000,
        seed: args.seed,
    };
    let hidden = args.json;
    let mut f = Figures {
        deltas: args.deltas,
        ..Figures::default()
    };
    let n = args.deltas.div_ceil(spec.batch_size);
    // The main database uses the chosen sync mode; the other the opposite, for both figures.
    let other_sync = match sync {
        SyncMode::Always => SyncMode::Never,
        _ => SyncMode::Always,
    };
    let main_options = options(sync, args.compress);
    let (main_s, payload_bytes) = ingest(
        &main,
        &spec,
        main_options.clone(),
        bar(n, "ingest (main)", hidden),
    )?;
    f.payload_bytes = payload_bytes;
    let (other_s, _) = ingest(
        &other,
        &spec,
        options(other_sync, args.compress),
        bar(n, "ingest (other sync)", hidden),
    )?;
    (f.ingest_sync_s, f.ingest_nosync_s) = match sync {
        SyncMode::Always => (main_s, other_s),
        _ => (other_s, main_s),
    };
    let spanning = root.join("spanning");
    let spanning_options = options(SyncMode::Always, args.compress);
    let spanning_bar = bar(n, "ingest (one spanning batch)", hidden);
    f.ingest_spanning_s = ingest_spanning(&spanning, &spec, spanning_options, spanning_bar)?;
    std::fs::remove_dir_all(&spanning).map_err(|e| format!("{}: {e}", spanning.display()))?;
    let (db, open_ms) = timed_open(&main, &main_options)?;
    f.open_ms = open_ms;
    db.checkpoint().map_err(|e| e.to_string())?;
    db.close().map_err(|e| e.to_string())?;
    let (db, open_checkpoint_ms) = timed_open(&main, &main_options)?;
    f.open_checkpoint_ms = open_checkpoint_ms;
    (f.ceiling_bytes, f.ceiling_s) = ceiling(&main)?;
    let replay_bar = bar(f.deltas, "replay", hidden);
    measure_replay(&db, &mut f, replay_bar)?;
    measure_materialize(
        &db,
        &mut f,
        bar(db.stats().aggregates, "materialize", hidden),
    )?;
    (f.get_p50_us, f.get_p99_us) = measure_gets(&db, args, bar(20_000, "point gets", hidden))?;
    let stats = db.stats();
    f.aggregates = stats.aggregates;
    f.index_bytes = stats.index_heap_bytes;
    f.disk_bytes = dir_bytes(&main);
    // The steady state of a database with compaction on: chains folded into state records.
    let started = Instant::now();
    db.compact().map_err(|e| e.to_string())?;
    f.compact_s = started.elapsed().as_secs_f64();
    db.checkpoint().map_err(|e| e.to_string())?;
    db.close().map_err(|e| e.to_string())?;
    // Before the reference step below writes a references record and a batch.
    f.disk_compacted_bytes = dir_bytes(&main);
    let (db, open_compacted_ms) = timed_open(&main, &main_options)?;
    f.open_compacted_ms = open_compacted_ms;
    let gets = bar(20_000, "point gets (compacted)", hidden);
    (f.get_compacted_p50_us, f.get_compacted_p99_us) = measure_gets(&db, args, gets)?;
    f.index_compacted_bytes = db.stats().index_heap_bytes;
    f.peak_rss_mb = peak_rss_mb();
    f.refs = bench_refs::measure(&db, n + 1)?;
    db.close().map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", figures_json(&f));
    } else {
        print_table(&f, args);
    }
    Ok(())
}

/// Replays the whole log twice: the second pass finds the segments in the page cache (each pass
/// maps them and unmaps them behind it, so the resident set does not grow with the log).
fn measure_replay(db: &Db, f: &mut Figures, bar: ProgressBar) -> Result<(), String> {
    (f.replay_bytes, f.replay_deltas, f.replay_s) = replay_pass(db, &bar)?;
    bar.set_position(0);
    (_, _, f.replay_mapped_s) = replay_pass(db, &bar)?;
    bar.finish_and_clear();
    Ok(())
}

/// One full replay, looking at every delta's id, seq and body; returns bytes, deltas, seconds.
fn replay_pass(db: &Db, bar: &ProgressBar) -> Result<(u64, u64, f64), String> {
    let started = Instant::now();
    let mut replay = db.replay(RecordLocation::START);
    let mut digest = 0u64;
    let mut deltas = 0u64;
    while let Some(batch) = replay.next_batch() {
        let batch = batch.map_err(|e| e.to_string())?;
        for delta in batch.deltas() {
            let delta = delta.map_err(|e| e.to_string())?;
            let sizes = (delta.aggregate.len() + delta.body.len()) as u64;
            digest = digest.wrapping_add(delta.seq ^ sizes);
            deltas += 1;
        }
        bar.inc(batch.len() as u64);
    }
    std::hint::black_box(digest);
    let seconds = started.elapsed().as_secs_f64();
    Ok((replay.totals().bytes, deltas, seconds))
}

/// Materializes every aggregate twice: with `Db::scan` (one thread, id order) and with
/// `Db::materialize` on every core.
fn measure_materialize(db: &Db, f: &mut Figures, bar: ProgressBar) -> Result<(), String> {
    let started = Instant::now();
    for item in db.scan() {
        item.map_err(|e| e.to_string())?;
        f.materialized += 1;
        bar.inc(1);
    }
    f.scan_s = started.elapsed().as_secs_f64();
    bar.set_position(0);
    f.threads = std::thread::available_parallelism().map_or(1, usize::from);
    let started = Instant::now();
    let visited = db
        .materialize(f.threads, |_, state| {
            std::hint::black_box(state);
            bar.inc(1);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    f.materialize_s = started.elapsed().as_secs_f64();
    if visited != f.materialized {
        return Err(format!(
            "materialize visited {visited} aggregates, scan {}",
            f.materialized
        ));
    }
    bar.finish_and_clear();
    Ok(())
}

/// 20,000 gets of random aggregates; returns p50 and p99 in microseconds.
fn measure_gets(db: &Db, args: &BenchArgs, bar: ProgressBar) -> Result<(f64, f64), String> {
    let mut state = args.seed | 1;
    let mut times = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let id = format!("aircraft-{:07}", state % args.aggregates.max(1));
        let started = Instant::now();
        std::hint::black_box(db.get(&id).map_err(|e| e.to_string())?);
        times.push(started.elapsed());
        bar.inc(1);
    }
    times.sort_unstable();
    bar.finish_and_clear();
    Ok((percentile(&times, 0.50), percentile(&times, 0.99)))
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / 1e6 / seconds
    } else {
        0.0
    }
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

fn figures_json(f: &Figures) -> serde_json::Value {
    let replay_mb_s = mb_per_s(f.replay_bytes, f.replay_s);
    let ceiling_mb_s = mb_per_s(f.ceiling_bytes, f.ceiling_s);
    json!({
        "deltas": f.deltas,
        "aggregates": f.aggregates,
        "ingest_mb_s": round(mb_per_s(f.payload_bytes, f.ingest_nosync_s), 1),
        "ingest_sync_mb_s": round(mb_per_s(f.payload_bytes, f.ingest_sync_s), 1),
        "ingest_spanning_mb_s": round(mb_per_s(f.payload_bytes, f.ingest_spanning_s), 1),
        "ingest_deltas_s": round(f.deltas as f64 / f.ingest_nosync_s, 0),
        "ingest_sync_deltas_s": round(f.deltas as f64 / f.ingest_sync_s, 0),
        "open_ms": round(f.open_ms, 1),
        "open_checkpoint_ms": round(f.open_checkpoint_ms, 1),
        "replay_mb_s": round(replay_mb_s, 1),
        "replay_deltas_s": round(f.replay_deltas as f64 / f.replay_s, 0),
        "ceiling_mb_s": round(ceiling_mb_s, 1),
        "replay_ratio": round(replay_mb_s / ceiling_mb_s, 3),
        "replay_mapped_mb_s": round(mb_per_s(f.replay_bytes, f.replay_mapped_s), 1),
        "materialize_aggregates_s": round(f.materialized as f64 / f.materialize_s, 0),
        "materialize_deltas_s": round(f.deltas as f64 / f.materialize_s, 0),
        "materialize_threads": f.threads,
        "scan_deltas_s": round(f.deltas as f64 / f.scan_s, 0),
        "get_p50_us": round(f.get_p50_us, 1),
        "get_p99_us": round(f.get_p99_us, 1),
        "compact_s": round(f.compact_s, 2),
        "open_compacted_checkpoint_ms": round(f.open_compacted_ms, 1),
        "get_compacted_p50_us": round(f.get_compacted_p50_us, 1),
        "get_compacted_p99_us": round(f.get_compacted_p99_us, 1),
        "index_compacted_bytes_per_aggregate":
            round(f.index_compacted_bytes as f64 / f.aggregates.max(1) as f64, 1),
        "index_bytes_per_aggregate": round(f.index_bytes as f64 / f.aggregates.max(1) as f64, 1),
        "disk_bytes": f.disk_bytes,
        "payload_bytes": f.payload_bytes,
        "disk_compacted_bytes": f.disk_compacted_bytes,
        "peak_rss_mb": round(f.peak_rss_mb, 1),
        "references": f.refs.references,
        "refs_build_ms": round(f.refs.build_ms, 1),
        "refs_update_ms": round(f.refs.update_ms, 2),
    })
}

fn print_table(f: &Figures, args: &BenchArgs) {
    let j = figures_json(f);
    let ceiling = j["ceiling_mb_s"].as_f64().unwrap_or(0.0);
    println!(
        "aggrelog bench: {} deltas over {} aggregates (seed {}, compress {})",
        f.deltas, args.aggregates, args.seed, args.compress
    );
    println!("{:<44} {:>18} {:>12}", "figure", "value", "vs ceiling");
    let threads = format!("({} threads)", f.threads);
    // (figure, JSON key, unit, shown as a ratio of the ceiling)
    let rows: &[(&str, &str, &str, bool)] = &[
        ("ingest, fsync per batch", "ingest_sync_mb_s", "MB/s", false),
        (
            "ingest, fsync per batch",
            "ingest_sync_deltas_s",
            "deltas/s",
            false,
        ),
        ("ingest, no fsync", "ingest_mb_s", "MB/s", false),
        (
            "ingest, one spanning batch (one fsync)",
            "ingest_spanning_mb_s",
            "MB/s",
            false,
        ),
        ("open, full replay", "open_ms", "ms", false),
        (
            "open, from a checkpoint (uncompacted)",
            "open_checkpoint_ms",
            "ms",
            false,
        ),
        (
            "raw ceiling: read + crc32 of the segments",
            "ceiling_mb_s",
            "MB/s",
            true,
        ),
        (
            "full-log replay (every CRC checked)",
            "replay_mb_s",
            "MB/s",
            true,
        ),
        ("full-log replay", "replay_deltas_s", "deltas/s", false),
        (
            "full-log replay again (page cache warm)",
            "replay_mapped_mb_s",
            "MB/s",
            true,
        ),
        (
            "materialize every aggregate, scan (1 thread)",
            "scan_deltas_s",
            "deltas/s",
            false,
        ),
        (
            "materialize every aggregate",
            "materialize_aggregates_s",
            "aggr/s",
            false,
        ),
        (
            "materialize every aggregate",
            "materialize_deltas_s",
            "deltas/s",
            false,
        ),
        ("point get p50", "get_p50_us", "us", false),
        ("point get p99", "get_p99_us", "us", false),
        (
            "index memory (estimated)",
            "index_bytes_per_aggregate",
            "B/aggr",
            false,
        ),
        ("full compaction", "compact_s", "s", false),
        (
            "open, from a checkpoint (compacted)",
            "open_compacted_checkpoint_ms",
            "ms",
            false,
        ),
        (
            "point get p50 (compacted)",
            "get_compacted_p50_us",
            "us",
            false,
        ),
        (
            "point get p99 (compacted)",
            "get_compacted_p99_us",
            "us",
            false,
        ),
        (
            "index memory (compacted, estimated)",
            "index_compacted_bytes_per_aggregate",
            "B/aggr",
            false,
        ),
        ("peak RSS", "peak_rss_mb", "MB", false),
        ("references (/*/status)", "references", "", false),
        (
            "reference index: first query (build)",
            "refs_build_ms",
            "ms",
            false,
        ),
        (
            "reference index: query after 1000 writes",
            "refs_update_ms",
            "ms",
            false,
        ),
    ];
    for &(name, key, unit, ratio) in rows {
        let value = j[key].as_f64().unwrap_or(0.0);
        let vs = if ratio && ceiling > 0.0 {
            format!("{:.2}x", value / ceiling)
        } else {
            String::new()
        };
        let name = if key.starts_with("materialize_") {
            format!("{name} {threads}")
        } else {
            name.to_owned()
        };
        println!("{name:<44} {:>18} {vs:>12}", format!("{value} {unit}"));
    }
    let per_payload = |bytes: u64| format!("{:.2}", bytes as f64 / f.payload_bytes.max(1) as f64);
    println!(
        "{:<44} {:>18}",
        "disk bytes / payload (JSON) bytes",
        per_payload(f.disk_bytes)
    );
    println!(
        "{:<44} {:>18}",
        "disk bytes / payload, after compaction",
        per_payload(f.disk_compacted_bytes)
    );
}
