//! `ingest`: each FILE committed as one atomic batch of any size (or in parts, see `stream.rs`), in order,
//! after every FILE was found readable; a summary on stderr at the end.

use std::io::BufRead;
use std::time::{Duration, Instant};

use aggrelog::jsonl::parse_line;
use aggrelog::{Compression, Db, Options, SyncMode};
use clap::Args;
use serde_json::json;

use crate::input::{open_input, preflight, rejection, LineMap};
use crate::open::{open_writer, DbArgs};
use crate::output::{emit, progress, Failure};
use crate::stream::{ingest_in_parts, Parts};

/// Options of `ingest`.
#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// When a batch is durable: "always" (fsync per commit), "never", or a sync interval
    /// in milliseconds.
    #[arg(long, default_value = "always")]
    pub sync: String,
    /// zstd-compress batch records of 4 KiB or more.
    #[arg(long)]
    pub compress: bool,
    /// Do not run background compaction and automatic checkpoints while ingesting.
    #[arg(long)]
    pub no_compaction: bool,
    /// Commit each FILE in parts of at most N deltas (each part atomic, printed as
    /// {"batch":"FILE:FIRST-LAST","deltas":N} with line numbers) instead of as one batch; a
    /// delta keeps the stamp position it has in the whole file.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_lines: Option<u64>,
    /// With --batch-lines: also commit a part MS milliseconds after its first delta arrived,
    /// however small (for a producer that writes to stdin as it goes).
    #[arg(long, value_name = "MS", requires = "batch_lines")]
    pub batch_ms: Option<u64>,
    /// The name of the batch (`aggrelog batches` lists it, `aggrelog history` shows it);
    /// default: the FILE as given. Only with one FILE.
    #[arg(long, value_name = "NAME")]
    pub batch_name: Option<String>,
    /// JSON Lines files, one delta per line; "-" reads stdin. The database is created if
    /// missing.
    #[arg(required = true)]
    pub files: Vec<String>,
}

/// Parses `--sync`.
pub fn parse_sync(sync: &str) -> Result<SyncMode, Failure> {
    match sync {
        "always" => Ok(SyncMode::Always),
        "never" => Ok(SyncMode::Never),
        ms => ms
            .parse::<u64>()
            .map(|ms| SyncMode::Interval(Duration::from_millis(ms)))
            .map_err(|_| {
                Failure::new(format!(
                    "--sync takes always, never or milliseconds, not {ms:?}"
                ))
            }),
    }
}

/// What was committed so far.
#[derive(Default)]
struct Progress {
    files: usize,
    deltas: usize,
}

/// Runs `ingest`.
pub fn ingest(args: &IngestArgs) -> Result<(), Failure> {
    let started = Instant::now();
    if args.batch_name.is_some() && args.files.len() > 1 {
        return Err(Failure::new(
            "--batch-name names one batch: give one FILE with it",
        ));
    }
    let total_bytes = preflight(&args.files)?;
    let options = Options::default()
        .sync(parse_sync(&args.sync)?)
        .compression(args.compress.then(Compression::default))
        .background_compaction(!args.no_compaction);
    let db = open_writer(&args.db.db, args.db.apply(options), args.db.lock_wait)?;
    let bar = progress(total_bytes, "ingest");
    let mut done = Progress::default();
    let parts = args.batch_lines.map(|lines| Parts {
        lines: usize::try_from(lines).unwrap_or(usize::MAX),
        wait: args.batch_ms.map(Duration::from_millis),
    });
    let result = args.files.iter().try_for_each(|name| {
        let batch_name = args.batch_name.as_deref().unwrap_or(name);
        let deltas = match parts {
            Some(parts) => ingest_in_parts(&db, name, batch_name, parts)?,
            None => ingest_file(&db, name, batch_name)?,
        };
        done.files += 1;
        done.deltas += deltas;
        bar.inc(file_len(name));
        Ok(())
    });
    bar.finish_and_clear();
    if !args.no_compaction {
        // A short run exits before the background thread is due: fold what is due now.
        if let Err(e) = db.compact_by_policy() {
            log::warn!("compaction before exit failed: {e}");
        }
    }
    let closed = db.close();
    let summary = format!(
        "{} of {} files committed, {} deltas, {:.1} s",
        done.files,
        args.files.len(),
        done.deltas,
        started.elapsed().as_secs_f64()
    );
    match result.and_then(|()| closed.map_err(Failure::from)) {
        Ok(()) => {
            eprintln!("{summary}");
            Ok(())
        }
        Err(failure) if failure.is_closed_pipe() => Err(failure),
        Err(failure) => Err(Failure::new(format!("{} ({summary})", failure.message))),
    }
}

fn file_len(name: &str) -> u64 {
    std::fs::metadata(name).map_or(0, |m| m.len())
}

/// Commits one FILE as one atomic batch of any size, named `batch_name`, and prints
/// `{"batch":FILE,"deltas":N}`: the lines stream into a [`LargeBatch`](aggrelog::LargeBatch),
/// so memory holds one fragment however large the file. A bad line names `FILE:LINE` and
/// nothing of the file is committed.
fn ingest_file(db: &Db, name: &str, batch_name: &str) -> Result<usize, Failure> {
    let mut batch = db.large_batch()?;
    batch.name(batch_name)?;
    let mut lines = LineMap::default();
    for (n, line) in open_input(name)?.lines().enumerate() {
        let line_no = n as u64 + 1;
        let at_line = |reason: String| Failure::new(format!("{name}:{line_no}: {reason}"));
        let line = line.map_err(|e| at_line(format!("cannot read line: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let delta = parse_line(&line).map_err(at_line)?;
        let index = batch.len();
        lines.push(index, line_no);
        // Without "pos", a delta's position is its index in the file.
        let position = match delta.pos {
            Some(pos) => pos,
            None => u32::try_from(index)
                .map_err(|_| at_line(format!("more than {} deltas in one file", u32::MAX)))?,
        };
        let pushed = match &delta.patch {
            Some(patch) => batch.patch_at(&delta.aggregate, delta.seq, position, patch),
            None => batch.delete_at(&delta.aggregate, delta.seq, position),
        };
        pushed.map_err(|e| rejection(name, |p| lines.line_of(p), e))?;
    }
    let receipt = batch
        .commit()
        .map_err(|e| rejection(name, |p| lines.line_of(p), e))?;
    emit(json!({"batch": name, "deltas": receipt.deltas}))?;
    Ok(receipt.deltas)
}
