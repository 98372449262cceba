//! Reading single deltas back from the log for folds (`get`, `scan`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::decode::{DecodeError, Decoded};
use crate::error::{Error, Result};
use crate::index::{DeltaRef, StateRef};
use crate::locks::lock;
use crate::storage::ReadView;
use crate::wal::batch::{
    decode_delta_at, decompress_payload, BatchDecoder, Checksums, DeltaRecord,
};
use crate::wal::format::{RecordType, FLAG_ZSTD, FRAME_HEADER_BYTES};
use crate::wal::frame::{frame_at, frame_header_at};
use crate::wal::records::{decode_state_body, StateBody};
use crate::wal::{Log, RecordLocation};

/// Reads deltas by [`DeltaRef`], keeping the last segment view and the last decompressed batch so
/// that consecutive reads from the same place cost no syscall or decompression.
///
/// Every delta read is verified by its own CRC32 (the frame CRC was verified when the record was
/// appended or recovered) and checked against the index entry that pointed at it.
pub struct DeltaReader<'a> {
    log: &'a Log,
    view: Option<(u64, ReadView)>,
    decompressed: Option<(RecordLocation, Vec<u8>)>,
    mapping: Mapping<'a>,
}

/// How a [`DeltaReader`] maps the segments it reads.
#[derive(Clone, Copy)]
enum Mapping<'a> {
    /// Through the log's kept views ([`Log::view`]): point reads.
    Kept,
    /// Through the views of one pass ([`PassViews`]): scan, materialize and compaction.
    Pass(&'a PassViews),
}

/// The segment views of one pass over much of the log (scan, materialize, compaction): each segment
/// is mapped once for the whole pass, however many partitions or rounds read it and on however
/// many threads, and released when the pass drops this, so that the resident set falls back
/// once the pass is over instead of growing with the log. Mapping a segment again for each
/// partition faulted its pages in again each time: at 8M deltas (400k aggregates, partitions of
/// 4,096) materialize ran at 0.81M deltas/s that way.
#[derive(Default)]
pub struct PassViews(Mutex<BTreeMap<u64, ReadView>>);

impl PassViews {
    /// The pass's view of `segment`, covering at least `end` bytes.
    fn view(&self, log: &Log, segment: u64, end: u64) -> Result<ReadView> {
        let mut views = lock(&self.0);
        if let Some(view) = views.get(&segment).filter(|v| v.len() as u64 >= end) {
            return Ok(view.clone());
        }
        let view = log.view_for_pass(segment, end)?;
        views.insert(segment, view.clone());
        Ok(view)
    }
}

impl<'a> DeltaReader<'a> {
    /// A reader over `log` for point reads.
    pub fn new(log: &'a Log) -> Self {
        DeltaReader {
            log,
            view: None,
            decompressed: None,
            mapping: Mapping::Kept,
        }
    }

    /// A reader for one part of the pass `views` over `log` (scan, materialize, compaction).
    pub fn in_pass(log: &'a Log, views: &'a PassViews) -> Self {
        DeltaReader {
            mapping: Mapping::Pass(views),
            ..DeltaReader::new(log)
        }
    }

    /// A corruption error at the record `delta_ref` points into.
    pub fn corruption(&self, delta_ref: &DeltaRef, reason: impl Into<String>) -> Error {
        Error::corruption(
            self.log.segment_path(u64::from(delta_ref.segment)),
            delta_ref.record_offset as u64,
            reason,
        )
    }

    /// Makes `self.view` a view of `segment` covering at least `end` bytes.
    fn ensure_view(&mut self, segment: u64, end: u64) -> Result<()> {
        let stale = match &self.view {
            Some((id, view)) => *id != segment || (view.len() as u64) < end,
            None => true,
        };
        if stale {
            // The old view goes first (when the log does not keep it, this unmaps it).
            self.view = None;
            let view = match self.mapping {
                Mapping::Kept => self.log.view(segment, end)?,
                Mapping::Pass(views) => views.view(self.log, segment, end)?,
            };
            self.view = Some((segment, view));
        }
        Ok(())
    }

