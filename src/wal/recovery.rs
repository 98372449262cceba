//! Scanning the whole log on open (and for `check`), applying the recovery rules of DESIGN.md:
//!
//! - damage at the end of a segment with no valid record after it anywhere in the log (later
//!   segments, if any, hold no frame) is a *torn tail*: an append that never completed. Open
//!   truncates it away and reports the bytes dropped; a last segment too short for its header
//!   is removed;
//! - any other damage (a valid record follows it somewhere) is *corruption*:
//!   [`RecoveryMode::Strict`] fails naming file and offset, [`RecoveryMode::SkipCorrupt`] skips the
//!   damaged bytes and reports them;
//! - a frame whose CRC holds but whose batch does not decode is corruption too, and its batch is
//!   skipped whole, never half-applied.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::batch_record::{batch_payload, decode_batch, decode_fragment, BatchRecord};
use super::format::RecordLocation;
use super::format::{
    decode_commit_body, decode_segment_header, RecordType, OLDEST_READ_VERSION,
    SEGMENT_HEADER_BYTES,
};
use super::fragments::{FragmentError, FragmentReader, FragmentShape};
use super::frame::{DamagedRange, Frame, FrameScanner, ScanEvent};
use super::records::{
    decode_batch_commit_body, decode_seal_body, decode_state_body, BatchCommitBody, FragmentRef,
    StateBody,
};
use crate::decode::{DecodeError, Decoded};
use crate::error::{Error, Result};
use crate::layout::{list_segments, segment_path};
use crate::options::RecoveryMode;
use crate::sources::{decode_sources_record, SourcePosition};
use crate::storage::Storage;
use crate::wal::admin_records::{
    decode_references_record, decode_retraction_record, RetractionRecord,
};

/// What the scan does with damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanPolicy {
    /// Opening the database with this recovery mode.
    Open(RecoveryMode),
    /// Verifying only: report everything, change nothing.
    Check,
}

/// A damaged range of a segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Damage {
    /// The segment file.
    pub file: PathBuf,
    /// Offset of the first damaged byte.
    pub offset: u64,
    /// Length of the damaged range in bytes.
    pub bytes: u64,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} bytes damaged: {}",
            self.file.display(),
            self.offset,
            self.bytes,
            self.reason
        )
    }
}

/// One valid record found by the scan.
pub enum LogRecord<'a> {
    /// A batch of deltas.
    Batch(BatchRecord<'a>),
    /// A compaction state record.
    State {
        /// Where it starts.
        location: RecordLocation,
        /// Frame bytes (header included).
        frame_bytes: u64,
        /// The decoded body.
        body: StateBody<'a>,
    },
    /// A seal.
    Seal {
        /// The sealed seq.
        seal: u64,
    },
    /// A sources record: source positions to raise the engine's to.
    Sources(&'a [SourcePosition]),
    /// A retraction record: a batch name's register to raise.
    Retraction(RetractionRecord),
    /// A references record: pointers declared as reference fields.
    References(Vec<String>),
    /// The fragments of one spanning batch follow as [`LogRecord::Batch`]es, up to
    /// [`LogRecord::SpanningEnd`]: apply them as one batch.
    SpanningStart,
    /// The last fragment of a spanning batch was handed on.
    SpanningEnd,
}

/// A segment as found by the scan.
#[derive(Clone, Debug)]
pub struct SegmentExtent {
    /// Segment id.
    pub id: u64,
    /// Its file.
    pub path: PathBuf,
    /// Length of the file as found.
    pub file_len: u64,
    /// Whether its last valid frame is the end-of-segment record.
    pub sealed: bool,
    /// Its format version (the oldest one when its header is damaged).
    pub version: u32,
}

/// The outcome of a whole-log scan.
#[derive(Debug, Default)]
pub struct LogScan {
    /// Segments in id order (a segment whose header was torn is left out).
    pub segments: Vec<SegmentExtent>,
    /// The torn tail, if the last append did not complete: truncate `file` at `offset`.
    pub torn: Option<Damage>,
    /// A last segment file too short to hold its header (its creation did not complete):
    /// remove it.
    pub incomplete_segment: Option<Damage>,
    /// Corruption skipped (SkipCorrupt) or found (Check).
    pub damage: Vec<Damage>,
    /// Valid batch records.
    pub batches: u64,
    /// Deltas in valid batch records.
    pub deltas: u64,
}

struct Scanner<'s> {
    storage: &'s dyn Storage,
    wal_dir: &'s Path,
    policy: ScanPolicy,
    /// Fragments this scan verified, by location: their frame CRC and shape.
    fragments: HashMap<(u64, u64), (u32, FragmentShape)>,
    /// A segment a spanning batch lists could not be read: the scan fails with it.
    io_error: Option<Error>,
    scan: LogScan,
    on_record: &'s mut dyn FnMut(&LogRecord<'_>),
    /// Damage running to the end of a segment: a torn tail unless a valid record follows.
    pending_tail: Option<Damage>,
    /// A segment that ends without its end record: fine if it is the log's last non-empty
    /// segment (the one being appended to), a truncation if a valid record follows.
    pending_unsealed: Option<Damage>,
}

