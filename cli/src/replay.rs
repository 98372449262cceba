//! `aggrelog replay`: every delta in log order in the input format (JSON Lines), and a summary
//! on stderr.
//!
//! The log is opened without its index ([`aggrelog::LogReader`]): the open scans the log and
//! nothing else. Writing the JSON is the rest of the work, so it runs on every core: the reading
//! thread copies runs of batches out of the mapped log into chunks, formatting threads turn
//! chunks into lines, and the reading thread writes the lines to stdout in chunk order. The
//! output is the sequential one byte for byte; a batch's lines are written whole or not at all,
//! and everything before a failing batch is written before the failure is reported.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::thread;
use std::time::Instant;

use aggrelog::jsonl::write_line;
use aggrelog::{DeltaKind, RecordLocation, Replay, ReplayedBatch};

use crate::open::{open_log_reader, DbArgs};
use crate::output::Failure;

/// Bytes of copied ids and bodies after which a chunk is handed to a formatting thread.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks queued per formatting thread: bounds the memory in flight.
const QUEUED_PER_THREAD: usize = 2;

/// `replay`: every delta in log order, then the summary.
pub fn replay(args: &DbArgs) -> Result<(), Failure> {
    let log = open_log_reader(args)?;
    let started = Instant::now();
    let mut replay = log.replay(RecordLocation::START);
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    format_in_parallel(&mut replay, threads, &mut out)?;
    out.flush()?;
    let totals = replay.totals();
    let folded = log.folded_aggregates();
    let unreplayed = if folded == 0 {
        String::new()
    } else {
        format!(
            "; {folded} aggregates are folded into state records, whose deltas are not replayed \
             (replay | ingest would not rebuild them)"
        )
    };
    eprintln!(
        "replayed {} deltas in {} batches from {} segments ({} bytes) in {} ms{unreplayed}",
        totals.deltas,
        totals.batches,
        totals.segments,
        totals.bytes,
        started.elapsed().as_millis()
    );
    Ok(())
}

/// Reads every batch of `replay` into chunks, formats them on `threads` threads and writes the
/// lines to `out` in log order. A read error is returned after every line before it is written.
fn format_in_parallel(
    replay: &mut Replay,
    threads: usize,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let (work, queue) = mpsc::sync_channel::<(u64, Chunk)>(threads * QUEUED_PER_THREAD);
    let (formatted, results) = mpsc::channel::<(u64, Formatted)>();
    let queue = Mutex::new(queue);
    thread::scope(|scope| {
        for _ in 0..threads {
            let (queue, formatted) = (&queue, formatted.clone());
            scope.spawn(move || format_chunks(queue, &formatted));
        }
        drop(formatted);
        let mut lines = InOrder::new(out, results);
        let mut number = 0;
        let read = read_chunks(replay, |chunk| {
            work.send((number, chunk))
                .map_err(|_| Failure::new("a formatting thread stopped".to_owned()))?;
            number += 1;
            lines.write_ready()
        });
        // The threads stop once the queue is drained; then every result has arrived.
        drop(work);
        if lines.stopped {
            return read; // a chunk failed or stdout did: that error is the outcome
        }
        lines.write_all(number)?;
        read
    })
}

/// Formats the chunks of `queue` until it is closed.
fn format_chunks(
    queue: &Mutex<Receiver<(u64, Chunk)>>,
    formatted: &mpsc::Sender<(u64, Formatted)>,
) {
    loop {
        let next = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok((number, chunk)) = next else { return };
        if formatted.send((number, chunk.format())).is_err() {
            return;
        }
    }
}

/// Hands `send` every batch of `replay` in chunks of about [`CHUNK_BYTES`]. On a read error,
/// the chunk holding the batches before it is sent first.
fn read_chunks(
    replay: &mut Replay,
    mut send: impl FnMut(Chunk) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut chunk = Chunk::default();
    while let Some(batch) = replay.next_batch() {
        let added = batch.map_err(Failure::from).and_then(|b| chunk.add(&b));
        if let Err(error) = added {
            send(chunk)?;
            return Err(error);
        }
        if chunk.bytes.len() >= CHUNK_BYTES {
            send(std::mem::take(&mut chunk))?;
        }
    }
    if chunk.batches.is_empty() {
        return Ok(());
    }
    send(chunk)
}

/// One batch of a chunk: where it is in the log (its segment file in [`Chunk::files`]), and its
/// deltas in [`Chunk::deltas`].
struct CopiedBatch {
    location: RecordLocation,
    deltas: Range<usize>,
}

/// One delta of a chunk: its id in [`Chunk::ids`], its body in [`Chunk::bytes`].
struct CopiedDelta {
    seq: u64,
    kind: DeltaKind,
    id: Range<usize>,
    body: Range<usize>,
}

