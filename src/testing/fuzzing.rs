//! Bodies of the fuzz targets in `fuzz/fuzz_targets/`, as plain functions so that
//! `tests/fuzz_corpus.rs` replays the committed corpora through exactly the same code.
//!
//! Every function accepts any bytes. Engine calls may fail with a typed [`Error`](crate::Error);
//! a panic is a bug, and so is a broken invariant that the functions assert (a canonical format
//! that does not round-trip, a fold that is not idempotent, a state that changes across a clean
//! close and reopen).
//!
//! # `open_arbitrary` input
//!
//! ```text
//! byte 0          bits 0-1: segment files - 1 (1..=4); bits 2-3: checkpoint files (0..=2,
//!                 3 means 2); bits 4-7: id of the first segment - 1
//! per segment     mode byte (SEG_*), length u16 LE
//! per checkpoint  mode byte (CKPT_ENVELOPE, bits 1-7: number - 1), length u16 LE
//! contents        checkpoint files, then segment files; the last segment takes every byte left
//! ```
//! A segment in [`SEG_RECORDS`] mode is a *record script*: records `ctrl: u8, len: u16 LE, body`,
//! each written as a well-formed frame (right CRC, right offset) of the type `ctrl & 3`
//! ([`REC_RAW`] writes the body unframed, or with [`REC_DELTAS`] as the body of a commit record),
//! so that body decoders see fuzz bytes behind valid
//! CRCs. With [`REC_DELTAS`] a batch body is a *delta script* (`id_len: u8, id, seq: u16 LE,
//! kind: u8` (bit 0 = delete), and for a patch `body_len: u16 LE, body`) re-encoded with correct
//! per-delta CRCs. With [`REC_SPANNING`] a batch is a fragment (positioned after the first of its
//! batch: a delta script continues the positions, a raw payload must carry its first position)
//! and a seal a batch commit listing the fragments since the last one, so that spanning batches
//! reach the open path whole or damaged.
//!
//! # `decode_frame` input
//!
//! ```text
//! byte 0  selector: bit 0 = wrap the rest in a segment header and one valid frame; bits 1-2 =
//!         its record type (0 and 1 batch, 2 state, 3 seal); bit 3 = set the zstd flag;
//!         bit 4 = zstd-compress the rest first (and set the flag)
//! byte 1  where the frame scanner starts when not wrapping
//! byte 2  segment id
//! rest    fed to every decoder as well
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::sim_storage::SimStorage;
use crate::checkpoint::format as checkpoint;
use crate::layout::{checkpoint_file_name, segment_file_name, CHECKPOINT_DIR, WAL_DIR};
use crate::model::{binary, DeltaKind, DeltaView, MergePatch, Model, PatchState, Stamp};
use crate::sources::{decode_sources_record, encode_sources_record};
use crate::varint;
use crate::wal::admin_records::{
    decode_references_record, decode_retraction_record, encode_references_record,
    encode_retraction_record,
};
use crate::wal::batch::{compress_payload, decompress_payload, validate_aggregate_id};
use crate::wal::batch::{BatchDecoder, BatchEncoder, Checksums};
use crate::wal::batch_record::{batch_payload, decode_batch, DecodedBatch};
use crate::wal::format::{encode_segment_header, write_frame, RecordType, FLAG_ZSTD};
use crate::wal::format::{
    FLAG_POSITIONED, FLAG_POSITIONS, FLAG_TRAILER, FORMAT_VERSION, OLDEST_READ_VERSION,
};
use crate::wal::frame::{frame_at, Frame, FrameScanner, ScanEvent};
use crate::wal::records::{decode_seal_body, decode_state_body, encode_state_body};
use crate::wal::records::{encode_batch_commit_body, BatchCommitBody, FragmentRef};
use crate::{AggregateState, Batch, Db, Options, RecordLocation, RecoveryMode};

