//! [`Replay`]: every delta in log order, each frame's CRC verified.
//!
//! Two ways to read it: as an iterator of owned [`ReplayedDelta`]s (convenient: one id string
//! and body vector per delta), or batch by batch with [`Replay::next_batch`], which lends each
//! batch's deltas as [`LoggedDelta`]s borrowed from the mapped segment: no copy and no allocation
//! per record (a compressed batch is decompressed into one reused buffer).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::decode::Decoded;
use crate::error::{Error, Result};
use crate::model::DeltaKind;
use crate::options::RecoveryMode;
use crate::storage::ReadView;
use crate::wal::batch::{decompress_payload_into, BatchDecoder, Checksums, DeltaRecord};
use crate::wal::format::{
    RecordType, FLAG_TRAILER, FLAG_ZSTD, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::wal::fragments::{FragmentError, FragmentReader};
use crate::wal::frame::{DamagedRange, FrameScanner, ScanEvent};
use crate::wal::records::{decode_batch_commit_body, FragmentRef};
use crate::wal::trailer::NameSpan;
use crate::wal::{Log, RecordLocation};

/// One delta as stored, with where it sits in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedDelta {
    /// The batch record holding the delta.
    pub location: RecordLocation,
    /// Index of the delta within its batch.
    pub position: u32,
    /// Aggregate id.
    pub aggregate: String,
    /// Upstream sequence number.
    pub seq: u64,
    /// Patch or delete.
    pub kind: DeltaKind,
    /// Encoded body (the model's binary form; empty for a delete).
    pub body: Vec<u8>,
}

/// Totals of a replay so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ReplayTotals {
    /// Segments opened.
    pub segments: u64,
    /// Batch records read.
    pub batches: u64,
    /// Deltas yielded.
    pub deltas: u64,
    /// Segment bytes walked (headers, frames and skipped damage).
    pub bytes: u64,
    /// Damaged bytes skipped (SkipCorrupt only).
    pub skipped_bytes: u64,
    /// State and seal records passed over (they hold no deltas).
    pub other_records: u64,
}

/// One delta of a [`ReplayedBatch`], borrowed from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedDelta<'a> {
    /// Index of the delta within its batch.
    pub position: u32,
    /// Aggregate id.
    pub aggregate: &'a str,
    /// Upstream sequence number.
    pub seq: u64,
    /// Patch or delete.
    pub kind: DeltaKind,
    /// Encoded body (the model's binary form; empty for a delete).
    pub body: &'a [u8],
}

impl LoggedDelta<'_> {
    /// An owned copy of this delta of the batch record at `location`.
    pub fn to_owned_at(&self, location: RecordLocation) -> ReplayedDelta {
        ReplayedDelta {
            location,
            position: self.position,
            aggregate: self.aggregate.to_owned(),
            seq: self.seq,
            kind: self.kind,
            body: self.body.to_vec(),
        }
    }
}

/// One batch record lent by [`Replay::next_batch`]; its frame CRC was verified.
pub struct ReplayedBatch<'a> {
    /// Where the batch record starts.
    pub location: RecordLocation,
    path: &'a std::path::Path,
    payload: &'a [u8],
    /// The frame's flags (which optional parts the payload has).
    flags: u8,
}

