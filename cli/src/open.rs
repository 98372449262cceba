//! Opening the database for a command: the `--db` and `--recovery` options every command that
//! opens shares.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use aggrelog::{Db, Error, History, LogReader, Options, RecoveryMode};
use clap::{Args, ValueEnum};

use crate::output::Failure;

/// How open treats damage that valid data follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Recovery {
    /// Refuse to open, naming the file and offset of the damage.
    Strict,
    /// Skip the damaged bytes, open, and report every range skipped on stderr.
    SkipCorrupt,
}

/// The database a command works on.
#[derive(Args, Debug)]
pub struct DbArgs {
    /// Database directory.
    #[arg(long)]
    pub db: PathBuf,
    /// "strict" refuses to open past damage that valid data follows; "skip-corrupt" skips it,
    /// opens, and reports each range skipped on stderr.
    #[arg(long, value_enum, default_value = "strict")]
    pub recovery: Recovery,
    /// Commands that write: wait up to SECONDS for another writer to release the database
    /// (default 0: fail at once). Read commands never wait: they read beside the writer.
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_seconds)]
    pub lock_wait: Duration,
    /// What compaction keeps unfolded: "none" (fold everything), "all" (fold nothing) or a
    /// number N (fold only deltas at least N seqs below the highest). Retraction and `get
    /// --as-of` need the deltas unfolded: use "all" or N on every command that writes.
    #[arg(long, value_name = "none|all|N", default_value = "none", value_parser = parse_history)]
    pub history: History,
}

/// Parses `--history`: "none", "all" or a number of seqs.
pub fn parse_history(text: &str) -> Result<History, String> {
    match text {
        "none" => Ok(History::None),
        "all" => Ok(History::All),
        n => n
            .parse::<u64>()
            .map(History::Window)
            .map_err(|_| format!("{text:?} is not \"none\", \"all\" or a number of seqs")),
    }
}

/// How often a waiting writer tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(100);

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

impl DbArgs {
    /// The options of these arguments (recovery mode) over `options`.
    pub fn apply(&self, options: Options) -> Options {
        let recovery = match self.recovery {
            Recovery::Strict => RecoveryMode::Strict,
            Recovery::SkipCorrupt => RecoveryMode::SkipCorrupt,
        };
        options.recovery(recovery).history(self.history)
    }
}

/// Options of a short command: an existing database, no background maintenance thread, no
/// automatic checkpoint.
fn short_command(args: &DbArgs) -> Options {
    let options = Options::default()
        .create_if_missing(false)
        .background_compaction(false)
        .checkpoint_every_bytes(0);
    args.apply(options)
}

/// Options of a read command: [`short_command`]'s.
pub fn reader_options(args: &DbArgs) -> Options {
    short_command(args)
}

/// Opens an existing database to change it, waiting up to `lock_wait` for another writer to
/// let go of it. What recovery dropped or skipped reaches stderr through the log.
pub fn open_existing(args: &DbArgs) -> Result<Db, Failure> {
    open_writer(&args.db, short_command(args), args.lock_wait)
}

/// Opens a database to write, waiting up to `lock_wait` for another writer to let go of it.
pub fn open_writer(db: &Path, options: Options, lock_wait: Duration) -> Result<Db, Failure> {
    let deadline = Instant::now() + lock_wait;
    loop {
        match Db::open(db, options.clone()) {
            Err(Error::Locked { .. }) if Instant::now() < deadline => {
                thread::sleep(LOCK_POLL);
            }
            opened => return opened.map_err(|e| in_database(db, e)),
        }
    }
}

/// Opens an existing database to read, beside a writer if one runs: no lock, nothing written.
pub fn open_reader(args: &DbArgs) -> Result<Db, Failure> {
    Db::open_read_only(&args.db, short_command(args)).map_err(|e| in_database(&args.db, e))
}

/// Opens an existing database's log to read in log order, beside a writer if one runs: the
/// open scans the log and builds no index.
pub fn open_log_reader(args: &DbArgs) -> Result<LogReader, Failure> {
    LogReader::open(&args.db, short_command(args)).map_err(|e| in_database(&args.db, e))
}

/// `error` of the database `db` as the user named it: an I/O error on a file inside it reads
/// `DB: what went wrong (in wal/...seg)`, not as an error on a file the user never named.
pub fn in_database(db: &Path, error: Error) -> Failure {
    match &error {
        Error::Io { path, source } => match path.strip_prefix(db) {
            Ok(inside) if !inside.as_os_str().is_empty() => Failure::new(format!(
                "{}: {source} (in {})",
                db.display(),
                inside.display()
            )),
            _ => Failure::from(error),
        },
        _ => Failure::from(error),
    }
}
