//! `ingest --batch-lines N [--batch-ms T]`: a FILE (or a stream on stdin) committed in parts
//! of at most N deltas, and, when T is given, whatever has arrived T ms after the first delta
//! of a part. Each part keeps the stamp positions its deltas have in the whole file
//! (`Batch::starting_at`), so ingesting a file split or whole, once or again, gives the same
//! states and counts duplicates, never conflicts. Memory holds one part.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use aggrelog::jsonl::parse_line;
use aggrelog::{Batch, Db, Error};
use serde_json::json;

use crate::output::{emit, Failure};

/// Lines read ahead of the committing thread.
const READ_AHEAD_LINES: usize = 4096;

/// How a stream is cut into parts.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    /// Deltas per part at most.
    pub lines: usize,
    /// Commit a part this long after its first delta arrived, however small.
    pub wait: Option<Duration>,
}

/// One part being filled.
struct Part {
    batch: Batch,
    /// Line number of each delta, by its index in the part.
    lines: Vec<u64>,
    started: Instant,
}

impl Part {
    fn new(first_position: u32) -> Self {
        Part {
            batch: Batch::starting_at(first_position),
            lines: Vec::new(),
            started: Instant::now(),
        }
    }
}

/// Commits FILE in parts; returns the deltas committed.
pub fn ingest_in_parts(db: &Db, name: &str, parts: Parts) -> Result<usize, Failure> {
    let lines = read_ahead(name)?;
    let mut line_no = 0u64;
    let mut committed = 0usize;
    let mut part = Part::new(0);
    loop {
        let next = match parts.wait.filter(|_| !part.lines.is_empty()) {
            Some(wait) => {
                let left = wait.saturating_sub(part.started.elapsed());
                lines.recv_timeout(left)
            }
            None => lines.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let text = match next {
            Ok(text) => text.map_err(|e| format!("{name}:{}: cannot read: {e}", line_no + 1))?,
            Err(RecvTimeoutError::Timeout) => {
                committed += commit(db, name, &mut part)?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        line_no += 1;
        if text.trim().is_empty() {
            continue;
        }
        add(&mut part, &text, line_no).map_err(|reason| format!("{name}:{line_no}: {reason}"))?;
        if part.lines.len() >= parts.lines {
            committed += commit(db, name, &mut part)?;
        }
    }
    committed += commit(db, name, &mut part)?;
    Ok(committed)
}

/// Reads FILE's lines on a thread of their own, so that a part can be committed while the
/// input waits.
fn read_ahead(name: &str) -> Result<Receiver<io::Result<String>>, Failure> {
    let input: Box<dyn BufRead + Send> = if name == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        let file = File::open(name).map_err(|e| format!("{name}: cannot open: {e}"))?;
        Box::new(BufReader::with_capacity(1 << 20, file))
    };
    let (send, receive) = sync_channel(READ_AHEAD_LINES);
    thread::Builder::new()
        .name("aggrelog-read".into())
        .spawn(move || {
            for line in input.lines() {
                if send.send(line).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("{name}: cannot start reading: {e}"))?;
    Ok(receive)
}

fn add(part: &mut Part, text: &str, line_no: u64) -> Result<(), String> {
    let delta = parse_line(text)?;
    if part.lines.is_empty() {
        part.started = Instant::now();
    }
    match &delta.patch {
        Some(patch) => part.batch.patch(&delta.aggregate, delta.seq, patch),
        None => part.batch.delete(&delta.aggregate, delta.seq),
    }
    .map_err(|e| e.to_string())?;
    part.lines.push(line_no);
    Ok(())
}

/// Commits the part (if it holds anything), prints `{"batch":"FILE:FIRST-LAST","deltas":N}`
/// and starts the next part where this one ended.
fn commit(db: &Db, name: &str, part: &mut Part) -> Result<usize, Failure> {
    let (Some(&first), Some(&last)) = (part.lines.first(), part.lines.last()) else {
        return Ok(0);
    };
    let receipt = db
        .write(&part.batch)
        .map_err(|e| rejection(name, part, e))?;
    emit(json!({"batch": format!("{name}:{first}-{last}"), "deltas": receipt.deltas}))?;
    let next = part.batch.first_position() as u64 + part.lines.len() as u64;
    let next = u32::try_from(next)
        .map_err(|_| format!("{name}:{last}: more than {} deltas in one file", u32::MAX))?;
    *part = Part::new(next);
    Ok(receipt.deltas)
}

fn rejection(name: &str, part: &Part, error: Error) -> Failure {
    match &error {
        Error::Sealed { position, .. } => {
            let line = part.lines.get(*position as usize).copied().unwrap_or(0);
            Failure::new(format!("{name}:{line}: {error}"))
        }
        _ => Failure::new(format!("{name}: {error}")),
    }
}
