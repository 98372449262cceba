//! `aggrelog bench --sizes`: how the bench's figures grow with the log. Runs `aggrelog bench
//! --json` once per size and run, each in a child process (this binary re-executed, so each
//! run's peak RSS is its own), takes the median of every figure per size, and prints the table
//! with each figure's target beside it (or the medians as JSON); `--plot FILE.svg` draws it.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value};

use crate::bench::BenchArgs;
use crate::plot::{self, Panel};

/// The median of every numeric figure of one size, by its `bench --json` key.
pub type Medians = BTreeMap<String, f64>;

/// The medians of every size, by deltas.
pub type Table = BTreeMap<u64, Medians>;

/// Whether a figure is better higher (throughput) or lower (time, latency, memory).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput: the target is a floor.
    Higher,
    /// Time, latency, memory: the target is a ceiling.
    Lower,
}

/// One figure of the table: how to read it from a size's medians, its target there, and how
/// to read the same figure from a peer's figures (`benches/peers --json`).
pub struct Figure {
    /// Row name.
    pub name: &'static str,
    /// Unit of `value`.
    pub unit: &'static str,
    /// The figure from a size's medians.
    pub value: fn(&Medians) -> Option<f64>,
    /// The target at that size, if there is one.
    pub target: fn(&Medians) -> Option<f64>,
    /// The target as written in the issue.
    pub target_text: &'static str,
    /// Which way is better.
    pub better: Better,
    /// The same figure from a peer's JSON line, where the peers program measures it.
    pub peer: Option<fn(&Value) -> Option<f64>>,
}

fn key(m: &Medians, k: &str) -> Option<f64> {
    m.get(k).copied()
}

fn none(_: &Medians) -> Option<f64> {
    None
}

fn peer_key(p: &Value, k: &str) -> Option<f64> {
    p.get(k).and_then(Value::as_f64)
}

/// Bytes of an aggregate id of the bench's workload (`aircraft-0000123`).
const BENCH_ID_BYTES: f64 = 16.0;

