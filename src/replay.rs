//! [`Replay`]: every delta in log order, each frame's CRC verified.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::DeltaKind;
use crate::options::RecoveryMode;
use crate::storage::ReadView;
use crate::wal::format::{RecordType, SEGMENT_HEADER_BYTES};
use crate::wal::recovery::{batch_payload, decode_batch};
use crate::wal::scan::{FrameScanner, ScanEvent};
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

/// Iterator returned by [`Db::replay`](crate::Db::replay).
pub struct Replay {
    /// Every segment to walk, mapped when the replay was created (a mapping outlives the
    /// deletion of its file, so compaction cannot pull a segment from under a replay).
    segments: VecDeque<(u64, PathBuf, Result<ReadView>, u64)>,
    from: RecordLocation,
    mode: RecoveryMode,
    /// The segment being walked: id, path, view, next offset, end of the snapshot.
    current: Option<(u64, PathBuf, ReadView, usize, usize)>,
    pending: VecDeque<ReplayedDelta>,
    failed: bool,
    totals: ReplayTotals,
}

impl Replay {
    pub(crate) fn new(log: &Arc<Log>, from: RecordLocation, mode: RecoveryMode) -> Self {
        let segments = log
            .segments()
            .into_iter()
            .filter(|(id, _, _)| *id >= from.segment)
            .map(|(id, path, len)| (id, path, log.view(id, len), len))
            .collect();
        Replay {
            segments,
            from,
            mode,
            current: None,
            pending: VecDeque::new(),
            failed: false,
            totals: ReplayTotals::default(),
        }
    }

    /// What has been read so far.
    pub fn totals(&self) -> ReplayTotals {
        self.totals
    }

    /// Opens the next segment; false when there is none.
    fn open_next_segment(&mut self) -> Result<bool> {
        let Some((id, path, view, len)) = self.segments.pop_front() else {
            return Ok(false);
        };
        let view = view?;
        let len = (len as usize).min(view.len());
        let start = if id == self.from.segment {
            (self.from.offset as usize).max(SEGMENT_HEADER_BYTES)
        } else {
            SEGMENT_HEADER_BYTES
        };
        self.totals.segments += 1;
        self.totals.bytes += start.min(len) as u64;
        self.current = Some((id, path, view, start, len));
        Ok(true)
    }

    /// Reads the next frame of the current segment into `pending`; false at its end.
    fn read_frame(&mut self) -> Result<bool> {
        let Some((id, path, view, offset, end)) = &mut self.current else {
            return Ok(false);
        };
        let Some(event) = FrameScanner::new(&view[..*end], *id, *offset).next() else {
            return Ok(false);
        };
        match event {
            ScanEvent::Frame(frame) if frame.header.record_type != RecordType::Batch => {
                self.totals.other_records += 1;
                self.totals.bytes += frame.end() - frame.offset;
                *offset = frame.end() as usize;
            }
            ScanEvent::Frame(frame) => {
                let location = RecordLocation {
                    segment: *id,
                    offset: frame.offset,
                };
                let bad = |reason| Error::corruption(&*path, frame.offset, reason);
                let payload = batch_payload(&frame).map_err(bad)?;
                let deltas = decode_batch(&payload).map_err(bad)?;
                for (position, delta) in deltas.iter().enumerate() {
                    self.pending.push_back(ReplayedDelta {
                        location,
                        position: position as u32,
                        aggregate: delta.aggregate.to_owned(),
                        seq: delta.seq,
                        kind: delta.kind,
                        body: delta.body.to_vec(),
                    });
                }
                self.totals.batches += 1;
                self.totals.bytes += frame.end() - frame.offset;
                *offset = frame.end() as usize;
            }
            ScanEvent::Damage(damage) => {
                if self.mode == RecoveryMode::Strict {
                    return Err(Error::corruption(&*path, damage.offset, damage.reason));
                }
                self.totals.bytes += damage.bytes;
                self.totals.skipped_bytes += damage.bytes;
                *offset = (damage.offset + damage.bytes) as usize;
            }
        }
        Ok(true)
    }

    fn advance(&mut self) -> Result<bool> {
        loop {
            if self.current.is_none() && !self.open_next_segment()? {
                return Ok(false);
            }
            if self.read_frame()? {
                return Ok(true);
            }
            self.current = None;
        }
    }
}

impl Iterator for Replay {
    type Item = Result<ReplayedDelta>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(delta) = self.pending.pop_front() {
                self.totals.deltas += 1;
                return Some(Ok(delta));
            }
            if self.failed {
                return None;
            }
            match self.advance() {
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
