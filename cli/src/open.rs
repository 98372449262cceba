//! Opening the database for a command: the `--db` and `--recovery` options every command that
//! opens shares.

use std::path::PathBuf;

use aggrelog::{Db, Options, RecoveryMode};
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
}

impl DbArgs {
    /// The options of these arguments (recovery mode) over `options`.
    pub fn apply(&self, options: Options) -> Options {
        options.recovery(match self.recovery {
            Recovery::Strict => RecoveryMode::Strict,
            Recovery::SkipCorrupt => RecoveryMode::SkipCorrupt,
        })
    }
}

/// Opens an existing database for a short command: no background maintenance thread, no
/// automatic checkpoint. What recovery dropped or skipped reaches stderr through the log.
pub fn open_existing(args: &DbArgs) -> Result<Db, Failure> {
    let options = Options::default()
        .create_if_missing(false)
        .background_compaction(false)
        .checkpoint_every_bytes(0);
    Ok(Db::open(&args.db, args.apply(options))?)
}
