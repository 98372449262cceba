//! The read commands `get`, `scan`, `stats` and `check` (`replay` has its own module). Their output formats are an
//! interface scripts rely on.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use aggrelog::{AggregateState, CheckReport};
use serde_json::{json, Value};

use crate::open::{open_reader, DbArgs};
use crate::output::{cut, emit, Failure, EXIT_ABSENT, EXIT_FAILURE};

fn state_line(id: &str, state: &AggregateState) -> String {
    format!(
        "{{\"aggregate\":{},\"seq\":{},\"state\":{}}}",
        Value::from(id),
        state.seq,
        state.state
    )
}

/// `get`: one aggregate's state, exit 1 when absent.
pub fn get(args: &DbArgs, id: &str, as_of: Option<u64>) -> Result<(), Failure> {
    let db = open_reader(args)?;
    match db.get_as_of(id, as_of.unwrap_or(u64::MAX))? {
        Some(state) => emit(state_line(id, &state)),
        None => Err(Failure {
            message: match as_of {
                Some(seq) => format!(
                    "aggregate {} is absent as of seq {seq}",
                    cut(&format!("{id:?}"))
                ),
                None => format!("aggregate {} is absent", cut(&format!("{id:?}"))),
            },
            status: EXIT_ABSENT,
        }),
    }
}

/// `scan`: every live aggregate in id order.
pub fn scan(args: &DbArgs) -> Result<(), Failure> {
    let db = open_reader(args)?;
    let mut out = BufWriter::new(io::stdout().lock());
    for item in db.scan() {
        let (id, state) = item?;
        writeln!(out, "{}", state_line(&id, &state))?;
    }
    out.flush()?;
    Ok(())
}

/// `check`: every record verified, nothing changed; exit 2 when damaged.
pub fn check(db: &Path, as_json: bool) -> Result<(), Failure> {
    let report = aggrelog::check(db)?;
    if as_json {
        emit(check_json(&report))?;
    } else {
        print_check(&report)?;
    }
    if report.is_clean() {
        Ok(())
    } else {
        Err(Failure {
            message: String::new(),
            status: EXIT_FAILURE,
        })
    }
}

/// `check --json`: `{"clean":bool,"damage":[{"file","offset","bytes","reason"}],
/// "torn_tail_bytes":N}`.
fn check_json(report: &CheckReport) -> Value {
    let damage: Vec<Value> = report
        .damage
        .iter()
        .map(|d| {
            json!({
                "file": d.file.display().to_string(),
                "offset": d.offset,
                "bytes": d.bytes,
                "reason": d.reason,
            })
        })
        .collect();
    json!({
        "clean": report.is_clean(),
        "damage": damage,
        "torn_tail_bytes": report.torn.as_ref().map_or(0, |t| t.bytes),
    })
}

fn print_check(report: &CheckReport) -> Result<(), Failure> {
    if let Some(torn) = &report.torn {
        emit(format!(
            "{}:{}: torn tail of {} bytes (an unfinished append, not damage; the next open truncates it)",
            torn.file.display(),
            torn.offset,
            torn.bytes
        ))?;
    }
    for damage in &report.damage {
        emit(damage)?;
    }
    for stale in &report.stale_checkpoints {
        emit(format!(
            "{stale} (stale checkpoint, skipped by open; not damage)"
        ))?;
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
    Ok(())
}

/// `stats`: the counters as one JSON object.
pub fn stats(args: &DbArgs) -> Result<(), Failure> {
    let db = open_reader(args)?;
    let stats = db.stats();
    let checkpoint = stats.checkpoint.map(|c| {
        json!({
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
            json!({"max_deltas": max, "aggregates": count})
        })
        .collect();
    emit(json!({
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
    }))
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
