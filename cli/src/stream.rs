//! `ingest --batch-lines N [--batch-ms T]`: a FILE (or a stream on stdin) committed in parts
//! of at most N deltas, and, when T is given, whatever has arrived T ms after the first delta
//! of a part. Each part keeps the stamp positions its deltas have in the whole file
//! (`Batch::starting_at`), so ingesting a file split or whole, once or again, gives the same
//! states and counts duplicates, never conflicts. Memory holds one part.

use std::collections::VecDeque;
use std::io::{self, BufRead};
use std::mem;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use aggrelog::jsonl::parse_line;
use aggrelog::{Batch, Db};
use serde_json::json;

use crate::input::{open_input, rejection};
use crate::output::{emit, Failure};

/// Lines the reading thread hands over at once at most (fewer when its input would wait).
const LINES_PER_HANDOVER: usize = 512;
/// Handovers read ahead of the committing thread.
const READ_AHEAD_HANDOVERS: usize = 16;

/// Lines as the reading thread hands them over.
type Lines = Receiver<Vec<io::Result<String>>>;

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
    /// Index in the file of the part's first delta: a delta without `"pos"` takes its index.
    first_index: u32,
    /// Line number of each delta, by its index in the part.
    lines: Vec<u64>,
    started: Instant,
}

impl Part {
    fn new(first_index: u32, batch_name: &str) -> Result<Self, Failure> {
        let mut batch = Batch::starting_at(first_index);
        batch.name(batch_name)?;
        Ok(Part {
            batch,
            first_index,
            lines: Vec::new(),
            started: Instant::now(),
        })
    }
}

/// Commits FILE in parts, each naming its deltas `batch_name`; returns the deltas committed.
pub fn ingest_in_parts(
    db: &Db,
    name: &str,
    batch_name: &str,
    parts: Parts,
) -> Result<usize, Failure> {
    let lines = read_ahead(name)?;
    let mut ready = VecDeque::new();
    let mut line_no = 0u64;
    let mut committed = 0usize;
    let mut part = Part::new(0, batch_name)?;
    loop {
        let next = match ready.pop_front() {
            Some(text) => Ok(text),
            None => match next_handover(&lines, &part, parts.wait) {
                Ok(handover) => {
                    ready.extend(handover);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        let text = match next {
            Ok(text) => text.map_err(|e| format!("{name}:{}: cannot read: {e}", line_no + 1))?,
            Err(RecvTimeoutError::Timeout) => {
                committed += commit(db, name, batch_name, &mut part)?;
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
            committed += commit(db, name, batch_name, &mut part)?;
        }
    }
    committed += commit(db, name, batch_name, &mut part)?;
    Ok(committed)
}

/// The next handover of lines, waiting at most until the part's time is up.
fn next_handover(
    lines: &Lines,
    part: &Part,
    wait: Option<Duration>,
) -> Result<Vec<io::Result<String>>, RecvTimeoutError> {
    match wait.filter(|_| !part.lines.is_empty()) {
        Some(wait) => lines.recv_timeout(wait.saturating_sub(part.started.elapsed())),
        None => lines.recv().map_err(|_| RecvTimeoutError::Disconnected),
    }
}

/// Reads FILE's lines on a thread of their own, so that a part can be committed while the
/// input waits. Lines are handed over in bunches, and whenever the input has nothing more
/// buffered (the next read could wait).
fn read_ahead(name: &str) -> Result<Lines, Failure> {
    let mut input = open_input(name)?;
    let (send, receive) = sync_channel(READ_AHEAD_HANDOVERS);
    thread::Builder::new()
        .name("aggrelog-read".into())
        .spawn(move || {
            let mut bunch = Vec::with_capacity(LINES_PER_HANDOVER);
            loop {
                let mut line = String::new();
                let read = input.read_line(&mut line);
                let end = matches!(read, Ok(0) | Err(_));
                match read {
                    Ok(0) => {}
                    Ok(_) => {
                        let content = line.trim_end_matches(['\n', '\r']).len();
                        line.truncate(content);
                        bunch.push(Ok(line));
                    }
                    Err(e) => bunch.push(Err(e)),
                }
                let full = bunch.len() >= LINES_PER_HANDOVER || input.buffer().is_empty();
                if (full || end) && !bunch.is_empty() && send.send(mem::take(&mut bunch)).is_err() {
                    return;
                }
                if end {
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
    let index = u32::try_from(part.lines.len())
        .ok()
        .and_then(|at| part.first_index.checked_add(at))
        .ok_or_else(|| format!("more than {} deltas in one file", u32::MAX))?;
    delta
        .push_to(&mut part.batch, index)
        .map_err(|e| e.to_string())?;
    part.lines.push(line_no);
    Ok(())
}

/// Commits the part (if it holds anything), prints `{"batch":"FILE:FIRST-LAST","deltas":N}`
/// and starts the next part, its deltas named `batch_name`, where this one ended.
fn commit(db: &Db, name: &str, batch_name: &str, part: &mut Part) -> Result<usize, Failure> {
    let (Some(&first), Some(&last)) = (part.lines.first(), part.lines.last()) else {
        return Ok(0);
    };
    let receipt = db
        .write(&part.batch)
        .map_err(|e| rejection(name, |p| line_at(&part.lines, p), e))?;
    emit(json!({"batch": format!("{name}:{first}-{last}"), "deltas": receipt.deltas}))?;
    let next = u64::from(part.first_index) + part.lines.len() as u64;
    let next = u32::try_from(next)
        .map_err(|_| format!("{name}:{last}: more than {} deltas in one file", u32::MAX))?;
    *part = Part::new(next, batch_name)?;
    Ok(receipt.deltas)
}

/// The line of a part's delta `position` (0 when unknown).
fn line_at(lines: &[u64], position: u32) -> u64 {
    lines.get(position as usize).copied().unwrap_or(0)
}
