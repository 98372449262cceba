//! The `aggrelog` command-line tool (see `aggrelog --help` and README.md). Output formats are an
//! interface scripts rely on: keep them exact.
//!
//! Exit status: 0 success, 1 `get` of an absent aggregate, 2 usage errors, bad input, damage
//! and every other failure. Errors are one sentence on stderr.

mod bench;
mod demo;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aggrelog::jsonl::{read_batch, render_line};
use aggrelog::model::{binary, DeltaKind};
use aggrelog::{AggregateState, Compression, Db, Options, RecordLocation, SyncMode};
use clap::{Parser, Subcommand};
use serde_json::Value;

/// Exit status for failures (usage, bad input, damage, I/O).
const EXIT_FAILURE: i32 = 2;
/// Exit status of `get` when the aggregate is absent.
const EXIT_ABSENT: i32 = 1;

#[derive(Parser)]
#[command(
    name = "aggrelog",
    version,
    about = "Log-structured storage for aggregate state built from order-independent deltas"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest JSON Lines files, each committed as one atomic batch.
    Ingest {
        /// Database directory (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// When a batch is durable: "always" (fsync per commit), "never", or a sync interval
        /// in milliseconds.
        #[arg(long, default_value = "always")]
        sync: String,
        /// zstd-compress batch records of 4 KiB or more.
        #[arg(long)]
        compress: bool,
        /// Do not run background compaction and automatic checkpoints while ingesting.
        #[arg(long)]
        no_compaction: bool,
        /// JSON Lines files, one delta per line; "-" reads stdin.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Print an aggregate's state as {"aggregate":ID,"seq":S,"state":{...}}.
    Get {
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
        /// Aggregate id.
        id: String,
        /// Fold only deltas with seq <= SEQ.
        #[arg(long = "as-of", value_name = "SEQ")]
        as_of: Option<u64>,
    },
    /// Print every live aggregate, sorted by id, one JSON line each.
    Scan {
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
    },
    /// Print every delta in log order as JSON Lines; a summary goes to stderr.
    Replay {
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
    },
    /// Verify every record; exit 0 when clean, 2 with the damage listed.
    Check {
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
    },
    /// Print counters as one JSON object.
    Stats {
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
    },
    /// Write a checkpoint now, so the next open replays only the log after it.
    Checkpoint {
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
    },
    /// Fold every delta chain into state records and delete the segments this empties.
    Compact {
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
    },
    /// Declare that no delta with a lower seq will arrive any more.
    Seal {
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
        /// Deltas with a seq below this are rejected from now on.
        seq: u64,
    },
    /// Show the out-of-order table: a CRUD pipeline beside aggrelog.
    Demo,
    /// Generate the mfg workload and measure ingest, open, replay (against the raw read + CRC
    /// ceiling on the same files), materialize and point reads in one run.
    Bench(bench::BenchArgs),
}

/// A failure to report: the sentence for stderr and the exit status.
struct Failure {
    message: String,
    status: i32,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
            status: EXIT_FAILURE,
        }
    }
}

/// Runs the CLI and returns the process exit status.
fn main() {
    std::process::exit(run());
}

/// Runs the command line and returns the exit status.
fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_FAILURE } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Ingest {
            db,
            sync,
            compress,
            no_compaction,
            files,
        } => ingest(&db, &sync, compress, !no_compaction, &files),
        Command::Get { db, id, as_of } => get(&db, &id, as_of),
        Command::Scan { db } => scan(&db),
        Command::Replay { db } => replay(&db),
        Command::Check { db } => check(&db),
        Command::Stats { db } => stats(&db),
        Command::Checkpoint { db } => checkpoint(&db),
        Command::Compact { db } => compact(&db),
        Command::Seal { db, seq } => seal(&db, seq),
        Command::Demo => demo::run().map_err(Failure::from),
        Command::Bench(args) => {
            parse_sync(&args.sync).and_then(|sync| bench::run(&args, sync).map_err(Failure::from))
        }
    };
    match result {
        Ok(()) => 0,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("{}", failure.message);
            }
            failure.status
        }
    }
}