impl Scanner<'_> {
    /// More damage follows a pending tail: it was not the log's end (conservatively).
    fn resolve_pending_tail(&mut self) -> Result<()> {
        match self.pending_tail.take() {
            Some(damage) => self.corruption(damage),
            None => Ok(()),
        }
    }

    /// A valid record follows: a pending tail was not a torn tail, and a segment that ended
    /// without its end record was truncated.
    fn resolve_pending_as_corruption(&mut self) -> Result<()> {
        if let Some(damage) = self.pending_unsealed.take() {
            self.corruption(damage)?;
        }
        self.resolve_pending_tail()
    }

    /// Records corruption, or fails in Strict mode.
    fn corruption(&mut self, damage: Damage) -> Result<()> {
        if self.policy == ScanPolicy::Open(RecoveryMode::Strict) {
            return Err(Error::corruption(
                &damage.file,
                damage.offset,
                format!(
                    "{} ({} bytes; valid data follows, so this is not a torn tail)",
                    damage.reason, damage.bytes
                ),
            ));
        }
        self.scan.damage.push(damage);
        Ok(())
    }

    fn segment(
        &mut self,
        storage: &dyn Storage,
        path: &Path,
        id: u64,
        is_last: bool,
        start: Option<u64>,
    ) -> Result<()> {
        let file_len = storage.file_len(path).map_err(|e| Error::io(path, e))?;
        let view = storage
            .read_view(path, file_len)
            .map_err(|e| Error::io(path, e))?;
        let damage = |offset: u64, bytes: u64, reason: String| Damage {
            file: path.to_path_buf(),
            offset,
            bytes,
            reason,
        };
        // A damaged header hides the version: judge by the oldest rule, under which any valid
        // frame after damage proves it (never truncate on a guess).
        let mut version = OLDEST_READ_VERSION;
        match decode_segment_header(&view) {
            Ok(found) if found.id == id => {
                // Rotation syncs a segment's end record before creating the next: a later
                // segment with a valid header means an earlier segment that does not end with
                // its end record (torn or cut short) was damaged, not left by a crash.
                self.resolve_pending_as_corruption()?;
                version = found.version;
            }
            Ok(found) => {
                self.resolve_pending_tail()?;
                let reason = format!("header names segment {}", found.id);
                self.corruption(damage(0, SEGMENT_HEADER_BYTES as u64, reason))?
            }
            Err(_) if is_last && file_len <= SEGMENT_HEADER_BYTES as u64 => {
                let reason = "segment header incomplete".to_string();
                self.scan.incomplete_segment = Some(damage(0, file_len, reason));
                return Ok(());
            }
            Err(error) => {
                self.resolve_pending_tail()?;
                let bytes = file_len.min(SEGMENT_HEADER_BYTES as u64);
                self.corruption(damage(0, bytes, error.reason))?
            }
        }
        let Some(start) = start else {
            // Covered by a checkpoint: only the header is checked here.
            self.push_extent(id, path, file_len, version);
            return Ok(());
        };
        // A file shorter than its header (already reported) has nothing more to scan; a
        // checkpoint position past the end was rejected before the scan.
        let start = start.max(SEGMENT_HEADER_BYTES as u64).min(file_len);
        let mut valid_len = start;
        let mut sealed = false;
        let mut saw_frame = false;
        for event in FrameScanner::new(&view, id, start as usize) {
            match event {
                ScanEvent::Frame(frame) => {
                    self.resolve_pending_as_corruption()?;
                    valid_len = frame.end();
                    sealed = frame.header.record_type == RecordType::End;
                    saw_frame = true;
                    if let Err(error) = self.frame(id, &frame) {
                        let bytes = frame.end() - frame.offset;
                        self.corruption(damage(frame.offset, bytes, error.reason))?;
                    }
                    if let Some(error) = self.io_error.take() {
                        return Err(error);
                    }
                }
                ScanEvent::Damage(d) if unfinished_append(&view, id, version, is_last, &d) => {
                    // Nothing after the damage proves it durable: unsynced bytes that persisted
                    // in any order, up to the end of the segment (DESIGN.md, section 5, rule 1).
                    self.resolve_pending_tail()?;
                    debug_assert!(d.offset <= file_len, "damage inside the file");
                    let bytes = file_len - d.offset;
                    self.pending_tail = Some(damage(d.offset, bytes, d.reason));
                    sealed = true;
                    break;
                }
                ScanEvent::Damage(d) => {
                    valid_len = d.offset + d.bytes;
                    self.corruption(damage(d.offset, d.bytes, d.reason))?;
                }
            }
        }
        // Only frames scanned here tell whether the segment ends with its end record (a scan
        // from a checkpoint position may start after it).
        if !sealed && saw_frame {
            let reason = "the segment ends without its end record: it was truncated".to_string();
            self.pending_unsealed = Some(damage(valid_len, 0, reason));
        }
        let ends_with_end_record = sealed && self.pending_tail.is_none();
        self.push_extent(id, path, file_len, version);
        if let Some(extent) = self.scan.segments.last_mut() {
            extent.sealed = ends_with_end_record;
        }
        Ok(())
    }

    fn push_extent(&mut self, id: u64, path: &Path, file_len: u64, version: u32) {
        self.scan.segments.push(SegmentExtent {
            id,
            path: path.to_path_buf(),
            file_len,
            sealed: false,
            version,
        });
    }

    /// Decodes one valid frame and hands it on; fails when the body is bad.
    fn frame(&mut self, segment: u64, frame: &Frame<'_>) -> Decoded<()> {
        let location = RecordLocation {
            segment,
            offset: frame.offset,
        };
        match frame.header.record_type {
            RecordType::Batch => {
                let payload = batch_payload(frame)?;
                let batch = decode_batch(&payload, frame.header.flags)?;
                let record = BatchRecord {
                    segment,
                    offset: frame.offset,
                    deltas: &batch.deltas,
                    sources: &batch.sources,
                    names: &batch.names,
                };
                (self.on_record)(&LogRecord::Batch(record));
                self.scan.batches += 1;
                self.scan.deltas += batch.deltas.len() as u64;
            }
            RecordType::Fragment => {
                let payload = batch_payload(frame)?;
                let fragment = decode_fragment(&payload, frame.header.flags)?;
                let place = (segment, frame.offset);
                let count = fragment.deltas.len() as u32;
                let verified = (frame.header.crc, (fragment.first_position, count));
                self.fragments.insert(place, verified);
            }
            RecordType::Sources => {
                let positions = decode_sources_record(frame.body)?;
                (self.on_record)(&LogRecord::Sources(&positions));
            }
            RecordType::Retraction => {
                let record = decode_retraction_record(frame.body)?;
                (self.on_record)(&LogRecord::Retraction(record));
            }
            RecordType::References => {
                let pointers = decode_references_record(frame.body)?;
                (self.on_record)(&LogRecord::References(pointers));
            }
            RecordType::BatchCommit => {
                let commit = decode_batch_commit_body(frame.body, location)?;
                self.spanning_batch(&commit)?;
            }
            RecordType::State => {
                let body = decode_state_body(frame.body)?;
                let frame_bytes = frame.end() - frame.offset;
                (self.on_record)(&LogRecord::State {
                    location,
                    frame_bytes,
                    body,
                });
            }
            RecordType::Seal => {
                let seal = decode_seal_body(frame.body)?;
                (self.on_record)(&LogRecord::Seal { seal });
            }
            RecordType::End => {
                if frame.body.len() != 8 {
                    let reason = format!("end record of {} bytes", frame.body.len());
                    return Err(DecodeError::new(0, reason));
                }
            }
            RecordType::Commit => {
                let durable_through = decode_commit_body(frame.body)?;
                if durable_through > frame.offset {
                    let reason = format!(
                        "commit record claims {durable_through} durable bytes before its own offset"
                    );
                    return Err(DecodeError::new(0, reason));
                }
            }
        }
        Ok(())
    }
}