    /// Reads the state record `state_ref` of `aggregate`, verifying its frame CRC.
    pub fn read_state(&mut self, aggregate: &str, state_ref: &StateRef) -> Result<StateBody<'_>> {
        let segment = u64::from(state_ref.segment);
        let offset = u64::from(state_ref.record_offset);
        let log = self.log;
        let bad = |reason: String| Error::corruption(log.segment_path(segment), offset, reason);
        let undecodable = |error: DecodeError| bad(error.reason);
        let end = offset + u64::from(state_ref.len);
        let committed = log.segment_len(segment).unwrap_or(0);
        if end > committed {
            return Err(bad(format!(
                "the state record runs past the committed end {committed}"
            )));
        }
        self.ensure_view(segment, end)?;
        let Some((_, view)) = &self.view else {
            return Err(bad("no segment view".into()));
        };
        let frame = frame_at(view, segment, offset as usize).map_err(undecodable)?;
        if frame.header.record_type != RecordType::State {
            return Err(bad(format!(
                "expected a state record, found {:?}",
                frame.header.record_type
            )));
        }
        let body = decode_state_body(frame.body).map_err(undecodable)?;
        if body.aggregate != aggregate {
            return Err(bad(format!(
                "index entry for {aggregate:?} points at the state of {:?}",
                body.aggregate
            )));
        }
        Ok(body)
    }

    /// Touches the frame header and the first byte of every delta in `deltas` before any of
    /// them is read, so that their cache and TLB misses overlap (the loads are independent)
    /// instead of stalling the fold one delta at a time. Verifies nothing and fails on nothing:
    /// a place that no view covers is passed over, and [`read`](Self::read) checks everything.
    pub fn prefetch(&mut self, deltas: &[DeltaRef]) {
        let mut touched = 0u8;
        for delta in deltas {
            let header = delta.record_offset as usize;
            let first = header + FRAME_HEADER_BYTES + delta.delta_offset as usize;
            if self
                .ensure_view(u64::from(delta.segment), header as u64 + 1)
                .is_err()
            {
                continue;
            }
            if let Some((_, view)) = &self.view {
                let byte = |at: usize| view.get(at).copied().unwrap_or_default();
                touched ^= byte(header) ^ byte(first);
            }
        }
        std::hint::black_box(touched);
    }

    /// Reads and verifies the delta `delta_ref` of `aggregate`.
    pub fn read(&mut self, aggregate: &str, delta_ref: &DeltaRef) -> Result<DeltaRecord<'_>> {
        let log = self.log;
        let payload = self.payload(delta_ref)?;
        decode_delta_at(payload, delta_ref.delta_offset as usize, delta_ref.position)
            .and_then(|(record, _)| check_matches(record, aggregate, delta_ref))
            .map_err(|error| {
                Error::corruption(
                    log.segment_path(u64::from(delta_ref.segment)),
                    delta_ref.record_offset as u64,
                    error.reason,
                )
            })
    }

    /// The batch payload of the record `delta_ref` points into, decompressed if stored so.
    fn payload(&mut self, delta_ref: &DeltaRef) -> Result<&[u8]> {
        self.frame_payload(delta_ref).map(|(_, payload)| payload)
    }

    /// The name of the upstream batch the delta `delta_ref` belongs to (its frame's name
    /// spans, `Batch::name`), or `None` for an unnamed delta. Verifies the frame's CRC (the
    /// only one that covers the names) and decodes its records up to the delta to know its
    /// index: for audit reads, not for the fold.
    pub fn batch_name(&mut self, delta_ref: &DeltaRef) -> Result<Option<String>> {
        self.verify_frame(delta_ref)?;
        let (flags, payload) = self.frame_payload(delta_ref)?;
        let named =
            BatchDecoder::of_frame(payload, flags, Checksums::CoveredByFrame).and_then(|decoder| {
                let spans = decoder.trailer()?.names;
                if spans.is_empty() {
                    return Ok(None);
                }
                let mut index = None;
                for (at, record) in decoder.enumerate() {
                    if record?.offset == delta_ref.delta_offset {
                        index = Some(at as u32);
                        break;
                    }
                }
                let Some(index) = index else {
                    return Err(DecodeError::new(0, "the delta is not in its frame"));
                };
                let span = spans.into_iter().find(|s| s.holds(index));
                Ok(span.map(|s| s.name.to_owned()))
            });
        named.map_err(|error| self.corruption(delta_ref, error.reason))
    }

    /// Verifies the CRC of the whole frame `delta_ref` points into.
    fn verify_frame(&mut self, delta_ref: &DeltaRef) -> Result<()> {
        self.frame_payload(delta_ref)?;
        let segment = u64::from(delta_ref.segment);
        let verified = match &self.view {
            Some((_, view)) => frame_at(view, segment, delta_ref.record_offset as usize),
            None => Err(DecodeError::new(0, "no segment view")),
        };
        verified
            .map(|_| ())
            .map_err(|error| self.corruption(delta_ref, error.reason))
    }

    /// The frame flags and the batch payload of the record `delta_ref` points into,
    /// decompressed if stored so.
    fn frame_payload(&mut self, delta_ref: &DeltaRef) -> Result<(u8, &[u8])> {
        let location = RecordLocation {
            segment: u64::from(delta_ref.segment),
            offset: u64::from(delta_ref.record_offset),
        };
        let body_start = location.offset + FRAME_HEADER_BYTES as u64;
        self.ensure_view(location.segment, body_start)?;
        let header = match &self.view {
            Some((_, view)) => frame_header_at(view, location.offset as usize),
            None => Err(DecodeError::new(0, "no segment view")),
        }
        .map_err(|error| self.corruption(delta_ref, error.reason))?;
        let body = body_start as usize..body_start as usize + header.length as usize;
        let committed = self.log.segment_len(location.segment).unwrap_or(0);
        if body.end as u64 > committed {
            let reason = format!(
                "a frame of {} bytes runs past the committed end {committed} of its segment",
                header.length
            );
            return Err(self.corruption(delta_ref, reason));
        }
        self.ensure_view(location.segment, body.end as u64)?;
        let Some((_, view)) = &self.view else {
            return Err(self.corruption(delta_ref, "no segment view"));
        };
        if header.flags & FLAG_ZSTD == 0 {
            return Ok((header.flags, &view[body]));
        }
        let cached = matches!(&self.decompressed, Some((at, _)) if *at == location);
        if !cached {
            let payload = decompress_payload(&view[body])
                .map_err(|error| self.corruption(delta_ref, error.reason))?;
            self.decompressed = Some((location, payload));
        }
        match &self.decompressed {
            Some((_, payload)) => Ok((header.flags, payload)),
            None => Err(self.corruption(delta_ref, "decompressed batch vanished")),
        }
    }
}

/// Checks that the delta found is the one the index meant.
fn check_matches<'p>(
    record: DeltaRecord<'p>,
    aggregate: &str,
    delta_ref: &DeltaRef,
) -> Decoded<DeltaRecord<'p>> {
    let same = record.aggregate == aggregate
        && record.seq == delta_ref.seq
        && record.checksum == delta_ref.checksum;
    if !same {
        let reason = format!(
            "index entry for {aggregate:?} seq {} points at a delta of {:?} seq {}",
            delta_ref.seq, record.aggregate, record.seq
        );
        return Err(DecodeError::new(record.offset as usize, reason));
    }
    Ok(record)
}