/// Opens an existing database for a short command: no background maintenance thread.
fn open_existing(db: &Path) -> Result<Db, Failure> {
    let options = Options::default()
        .create_if_missing(false)
        .background_compaction(false)
        .checkpoint_every_bytes(0);
    let db = Db::open(db, options)?;
    warn_about_recovery(&db);
    Ok(db)
}

fn warn_about_recovery(db: &Db) {
    let stats = db.stats();
    if stats.torn_bytes_dropped > 0 {
        eprintln!(
            "aggrelog: recovered: dropped a torn tail of {} bytes (an unfinished append)",
            stats.torn_bytes_dropped
        );
    }
    for damage in &stats.skipped {
        eprintln!("aggrelog: skipped corrupt data: {damage}");
    }
}

fn parse_sync(sync: &str) -> Result<SyncMode, Failure> {
    match sync {
        "always" => Ok(SyncMode::Always),
        "never" => Ok(SyncMode::Never),
        ms => ms
            .parse::<u64>()
            .map(|ms| SyncMode::Interval(Duration::from_millis(ms)))
            .map_err(|_| {
                Failure::from(format!(
                    "--sync takes always, never or milliseconds, not {ms:?}"
                ))
            }),
    }
}

fn ingest(
    db: &Path,
    sync: &str,
    compress: bool,
    background: bool,
    files: &[String],
) -> Result<(), Failure> {
    let options = Options::default()
        .sync(parse_sync(sync)?)
        .compression(compress.then(Compression::default))
        .background_compaction(background);
    let db = Db::open(db, options)?;
    warn_about_recovery(&db);
    let stdout = io::stdout();
    for name in files {
        let batch = if name == "-" {
            read_batch(io::stdin().lock())
        } else {
            let file = File::open(name).map_err(|e| format!("{name}: cannot open: {e}"))?;
            read_batch(BufReader::with_capacity(1 << 20, file))
        }
        .map_err(|e| format!("{name}:{}: {}", e.line, e.reason))?;
        let receipt = db.write(&batch)?;
        let line = serde_json::json!({"batch": name, "deltas": receipt.deltas});
        writeln!(stdout.lock(), "{line}")?;
    }
    db.close()?;
    Ok(())
}

fn state_line(id: &str, state: &AggregateState) -> String {
    format!(
        "{{\"aggregate\":{},\"seq\":{},\"state\":{}}}",
        Value::from(id),
        state.seq,
        state.state
    )
}

fn get(db: &Path, id: &str, as_of: Option<u64>) -> Result<(), Failure> {
    let db = open_existing(db)?;
    match db.get_as_of(id, as_of.unwrap_or(u64::MAX))? {
        Some(state) => {
            println!("{}", state_line(id, &state));
            Ok(())
        }
        None => Err(Failure {
            message: match as_of {
                Some(seq) => format!("aggregate {id:?} is absent as of seq {seq}"),
                None => format!("aggregate {id:?} is absent"),
            },
            status: EXIT_ABSENT,
        }),
    }
}

fn scan(db: &Path) -> Result<(), Failure> {
    let db = open_existing(db)?;
    let mut out = BufWriter::new(io::stdout().lock());
    for item in db.scan() {
        let (id, state) = item?;
        writeln!(out, "{}", state_line(&id, &state))?;
    }
    out.flush()?;
    Ok(())
}

fn replay(db: &Path) -> Result<(), Failure> {
    let db = open_existing(db)?;
    let started = Instant::now();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut replay = db.replay(RecordLocation::START);
    for delta in replay.by_ref() {
        let delta = delta?;
        let patch = match delta.kind {
            DeltaKind::Patch => Some(binary::decode_value(&delta.body).map_err(|e| {
                format!(
                    "segment {} offset {}: undecodable patch: {e}",
                    delta.location.segment, delta.location.offset
                )
            })?),
            DeltaKind::Delete => None,
        };
        writeln!(
            out,
            "{}",
            render_line(&delta.aggregate, delta.seq, patch.as_ref())
        )?;
    }
    out.flush()?;
    let totals = replay.totals();
    eprintln!(
        "replayed {} deltas in {} batches from {} segments ({} bytes) in {} ms",
        totals.deltas,
        totals.batches,
        totals.segments,
        totals.bytes,
        started.elapsed().as_millis()
    );
    Ok(())
}