impl Scanner<'_> {
    /// A spanning batch that could not be read: damage to report, or an I/O error that ends the
    /// scan (kept until the frame's caller returns it).
    fn fragment_failure(&mut self, error: FragmentError) -> Decoded<()> {
        match error {
            FragmentError::Damaged(e) => Err(e),
            FragmentError::Io(e) => {
                self.io_error = Some(e);
                Ok(())
            }
        }
    }

    /// Verifies the fragments of a spanning batch, then hands them on as one batch (DESIGN.md,
    /// section 3.6).
    fn spanning_batch(&mut self, commit: &BatchCommitBody) -> Decoded<()> {
        let mut reader = FragmentReader::new(self.storage, self.wal_dir);
        let fragments = &self.fragments;
        let known = |f: &FragmentRef| {
            let place = (f.location.segment, f.location.offset);
            let (crc, shape) = fragments.get(&place).copied()?;
            (crc == f.crc).then_some(shape)
        };
        let verified = match reader.verify(commit, &known) {
            Ok(verified) => verified,
            Err(e) => return self.fragment_failure(e),
        };
        (self.on_record)(&LogRecord::SpanningStart);
        let on_record = &mut self.on_record;
        let applied = reader.apply(commit, &mut |batch| on_record(&LogRecord::Batch(*batch)));
        (self.on_record)(&LogRecord::SpanningEnd);
        if let Err(e) = applied {
            return self.fragment_failure(e);
        }
        self.scan.batches += 1;
        self.scan.deltas += verified.deltas;
        Ok(())
    }
}