/// Segment mode: prepend a valid header for the file's id.
pub const SEG_VALID_HEADER: u8 = 1;
/// Segment mode: the contents are a record script.
pub const SEG_RECORDS: u8 = 2;
/// Segment mode: leave a gap of one id before this segment.
pub const SEG_GAP: u8 = 4;
/// Segment mode: the valid header says format version 1 (no commit records) instead of the
/// current one.
pub const SEG_VERSION_1: u8 = 8;
/// Checkpoint mode: wrap the contents in a valid magic, version, header length and CRC.
pub const CKPT_ENVELOPE: u8 = 1;
/// Record type: the body is written as is, without a frame.
pub const REC_RAW: u8 = 0;
/// Record type: a batch frame.
pub const REC_BATCH: u8 = 1;
/// Record type: a state frame.
pub const REC_STATE: u8 = 2;
/// Record type: a seal frame.
pub const REC_SEAL: u8 = 3;
/// Record flag: a batch body is a delta script; on a [`REC_RAW`] record, write the body as the
/// body of a commit record instead.
pub const REC_DELTAS: u8 = 4;
/// Record flag: compress the batch payload and set the zstd flag.
pub const REC_COMPRESS: u8 = 8;
/// Record flag: set the zstd flag without compressing.
pub const REC_ZSTD_FLAG: u8 = 16;
/// Record flag: a batch is written as a fragment of a spanning batch; a seal as a batch commit
/// listing every fragment written before it (the body's first byte damages it: bit 0 the first
/// fragment's CRC, bit 1 the delta count).
pub const REC_SPANNING: u8 = 32;

const DB_DIR: &str = "/db";

/// Opens a database directory built from `data` (see the module docs) with
/// [`RecoveryMode::Strict`] and [`RecoveryMode::SkipCorrupt`], and exercises every read path,
/// a write, compaction, a checkpoint and a reopen.
pub fn open_arbitrary(data: &[u8]) {
    let layout = Layout::parse(data);
    for mode in [RecoveryMode::Strict, RecoveryMode::SkipCorrupt] {
        exercise(&layout.storage(), mode);
    }
}

/// Feeds `data` (see the module docs) to every decoder of the on-disk formats and of the model,
/// asserting round trips where decoding succeeds.
pub fn decode_frame(data: &[u8]) {
    let mut input = Input(data);
    let (selector, start, segment_id) = (input.byte(), input.byte(), u64::from(input.byte()));
    let rest = input.0;
    let (segment, start) = if selector & 1 == 1 {
        (wrap_in_frame(selector, segment_id, rest), 32)
    } else {
        (rest.to_vec(), usize::from(start))
    };
    scan_segment(&segment, segment_id, start);
    decode_payloads(rest);
    decode_records(rest);
    decode_model(rest);
    decode_varints(rest);
}

/// Runs the crash-simulation scenario decoded from `data`; panics if it violates an invariant.
pub fn ops_with_crash(data: &[u8]) {
    let scenario = super::simulation::scenario_from_bytes(data);
    if let Err(e) = super::simulation::run(&scenario) {
        panic!("invariant violated: {e}")
    }
}

/// Encodes an `open_arbitrary` input from `(mode, contents)` of 1-4 segment files and 0-2
/// checkpoint files (a checkpoint's mode holds its number - 1 in bits 1-7). Segment ids start at
/// `first_id` (1..=16). Panics without a segment.
pub fn encode_open_input(
    first_id: u64,
    segments: &[(u8, &[u8])],
    checkpoints: &[(u8, &[u8])],
) -> Vec<u8> {
    assert!(!segments.is_empty(), "an input holds at least one segment");
    let segments = &segments[..segments.len().min(4)];
    let checkpoints = &checkpoints[..checkpoints.len().min(2)];
    let first = first_id.clamp(1, 16) - 1;
    let head = (segments.len() - 1) as u8 | (checkpoints.len() as u8) << 2 | (first as u8) << 4;
    let clamp = |bytes: &[u8]| bytes.len().min(usize::from(u16::MAX));
    let mut out = vec![head];
    for (mode, bytes) in segments.iter().chain(checkpoints) {
        out.push(*mode);
        out.extend_from_slice(&(clamp(bytes) as u16).to_le_bytes());
    }
    let (last, earlier) = segments.split_last().unwrap_or((&segments[0], &[]));
    for (_, bytes) in checkpoints.iter().chain(earlier) {
        out.extend_from_slice(&bytes[..clamp(bytes)]);
    }
    out.extend_from_slice(last.1);
    out
}

/// Appends one record of a record script.
pub fn encode_record(ctrl: u8, body: &[u8], out: &mut Vec<u8>) {
    let len = body.len().min(usize::from(u16::MAX));
    out.push(ctrl);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&body[..len]);
}