/// The figures of the scaling table, in order.
pub const FIGURES: &[Figure] = &[
    Figure {
        name: "open, full replay",
        unit: "ms",
        value: |m| key(m, "open_ms"),
        // 2 GB/s of log.
        target: |m| Some(key(m, "disk_bytes")? / 2e6),
        target_text: ">= 2 GB/s of log",
        better: Better::Lower,
        peer: Some(|p| peer_key(p, "open_ms")),
    },
    Figure {
        name: "open, checkpoint (uncompacted)",
        unit: "ms",
        value: |m| key(m, "open_checkpoint_ms"),
        // 20 ms at 2M deltas (100k aggregates), growing no faster than the aggregates.
        target: |m| Some(20.0 * key(m, "aggregates")? / 100_000.0),
        target_text: "<= 20 ms at 2M, linear in aggregates",
        better: Better::Lower,
        peer: None,
    },
    Figure {
        name: "open, checkpoint after compaction",
        unit: "ms",
        value: |m| key(m, "open_compacted_checkpoint_ms"),
        target: none,
        target_text: "-",
        better: Better::Lower,
        peer: None,
    },
    Figure {
        name: "ingest, fsync per batch",
        unit: "MB/s",
        value: |m| key(m, "ingest_sync_mb_s"),
        target: |_| Some(300.0),
        target_text: ">= 300",
        better: Better::Higher,
        peer: Some(|p| Some(peer_key(p, "payload_bytes")? / peer_key(p, "ingest_s")? / 1e6)),
    },
    Figure {
        name: "ingest, one spanning batch",
        unit: "MB/s",
        value: |m| key(m, "ingest_spanning_mb_s"),
        target: none,
        target_text: "-",
        better: Better::Higher,
        peer: None,
    },
    Figure {
        name: "replay, log order",
        unit: "MB/s",
        value: |m| key(m, "replay_mb_s"),
        target: none,
        target_text: "-",
        better: Better::Higher,
        peer: None,
    },
    Figure {
        name: "materialize (2 threads)",
        unit: "deltas/s",
        value: |m| key(m, "materialize_deltas_s"),
        target: |_| Some(4e6),
        target_text: ">= 4M",
        better: Better::Higher,
        // The peers read every aggregate's records back; aggrelog folds them too.
        peer: Some(|p| Some(peer_key(p, "replay_records")? / peer_key(p, "replay_s")?)),
    },
    Figure {
        name: "point get p50, uncompacted",
        unit: "us",
        value: |m| key(m, "get_p50_us"),
        target: |_| Some(5.0),
        target_text: "<= 5",
        better: Better::Lower,
        peer: Some(|p| peer_key(p, "point_p50_us")),
    },
    Figure {
        name: "point get p99, uncompacted",
        unit: "us",
        value: |m| key(m, "get_p99_us"),
        target: |_| Some(40.0),
        target_text: "<= 40",
        better: Better::Lower,
        peer: Some(|p| peer_key(p, "point_p99_us")),
    },
    Figure {
        name: "point get p50, compacted",
        unit: "us",
        value: |m| key(m, "get_compacted_p50_us"),
        target: |_| Some(2.5),
        target_text: "<= 2.5",
        better: Better::Lower,
        peer: None,
    },
    Figure {
        name: "point get p99, compacted",
        unit: "us",
        value: |m| key(m, "get_compacted_p99_us"),
        target: |_| Some(15.0),
        target_text: "<= 15",
        better: Better::Lower,
        peer: None,
    },
    Figure {
        name: "full compaction",
        unit: "s",
        value: |m| key(m, "compact_s"),
        target: none,
        target_text: "-",
        better: Better::Lower,
        peer: None,
    },
    Figure {
        name: "index bytes per aggregate",
        unit: "B",
        value: |m| key(m, "index_bytes_per_aggregate"),
        target: |m| Some(64.0 + BENCH_ID_BYTES + 8.0 * key(m, "deltas")? / key(m, "aggregates")?),
        target_text: "<= 64 + id + 8 per unfolded delta",
        better: Better::Lower,
        peer: None,
    },
    Figure {
        name: "peak RSS",
        unit: "MB",
        value: |m| key(m, "peak_rss_mb"),
        target: |m| {
            let index = key(m, "index_bytes_per_aggregate")? * key(m, "aggregates")?;
            Some(index / 1e6 + 128.0)
        },
        target_text: "<= index + 128 MB",
        better: Better::Lower,
        peer: Some(|p| peer_key(p, "peak_rss_mb")),
    },
];

impl Figure {
    /// Whether `value` meets the target `target`.
    pub fn meets(&self, value: f64, target: f64) -> bool {
        match self.better {
            Better::Higher => value >= target,
            Better::Lower => value <= target,
        }
    }
}

/// Parses a size such as `2000000`, `500k` or `32M`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, scale) = match text.trim().to_ascii_lowercase() {
        t if t.ends_with('m') => (t[..t.len() - 1].to_owned(), 1_000_000),
        t if t.ends_with('k') => (t[..t.len() - 1].to_owned(), 1_000),
        t => (t, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n >= 20)
        .ok_or_else(|| {
            format!("bad size {text:?}: a number of deltas (at least 20), as 2000000, 500k or 32M")
        })
}

/// Runs `bench --sizes` (or loads `--from`), prints the table or JSON and draws `--plot`.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let table = match &args.from {
        Some(path) => load(path)?,
        None => measure(args)?,
    };
    if args.json {
        let object: Map<String, Value> = table
            .iter()
            .map(|(size, m)| (size.to_string(), serde_json::json!(m)))
            .collect();
        println!("{}", Value::Object(object));
    } else {
        print!("{}", render(&table));
    }
    if let Some(svg) = &args.plot {
        let peers = match &args.peers {
            Some(path) => load_peers(path)?,
            None => Vec::new(),
        };
        plot::draw(svg, &panels(&table, &peers))?;
        eprintln!("drew {}", svg.display());
    }
    Ok(())
}