impl<'a> ReplayedBatch<'a> {
    /// The segment file holding the batch record.
    pub fn path(&self) -> &'a std::path::Path {
        self.path
    }

    /// Number of deltas the batch holds.
    pub fn len(&self) -> usize {
        // The declared count, if it can fit in the payload (else `deltas` reports the damage).
        BatchDecoder::of_frame(self.payload, self.flags, Checksums::CoveredByFrame)
            .map_or(0, |decoder| decoder.remaining() as usize)
    }

    /// Whether the batch holds no delta.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The upstream batches its deltas belong to (`Batch::name`), each with the index of its
    /// first delta in this record and how many follow; empty for an unnamed batch. A trailer
    /// that does not decode is a corruption error naming the segment file and frame offset.
    pub fn names(&self) -> Result<Vec<NameSpan<'a>>> {
        let decoder = BatchDecoder::of_frame(self.payload, self.flags, Checksums::CoveredByFrame);
        let trailer = decoder
            .and_then(|d| d.trailer())
            .map_err(|error| Error::corruption(self.path, self.location.offset, error.reason))?;
        Ok(trailer.names)
    }

    /// Whether the payload ends with a trailer (source ranges, name spans).
    pub(crate) fn has_trailer(&self) -> bool {
        self.flags & FLAG_TRAILER != 0
    }

    /// The delta records with their payload offsets, decoded whole: for the crate's scans of
    /// names. Damage is a corruption error at the frame.
    pub(crate) fn delta_records(&self) -> Result<Vec<DeltaRecord<'a>>> {
        let decoded = BatchDecoder::of_frame(self.payload, self.flags, Checksums::CoveredByFrame)
            .and_then(|d| d.collect::<Decoded<Vec<_>>>());
        decoded.map_err(|error| Error::corruption(self.path, self.location.offset, error.reason))
    }

    /// The deltas in batch order. The frame CRC covers every byte of them; a record whose
    /// structure is malformed anyway (lengths, kind, UTF-8) is a corruption error naming the
    /// segment file and the frame offset, and ends the batch.
    pub fn deltas(&self) -> BatchDeltas<'a> {
        let batch = BatchDecoder::of_frame(self.payload, self.flags, Checksums::CoveredByFrame);
        BatchDeltas {
            batch,
            path: self.path,
            location: self.location,
        }
    }
}

/// Iterator over the deltas of a [`ReplayedBatch`].
pub struct BatchDeltas<'a> {
    batch: Decoded<BatchDecoder<'a>>,
    path: &'a std::path::Path,
    location: RecordLocation,
}

impl<'a> Iterator for BatchDeltas<'a> {
    type Item = Result<LoggedDelta<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let record = match &mut self.batch {
            Ok(decoder) => decoder.next()?,
            Err(error) => Err(error.clone()),
        };
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                // Nothing after a malformed record can be trusted.
                self.batch = Ok(BatchDecoder::exhausted());
                return Some(Err(Error::corruption(
                    self.path,
                    self.location.offset,
                    error.reason,
                )));
            }
        };
        Some(Ok(LoggedDelta {
            position: record.position,
            aggregate: record.aggregate,
            seq: record.seq,
            kind: record.kind,
            body: record.body,
        }))
    }
}

/// The segment a replay is walking.
struct Cursor {
    id: u64,
    path: PathBuf,
    view: ReadView,
    /// Next frame offset.
    offset: usize,
    /// End of the segment as committed when the replay started.
    end: usize,
}

/// Iterator returned by [`Db::replay`](crate::Db::replay).
pub struct Replay {
    /// Every segment to walk, mapped when the replay was created (a mapping outlives the
    /// deletion of its file, so compaction cannot pull a segment from under a replay).
    segments: VecDeque<(u64, PathBuf, Result<ReadView>, u64)>,
    from: RecordLocation,
    mode: RecoveryMode,
    current: Option<Cursor>,
    /// Reused decompression buffer.
    scratch: Vec<u8>,
    /// Owned deltas of the last batch, for the iterator.
    pending: VecDeque<ReplayedDelta>,
    failed: bool,
    totals: ReplayTotals,
    /// The thread checking frames ahead of the reader, if one was started.
    checker: Option<Checker>,
    log: Arc<Log>,
    /// Every segment's view, by id, for reading the fragments of spanning batches.
    views: BTreeMap<u64, ReadView>,
    /// Fragments of the spanning batch being replayed, still to yield.
    spanning: VecDeque<FragmentRef>,
}

/// One step of walking a segment, as the frame checks found it.
enum Checked {
    /// A frame whose header and CRC checked out, at `offset..end` of the segment.
    Frame {
        offset: u64,
        end: u64,
        record_type: RecordType,
        flags: u8,
    },
    /// Damaged bytes.
    Damage(DamagedRange),
    /// The segment is done.
    SegmentEnd,
}

impl Checked {
    fn from_scan(event: ScanEvent<'_>) -> Checked {
        match event {
            ScanEvent::Frame(frame) => Checked::Frame {
                offset: frame.offset,
                end: frame.end(),
                record_type: frame.header.record_type,
                flags: frame.header.flags,
            },
            ScanEvent::Damage(damage) => Checked::Damage(damage),
        }
    }
}

