//! The `aggrelog` command-line tool (see `aggrelog --help` and README.md). Output formats are an
//! interface scripts rely on: keep them exact.
//!
//! Exit status: 0 success (also when stdout is closed early, as by `head`), 1 `get` of an absent
//! aggregate, 2 usage errors, bad input, damage and every other failure. Errors are one sentence
//! on stderr; the library's log records (recovery, maintenance) reach stderr too, filtered by
//! `AGGRELOG_LOG` (RUST_LOG syntax, default `warn`).

mod batches;
mod bench;
mod bench_refs;
mod demo;
mod diff;
#[cfg(feature = "kafka")]
mod follow;
#[cfg(feature = "kafka")]
mod follow_bench;
mod follower_dir;
mod history;
mod ingest;
mod input;
mod maintain;
mod open;
mod output;
mod plot;
mod read;
mod refs;
mod replay;
mod retract;
mod scaling;
mod stream;
mod transfer;
mod validate;

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use crate::ingest::IngestArgs;
use crate::open::DbArgs;
use crate::output::{Failure, EXIT_FAILURE};

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
    Ingest(IngestArgs),
    /// Print an aggregate's state as {"aggregate":ID,"seq":S,"state":{...}}.
    Get {
        #[command(flatten)]
        db: DbArgs,
        /// Aggregate id.
        id: String,
        /// Fold only deltas with seq <= SEQ.
        #[arg(long = "as-of", value_name = "SEQ")]
        as_of: Option<u64>,
    },
    /// Print every live aggregate, sorted by id, one JSON line each.
    Scan {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the RFC 7396 merge patch that turns an aggregate's state as of one seq into its
    /// state as of another (null when it is absent at the second).
    Diff {
        #[command(flatten)]
        db: DbArgs,
        /// Aggregate id.
        id: String,
        /// The state as of this seq ...
        #[arg(long, value_name = "SEQ")]
        from: u64,
        /// ... turned into the state as of this seq.
        #[arg(long, value_name = "SEQ")]
        to: u64,
    },
    /// Check every live state against a JSON Schema: one line {"aggregate","pointer","error"}
    /// per violation; exit 0 when all are valid, 1 when some are not.
    Validate {
        #[command(flatten)]
        db: DbArgs,
        /// The JSON Schema file.
        #[arg(long, value_name = "SCHEMA.json")]
        schema: PathBuf,
    },
    /// Print the deltas that built an aggregate's state within history, in fold order:
    /// {"seq":S,"pos":P,"batch":NAME,"patch":{...}} or "delete":true; exit 1 when it has none.
    History {
        #[command(flatten)]
        db: DbArgs,
        /// Aggregate id.
        id: String,
    },
    /// List the named batches whose deltas are in the log, one JSON line each:
    /// {"name","min_seq","max_seq","deltas","aggregates","retracted"}, sorted by name.
    Batches {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print an aggregate's references both ways: {"aggregate","outgoing":[{"pointer",
    /// "target"}],"incoming":[{"aggregate","pointer"}]}; `refs declare` declares the fields.
    Refs(refs::RefsArgs),
    /// Print one line {"aggregate","pointer","target"} per reference to an absent aggregate.
    Dangling {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Take back every batch named NAME: states are then as if it had never arrived. Prints
    /// {"batch","retracted","recorded","deltas","changed"}.
    Retract(retract::RetractArgs),
    /// Take back a retraction of NAME: its batches count again. Prints what `retract` prints.
    Unretract(retract::RetractArgs),
    /// Print every delta in log order as JSON Lines; a summary goes to stderr.
    Replay {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Verify every record; exit 0 when clean, 2 with the damage listed.
    Check {
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
        /// Print one JSON object: {"clean":bool,"damage":[{"file","offset","bytes","reason"}],
        /// "torn_tail_bytes":N}.
        #[arg(long)]
        json: bool,
    },
    /// Print counters as one JSON object.
    Stats {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write a checkpoint now, so the next open replays only the log after it.
    Checkpoint {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Fold every delta chain into state records and delete the segments this empties.
    Compact {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write a point-in-time copy of the database into DEST (a new directory) and print
    /// {"backup":DEST,"bytes":B,"linked_bytes":L}.
    Backup {
        #[command(flatten)]
        db: DbArgs,
        /// The backup's directory; it must not exist.
        dest: PathBuf,
    },
    /// Write every record of the log, in log order, as JSON Lines to FILE (default stdout):
    /// `import` into a new database gives the same states, history and future folds.
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// Output file (created; it must not exist); stdout when absent.
        file: Option<PathBuf>,
    },
    /// Build a new database from the output of `export`.
    Import {
        #[command(flatten)]
        db: DbArgs,
        /// Files written by `export`, in order; "-" reads stdin.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Declare that no new delta with a lower seq will arrive any more.
    Seal {
        #[command(flatten)]
        db: DbArgs,
        /// New deltas with a seq below this are rejected from now on.
        seq: u64,
    },
    /// Follow a Kafka topic into one database per assigned partition under --db DIR, exactly
    /// once, until SIGTERM or SIGINT.
    #[cfg(feature = "kafka")]
    Follow(follow::FollowArgs),
    /// Measure follow throughput from a running broker against a plain consumer reading the
    /// same topic, and the restore rate of one partition.
    #[cfg(feature = "kafka")]
    FollowBench(follow_bench::FollowBenchArgs),
    /// Show the out-of-order table: a CRUD pipeline beside aggrelog.
    Demo,
    /// Generate the mfg workload and measure ingest, open, replay (against the raw read + CRC
    /// ceiling on the same files), materialize and point reads in one run.
    Bench(bench::BenchArgs),
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// Runs the CLI and exits with its status.
fn main() {
    init_logging();
    std::process::exit(run());
}

/// Sends the library's log records to stderr, filtered by `AGGRELOG_LOG` (default `warn`).
fn init_logging() {
    let env = env_logger::Env::new().filter_or("AGGRELOG_LOG", "warn");
    env_logger::Builder::from_env(env)
        .format(|out, record| {
            let level = record.level().as_str().to_lowercase();
            writeln!(out, "aggrelog: {level}: {}", record.args())
        })
        .init();
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
        Command::Ingest(args) => ingest::ingest(&args),
        Command::Get { db, id, as_of } => read::get(&db, &id, as_of),
        Command::Scan { db } => read::scan(&db),
        Command::Diff { db, id, from, to } => diff::diff(&db, &id, from, to),
        Command::Batches { db } => batches::batches(&db),
        Command::History { db, id } => history::history(&db, &id),
        Command::Validate { db, schema } => validate::validate(&db, &schema),
        Command::Refs(args) => refs::refs(&args),
        Command::Dangling { db } => refs::dangling(&db),
        Command::Retract(args) => retract::run(&args, true),
        Command::Unretract(args) => retract::run(&args, false),
        Command::Replay { db } => replay::replay(&db),
        Command::Check { db, json } => read::check(&db, json),
        Command::Stats { db } => read::stats(&db),
        Command::Checkpoint { db } => maintain::checkpoint(&db),
        Command::Compact { db } => maintain::compact(&db),
        Command::Seal { db, seq } => maintain::seal(&db, seq),
        Command::Backup { db, dest } => maintain::backup(&db, &dest),
        Command::Export { db, file } => transfer::export(&db, file.as_deref()),
        Command::Import { db, files } => transfer::import(&db, &files),
        #[cfg(feature = "kafka")]
        Command::Follow(args) => follow::follow(&args),
        #[cfg(feature = "kafka")]
        Command::FollowBench(args) => follow_bench::run(&args),
        Command::Demo => demo::run().map_err(Failure::from),
        Command::Bench(args) if args.scaling() => scaling::run(&args).map_err(Failure::from),
        Command::Bench(args) => ingest::parse_sync(&args.sync)
            .and_then(|sync| bench::run(&args, sync).map_err(Failure::from)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "aggrelog", &mut io::stdout());
            Ok(())
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