/// Appends one delta of a delta script (`id` at most 255 bytes, `body` ignored for a delete).
pub fn encode_delta(id: &str, seq: u16, kind: DeltaKind, body: &[u8], out: &mut Vec<u8>) {
    let id = &id.as_bytes()[..id.len().min(255)];
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(&seq.to_le_bytes());
    match kind {
        DeltaKind::Delete => out.push(1),
        DeltaKind::Patch => {
            let len = body.len().min(usize::from(u16::MAX));
            out.push(0);
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&body[..len]);
        }
    }
}

/// A cursor over fuzz bytes that yields zeros once they run out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        let bytes = self.take(2);
        u16::from_le_bytes([
            bytes.first().copied().unwrap_or(0),
            bytes.get(1).copied().unwrap_or(0),
        ])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }
}

/// The files of an `open_arbitrary` input: `(path, bytes)`.
struct Layout {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Layout {
    fn parse(data: &[u8]) -> Layout {
        let mut input = Input(data);
        let head = input.byte();
        let segments = usize::from(head & 3) + 1;
        let checkpoints = usize::from((head >> 2) & 3).min(2);
        let mut id = u64::from(head >> 4) + 1;
        let seg_heads: Vec<(u8, u16)> =
            (0..segments).map(|_| (input.byte(), input.u16())).collect();
        let ckpt_heads: Vec<(u8, u16)> = (0..checkpoints)
            .map(|_| (input.byte(), input.u16()))
            .collect();
        let mut files = Vec::new();
        let mut fragments = Vec::new();
        for (mode, len) in ckpt_heads {
            let name = checkpoint_file_name(u64::from(mode >> 1) + 1);
            let path = Path::new(DB_DIR).join(CHECKPOINT_DIR).join(name);
            files.push((path, checkpoint_file(mode, input.take(usize::from(len)))));
        }
        for (i, (mode, len)) in seg_heads.into_iter().enumerate() {
            id += u64::from(mode & SEG_GAP != 0);
            let len = if i + 1 == segments {
                usize::MAX
            } else {
                usize::from(len)
            };
            let path = Path::new(DB_DIR).join(WAL_DIR).join(segment_file_name(id));
            let contents = input.take(len);
            files.push((path, segment_file(id, mode, contents, &mut fragments)));
            id += 1;
        }
        Layout { files }
    }