/// Replays of at least this many bytes check frames on a second thread.
const CHECK_AHEAD_FROM_BYTES: u64 = 4 << 20;

/// Checks every frame's header and CRC on its own thread, ahead of the reader, and sends what
/// it found in log order (in chunks, over a bounded channel): the reader then only parses the
/// batches. Checking includes the first touch of every page, which costs about as much as the
/// CRC itself, so this takes most of a replay's cost to the other core.
struct Checker {
    found: Receiver<Vec<Checked>>,
    ready: VecDeque<Checked>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The checker sends what it found once it covers this many bytes (or [`CHECKED_CHUNK`]
/// events): small enough that the reader follows within a few hundred kilobytes, while the
/// pages are still in the cache.
const CHECKED_CHUNK_BYTES: u64 = 256 << 10;

/// Events per chunk sent by the checker at most.
const CHECKED_CHUNK: usize = 64;

/// Chunks in flight between the checker and the reader.
const CHECKED_CHUNKS_AHEAD: usize = 4;

impl Checker {
    /// Starts checking `segments`: (id, view, start, end), in order.
    fn start(segments: Vec<(u64, Option<ReadView>, usize, usize)>) -> Option<Checker> {
        let (sender, found) = sync_channel(CHECKED_CHUNKS_AHEAD);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("aggrelog-replay-check".into())
            .spawn(move || check_segments(&segments, &sender, &stopping))
            .ok()?;
        Some(Checker {
            found,
            ready: VecDeque::new(),
            stop,
            thread: Some(thread),
        })
    }

    /// The next event; `None` if the thread is gone (it stops only when told to).
    fn next(&mut self) -> Option<Checked> {
        if self.ready.is_empty() {
            self.ready.extend(self.found.recv().ok()?);
        }
        self.ready.pop_front()
    }
}

/// The checker thread: scans each segment and sends the events.
fn check_segments(
    segments: &[(u64, Option<ReadView>, usize, usize)],
    sender: &SyncSender<Vec<Checked>>,
    stop: &AtomicBool,
) {
    for (id, view, start, end) in segments {
        let mut chunk = Vec::with_capacity(CHECKED_CHUNK);
        let mut chunk_start = *start as u64;
        if let Some(view) = view {
            for event in FrameScanner::new(&view[..*end], *id, *start) {
                let event_end = match &event {
                    ScanEvent::Frame(frame) => frame.end(),
                    ScanEvent::Damage(damage) => damage.offset + damage.bytes,
                };
                chunk.push(Checked::from_scan(event));
                if chunk.len() == CHECKED_CHUNK || event_end - chunk_start >= CHECKED_CHUNK_BYTES {
                    chunk_start = event_end;
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHECKED_CHUNK));
                    if stop.load(Ordering::Relaxed) || sender.send(full).is_err() {
                        return;
                    }
                }
            }
        }
        chunk.push(Checked::SegmentEnd);
        if stop.load(Ordering::Relaxed) || sender.send(chunk).is_err() {
            return;
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a send in progress, then wait for the thread.
        while self.found.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where the next batch's payload is, found by [`Replay::find_batch`].
enum Found {
    /// At `start..end` of the current segment's view; the frame's flags.
    Mapped(RecordLocation, usize, usize, u8),
    /// In the scratch buffer (decompressed); the frame's flags.
    Scratch(RecordLocation, u8),
    /// The log is exhausted.
    End,
}

impl Replay {
    pub(crate) fn new(log: &Arc<Log>, from: RecordLocation, mode: RecoveryMode) -> Self {
        let segments: VecDeque<_> = log
            .segments_for_pass(from.segment)
            .into_iter()
            .map(|(id, path, len, view)| (id, path, view, len))
            .collect();
        let to_check: Vec<_> = segments
            .iter()
            .map(|(id, _, view, len)| {
                let view = view.as_ref().ok().cloned();
                let end = view.as_ref().map_or(0, |v| (*len as usize).min(v.len()));
                (*id, view, Self::start_offset(from, *id).min(end), end)
            })
            .collect();
        let bytes: usize = to_check.iter().map(|(_, _, start, end)| end - start).sum();
        let checker = if bytes as u64 >= CHECK_AHEAD_FROM_BYTES {
            Checker::start(to_check)
        } else {
            None
        };
        let views = segments
            .iter()
            .filter_map(|(id, _, view, _)| Some((*id, view.as_ref().ok()?.clone())))
            .collect();
        Replay {
            log: Arc::clone(log),
            views,
            spanning: VecDeque::new(),
            segments,
            from,
            mode,
            current: None,
            scratch: Vec::new(),
            pending: VecDeque::new(),
            failed: false,
            totals: ReplayTotals::default(),
            checker,
        }
    }

    /// Where walking segment `id` starts.
    fn start_offset(from: RecordLocation, id: u64) -> usize {
        if id == from.segment {
            (from.offset as usize).max(SEGMENT_HEADER_BYTES)
        } else {
            SEGMENT_HEADER_BYTES
        }
    }

    /// What has been read so far.
    pub fn totals(&self) -> ReplayTotals {
        self.totals
    }

    /// The next batch record, its deltas borrowed from the log; `None` at the end. After an
    /// error the replay is over. Deltas read through the batch are counted in
    /// [`ReplayTotals::deltas`] by their number in the batch.
    pub fn next_batch(&mut self) -> Option<Result<ReplayedBatch<'_>>> {
        if self.failed {
            return None;
        }
        let found = match self.find_batch() {
            Ok(found) => found,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let (location, payload, flags) = match found {
            Found::End => return None,
            Found::Scratch(location, flags) => (location, &self.scratch[..], flags),
            Found::Mapped(location, start, end, flags) => {
                let cursor = self.current.as_ref()?;
                (location, &cursor.view[start..end], flags)
            }
        };
        let path = match &self.current {
            Some(cursor) => cursor.path.as_path(),
            None => return None,
        };
        let batch = ReplayedBatch {
            location,
            path,
            payload,
            flags,
        };
        self.totals.deltas += batch.len() as u64;
        Some(Ok(batch))
    }

    /// Advances to the next batch record, decompressing it into `scratch` if needed.
    fn find_batch(&mut self) -> Result<Found> {
        loop {
            if let Some(fragment) = self.spanning.pop_front() {
                match self.read_fragment(&fragment)? {
                    Some(found) => return Ok(found),
                    None => continue,
                }
            }
            if self.current.is_none() && !self.open_next_segment()? {
                return Ok(Found::End);
            }
            if let Some(found) = self.read_frame()? {
                return Ok(found);
            }
        }
    }

    /// Opens the next segment; false when there is none.
    fn open_next_segment(&mut self) -> Result<bool> {
        let Some((id, path, view, len)) = self.segments.pop_front() else {
            return Ok(false);
        };
        let view = view?;
        let end = (len as usize).min(view.len());
        let offset = Self::start_offset(self.from, id);
        self.totals.segments += 1;
        self.totals.bytes += offset.min(end) as u64;
        self.current = Some(Cursor {
            id,
            path,
            view,
            offset,
            end,
        });
        Ok(true)
    }

    /// The next frame check of the current segment: from the checker thread, or done here.
    fn next_checked(&mut self) -> Checked {
        if let Some(checker) = &mut self.checker {
            // The thread stops only when told to; if it is gone, check here from now on.
            if let Some(checked) = checker.next() {
                return checked;
            }
            self.checker = None;
        }
        let Some(cursor) = &self.current else {
            return Checked::SegmentEnd;
        };
        FrameScanner::new(&cursor.view[..cursor.end], cursor.id, cursor.offset)
            .next()
            .map_or(Checked::SegmentEnd, Checked::from_scan)
    }

    /// Reads the next frame of the current segment: a batch found, `None` after any other
    /// record or damage skipped (the segment is closed at its end).
    fn read_frame(&mut self) -> Result<Option<Found>> {
        let checked = self.next_checked();
        let Some(cursor) = &mut self.current else {
            return Ok(None);
        };
        match checked {
            Checked::SegmentEnd => {
                self.current = None;
                Ok(None)
            }
            Checked::Frame {
                offset,
                end,
                record_type,
                flags,
            } => {
                let location = RecordLocation {
                    segment: cursor.id,
                    offset,
                };
                cursor.offset = end as usize;
                self.totals.bytes += end - offset;
                if record_type == RecordType::BatchCommit {
                    let view = cursor.view.clone();
                    let body = &view[offset as usize + FRAME_HEADER_BYTES..end as usize];
                    let path = cursor.path.clone();
                    self.begin_spanning(body, location, &path)?;
                    return Ok(None);
                }
                if record_type != RecordType::Batch {
                    self.totals.other_records += 1;
                    return Ok(None);
                }
                self.totals.batches += 1;
                let body_start = offset as usize + FRAME_HEADER_BYTES;
                if flags & FLAG_ZSTD == 0 {
                    let found = Found::Mapped(location, body_start, cursor.offset, flags);
                    return Ok(Some(found));
                }
                let body = &cursor.view[body_start..cursor.offset];
                decompress_payload_into(body, &mut self.scratch)
                    .map_err(|error| Error::corruption(&cursor.path, offset, error.reason))?;
                Ok(Some(Found::Scratch(location, flags)))
            }
            Checked::Damage(damage) => {
                if self.mode == RecoveryMode::Strict {
                    return Err(Error::corruption(
                        &cursor.path,
                        damage.offset,
                        damage.reason,
                    ));
                }
                self.totals.bytes += damage.bytes;
                self.totals.skipped_bytes += damage.bytes;
                cursor.offset = (damage.offset + damage.bytes) as usize;
                Ok(None)
            }
        }
    }

    /// Verifies the spanning batch whose batch commit at `location` of `path` has `body`, then
    /// queues its fragments: they are replayed here, at the batch commit (DESIGN.md, section
    /// 3.6). A damaged one fails the replay (Strict) or is skipped whole (SkipCorrupt).
    fn begin_spanning(&mut self, body: &[u8], location: RecordLocation, path: &Path) -> Result<()> {
        let mut reader =
            FragmentReader::new(&*self.log.storage, &self.log.wal_dir).with_views(&self.views);
        let verified = decode_batch_commit_body(body, location)
            .map_err(FragmentError::from)
            .and_then(|commit| Ok((reader.verify(&commit, &|_| None)?, commit)));
        match verified {
            Ok((_, commit)) => {
                self.totals.batches += 1;
                self.spanning = commit.fragments.into();
                Ok(())
            }
            Err(FragmentError::Io(e)) => Err(e),
            Err(FragmentError::Damaged(e)) if self.mode == RecoveryMode::Strict => {
                Err(Error::corruption(path, location.offset, e.reason))
            }
            Err(FragmentError::Damaged(_)) => {
                self.totals.skipped_bytes += (FRAME_HEADER_BYTES + body.len()) as u64;
                Ok(())
            }
        }
    }

    /// The payload of `fragment`, copied (or decompressed) into the scratch buffer; `None` when
    /// compaction reclaimed its segment.
    fn read_fragment(&mut self, fragment: &FragmentRef) -> Result<Option<Found>> {
        let mut reader =
            FragmentReader::new(&*self.log.storage, &self.log.wal_dir).with_views(&self.views);
        let at = fragment.location;
        let damaged = |reason: String| {
            Error::corruption(self.log.segment_path(at.segment), at.offset, reason)
        };
        let found = reader.frame(fragment).map_err(|e| match e {
            FragmentError::Damaged(e) => damaged(e.reason),
            FragmentError::Io(e) => e,
        });
        let Some(frame) = found? else {
            return Ok(None);
        };
        let flags = frame.header.flags;
        if flags & FLAG_ZSTD == 0 {
            self.scratch.clear();
            self.scratch.extend_from_slice(frame.body);
        } else {
            decompress_payload_into(frame.body, &mut self.scratch)
                .map_err(|e| damaged(e.reason))?;
        }
        Ok(Some(Found::Scratch(at, flags)))
    }

    /// Fills `pending` with the next batch's deltas, owned; false at the end.
    fn fill_pending(&mut self) -> Result<bool> {
        let Some(batch) = self.next_batch() else {
            return Ok(false);
        };
        let batch = batch?;
        let location = batch.location;
        let mut owned = Vec::with_capacity(batch.len());
        for delta in batch.deltas() {
            owned.push(delta?.to_owned_at(location));
        }
        self.pending.extend(owned);
        Ok(true)
    }
}

impl Iterator for Replay {
    type Item = Result<ReplayedDelta>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(delta) = self.pending.pop_front() {
                return Some(Ok(delta));
            }
            match self.fill_pending() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