/// Runs every size `args.runs` times (one count for all sizes, or one per size).
fn measure(args: &BenchArgs) -> Result<Table, String> {
    let sizes = args
        .sizes
        .iter()
        .map(|s| parse_size(s))
        .collect::<Result<Vec<_>, _>>()?;
    let runs = match args.runs.as_slice() {
        [n] => vec![*n; sizes.len()],
        per_size if per_size.len() == sizes.len() => per_size.to_vec(),
        _ => return Err("--runs takes one count or one per size".into()),
    };
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = args.db.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let mut table = Table::new();
    for (&size, &count) in sizes.iter().zip(&runs) {
        let mut results = Vec::with_capacity(count);
        for run in 1..=count {
            let dir = root.join(format!("{size}-{run}"));
            results.push(run_child(args, size, &dir)?);
            // Each run leaves a full database behind; the next must not share the disk with it.
            fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            eprintln!("{size} deltas: run {run} of {count} done");
        }
        table.insert(size, medians(&results));
    }
    Ok(table)
}

/// One `bench --json` run in a child process, with the same workload options as this one.
fn run_child(args: &BenchArgs, deltas: u64, dir: &Path) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let mut child = Command::new(exe);
    child
        .args(["bench", "--json"])
        .args(["--deltas", &deltas.to_string()])
        .args(["--aggregates", &(deltas / 20).to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--sync", &args.sync])
        .arg("--db")
        .arg(dir);
    if args.compress {
        child.arg("--compress");
    }
    let out = child.output().map_err(|e| format!("running bench: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bench at {deltas} deltas failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("bench at {deltas} deltas printed bad JSON: {e}"))
}

/// The median of every numeric key of `results` (all from one size).
fn medians(results: &[Value]) -> Medians {
    let mut by_key: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for result in results {
        for (k, v) in result.as_object().into_iter().flatten() {
            if let Some(x) = v.as_f64() {
                by_key.entry(k.clone()).or_default().push(x);
            }
        }
    }
    by_key
        .into_iter()
        .map(|(k, mut xs)| {
            xs.sort_by(f64::total_cmp);
            let mid = xs.len() / 2;
            let median = if xs.len() % 2 == 1 {
                xs[mid]
            } else {
                (xs[mid - 1] + xs[mid]) / 2.0
            };
            (k, median)
        })
        .collect()
}

/// Loads a table printed by `bench --sizes ... --json`.
fn load(path: &Path) -> Result<Table, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let parsed: BTreeMap<String, Medians> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not a table printed by bench --sizes --json: {e}",
            path.display()
        )
    })?;
    parsed
        .into_iter()
        .map(|(size, m)| Ok((parse_size(&size)?, m)))
        .collect()
}

/// A peer engine's figures: its name and its JSON line from `benches/peers --json`.
pub type Peer = (String, Value);

/// Loads the JSON Lines written by `aggrelog-peers --json FILE` (aggrelog's own line is left
/// out: its figures are the table's).
fn load_peers(path: &Path) -> Result<Vec<Peer>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut peers = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |why: String| format!("{}:{}: {why}", path.display(), n + 1);
        let value: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let name = value
            .get("engine")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"engine\" name".into()))?
            .to_owned();
        if name != "aggrelog" {
            peers.push((name, value));
        }
    }
    Ok(peers)
}

/// One panel per figure that has a target at some size: at each size, x is the log's size in
/// GB; the peers, measured at one workload size, are placed at aggrelog's log size for it.
fn panels(table: &Table, peers: &[Peer]) -> Vec<Panel> {
    let log_gb = |m: &Medians| m.get("disk_bytes").map(|b| b / 1e9);
    let drawn = FIGURES
        .iter()
        .filter(|f| table.values().any(|m| (f.target)(m).is_some()));
    drawn
        .map(|figure| {
            let at_sizes = |of: fn(&Medians) -> Option<f64>| -> Vec<(f64, f64)> {
                let points = table.values().map(|m| Some((log_gb(m)?, of(m)?)));
                points.flatten().collect()
            };
            let peer_points = peers.iter().filter_map(|(name, value)| {
                let records = value.get("records").and_then(Value::as_f64)?;
                let x = log_gb(table.get(&(records as u64))?)?;
                Some((name.clone(), (x, (figure.peer?)(value)?)))
            });
            Panel {
                title: figure.name.to_owned(),
                unit: figure.unit,
                target_text: figure.target_text,
                measured: at_sizes(figure.value),
                target: at_sizes(figure.target),
                peers: peer_points.collect(),
            }
        })
        .collect()
}