fn check(db: &Path) -> Result<(), Failure> {
    let report = aggrelog::check(db)?;
    if let Some(torn) = &report.torn {
        println!(
            "{}:{}: torn tail of {} bytes (an unfinished append, not damage; the next open truncates it)",
            torn.file.display(),
            torn.offset,
            torn.bytes
        );
    }
    for damage in &report.damage {
        println!("{damage}");
    }
    for stale in &report.stale_checkpoints {
        println!("{stale} (stale checkpoint, skipped by open; not damage)");
    }
    let verdict = if report.is_clean() {
        "clean".to_string()
    } else {
        format!("{} damaged ranges", report.damage.len())
    };
    eprintln!(
        "checked {} segments ({} bytes), {} batches, {} deltas: {verdict}",
        report.segments, report.bytes, report.batches, report.deltas
    );
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure {
            message: String::new(),
            status: EXIT_FAILURE,
        })
    }
}

fn stats(db: &Path) -> Result<(), Failure> {
    let db = open_existing(db)?;
    let stats = db.stats();
    let checkpoint = stats.checkpoint.map(|c| {
        serde_json::json!({
            "number": c.number,
            "segment": c.position.segment,
            "offset": c.position.offset,
            "age_secs": c.age_secs,
        })
    });
    let histogram: Vec<Value> = aggrelog::CHAIN_BUCKETS
        .iter()
        .zip(stats.chain_histogram)
        .map(|(&bound, count)| {
            let max = (bound != u64::MAX).then_some(bound);
            serde_json::json!({"max_deltas": max, "aggregates": count})
        })
        .collect();
    let line = serde_json::json!({
        "segments": stats.segments,
        "log_bytes": stats.log_bytes,
        "live_bytes": stats.live_bytes,
        "dead_bytes": stats.dead_bytes,
        "space_amplification": round3(stats.space_amplification),
        "aggregates": stats.aggregates,
        "deltas": stats.deltas,
        "unfolded_deltas": stats.unfolded_deltas,
        "batches": stats.batches,
        "duplicates": stats.duplicates,
        "conflicts": stats.conflicts,
        "chain_histogram": histogram,
        "seal": stats.seal,
        "compaction_runs": stats.compaction_runs,
        "bytes_appended": stats.bytes_appended,
        "bytes_rewritten": stats.bytes_rewritten,
        "write_amplification": round3(stats.write_amplification),
        "checkpoint": checkpoint,
        "torn_bytes_dropped": stats.torn_bytes_dropped,
        "skipped_bytes": stats.skipped.iter().map(|d| d.bytes).sum::<u64>(),
        "checkpoints_rejected": stats.checkpoints_rejected.len(),
    });
    println!("{line}");
    Ok(())
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn checkpoint(db: &Path) -> Result<(), Failure> {
    let db = open_existing(db)?;
    let meta = db.checkpoint()?;
    let line = serde_json::json!({
        "checkpoint": meta.number,
        "segment": meta.position.segment,
        "offset": meta.position.offset,
        "aggregates": db.stats().aggregates,
    });
    println!("{line}");
    db.close()?;
    Ok(())
}

fn compact(db: &Path) -> Result<(), Failure> {
    let db = open_existing(db)?;
    let before = db.stats().log_bytes;
    let report = db.compact()?;
    let after = db.stats().log_bytes;
    let line = serde_json::json!({
        "aggregates_folded": report.aggregates_folded,
        "deltas_folded": report.deltas_folded,
        "bytes_written": report.bytes_written,
        "segments_deleted": report.segments_deleted,
        "log_bytes_before": before,
        "log_bytes_after": after,
        "duration_ms": report.duration_ms,
    });
    println!("{line}");
    db.close()?;
    Ok(())
}

fn seal(db: &Path, seq: u64) -> Result<(), Failure> {
    let db = open_existing(db)?;
    db.seal(seq)?;
    println!("{}", serde_json::json!({"seal": db.stats().seal}));
    db.close()?;
    Ok(())
}