/// Whether damage `d` of segment `id` is what an unfinished append leaves (section 5, rule 1):
/// nothing valid follows it, or it lies in the last segment and nothing after it proves it
/// durable.
fn unfinished_append(view: &[u8], id: u64, version: u32, is_last: bool, d: &DamagedRange) -> bool {
    let resume = d.offset + d.bytes;
    !d.followed_by_valid || (is_last && !proven_durable(view, id, version, d.offset, resume))
}

/// Whether a record after damage at `damage_offset` of the last segment proves those bytes were
/// durable before the crash, scanning the segment from `resume`: in a version 1 segment any
/// valid frame does; in later versions only a commit record with `durable_through >
/// damage_offset` (a write issued after those bytes were synced). Earlier segments need no
/// proof: rotation synced them before it created the next one.
fn proven_durable(view: &[u8], id: u64, version: u32, damage_offset: u64, resume: u64) -> bool {
    if version < 2 {
        return true;
    }
    FrameScanner::new(view, id, resume as usize).any(|event| match event {
        ScanEvent::Frame(frame) => {
            frame.header.record_type == RecordType::Commit
                && decode_commit_body(frame.body).is_ok_and(|durable| durable > damage_offset)
        }
        ScanEvent::Damage(_) => false,
    })
}

/// Scans the segments in `wal_dir` in order from `from` (segments before it, covered by a
/// checkpoint, only have their header checked), calling `on_record` for each valid record, and
/// classifies damage by `policy`. Changes nothing on disk: the caller truncates a torn tail.
pub fn scan_log(
    storage: &dyn Storage,
    wal_dir: &Path,
    policy: ScanPolicy,
    from: RecordLocation,
    on_record: &mut dyn FnMut(&LogRecord<'_>),
) -> Result<LogScan> {
    let ids = list_segments(storage, wal_dir)?;
    scan_segments(storage, wal_dir, &ids, policy, from, on_record)
}

/// [`scan_log`] of the segments from `from.segment` on only: a reader catching up has read
/// (and mapped) the earlier ones already, which a writer's compaction may delete meanwhile.
pub fn scan_log_after(
    storage: &dyn Storage,
    wal_dir: &Path,
    policy: ScanPolicy,
    from: RecordLocation,
    on_record: &mut dyn FnMut(&LogRecord<'_>),
) -> Result<LogScan> {
    let mut ids = list_segments(storage, wal_dir)?;
    ids.retain(|&id| id >= from.segment);
    scan_segments(storage, wal_dir, &ids, policy, from, on_record)
}

fn scan_segments(
    storage: &dyn Storage,
    wal_dir: &Path,
    ids: &[u64],
    policy: ScanPolicy,
    from: RecordLocation,
    on_record: &mut dyn FnMut(&LogRecord<'_>),
) -> Result<LogScan> {
    let mut scanner = Scanner {
        storage,
        wal_dir,
        policy,
        fragments: HashMap::new(),
        io_error: None,
        scan: LogScan::default(),
        on_record,
        pending_tail: None,
        pending_unsealed: None,
    };
    for (n, &id) in ids.iter().enumerate() {
        let path = segment_path(wal_dir, id);
        let start = match id.cmp(&from.segment) {
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Equal => Some(from.offset),
            std::cmp::Ordering::Greater => Some(0),
        };
        scanner.segment(storage, &path, id, n + 1 == ids.len(), start)?;
    }
    scanner.scan.torn = scanner.pending_tail.take();
    Ok(scanner.scan)
}