/// The markdown table: one row per figure, one column per size, the target last.
pub fn render(table: &Table) -> String {
    let mut out = String::from("| figure |");
    for size in table.keys() {
        out.push_str(&format!(" {} |", size_label(*size)));
    }
    out.push_str(" target |\n|---|");
    out.push_str(&"---:|".repeat(table.len()));
    out.push_str("---|\n");
    for figure in FIGURES {
        out.push_str(&format!("| {} |", figure.name));
        for m in table.values() {
            out.push_str(&format!(" {} |", cell(figure, m)));
        }
        out.push_str(&format!(" {} |\n", figure.target_text));
    }
    out
}

/// One figure at one size: value, unit, and whether its target is met there.
fn cell(figure: &Figure, m: &Medians) -> String {
    let Some(value) = (figure.value)(m) else {
        return "-".into();
    };
    let shown = format!("{} {}", number(value), figure.unit);
    match (figure.target)(m) {
        Some(target) if figure.meets(value, target) => format!("{shown} (met)"),
        Some(target) => format!("{shown} (not met: {})", number(target)),
        None => shown,
    }
}

/// A figure with three significant digits (millions as `M`), the precision this noisy machine
/// supports.
fn number(x: f64) -> String {
    if x.abs() >= 1e5 {
        return format!("{}M", number(x / 1e6));
    }
    let digits = if x == 0.0 {
        0
    } else {
        (2 - x.abs().log10().floor() as i32).max(0) as usize
    };
    format!("{x:.digits$}")
}

/// `2000000` as `2M`, `500000` as `0.5M`.
pub fn size_label(deltas: u64) -> String {
    format!("{}M", deltas as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_reject_nonsense() {
        assert_eq!(parse_size("2000000"), Ok(2_000_000));
        assert_eq!(parse_size("500k"), Ok(500_000));
        assert_eq!(parse_size("32M"), Ok(32_000_000));
        for bad in ["", "M", "2.5M", "-1", "10", "99999999999999999999M"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn medians_take_the_middle_run_of_every_numeric_key() {
        let runs = [
            serde_json::json!({"open_ms": 3.0, "name": "x"}),
            serde_json::json!({"open_ms": 1.0}),
            serde_json::json!({"open_ms": 2.0}),
        ];
        let m = medians(&runs);
        assert_eq!(m.get("open_ms"), Some(&2.0));
        assert!(!m.contains_key("name"));
        assert_eq!(medians(&runs[..2]).get("open_ms"), Some(&2.0));
    }

    #[test]
    fn cells_show_the_target_that_is_missed() {
        let m: Medians = [("get_p50_us".to_owned(), 7.5)].into_iter().collect();
        let p50 = FIGURES
            .iter()
            .find(|f| f.name == "point get p50, uncompacted");
        let p50 = p50.expect("the table has a p50 row");
        assert_eq!(cell(p50, &m), "7.50 us (not met: 5.00)");
        let m: Medians = [("get_p50_us".to_owned(), 4.0)].into_iter().collect();
        assert_eq!(cell(p50, &m), "4.00 us (met)");
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        let shown: Vec<String> = [0.0, 0.01234, 1.234, 123.4, 1234.5, 968_354.0, 4e6]
            .into_iter()
            .map(number)
            .collect();
        assert_eq!(
            shown,
            ["0", "0.0123", "1.23", "123", "1234", "0.968M", "4.00M"]
        );
    }
}