/// Batches copied out of the mapped log for a formatting thread.
#[derive(Default)]
struct Chunk {
    /// The segment file of each segment the chunk's batches lie in, for errors.
    files: BTreeMap<u64, PathBuf>,
    batches: Vec<CopiedBatch>,
    deltas: Vec<CopiedDelta>,
    ids: String,
    bytes: Vec<u8>,
}

/// The lines of a chunk and, if a batch failed, its error (the lines stop before that batch).
struct Formatted {
    lines: Vec<u8>,
    error: Option<String>,
}

impl Chunk {
    /// Copies every delta of `batch`, or none of them if one is damaged.
    fn add(&mut self, batch: &ReplayedBatch<'_>) -> Result<(), Failure> {
        let (first, ids, bytes) = (self.deltas.len(), self.ids.len(), self.bytes.len());
        for delta in batch.deltas() {
            let delta = match delta {
                Ok(delta) => delta,
                Err(error) => {
                    self.deltas.truncate(first);
                    self.ids.truncate(ids);
                    self.bytes.truncate(bytes);
                    return Err(error.into());
                }
            };
            let id = self.ids.len()..self.ids.len() + delta.aggregate.len();
            self.ids.push_str(delta.aggregate);
            let body = self.bytes.len()..self.bytes.len() + delta.body.len();
            self.bytes.extend_from_slice(delta.body);
            self.deltas.push(CopiedDelta {
                seq: delta.seq,
                kind: delta.kind,
                id,
                body,
            });
        }
        let segment = batch.location.segment;
        self.files
            .entry(segment)
            .or_insert_with(|| batch.path().to_path_buf());
        self.batches.push(CopiedBatch {
            location: batch.location,
            deltas: first..self.deltas.len(),
        });
        Ok(())
    }

    /// The chunk's lines, batch by batch.
    fn format(&self) -> Formatted {
        let mut lines = Vec::with_capacity(2 * (self.bytes.len() + self.ids.len()));
        for batch in &self.batches {
            let start = lines.len();
            for delta in &self.deltas[batch.deltas.clone()] {
                let id = &self.ids[delta.id.clone()];
                let body = &self.bytes[delta.body.clone()];
                if let Err(e) = write_line(&mut lines, id, delta.seq, delta.kind, body) {
                    lines.truncate(start);
                    let at = batch.location;
                    let file = self.files.get(&at.segment).map(|p| p.display().to_string());
                    let file = file.unwrap_or_else(|| format!("segment {}", at.segment));
                    let error = format!("{file} offset {}: undecodable patch: {e}", at.offset);
                    return Formatted {
                        lines,
                        error: Some(error),
                    };
                }
                lines.push(b'\n');
            }
        }
        Formatted { lines, error: None }
    }
}

/// Writes formatted chunks in their order, whatever the order they arrive in.
struct InOrder<'o, W: Write> {
    out: &'o mut W,
    results: Receiver<(u64, Formatted)>,
    next: u64,
    early: BTreeMap<u64, Formatted>,
    /// A chunk's error or a write error was returned: nothing more is written.
    stopped: bool,
}

impl<'o, W: Write> InOrder<'o, W> {
    fn new(out: &'o mut W, results: Receiver<(u64, Formatted)>) -> Self {
        InOrder {
            out,
            results,
            next: 0,
            early: BTreeMap::new(),
            stopped: false,
        }
    }

    /// Writes what has arrived and is next in order, without waiting.
    fn write_ready(&mut self) -> Result<(), Failure> {
        while let Ok((number, formatted)) = self.results.try_recv() {
            self.early.insert(number, formatted);
        }
        self.write_early()
    }

    /// Waits for chunks up to number `count` (exclusive) and writes them.
    fn write_all(&mut self, count: u64) -> Result<(), Failure> {
        self.write_early()?;
        while self.next < count {
            let Ok((number, formatted)) = self.results.recv() else {
                return Err(Failure::new("a formatting thread stopped".to_owned()));
            };
            self.early.insert(number, formatted);
            self.write_early()?;
        }
        Ok(())
    }

    fn write_early(&mut self) -> Result<(), Failure> {
        let written = self.write_early_unchecked();
        self.stopped |= written.is_err();
        written
    }

    fn write_early_unchecked(&mut self) -> Result<(), Failure> {
        while let Some(formatted) = self.early.remove(&self.next) {
            self.out.write_all(&formatted.lines)?;
            self.next += 1;
            if let Some(error) = formatted.error {
                return Err(Failure::new(error));
            }
        }
        Ok(())
    }
}