    /// A fresh simulated disk holding the files.
    fn storage(&self) -> SimStorage {
        let storage = SimStorage::new(0);
        for (path, bytes) in &self.files {
            storage.write_file(path, bytes);
        }
        storage
    }
}

fn checkpoint_file(mode: u8, contents: &[u8]) -> Vec<u8> {
    if mode & CKPT_ENVELOPE == 0 {
        return contents.to_vec();
    }
    let mut out = b"AGGRCKPT".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&96u32.to_le_bytes());
    out.extend_from_slice(contents);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The bytes of segment `id` from its mode and contents; `fragments` holds the fragments written
/// by the record scripts so far (a batch commit lists them all).
fn segment_file(id: u64, mode: u8, contents: &[u8], fragments: &mut Vec<Written>) -> Vec<u8> {
    let mut out = Vec::new();
    if mode & SEG_VALID_HEADER != 0 {
        let version = if mode & SEG_VERSION_1 != 0 {
            OLDEST_READ_VERSION
        } else {
            FORMAT_VERSION
        };
        out.extend_from_slice(&encode_segment_header(id, version));
    }
    if mode & SEG_RECORDS == 0 {
        out.extend_from_slice(contents);
        return out;
    }
    let mut script = Input(contents);
    while !script.0.is_empty() {
        let ctrl = script.byte();
        let len = usize::from(script.u16());
        append_record(id, ctrl, script.take(len), &mut out, fragments);
    }
    out
}

/// A fragment a record script wrote, and the deltas its payload claims.
struct Written {
    fragment: FragmentRef,
    deltas: u64,
}

/// Appends one record of a record script to the segment bytes `out`.
fn append_record(id: u64, ctrl: u8, body: &[u8], out: &mut Vec<u8>, written: &mut Vec<Written>) {
    let spanning = ctrl & REC_SPANNING != 0;
    let record_type = match ctrl & 3 {
        REC_BATCH if spanning => RecordType::Fragment,
        REC_BATCH => RecordType::Batch,
        REC_STATE => RecordType::State,
        REC_SEAL if spanning => RecordType::BatchCommit,
        REC_SEAL => RecordType::Seal,
        _ if ctrl & REC_DELTAS != 0 => RecordType::Commit,
        _ => return out.extend_from_slice(body),
    };
    let mut body = body.to_vec();
    let batch_like = matches!(record_type, RecordType::Batch | RecordType::Fragment);
    // A fragment after the first of its batch continues its positions (and carries the first).
    let continues = record_type == RecordType::Fragment && !written.is_empty();
    let mut flags = if continues { FLAG_POSITIONED } else { 0 };
    if batch_like && ctrl & REC_DELTAS != 0 {
        let first_position: u64 = written.iter().map(|w| w.deltas).sum();
        let first_position = if continues { first_position as u32 } else { 0 };
        body = delta_script_payload(&body, first_position);
    }
    let deltas = BatchDecoder::of_frame(&body, flags, Checksums::CoveredByFrame)
        .map_or(0, |d| u64::from(d.remaining()));
    if batch_like && ctrl & REC_COMPRESS != 0 {
        body = compress_payload(&body, 1).unwrap_or(body);
        flags |= FLAG_ZSTD;
    }
    if ctrl & REC_ZSTD_FLAG != 0 {
        flags |= FLAG_ZSTD;
    }
    if record_type == RecordType::BatchCommit {
        body = batch_commit_of(written, body.first().copied().unwrap_or(0));
    }
    let offset = out.len() as u64;
    let crc = write_frame(out, id, offset, record_type, flags, &body);
    if record_type == RecordType::Fragment {
        let location = RecordLocation {
            segment: id,
            offset,
        };
        let fragment = FragmentRef { location, crc };
        written.push(Written { fragment, deltas });
    }
}

/// The body of a batch commit listing every fragment written so far (`damage` bit 0: the first
/// one's CRC is wrong; bit 1: the delta count is off by one).
fn batch_commit_of(written: &mut Vec<Written>, damage: u8) -> Vec<u8> {
    let mut commit = BatchCommitBody {
        deltas: written.iter().map(|w| w.deltas).sum(),
        fragments: written.drain(..).map(|w| w.fragment).collect(),
    };
    if let Some(first) = commit.fragments.first_mut() {
        first.crc ^= u32::from(damage & 1);
    }
    commit.deltas += u64::from(damage >> 1 & 1);
    encode_batch_commit_body(&commit)
}

/// A batch payload with correct per-delta CRCs from a delta script; invalid ids are skipped.
fn delta_script_payload(script: &[u8], first_position: u32) -> Vec<u8> {
    let mut input = Input(script);
    let mut encoder = BatchEncoder::starting_at(first_position);
    while !input.0.is_empty() {
        let id_len = usize::from(input.byte());
        let id = String::from_utf8_lossy(input.take(id_len)).into_owned();
        let seq = u64::from(input.u16());
        let (kind, body) = if input.byte() & 1 == 1 {
            (DeltaKind::Delete, &[][..])
        } else {
            let len = usize::from(input.u16());
            (DeltaKind::Patch, input.take(len))
        };
        if validate_aggregate_id(&id).is_ok() {
            encoder.push(&id, seq, kind, body);
        }
    }
    encoder.payload().to_vec()
}

/// Opens, reads everything, writes, compacts, checkpoints, closes and reopens.
fn exercise(storage: &SimStorage, mode: RecoveryMode) {
    let options = Options::default()
        .recovery(mode)
        .segment_size_bytes(4096)
        .background_compaction(false);
    let open = || {
        Db::open_with(
            DB_DIR,
            options.clone(),
            MergePatch,
            Arc::new(storage.clone()),
        )
    };
    let Ok(db) = open() else { return };
    let ids = read_everything(&db);
    let id = ids.first().map_or("a", String::as_str);
    let _ = probe_batch(id).map(|batch| db.write(&batch));
    let _ = db.compact();
    let _ = db.checkpoint();
    let before = snapshot(&db);
    if db.close().is_err() {
        return;
    }
    let db = open().unwrap_or_else(|e| panic!("reopen after a clean close failed: {e}"));
    let after = snapshot(&db);
    if let (Some(before), Some(after)) = (before, after) {
        assert!(before == after, "state changed across close and reopen");
    }
    read_everything(&db);
}

/// A late patch of an existing aggregate and a patch of a new one.
fn probe_batch(id: &str) -> crate::Result<Batch> {
    let mut batch = Batch::new();
    batch.patch(id, 1, &json!({"fuzz": {"probe": 1}}))?;
    batch.patch("fuzz-probe", 2, &json!({"k": [1, "x"]}))?;
    Ok(batch)
}

/// Every aggregate's state, or `None` if some read failed.
fn snapshot(db: &Db) -> Option<Vec<(String, AggregateState)>> {
    db.scan().collect::<crate::Result<Vec<_>>>().ok()
}

/// Scans, replays, reads a few aggregates and the stats; returns the ids the scan found.
fn read_everything(db: &Db) -> Vec<String> {
    let mut ids = Vec::new();
    for item in db.scan() {
        let Ok((id, _)) = item else { break };
        ids.push(id);
    }
    for delta in db.replay(RecordLocation::START) {
        if delta.is_err() {
            break;
        }
    }
    let long = "x".repeat(2000);
    for id in ids
        .iter()
        .take(4)
        .map(String::as_str)
        .chain(["a", "", &long])
    {
        let _ = db.get(id);
        let _ = db.get_as_of(id, 1);
    }
    let _ = db.stats();
    ids
}

/// A segment holding a valid header and one valid frame around `body`.
fn wrap_in_frame(selector: u8, segment_id: u64, body: &[u8]) -> Vec<u8> {
    let record_type = match (selector >> 1) & 3 {
        2 => RecordType::State,
        3 => RecordType::Seal,
        _ => RecordType::Batch,
    };
    let mut flags = if selector & 8 != 0 { FLAG_ZSTD } else { 0 };
    let mut body = body.to_vec();
    if selector & 16 != 0 {
        body = compress_payload(&body, 1).unwrap_or(body);
        flags = FLAG_ZSTD;
    }
    let mut segment = encode_segment_header(segment_id, FORMAT_VERSION).to_vec();
    write_frame(&mut segment, segment_id, 32, record_type, flags, &body);
    segment
}

/// Walks every frame of a segment and decodes each record body.
fn scan_segment(segment: &[u8], segment_id: u64, start: usize) {
    let _ = crate::wal::format::decode_segment_header(segment);
    let _ = frame_at(segment, segment_id, start);
    let mut events = 0;
    for event in FrameScanner::new(segment, segment_id, start) {
        events += 1;
        assert!(
            events <= segment.len(),
            "the frame scanner does not advance"
        );
        match event {
            ScanEvent::Frame(frame) => {
                assert!(frame.end() <= segment.len() as u64, "frame past the end");
                decode_frame_body(&frame);
            }
            ScanEvent::Damage(d) => {
                assert!(
                    d.offset + d.bytes <= segment.len() as u64,
                    "damage past the end"
                );
            }
        }
    }
}

fn decode_frame_body(frame: &Frame<'_>) {
    match frame.header.record_type {
        RecordType::Batch | RecordType::Fragment => {
            if let Ok(payload) = batch_payload(frame) {
                decode_payload(&payload);
            }
        }
        RecordType::BatchCommit => {
            let at = crate::wal::RecordLocation {
                segment: u64::MAX,
                offset: u64::MAX,
            };
            let _ = crate::wal::records::decode_batch_commit_body(frame.body, at);
        }
        RecordType::State => decode_state(frame.body),
        RecordType::Seal => {
            let _ = decode_seal_body(frame.body);
        }
        RecordType::Commit => {
            let _ = crate::wal::format::decode_commit_body(frame.body);
        }
        RecordType::Sources => decode_sources(frame.body),
        RecordType::Retraction | RecordType::References => decode_admin_records(frame.body),
        RecordType::End => {}
    }
}

/// Decodes a sources record body; one that decodes must re-encode to the same bytes.
fn decode_sources(bytes: &[u8]) {
    if let Ok(positions) = decode_sources_record(bytes) {
        let again = encode_sources_record(&positions);
        assert!(again == bytes, "sources record does not round-trip");
    }
}

/// Retraction and references record decoders: one that decodes must re-encode to the same
/// bytes.
fn decode_admin_records(bytes: &[u8]) {
    if let Ok(record) = decode_retraction_record(bytes) {
        let again = encode_retraction_record(&record);
        assert!(again == bytes, "retraction record does not round-trip");
    }
    if let Ok(pointers) = decode_references_record(bytes) {
        let again = encode_references_record(&pointers);
        assert!(again == bytes, "references record does not round-trip");
    }
}

/// Batch payload decoders, raw and after decompression.
fn decode_payloads(bytes: &[u8]) {
    decode_payload(bytes);
    if let Ok(payload) = decompress_payload(bytes) {
        let claimed = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        assert_eq!(Some(payload.len() as u32), claimed, "decompressed size");
        decode_payload(&payload);
    }
}

/// Decodes a batch payload both ways: structure only (as recovery and replay decode the payload
/// of a frame whose CRC they verified), and with every delta's CRC verified, in which case a
/// payload that decodes must re-encode to the same bytes.
fn decode_payload(payload: &[u8]) {
    if let Ok(batch) = decode_batch(payload, FLAG_POSITIONED) {
        let declared = BatchDecoder::of_frame(payload, FLAG_POSITIONED, Checksums::Verify)
            .map_or(0, |d| d.remaining());
        assert_eq!(
            batch.deltas.len(),
            declared as usize,
            "positioned decode count"
        );
        let first = batch.first_position.unwrap_or_default();
        assert!(
            first.checked_add(batch.deltas.len() as u32).is_some(),
            "positions fit"
        );
    }
    for flags in [FLAG_POSITIONS, FLAG_TRAILER, FLAG_POSITIONS | FLAG_TRAILER] {
        decode_trailed_payload(payload, flags);
    }
    if let Ok(DecodedBatch { deltas, .. }) = decode_batch(payload, 0) {
        let declared = BatchDecoder::new(payload).map_or(0, |d| d.remaining());
        assert_eq!(
            deltas.len(),
            declared as usize,
            "structure-only decode count"
        );
    }
    let verified = BatchDecoder::new(payload).and_then(|d| d.collect::<Result<Vec<_>, _>>());
    let Ok(deltas) = verified else {
        return;
    };
    let mut encoder = BatchEncoder::default();
    for delta in &deltas {
        let checksum = encoder.push(delta.aggregate, delta.seq, delta.kind, delta.body);
        assert_eq!(checksum, delta.checksum, "delta checksum");
        fold_delta(delta.kind, delta.body);
    }
    assert!(
        encoder.payload() == payload,
        "batch payload does not round-trip"
    );
}

/// Decodes a payload with a positions table or a trailer (`flags`); one whose deltas all
/// verify, and whose name spans follow one another to its end (what the encoder writes), must
/// re-encode to the same bytes.
fn decode_trailed_payload(payload: &[u8], flags: u8) {
    let Ok(batch) = decode_batch(payload, flags) else {
        return;
    };
    let verified = BatchDecoder::of_frame(payload, flags, Checksums::Verify)
        .and_then(|d| d.collect::<Result<Vec<_>, _>>());
    let Ok(deltas) = verified else {
        return;
    };
    assert_eq!(deltas.len(), batch.deltas.len(), "trailed decode count");
    let end = |s: &crate::wal::trailer::NameSpan| s.first_delta as usize + s.count as usize;
    let contiguous = (batch.names.windows(2)).all(|w| end(&w[0]) == w[1].first_delta as usize)
        && batch.names.last().is_none_or(|s| end(s) == deltas.len());
    if !contiguous {
        return;
    }
    let mut encoder = match flags & FLAG_POSITIONS {
        0 => BatchEncoder::default(),
        _ => BatchEncoder::tabled(),
    };
    for (i, d) in deltas.iter().enumerate() {
        if let Some(span) = batch.names.iter().find(|s| s.first_delta as usize == i) {
            encoder.name_from_here(span.name.to_owned());
        }
        encoder.push_at(d.aggregate, d.seq, d.position, d.kind, d.body);
    }
    batch
        .sources
        .into_iter()
        .for_each(|r| encoder.add_source(r));
    assert!(
        encoder.flags() == flags && *encoder.payload() == *payload,
        "trailed batch payload does not round-trip"
    );
}

/// State, seal, sources and checkpoint decoders on the raw bytes.
fn decode_records(bytes: &[u8]) {
    decode_state(bytes);
    decode_sources(bytes);
    decode_admin_records(bytes);
    if let Ok(seal) = decode_seal_body(bytes) {
        assert_eq!(seal.to_le_bytes(), bytes, "seal body does not round-trip");
    }
    if let Ok(c) = checkpoint::decode(bytes) {
        let chains = c.chains.iter().map(|(id, chain)| (&**id, chain));
        let encoded = checkpoint::encode(&c.meta, c.chains.len(), chains, &c.facts);
        // An older version is written again in the current one, with the same content.
        let current = bytes.get(8..12) == Some(&encoded[8..12]);
        assert!(
            if current {
                encoded == bytes
            } else {
                checkpoint::decode(&encoded).as_ref() == Ok(&c)
            },
            "checkpoint does not round-trip"
        );
    }
}

/// Decodes a state record body; one that decodes must re-encode to the same bytes.
fn decode_state(bytes: &[u8]) {
    let Ok(body) = decode_state_body(bytes) else {
        return;
    };
    let mut encoded = Vec::new();
    encode_state_body(&body, &mut encoded);
    assert!(encoded == bytes, "state record body does not round-trip");
    join_state(body.state);
}

/// The binary value form and the model on the raw bytes.
fn decode_model(bytes: &[u8]) {
    let value = binary::decode_value(bytes);
    if let Ok(value) = &value {
        let mut encoded = Vec::new();
        binary::encode_value(value, &mut encoded);
        assert!(encoded == bytes, "binary value does not round-trip");
    }
    let is_object = value.as_ref().is_ok_and(|v| v.is_object());
    let valid = binary::validate_object(bytes).is_ok();
    assert_eq!(
        valid, is_object,
        "validate_object disagrees with decode_value"
    );
    fold_delta(DeltaKind::Patch, bytes);
    fold_delta(DeltaKind::Delete, bytes);
    join_state(bytes);
}

/// Folds one delta into an empty and a non-empty state: an error changes nothing, a success
/// gives a canonical state, and folding again changes nothing.
fn fold_delta(kind: DeltaKind, body: &[u8]) {
    let delta = DeltaView {
        stamp: Stamp::new(7, 1, 0xabcd),
        kind,
        body,
    };
    for mut state in [PatchState::default(), sample_state()] {
        let before = state.clone();
        if MergePatch.fold(&mut state, delta).is_err() {
            assert!(state == before, "a failed fold changed the state");
            continue;
        }
        check_canonical(&state);
        let once = state.clone();
        let again = MergePatch.fold(&mut state, delta);
        assert!(again.is_ok() && state == once, "fold is not idempotent");
        let _ = MergePatch.output(&state);
    }
}

/// Joins an encoded state: into an empty state it must re-encode to the same bytes; an error
/// leaves the state unchanged; joining twice changes nothing.
fn join_state(encoded: &[u8]) {
    let mut empty = PatchState::default();
    if MergePatch.join_encoded_state(&mut empty, encoded).is_ok() {
        let mut out = Vec::new();
        MergePatch.encode_state(&empty, &mut out);
        assert!(out == encoded, "state record does not round-trip");
        check_canonical(&empty);
    }
    let mut state = sample_state();
    let before = state.clone();
    if MergePatch.join_encoded_state(&mut state, encoded).is_err() {
        assert!(state == before, "a failed join changed the state");
        return;
    }
    check_canonical(&state);
    let once = state.clone();
    let again = MergePatch.join_encoded_state(&mut state, encoded);
    assert!(again.is_ok() && state == once, "join is not idempotent");
    MergePatch.forget_below(&mut state, 7);
    check_canonical(&state);
    let _ = MergePatch.output(&state);
}

/// A small non-empty state: `{"a": 1, "b": {"c": true}}` with a later removal of `d`.
fn sample_state() -> PatchState {
    let mut state = PatchState::default();
    let bodies: [&[u8]; 2] = [
        &[
            0x08, 0x02, 0x01, b'a', 0x03, 0x01, 0x01, b'b', 0x08, 0x01, 0x01, b'c', 0x02,
        ],
        &[0x08, 0x01, 0x01, b'd', 0x00],
    ];
    for (seq, body) in (3..).zip(bodies) {
        let delta = DeltaView {
            stamp: Stamp::new(seq, 0, 0x1234),
            kind: DeltaKind::Patch,
            body,
        };
        let _ = MergePatch.fold(&mut state, delta);
    }
    state
}

fn check_canonical(state: &PatchState) {
    if let Err(e) = state.check_invariants() {
        panic!("state is not canonical: {e}");
    }
}

/// Reads every varint of the bytes; each must re-encode to the bytes it came from.
fn decode_varints(bytes: &[u8]) {
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        match varint::read(bytes, &mut pos) {
            Ok(n) => {
                let mut out = Vec::new();
                varint::write(n, &mut out);
                assert!(out == bytes[start..pos], "varint does not round-trip");
            }
            Err(_) => pos = start + 1,
        }
    }
}
