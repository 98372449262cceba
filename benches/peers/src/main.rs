//! Compares aggrelog with embedded peer engines (fjall, RocksDB, redb, sled, raft-engine) on the
//! same generated mfg workload and prints one markdown table. Each engine runs in a child
//! process of its own (this program re-executed with `--engine NAME`), so that its peak RSS is
//! its own; the child prints one JSON line of figures that the parent collects.

mod measure;
mod records;
mod stores;
mod table;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use measure::{Figures, RunSpec};
use stores::{aggrelog_store, fjall_store, raft_store, redb_store, rocksdb_store, sled_store};

/// An engine under comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineName {
    /// aggrelog (this repository).
    Aggrelog,
    /// fjall (LSM tree, Rust).
    Fjall,
    /// RocksDB through the rust-rocksdb bindings.
    Rocksdb,
    /// redb (copy-on-write B-tree, Rust).
    Redb,
    /// sled (Bw-tree-like, Rust).
    Sled,
    /// raft-engine (multi-raft log store, Rust).
    RaftEngine,
}

impl EngineName {
    /// Every engine, in table order.
    const ALL: [EngineName; 6] = [
        EngineName::Aggrelog,
        EngineName::Fjall,
        EngineName::Rocksdb,
        EngineName::Redb,
        EngineName::Sled,
        EngineName::RaftEngine,
    ];

    /// The command-line name.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "aggrelog against embedded peers on the mfg workload: one markdown table")]
struct Args {
    /// Distinct aggregates.
    #[arg(long, default_value_t = 100_000)]
    aggregates: u64,
    /// Deltas (records) in total, in batches of 1000.
    #[arg(long, default_value_t = 2_000_000)]
    deltas: u64,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Engines to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    engines: Vec<EngineName>,
    /// Parent directory of the engines' directories (default: a temporary directory, removed
    /// afterwards); each engine writes DIR/NAME, which must not exist.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Point reads to time per engine.
    #[arg(long, default_value_t = 20_000)]
    point_reads: u64,
    /// Also write each engine's figures to FILE, one JSON line per engine with its name as
    /// `"engine"` (what `aggrelog bench --sizes ... --plot --peers FILE` draws).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Internal: run one engine in this process and print its figures as one JSON line (then
    /// --dir is that engine's own directory).
    #[arg(long, hide = true)]
    engine: Option<EngineName>,
}

impl Args {
    /// The sizes of the run.
    fn run_spec(&self) -> RunSpec {
        RunSpec {
            aggregates: self.aggregates,
            deltas: self.deltas,
            seed: self.seed,
            point_reads: self.point_reads,
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.engine {
        Some(engine) => run_child(engine, &args),
        None => run_parent(&args),
    }
}

/// Child mode: measures one engine and prints its figures as one JSON line.
fn run_child(engine: EngineName, args: &Args) -> Result<()> {
    let dir = args.dir.as_deref().context("--engine needs --dir")?;
    let run = args.run_spec();
    let figures = match engine {
        EngineName::Aggrelog => measure::run::<aggrelog_store::AggrelogStore>(dir, &run),
        EngineName::Fjall => measure::run::<fjall_store::FjallStore>(dir, &run),
        EngineName::Rocksdb => measure::run::<rocksdb_store::RocksStore>(dir, &run),
        EngineName::Redb => measure::run::<redb_store::RedbStore>(dir, &run),
        EngineName::Sled => measure::run::<sled_store::SledStore>(dir, &run),
        EngineName::RaftEngine => measure::run::<raft_store::RaftStore>(dir, &run),
    }?;
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// Parent mode: runs every chosen engine in a child process and prints the table.
fn run_parent(args: &Args) -> Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let engines = if args.engines.is_empty() {
        EngineName::ALL.to_vec()
    } else {
        args.engines.clone()
    };
    let mut results = Vec::new();
    for engine in engines {
        eprintln!("{}:", engine.name());
        let result = run_engine(engine, args, &root.join(engine.name()));
        if let Err(e) = &result {
            eprintln!("    failed: {e:#}");
        }
        results.push((engine, result));
    }
    println!("{}", table::render(&results, &args.run_spec()));
    if let Some(path) = &args.json {
        write_json(path, &results)?;
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if failed > 0 {
        bail!("{failed} engine(s) failed");
    }
    Ok(())
}

/// Writes every engine that finished as one JSON line: its name and its figures.
fn write_json(path: &Path, results: &[(EngineName, Result<Figures>)]) -> Result<()> {
    let mut lines = String::new();
    for (engine, figures) in results {
        if let Ok(figures) = figures {
            let mut line = serde_json::to_value(figures)?;
            if let Some(object) = line.as_object_mut() {
                object.insert("engine".into(), engine.name().into());
            }
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
    }
    std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))
}

/// Runs one engine in a child process (this program with `--engine`) and parses its figures.
fn run_engine(engine: EngineName, args: &Args, dir: &Path) -> Result<Figures> {
    if dir.exists() {
        bail!(
            "{} already exists: each run needs a fresh directory",
            dir.display()
        );
    }
    let exe = std::env::current_exe().context("locating this program")?;
    let output = Command::new(exe)
        .arg("--engine")
        .arg(engine.name())
        .arg("--dir")
        .arg(dir)
        .args(["--aggregates", &args.aggregates.to_string()])
        .args(["--deltas", &args.deltas.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--point-reads", &args.point_reads.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("starting the child process")?;
    if !output.status.success() {
        bail!("child process exited with {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().context("the child printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("parsing the child's figures: {line}"))
}
