//! The read commands `get`, `scan`, `stats` and `check` (`replay` has its own module). Their output formats are an
//! interface scripts rely on.

use std::io::{self, BufWriter, Write};
use std::iter::Peekable;
use std::path::Path;

use aggrelog::{AggregateState, CheckReport, Db, MergePatch, Scan};
use serde_json::{json, Value};

use crate::follower_dir;
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

/// `get`: one aggregate's state, exit 1 when absent. In a follower directory: from the first
/// partition database that holds it.
pub fn get(args: &DbArgs, id: &str, as_of: Option<u64>) -> Result<(), Failure> {
    match state_as_of(args, id, as_of.unwrap_or(u64::MAX))? {
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

/// The state of `id` from deltas with seq up to `as_of`, in the database of `args` or, in a
/// follower directory, in the first partition database that holds it.
pub fn state_as_of(args: &DbArgs, id: &str, as_of: u64) -> Result<Option<AggregateState>, Failure> {
    first_state(&databases(args)?, id, as_of)
}

/// The state of `id` as of `as_of` in the first of `dbs` that holds it.
pub fn first_state(dbs: &[Db], id: &str, as_of: u64) -> Result<Option<AggregateState>, Failure> {
    for db in dbs {
        if let Some(state) = db.get_as_of(id, as_of)? {
            return Ok(Some(state));
        }
    }
    Ok(None)
}

/// `scan`: every live aggregate in id order. In a follower directory: every partition
/// database's, merged in id order.
pub fn scan(args: &DbArgs) -> Result<(), Failure> {
    let dbs = databases(args)?;
    let mut scans: Vec<_> = dbs.iter().map(|db| db.scan().peekable()).collect();
    let mut out = BufWriter::new(io::stdout().lock());
    while let Some(next) = lowest_head(&mut scans) {
        if let Some(item) = scans[next].next() {
            let (id, state) = item?;
            writeln!(out, "{}", state_line(&id, &state))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The database of `args` opened read-only, or every partition database of a follower
/// directory.
pub fn databases(args: &DbArgs) -> Result<Vec<Db>, Failure> {
    Ok(match follower_dir::detect(&args.db)? {
        Some(dir) => dir.open(args)?.into_iter().map(|(_, db)| db).collect(),
        None => vec![open_reader(args)?],
    })
}

/// The index of the scan whose next item comes first: an error before any id, then the lowest
/// id (the first scan among equals); `None` when every scan is done.
fn lowest_head(scans: &mut [Peekable<Scan<'_, MergePatch>>]) -> Option<usize> {
    (scans.iter_mut().enumerate())
        .filter_map(|(index, scan)| match scan.peek()? {
            Ok((id, _)) => Some((Some(id.clone()), index)),
            Err(_) => Some((None, index)),
        })
        .min()
        .map(|(_, index)| index)
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

/// `stats`: the counters as one JSON object. In a follower directory: `{"topic":T,"group":G,
/// "partitions":[{"partition":P, ...that partition database's counters}],"sources":[...]}`.
pub fn stats(args: &DbArgs) -> Result<(), Failure> {
    let Some(dir) = follower_dir::detect(&args.db)? else {
        return emit(stats_json(&open_reader(args)?));
    };
    let mut partitions = Vec::new();
    let mut sources = Vec::new();
    for (partition, db) in dir.open(args)? {
        let mut counters = stats_json(&db);
        if let Value::Object(fields) = &mut counters {
            if let Some(Value::Array(positions)) = fields.get("sources") {
                sources.extend(positions.iter().cloned());
            }
            fields.insert("partition".into(), Value::from(partition));
        }
        partitions.push(counters);
    }
    emit(json!({
        "topic": dir.topic,
        "group": dir.group,
        "partitions": partitions,
        "sources": sources,
    }))
}

/// The counters of `db` as one JSON object.
fn stats_json(db: &Db) -> Value {
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
    json!({
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
        "sources": sources_json(&stats),
        "retracted_batches": stats.retracted_batches,
        "reference_pointers": stats.reference_pointers,
    })
}

/// The source positions in `stats`: `[{"topic","partition","next_offset","dead_letters",
/// "reapplied"}]`.
fn sources_json(stats: &aggrelog::Stats) -> Value {
    let positions = (stats.sources.iter()).map(|p| {
        json!({
            "topic": p.topic,
            "partition": p.partition,
            "next_offset": p.next_offset,
            "dead_letters": p.dead_letters,
            "reapplied": p.reapplied,
        })
    });
    Value::Array(positions.collect())
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
