//! Damage at every kind of position of a real database (several segments, two checkpoints, a
//! seal record, end-of-segment records, compaction state records), each checked against the
//! recovery rules of DESIGN.md sections 3, 5, 5a and 5b, under `RecoveryMode::Strict`,
//! `RecoveryMode::SkipCorrupt` and `aggrelog::check`.
//!
//! Every case copies a template database, damages the copy (flip one bit, zero a range, truncate,
//! delete, overwrite) and asserts the outcome the rules predict:
//!
//! - **torn tail** (damage in the last segment with no valid frame after it): both modes open,
//!   truncate it and report the bytes in `torn_bytes_dropped`; `check` is clean but names it;
//! - **corruption** (damage followed by valid data; damage at the end of a segment, or a
//!   segment that does not end with its end record (type 4), followed by a segment with a valid
//!   header; a bad segment header) in the part of the log that open replays: Strict fails with
//!   `Error::Corruption` naming the file and the damaged frame's offset (or where the valid
//!   frames end) and changes nothing; SkipCorrupt opens and lists exactly that range in
//!   `stats().skipped`; `check` lists it;
//! - **damage before a checkpoint's position P** (section 5a): open checks that every segment up
//!   to P's segment, except the log's last, ends with its end record (its last 20 bytes are a
//!   type 4 frame whose CRC verifies), and reads the frame header of every record the checkpoint
//!   references; the frame must decode, lie inside its file, end at or before P, match a state
//!   reference's length and hold every referenced delta of an uncompressed batch. If either
//!   fails, the checkpoint is rejected (`checkpoints_rejected`, naming the segment without its
//!   end record; `check` lists it as stale, not damage) and open falls back to an older one
//!   (judged the same way, up to its own position) or a full replay, which then meets the
//!   damage as above. If both pass (a CRC or body flip, a longer but still contained length),
//!   open uses the checkpoint without seeing the damage: a read that needs the damaged record
//!   fails with `Error::Corruption` naming its segment and offset, every other read is right;
//!   `check` lists it;
//! - **a checkpoint file that does not decode** is rejected, open falls back to the previous one
//!   or a full replay, the state is the full oracle, and `check` lists the file as damage
//!   (offset 0).
//!
//! Whenever open succeeds, the state must equal the oracle over exactly the deltas that survive
//! (computed from write receipts and the frame layout), never something else. Offsets are never
//! hard-coded: they come from the layout parsed from the template's bytes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aggrelog::{
    CheckpointMeta, CompactionOptions, Db, Error, Options, RecordLocation, RecoveryMode,
};
use common::{batch_of, copy_dir, delete, oracle, patch, scan_all, TestDelta};
use serde_json::json;

const SEGMENT_SIZE: u64 = 4096;
const FRAME_HEADER: u64 = 12;
const SEGMENT_HEADER: u64 = 32;
/// An end-of-segment record: frame header plus the next segment's id (section 3.2).
const END_FRAME: u64 = FRAME_HEADER + 8;
const TYPE_BATCH: u8 = 1;
const TYPE_STATE: u8 = 2;
const TYPE_SEAL: u8 = 3;
const TYPE_END: u8 = 4;
const TYPE_COMMIT: u8 = 5;
/// What the engine says of a sealed segment whose end record is missing.
const UNSEALED: &str = "ends without its end record";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// One frame of the template's log, read straight from the bytes (section 3.2).
#[derive(Clone, Debug)]
struct FrameInfo {
    segment: u64,
    offset: u64,
    /// Header plus body.
    len: u64,
    kind: u8,
    /// The batch it holds (index into `Fixture::batches`).
    batch: Option<usize>,
    /// For a state record: its aggregate.
    aggregate: Option<String>,
    /// For a commit record: the offset up to which the segment was durable (section 3.4).
    durable_through: Option<u64>,
}

impl FrameInfo {
    fn end(&self) -> u64 {
        self.offset + self.len
    }

    fn location(&self) -> RecordLocation {
        RecordLocation {
            segment: self.segment,
            offset: self.offset,
        }
    }
}

struct Fixture {
    name: &'static str,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    options: Options,
    batches: Vec<Vec<TestDelta>>,
    frames: Vec<FrameInfo>,
    /// `(id, file length)` of each segment, in id order.
    segments: Vec<(u64, u64)>,
    /// The checkpoint files on disk, oldest first.
    checkpoints: Vec<CheckpointMeta>,
    /// Batches before this index were folded by a full compaction whose segments are deleted.
    compacted_before: usize,
}

fn options() -> Options {
    Options::default()
        .segment_size_bytes(SEGMENT_SIZE)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
}

/// Batch `k`: a marker aggregate of its own, overwrites and nulls of shared aggregates, a
/// delete now and then. Seqs are distinct and not in write order.
fn fixture_batch(k: usize) -> Vec<TestDelta> {
    let seq = (k as u64 * 7919) % 997 + 1;
    let seat = if k.is_multiple_of(3) {
        json!(null)
    } else {
        json!(k)
    };
    let mut batch = vec![
        patch(&format!("b-{k:03}"), seq, json!({"batch": k})),
        patch(
            &format!("air-{}", k % 4),
            seq,
            json!({"engine": {"hours": k, "pad": "e".repeat(70)}, "cabin": {"seat": seat}}),
        ),
        patch(
            &format!("air-{}", (k + 1) % 4),
            seq,
            json!({"wing": {"k": k, "pad": "w".repeat(50)}}),
        ),
    ];
    if k % 5 == 4 {
        batch.push(delete(&format!("air-{}", (k + 2) % 4), seq));
    } else {
        batch.push(patch("fleet", seq, json!({format!("n{}", k % 6): k})));
    }
    batch
}

struct Builder {
    db: Db,
    batches: Vec<Vec<TestDelta>>,
    locations: Vec<RecordLocation>,
}

impl Builder {
    fn write(&mut self, n: usize) {
        for _ in 0..n {
            let batch = fixture_batch(self.batches.len());
            let receipt = self.db.write(&batch_of(&batch)).unwrap();
            self.locations.push(receipt.location.unwrap());
            self.batches.push(batch);
        }
    }

    /// Writes batches until the log has `segments` segments.
    fn write_until_segments(&mut self, segments: u64) {
        while self.db.stats().segments < segments {
            self.write(1);
        }
    }
}

/// Reads every frame of every segment of `dir` from the bytes (an independent parser of
/// sections 3.1 and 3.2), attributing batch frames with the write receipts.
fn read_layout(
    dir: &Path,
    locations: &[RecordLocation],
    compacted_before: usize,
) -> (Vec<(u64, u64)>, Vec<FrameInfo>) {
    let mut segments = Vec::new();
    let mut frames = Vec::new();
    let mut names: Vec<_> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    for name in names {
        let id: u64 = name.trim_end_matches(".seg").parse().unwrap();
        let bytes = fs::read(dir.join("wal").join(&name)).unwrap();
        segments.push((id, bytes.len() as u64));
        let mut at = SEGMENT_HEADER as usize;
        while at < bytes.len() {
            let length = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as u64;
            let kind = bytes[at + 8];
            assert!(
                (TYPE_BATCH..=TYPE_COMMIT).contains(&kind),
                "{name}@{at}: record type {kind}"
            );
            let location = RecordLocation {
                segment: id,
                offset: at as u64,
            };
            let aggregate = (kind == TYPE_STATE).then(|| {
                // id_len is a varint; ids here are short, so one byte.
                let body = &bytes[at + 12..];
                assert!(body[0] < 0x80);
                String::from_utf8(body[1..1 + body[0] as usize].to_vec()).unwrap()
            });
            let durable_through = (kind == TYPE_COMMIT).then(|| {
                assert_eq!(length, 8, "{name}@{at}: commit record");
                let body = bytes[at + 12..at + 20].try_into().unwrap();
                let durable = u64::from_le_bytes(body);
                assert!(durable <= at as u64, "{name}@{at}: durable past itself");
                durable
            });
            frames.push(FrameInfo {
                segment: id,
                offset: at as u64,
                len: FRAME_HEADER + length,
                kind,
                batch: locations.iter().position(|l| *l == location),
                aggregate,
                durable_through,
            });
            if kind == TYPE_END {
                // Body: the next segment's id.
                assert_eq!(FRAME_HEADER + length, END_FRAME, "{name}@{at}: end record");
                let next = u64::from_le_bytes(bytes[at + 12..at + 20].try_into().unwrap());
                assert_eq!(
                    next,
                    id + 1,
                    "{name}@{at}: end record names the next segment"
                );
            }
            at += (FRAME_HEADER + length) as usize;
        }
        assert_eq!(at, bytes.len(), "{name}: frames end at the end of the file");
        assert!(at as u64 <= SEGMENT_SIZE, "{name}: {at} bytes");
    }
    // Every segment but the last is sealed: its last frame, and only that one, is an end
    // record (rotation appends it before creating the next segment).
    for (n, &(id, _)) in segments.iter().enumerate() {
        let kinds: Vec<u8> = frames
            .iter()
            .filter(|f| f.segment == id)
            .map(|f| f.kind)
            .collect();
        let ends = kinds.iter().filter(|&&k| k == TYPE_END).count();
        if n + 1 < segments.len() {
            assert_eq!(segments[n + 1].0, id + 1, "segment ids are consecutive");
            assert_eq!(kinds.last(), Some(&TYPE_END), "segment {id} ends sealed");
            assert_eq!(ends, 1, "segment {id}: one end record");
            // The independent check of section 5a's end-record rule accepts every sealed
            // segment of a template (its CRC computation agrees with the engine's).
            let bytes = fs::read(dir.join(segment_rel(id))).unwrap();
            assert!(ends_with_end_record(id, &bytes), "segment {id}: end record");
        } else {
            assert_eq!(ends, 0, "the last segment {id} is not sealed");
        }
    }
    for (k, l) in locations.iter().enumerate() {
        let found = frames.iter().filter(|f| f.batch == Some(k)).count();
        // A batch folded by a full compaction had its segment reclaimed.
        let expected = usize::from(k >= compacted_before);
        assert_eq!(found, expected, "frames of batch {k} (written at {l:?})");
    }
    (segments, frames)
}

fn checkpoints_on_disk(dir: &Path) -> Vec<u64> {
    let mut numbers: Vec<u64> = fs::read_dir(dir.join("checkpoints"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter_map(|n| n.strip_suffix(".ckpt").and_then(|d| d.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    numbers.sort();
    numbers
}

fn finish(
    name: &'static str,
    tmp: tempfile::TempDir,
    b: Builder,
    metas: Vec<CheckpointMeta>,
    compacted_before: usize,
) -> Fixture {
    let Builder {
        db,
        batches,
        locations,
    } = b;
    db.close().unwrap();
    let dir = tmp.path().join("db");
    let (segments, frames) = read_layout(&dir, &locations, compacted_before);
    let on_disk = checkpoints_on_disk(&dir);
    let checkpoints: Vec<CheckpointMeta> = metas
        .into_iter()
        .filter(|m| on_disk.contains(&m.number))
        .collect();
    assert_eq!(
        checkpoints.iter().map(|m| m.number).collect::<Vec<_>>(),
        on_disk,
        "{name}: every checkpoint on disk is one this fixture wrote"
    );
    assert_eq!(checkpoints.len(), 2, "{name}: two checkpoints");
    let fixture = Fixture {
        name,
        _tmp: tmp,
        dir,
        options: options(),
        batches,
        frames,
        segments,
        checkpoints,
        compacted_before,
    };
    // The template itself opens clean, with the full state, in both modes.
    for mode in [RecoveryMode::Strict, RecoveryMode::SkipCorrupt] {
        let db = Db::open(&fixture.dir, fixture.options.clone().recovery(mode)).unwrap();
        let stats = db.stats();
        assert_eq!(stats.torn_bytes_dropped, 0);
        assert!(stats.skipped.is_empty());
        assert!(stats.checkpoints_rejected.is_empty());
        assert_eq!(scan_all(&db), oracle(&fixture.batches), "{name}");
        db.close().unwrap();
    }
    let report = aggrelog::check(&fixture.dir).unwrap();
    assert!(report.is_clean(), "{name}: {report:#?}");
    assert!(report.torn.is_none(), "{name}: {report:#?}");
    assert!(report.stale_checkpoints.is_empty(), "{name}: {report:#?}");
    fixture
}

/// Six segments; checkpoint 1 in the middle of segment 1, checkpoint 2 in segment 2 followed by
/// a seal record; segments 3 to 6 are after both checkpoints.
fn plain() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(tmp.path().join("db"), options()).unwrap();
        let mut b = Builder {
            db,
            batches: Vec::new(),
            locations: Vec::new(),
        };
        b.write(4);
        let c1 = b.db.checkpoint().unwrap();
        b.write_until_segments(2);
        b.write(3);
        let c2 = b.db.checkpoint().unwrap();
        b.db.seal(1).unwrap();
        b.write(2);
        b.write_until_segments(6);
        b.write(3);
        finish("plain", tmp, b, vec![c1, c2], 0)
    })
}

/// Like `plain`, plus state records from a policy compaction (chains longer than 4 deltas
/// are folded; no segment is emptied, so none is deleted and no checkpoint is written) in a
/// segment after both checkpoints, followed by more batches.
fn folded() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let compaction = CompactionOptions {
            background: false,
            max_unfolded_deltas: 4,
            min_live_ratio: 0.0,
            ..CompactionOptions::default()
        };
        let db = Db::open(tmp.path().join("db"), options().compaction(compaction)).unwrap();
        let mut b = Builder {
            db,
            batches: Vec::new(),
            locations: Vec::new(),
        };
        b.write(4);
        let c1 = b.db.checkpoint().unwrap();
        b.write_until_segments(2);
        let c2 = b.db.checkpoint().unwrap();
        b.write_until_segments(3);
        b.write(2);
        let report = b.db.compact_by_policy().unwrap();
        assert!(report.aggregates_folded > 0, "{report:?}");
        assert_eq!(report.segments_deleted, 0, "{report:?}");
        b.write(2);
        b.write_until_segments(5);
        b.write(2);
        finish("folded", tmp, b, vec![c1, c2], 0)
    })
}

/// A full compaction (every chain folded into state records, the old segments deleted, a
/// checkpoint written), then batches over new segments and another checkpoint, then more.
fn compacted() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(tmp.path().join("db"), options()).unwrap();
        let mut b = Builder {
            db,
            batches: Vec::new(),
            locations: Vec::new(),
        };
        b.write(4);
        let c1 = b.db.checkpoint().unwrap();
        b.write_until_segments(3);
        let compacted_before = b.batches.len();
        let report = b.db.compact().unwrap();
        assert!(report.segments_deleted >= 2, "{report:?}");
        let c2 = b.db.stats().checkpoint.unwrap().number;
        // Section 5a: the older checkpoint points into the deleted segments and is deleted
        // with them; only the compaction's (valid) checkpoint is left.
        assert!(c2 > c1.number);
        assert_eq!(checkpoints_on_disk(&tmp.path().join("db")), vec![c2]);
        b.write(3);
        let c3 = b.db.checkpoint().unwrap();
        b.write(2);
        let segments = b.db.stats().segments;
        b.write_until_segments(segments + 1);
        b.write(2);
        let c2 = CheckpointMeta {
            number: c2,
            ..read_checkpoint_meta(&tmp.path().join("db"), c2)
        };
        finish("compacted", tmp, b, vec![c1, c2, c3], compacted_before)
    })
}

/// The fixed fields of checkpoint `number` (header layout of section 5a).
fn read_checkpoint_meta(dir: &Path, number: u64) -> CheckpointMeta {
    let bytes = fs::read(checkpoint_path(dir, number)).unwrap();
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    CheckpointMeta {
        number: u64_at(16),
        position: RecordLocation {
            segment: u64_at(24),
            offset: u64_at(32),
        },
        seal: u64_at(40),
        max_seq: u64_at(48),
        created_unix_ms: u64_at(56),
        ..CheckpointMeta::default()
    }
}

fn checkpoint_path(dir: &Path, number: u64) -> PathBuf {
    dir.join("checkpoints").join(format!("{number:020}.ckpt"))
}

fn segment_rel(id: u64) -> String {
    format!("wal/{id:020}.seg")
}

impl Fixture {
    fn frames_of(&self, segment: u64) -> Vec<FrameInfo> {
        self.frames
            .iter()
            .filter(|f| f.segment == segment)
            .cloned()
            .collect()
    }

    fn segment_len(&self, segment: u64) -> u64 {
        self.segments
            .iter()
            .find(|(id, _)| *id == segment)
            .unwrap()
            .1
    }

    fn last_segment(&self) -> u64 {
        self.segments.last().unwrap().0
    }

    /// Section 5, rule 1: damage at frame `f` is a torn tail when it lies in the last segment
    /// and no commit record after it says it was durable.
    fn unsynced_at(&self, f: &FrameInfo) -> bool {
        f.segment == self.last_segment()
            && !self.frames_of(f.segment).iter().any(|later| {
                later.offset > f.offset && later.durable_through.is_some_and(|d| d > f.offset)
            })
    }

    /// A sealed segment after the newest checkpoint's position.
    fn middle_segment(&self) -> u64 {
        let id = self.segments[self.segments.len() - 3].0;
        assert!(id > self.position().segment, "{}", self.name);
        id
    }

    /// The newest checkpoint's position P.
    fn position(&self) -> RecordLocation {
        self.checkpoints.last().unwrap().position
    }

    fn newest(&self) -> Option<u64> {
        self.checkpoints.last().map(|c| c.number)
    }

    fn oldest(&self) -> Option<u64> {
        self.checkpoints.first().map(|c| c.number)
    }

    fn checkpoint_rel(&self, number: u64) -> String {
        format!("checkpoints/{number:020}.ckpt")
    }

    /// The batch frames of `segment`, in log order.
    fn batch_frames_of(&self, segment: u64) -> Vec<FrameInfo> {
        self.frames_of(segment)
            .into_iter()
            .filter(|f| f.kind == TYPE_BATCH)
            .collect()
    }

    /// The end record of sealed segment `segment` (its last frame).
    fn end_record(&self, segment: u64) -> FrameInfo {
        let f = self.frames_of(segment).last().unwrap().clone();
        assert_eq!(f.kind, TYPE_END, "{}: segment {segment}", self.name);
        f
    }

    /// Batches whose frames lie in `segment` at or after `from`.
    fn batches_from(&self, segment: u64, from: u64) -> Vec<usize> {
        self.frames
            .iter()
            .filter(|f| f.segment == segment && f.offset >= from)
            .filter_map(|f| f.batch)
            .collect()
    }

    fn all(&self) -> Vec<Vec<TestDelta>> {
        self.batches.clone()
    }

    fn without(&self, lost: &[usize]) -> Vec<Vec<TestDelta>> {
        self.batches
            .iter()
            .enumerate()
            .filter(|(k, _)| !lost.contains(k))
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Every batch, less `aggregate`'s deltas that a full compaction folded into its (lost)
    /// state record.
    fn without_folded(&self, aggregate: &str) -> Vec<Vec<TestDelta>> {
        self.batches
            .iter()
            .enumerate()
            .map(|(k, b)| {
                if k < self.compacted_before {
                    // Dropping a delta shifts the positions of later ones in its batch, but
                    // keeps their order, and seqs are distinct per batch: same stamps order.
                    b.iter()
                        .filter(|d| d.aggregate != aggregate)
                        .cloned()
                        .collect()
                } else {
                    b.clone()
                }
            })
            .collect()
    }
}

fn describe_lost(lost: &[usize]) -> String {
    match lost.len() {
        0 => "full state".into(),
        1 => "the one batch in it lost, all others kept".into(),
        n => format!("the {n} batches in it lost, all others kept"),
    }
}

// ---------------------------------------------------------------------------------------------
// Damage and expected outcomes
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Flip {
        file: String,
        offset: u64,
        mask: u8,
    },
    Zero {
        file: String,
        offset: u64,
        len: u64,
    },
    Truncate {
        file: String,
        len: u64,
    },
    /// Cut to `len`, then zero-fill back to the original length (delayed allocation).
    CutAndZeroFill {
        file: String,
        len: u64,
    },
    Delete {
        file: String,
    },
    Overwrite {
        file: String,
        offset: u64,
        bytes: Vec<u8>,
    },
    Create {
        file: String,
        bytes: Vec<u8>,
    },
}

fn apply(dir: &Path, op: &Op) {
    match op {
        Op::Delete { file } => fs::remove_file(dir.join(file)).unwrap(),
        Op::Create { file, bytes } => {
            assert!(!dir.join(file).exists(), "{op:?}");
            fs::write(dir.join(file), bytes).unwrap();
        }
        Op::Flip { file, .. }
        | Op::Zero { file, .. }
        | Op::Truncate { file, .. }
        | Op::CutAndZeroFill { file, .. }
        | Op::Overwrite { file, .. } => {
            let mut bytes = fs::read(dir.join(file)).unwrap();
            apply_to_bytes(&mut bytes, op);
            fs::write(dir.join(file), bytes).unwrap();
        }
    }
}

/// Applies an op that changes a file's bytes to those bytes.
fn apply_to_bytes(bytes: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Flip { offset, mask, .. } => bytes[*offset as usize] ^= mask,
        Op::Zero { offset, len, .. } => {
            let end = (*offset + *len) as usize;
            assert!(end <= bytes.len(), "{op:?}");
            assert!(
                bytes[*offset as usize..end].iter().any(|&b| b != 0),
                "{op:?} changes nothing"
            );
            bytes[*offset as usize..end].fill(0);
        }
        Op::Truncate { len, .. } => {
            assert!((*len as usize) < bytes.len(), "{op:?}");
            bytes.truncate(*len as usize);
        }
        Op::CutAndZeroFill { len, .. } => {
            let full = bytes.len();
            bytes.truncate(*len as usize);
            bytes.resize(full, 0);
        }
        Op::Overwrite {
            offset, bytes: new, ..
        } => {
            let at = *offset as usize;
            assert_ne!(
                &bytes[at..at + new.len()],
                &new[..],
                "{op:?} changes nothing"
            );
            bytes[at..at + new.len()].copy_from_slice(new);
        }
        Op::Delete { .. } | Op::Create { .. } => unreachable!("{op:?} is not a byte change"),
    }
}

/// What the rules of DESIGN.md predict.
#[derive(Clone, Debug)]
enum Outcome {
    /// Not damage: the last segment simply ends at a frame boundary, as a crash may leave it.
    Prefix,
    /// Rule 1: a torn tail of the last segment from `offset`, truncated by open.
    Torn { file: String, offset: u64 },
    /// Rule 1: a last segment shorter than its header, removed by open. `recreated`: the
    /// segment before it ends with its end record (a rotation completed), so open continues in
    /// a fresh segment of the same id (header only).
    TornFile { file: String, recreated: bool },
    /// Rule 2: corruption of `bytes` bytes at `offset` (the damaged frame, 0 for a header, or
    /// 0 bytes where a sealed segment's valid frames end without its end record).
    Corrupt {
        file: String,
        offset: u64,
        bytes: u64,
    },
    /// Section 5a: damage before the position of the checkpoint open uses that leaves every
    /// frame header the checkpoint references valid (inside its file, before its position, with
    /// the length the references need): open uses the checkpoint and does not see the damage;
    /// reads of the damaged record (`start..end`) fail with `Corruption` naming its segment and
    /// offset `start`, all other reads are right; `check` lists `start..end`.
    Covered {
        file: String,
        start: u64,
        end: u64,
        min_failures: usize,
    },
    /// Section 5a: damaged, missing or extra checkpoint files; open falls back; the log is
    /// intact.
    Fallback,
}

/// What open and `check` say of each checkpoint, by the rules of section 5a.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Decodes and every frame it references is valid where it points.
    Usable,
    /// Decodes, but a referenced frame is missing, cut, past its position, or of the wrong
    /// length: open rejects it, `check` lists it as stale (not damage).
    Stale,
}

/// Why section 5a rejects a checkpoint that decodes, judged from the damaged segment bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Staleness {
    /// The first segment with an id at or below its position's segment, other than the log's
    /// last segment, that does not end with its end record (`ends_with_end_record`).
    unsealed: Option<u64>,
    /// Its position lies past its segment's end, or a frame it references fails the checks of
    /// `reference_verdict`.
    broken_reference: bool,
}

impl Staleness {
    fn is_stale(&self) -> bool {
        self.unsealed.is_some() || self.broken_reference
    }
}

/// For a case ignored as a bug: what each of Strict, SkipCorrupt and check does instead.
#[derive(Clone, Copy, Debug, Default)]
struct Observed {
    strict: Option<&'static str>,
    skip: Option<&'static str>,
    check: Option<&'static str>,
}

struct Case {
    fx: &'static Fixture,
    damage: String,
    position: String,
    ops: Vec<Op>,
    outcome: Outcome,
    /// What `db.scan()` must equal after a successful open.
    survivors: Vec<Vec<TestDelta>>,
    lost: String,
    /// Expected `stats().checkpoints_rejected.len()` after a successful open.
    rejected: usize,
    /// Expected checkpoint used by a successful open (`None` = full replay).
    used: Option<u64>,
    /// Checkpoints that decode but that the damage makes fail section 5a (a segment up to
    /// their position without its end record, or a broken reference): `check` lists them in
    /// `stale_checkpoints` (undecodable ones are damage; see `Case::undecodable_checkpoints`).
    stale: Vec<u64>,
    /// Why each checkpoint of `stale` fails, oldest first.
    staleness: Vec<(u64, Staleness)>,
    /// A phrase the reason of the log damage must contain (Strict error, `skipped`, `check`).
    reason: Option<&'static str>,
    /// For a case that is ignored as a bug: what happens instead.
    observed: Observed,
}

impl Case {
    fn new(fx: &'static Fixture, damage: impl Into<String>, position: impl Into<String>) -> Case {
        Case {
            fx,
            damage: damage.into(),
            position: position.into(),
            ops: Vec::new(),
            outcome: Outcome::Fallback,
            survivors: fx.all(),
            lost: describe_lost(&[]),
            rejected: 0,
            used: fx.newest(),
            stale: Vec::new(),
            staleness: Vec::new(),
            reason: None,
            observed: Observed::default(),
        }
    }

    /// Judges every checkpoint by section 5a against the segment files as the case's ops leave
    /// them (`staleness`), and sets what follows: open uses the newest usable checkpoint and
    /// rejects every newer one; `check` lists every stale one. Called before any op on a
    /// checkpoint file is added (a case that damages one sets its own `checkpoints`).
    fn judged(mut self) -> Case {
        let fx = self.fx;
        assert!(
            self.undecodable_checkpoints().is_empty()
                && self.checkpoint_files().len() == fx.checkpoints.len(),
            "{}: judged before any checkpoint file op",
            self.position
        );
        let segments = damaged_segments(fx, &self.ops);
        let judged: Vec<(u64, Staleness)> = fx
            .checkpoints
            .iter()
            .map(|c| (c.number, staleness(fx, c, &segments)))
            .collect();
        self.rejected = judged
            .iter()
            .rev()
            .take_while(|(_, s)| s.is_stale())
            .count();
        self.used = judged
            .iter()
            .rev()
            .find(|(_, s)| !s.is_stale())
            .map(|(n, _)| *n);
        self.staleness = judged.into_iter().filter(|(_, s)| s.is_stale()).collect();
        self.stale = self.staleness.iter().map(|(n, _)| *n).collect();
        self
    }

    /// What open's rejection of checkpoint `n` and `check`'s stale line for it must say, when
    /// the only rule it fails is the end-record rule of section 5a.
    fn unsealed_phrase(&self, n: u64) -> Option<String> {
        self.staleness
            .iter()
            .find(|(m, s)| *m == n && !s.broken_reference)
            .and_then(|(_, s)| s.unsealed)
            .map(|segment| format!("segment {segment} does not end with its end record"))
    }

    /// The checkpoint a successful open uses.
    fn used_meta(&self) -> Option<&'static CheckpointMeta> {
        let fx = self.fx;
        self.used
            .map(|n| fx.checkpoints.iter().find(|c| c.number == n).unwrap())
    }

    /// Damage at `at` is replayed (not covered by the checkpoint open uses).
    fn replays(&self, at: RecordLocation) -> bool {
        self.used_meta().is_none_or(|c| c.position <= at)
    }

    fn reason(mut self, reason: &'static str) -> Case {
        self.reason = Some(reason);
        self
    }

    /// The checkpoint files after the damage, oldest first.
    fn checkpoint_files(&self) -> Vec<u64> {
        let mut numbers: Vec<u64> = self.fx.checkpoints.iter().map(|c| c.number).collect();
        for op in &self.ops {
            let (file, created) = match op {
                Op::Create { file, .. } => (file, true),
                Op::Delete { file } => (file, false),
                _ => continue,
            };
            let Some(n) = file
                .strip_prefix("checkpoints/")
                .and_then(|n| n.strip_suffix(".ckpt"))
            else {
                continue;
            };
            let n: u64 = n.parse().unwrap();
            if created {
                numbers.push(n);
            } else {
                numbers.retain(|&m| m != n);
            }
        }
        numbers.sort();
        numbers
    }

    /// Checkpoint files the case modifies or creates: a checkpoint's CRC covers every byte,
    /// so none of them decodes (deleted ones are simply gone; temp files are not checkpoints).
    fn undecodable_checkpoints(&self) -> Vec<u64> {
        let mut numbers: Vec<u64> = self
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Delete { .. } => None,
                Op::Flip { file, .. }
                | Op::Zero { file, .. }
                | Op::Truncate { file, .. }
                | Op::CutAndZeroFill { file, .. }
                | Op::Overwrite { file, .. }
                | Op::Create { file, .. } => file
                    .strip_prefix("checkpoints/")
                    .and_then(|n| n.strip_suffix(".ckpt"))
                    .map(|n| n.parse().unwrap()),
            })
            .collect();
        numbers.sort();
        numbers.dedup();
        numbers
    }

    fn op(mut self, op: Op) -> Case {
        self.ops.push(op);
        self
    }

    fn outcome(mut self, outcome: Outcome) -> Case {
        self.outcome = outcome;
        self
    }

    fn lose(mut self, lost: &[usize]) -> Case {
        self.survivors = self.fx.without(lost);
        self.lost = describe_lost(lost);
        self
    }

    /// Like `lose`, but keeps the description when no batch is lost.
    fn lose_batches(self, lost: &[usize]) -> Case {
        if lost.is_empty() {
            self
        } else {
            self.lose(lost)
        }
    }

    fn checkpoints(mut self, rejected: usize, used: Option<u64>) -> Case {
        self.rejected = rejected;
        self.used = used;
        self
    }

    /// Marks a case ignored as a bug: what Strict, SkipCorrupt and check do instead (`None`
    /// where they follow the rules). No case needs it at present.
    #[allow(dead_code)]
    fn observed(
        mut self,
        strict: Option<&'static str>,
        skip: Option<&'static str>,
        check: Option<&'static str>,
    ) -> Case {
        self.observed = Observed {
            strict,
            skip,
            check,
        };
        self
    }
}

/// Whether checkpoint `c` references frame `f`: every batch and state record before its
/// position is in its index (no fixture folds a chain before a checkpoint it keeps, except
/// the compacted one, whose only state records are the bases of the chains).
fn references(c: &CheckpointMeta, f: &FrameInfo) -> bool {
    matches!(f.kind, TYPE_BATCH | TYPE_STATE) && f.location() < c.position
}

/// Section 5a: what open and `check` make of checkpoint `c`'s reference to frame `f` when
/// `f`'s segment file holds `bytes`. The frame header is read and must decode (known type and
/// flags, zero reserved bytes); the whole frame must lie inside the file and end at or before
/// the checkpoint's position; a state reference's length must match its frame; an uncompressed
/// batch must hold every referenced delta (the last one ends at the original body length).
/// Frame CRCs and bodies are not verified.
fn reference_verdict(c: &CheckpointMeta, f: &FrameInfo, bytes: &[u8]) -> Verdict {
    let at = f.offset as usize;
    let Some(header) = bytes.get(at..at + FRAME_HEADER as usize) else {
        return Verdict::Stale;
    };
    let decodes = (TYPE_BATCH..=TYPE_COMMIT).contains(&header[8])
        && header[9] & !0x01 == 0
        && header[10..12] == [0, 0];
    if !decodes {
        return Verdict::Stale;
    }
    let length = u64::from(u32::from_le_bytes(header[4..8].try_into().unwrap()));
    let end = f.offset + FRAME_HEADER + length;
    let inside = end <= bytes.len() as u64;
    let before_position = f.segment < c.position.segment || end <= c.position.offset;
    let fits = match f.kind {
        TYPE_STATE => end == f.end(),
        _ => header[9] & 0x01 != 0 || length >= f.len - FRAME_HEADER,
    };
    if inside && before_position && fits {
        Verdict::Usable
    } else {
        Verdict::Stale
    }
}

/// Section 5a's end-record rule for segment `segment`, whose file holds `bytes`: its last 20
/// bytes must be a frame whose header decodes (known flags, zero reserved bytes), of type 4,
/// whose body lies in the file and whose CRC verifies (section 3.2: over the segment id and the
/// frame's offset, both u64 LE, the header after the CRC field, then the body).
fn ends_with_end_record(segment: u64, bytes: &[u8]) -> bool {
    let Some(at) = bytes.len().checked_sub(END_FRAME as usize) else {
        return false;
    };
    let header = &bytes[at..at + FRAME_HEADER as usize];
    if header[8] != TYPE_END || header[9] & !0x01 != 0 || header[10..12] != [0, 0] {
        return false;
    }
    let length = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
    let body_start = at + FRAME_HEADER as usize;
    let Some(body) = bytes.get(body_start..body_start + length) else {
        return false;
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&segment.to_le_bytes());
    crc.update(&(at as u64).to_le_bytes());
    crc.update(&header[4..]);
    crc.update(body);
    crc.finalize() == u32::from_le_bytes(header[0..4].try_into().unwrap())
}

/// The bytes of every segment file `ops` change (the others are as in the template).
fn damaged_segments(fx: &Fixture, ops: &[Op]) -> BTreeMap<u64, Vec<u8>> {
    let mut files = BTreeMap::new();
    for op in ops {
        let file = match op {
            Op::Flip { file, .. }
            | Op::Zero { file, .. }
            | Op::Truncate { file, .. }
            | Op::CutAndZeroFill { file, .. }
            | Op::Overwrite { file, .. } => file,
            Op::Delete { file } | Op::Create { file, .. } => {
                assert!(!file.starts_with("wal/"), "{op:?}: not modelled");
                continue;
            }
        };
        let Some(id) = file
            .strip_prefix("wal/")
            .and_then(|n| n.strip_suffix(".seg"))
        else {
            continue;
        };
        let id: u64 = id.parse().unwrap();
        let bytes = files
            .entry(id)
            .or_insert_with(|| fs::read(fx.dir.join(file)).unwrap());
        apply_to_bytes(bytes, op);
    }
    files
}

/// Section 5a: what open and `check` make of checkpoint `c` when the segment files in
/// `segments` hold those bytes (no segment file is added or removed, so the log's last segment
/// is the template's). Every segment up to its position's segment but the last must end with
/// its end record; its position must lie within its segment; every frame it references must
/// pass `reference_verdict`. Untouched segments pass (the template opens clean).
fn staleness(fx: &Fixture, c: &CheckpointMeta, segments: &BTreeMap<u64, Vec<u8>>) -> Staleness {
    let last = fx.last_segment();
    let unsealed = segments
        .iter()
        .find(|(&id, bytes)| {
            id <= c.position.segment && id != last && !ends_with_end_record(id, bytes)
        })
        .map(|(&id, _)| id);
    let position_past_end = segments
        .get(&c.position.segment)
        .is_some_and(|bytes| c.position.offset > bytes.len() as u64);
    let broken_reference = position_past_end
        || fx.frames.iter().filter(|f| references(c, f)).any(|f| {
            segments
                .get(&f.segment)
                .is_some_and(|bytes| reference_verdict(c, f, bytes) == Verdict::Stale)
        });
    Staleness {
        unsealed,
        broken_reference,
    }
}

/// The outcome the rules give for damage confined to frame `f` (it fails verification, nothing
/// else does). Each checkpoint is judged by section 5a (`Case::judged`: the end records of the
/// segments up to its position, and `reference_verdict` if it references `f`); open uses the
/// newest one left usable. If `f` lies before that checkpoint's position, the damage is
/// covered: open does not see it. Otherwise the replay (from that position, or a full one)
/// meets it: the last frame of the last segment is a torn tail; the last frame of a sealed
/// segment (its end record) is damage running to the end of the file, followed by a segment
/// with a valid header; any other frame is damage followed by valid data.
fn frame_case(
    fx: &'static Fixture,
    f: &FrameInfo,
    damage: String,
    position: String,
    op: Op,
    min_failures: usize,
) -> Case {
    let file = segment_rel(f.segment);
    let frames = fx.frames_of(f.segment);
    let is_last_frame = frames.last().unwrap().offset == f.offset;
    let lost: Vec<usize> = f.batch.into_iter().collect();
    let mut case = Case::new(fx, damage, position).op(op).judged();
    match f.kind {
        TYPE_SEAL => case.lost = "full state (only the seal record is lost)".into(),
        TYPE_END => case.lost = "full state (an end record holds no delta)".into(),
        TYPE_COMMIT => case.lost = "full state (a commit record holds no delta)".into(),
        TYPE_STATE if fx.compacted_before > 0 => {
            // A full compaction reclaimed the deltas it folded: they are lost with it.
            let aggregate = f.aggregate.clone().unwrap();
            case.survivors = fx.without_folded(&aggregate);
            case.lost = format!(
                "state = oracle without the deltas of {aggregate:?} folded into the record"
            );
        }
        TYPE_STATE => case.lost = "full state (the deltas it folded are still in the log)".into(),
        _ => {}
    }
    if !case.replays(f.location()) {
        case.outcome(Outcome::Covered {
            file,
            start: f.offset,
            end: f.end(),
            min_failures,
        })
    } else if fx.unsynced_at(f) {
        let lost = fx.batches_from(f.segment, f.offset);
        case.outcome(Outcome::Torn {
            file,
            offset: f.offset,
        })
        .lose_batches(&lost)
    } else {
        let bytes = if is_last_frame {
            fx.segment_len(f.segment) - f.offset
        } else {
            f.len
        };
        case.outcome(Outcome::Corrupt {
            file,
            offset: f.offset,
            bytes,
        })
        .lose_batches(&lost)
    }
}

/// The frame fields of section 3.2: (name, byte within the frame, bit mask).
#[derive(Clone, Copy)]
enum Field {
    Crc,
    Length,
    LengthHigh,
    Type,
    TypeUnknown,
    Flags,
    FlagsUnknown,
    Reserved,
    Body,
}

fn type_name(kind: u8) -> String {
    match kind {
        TYPE_BATCH => "batch 1".into(),
        TYPE_STATE => "state 2".into(),
        TYPE_SEAL => "seal 3".into(),
        TYPE_END => "end 4".into(),
        TYPE_COMMIT => "commit 5".into(),
        other => format!("unknown {other}"),
    }
}

impl Field {
    fn at(self, f: &FrameInfo) -> (u64, u8, String) {
        let retype = |mask: u8| {
            format!(
                "record type ({} -> {})",
                type_name(f.kind),
                type_name(f.kind ^ mask)
            )
        };
        match self {
            Field::Crc => (1, 0x10, "CRC field".into()),
            Field::Length => {
                let sign = if (f.len - FRAME_HEADER).is_multiple_of(2) {
                    '+'
                } else {
                    '-'
                };
                (4, 0x01, format!("length field (low bit: length {sign}1)"))
            }
            Field::LengthHigh => (7, 0x40, "length field (high bit: past the file end)".into()),
            Field::Type => (8, 0x02, retype(0x02)),
            Field::TypeUnknown => (8, 0x10, retype(0x10)),
            Field::Flags => (9, 0x01, "flags (zstd bit set)".into()),
            Field::FlagsUnknown => (9, 0x80, "flags (unknown bit)".into()),
            Field::Reserved => (10, 0x01, "reserved bytes".into()),
            Field::Body => (
                (f.len - FRAME_HEADER) / 2 + FRAME_HEADER,
                0x04,
                "body".into(),
            ),
        }
    }
}

fn flip_frame(fx: &'static Fixture, f: &FrameInfo, field: Field, where_: &str) -> Case {
    let (at, mask, name) = field.at(f);
    let min_failures = match field {
        // The reader checks each delta's CRC, the frame header's type, flags and reserved bits,
        // and that the body lies within the file; the frame CRC is checked on append and
        // recovery only, and a type or length still in range may go unnoticed.
        Field::Crc | Field::Length | Field::Type => 0,
        _ => 1,
    };
    frame_case(
        fx,
        f,
        "flip one bit".into(),
        format!("{where_}: frame {name}"),
        Op::Flip {
            file: segment_rel(f.segment),
            offset: f.offset + at,
            mask,
        },
        min_failures,
    )
}

fn zero_in_frame(
    fx: &'static Fixture,
    f: &FrameInfo,
    from: u64,
    len: u64,
    what: &str,
    where_: &str,
) -> Case {
    frame_case(
        fx,
        f,
        format!("zero {len} bytes"),
        format!("{where_}: {what}"),
        Op::Zero {
            file: segment_rel(f.segment),
            offset: f.offset + from,
            len,
        },
        1,
    )
}

// Positions ------------------------------------------------------------------------------------

/// A batch in the middle of a sealed segment after P (valid frames follow it).
fn mid(fx: &'static Fixture) -> FrameInfo {
    fx.batch_frames_of(fx.middle_segment())[4].clone()
}

/// The last batch of a sealed segment after P: only the segment's end record follows it.
fn mid_last(fx: &'static Fixture) -> FrameInfo {
    let seg = fx.middle_segment();
    let f = fx.batch_frames_of(seg).last().unwrap().clone();
    assert_eq!(f.end(), fx.end_record(seg).offset);
    f
}

/// The end record of a sealed segment after P (the segment's last frame).
fn mid_end(fx: &'static Fixture) -> FrameInfo {
    fx.end_record(fx.middle_segment())
}

/// The second batch of the last segment (valid frames follow it).
fn last_mid(fx: &'static Fixture) -> FrameInfo {
    fx.batch_frames_of(fx.last_segment())[1].clone()
}

/// The last frame of the last segment (a batch: the last segment is not sealed).
fn last_last(fx: &'static Fixture) -> FrameInfo {
    fx.frames_of(fx.last_segment()).last().unwrap().clone()
}

/// A batch before both checkpoints' positions.
fn covered(fx: &'static Fixture) -> FrameInfo {
    let f = fx.frames_of(1)[1].clone();
    assert_eq!(f.kind, TYPE_BATCH);
    assert!(
        f.end() <= fx.checkpoints[0].position.offset && fx.checkpoints[0].position.segment == 1
    );
    f
}

/// The end record of segment 1, before the newest checkpoint's position. No checkpoint
/// references it, but both positions lie in segment 1 or later, so both checkpoints check it
/// (section 5a: every segment up to the position's, but the log's last, ends with its end
/// record).
fn covered_end(fx: &'static Fixture) -> FrameInfo {
    let f = fx.end_record(1);
    assert!(f.location() < fx.position() && f.location() > fx.checkpoints[0].position);
    f
}

/// The batch that ends exactly at the newest checkpoint's position (after the older one's).
fn last_before_position(fx: &'static Fixture) -> FrameInfo {
    let p = fx.position();
    let f = fx
        .frames_of(p.segment)
        .into_iter()
        .find(|f| f.end() == p.offset)
        .unwrap();
    assert_eq!(f.kind, TYPE_BATCH);
    assert!(f.location() > fx.checkpoints[0].position);
    f
}

fn kind_frame(fx: &'static Fixture, kind: u8, n: usize) -> FrameInfo {
    fx.frames
        .iter()
        .filter(|f| f.kind == kind)
        .nth(n)
        .unwrap()
        .clone()
}

const MID: &str = "record in a middle segment";
const MID_LAST: &str = "last batch of a middle (sealed) segment, before its end record";
const MID_END: &str = "end record of a middle (sealed) segment";
const COVERED_END: &str = "end record of a segment before the newest checkpoint's position";
const LAST_BEFORE_P: &str = "batch ending exactly at the newest checkpoint's position";
const LAST_MID: &str = "earlier record of the last segment";
const LAST_LAST: &str = "last record of the last segment";
const COVERED: &str = "record before the newest checkpoint's position";

fn frame_flip(pick: fn(&'static Fixture) -> FrameInfo, where_: &str, field: Field) -> Case {
    let fx = plain();
    flip_frame(fx, &pick(fx), field, where_)
}

/// A segment header field of `segment`: the header is damage at offset 0 (rule 2, not a torn
/// tail even in the last segment: the file is longer than a header); SkipCorrupt skips only
/// the header and keeps every frame (they verify against the id in the file name).
fn header_case(fx: &'static Fixture, segment: u64, damage: &str, field: &str, op: Op) -> Case {
    Case::new(
        fx,
        damage,
        format!("segment header {field}, {}", segment_role(fx, segment)),
    )
    .op(op)
    .outcome(Outcome::Corrupt {
        file: segment_rel(segment),
        offset: 0,
        bytes: SEGMENT_HEADER,
    })
}

fn header_flip(segment: fn(&'static Fixture) -> u64, field: &str, at: u64, mask: u8) -> Case {
    let fx = plain();
    let id = segment(fx);
    header_case(
        fx,
        id,
        "flip one bit",
        field,
        Op::Flip {
            file: segment_rel(id),
            offset: at,
            mask,
        },
    )
}

fn segment_role(fx: &'static Fixture, segment: u64) -> &'static str {
    if segment == fx.last_segment() {
        "last segment"
    } else if segment <= fx.position().segment {
        "segment before the newest checkpoint's position"
    } else {
        "middle segment"
    }
}

fn middle(fx: &'static Fixture) -> u64 {
    fx.middle_segment()
}

fn last(fx: &'static Fixture) -> u64 {
    fx.last_segment()
}

fn first(_: &'static Fixture) -> u64 {
    1
}

/// A damaged checkpoint (or two): rejected, open falls back, the log is intact.
fn checkpoint_case(
    damage: &str,
    position: &str,
    ops: Vec<Op>,
    rejected: usize,
    used: Option<u64>,
) -> Case {
    let mut case = Case::new(plain(), damage, position).checkpoints(rejected, used);
    case.ops = ops;
    case
}

fn newest_ckpt(fx: &Fixture) -> String {
    fx.checkpoint_rel(fx.newest().unwrap())
}

fn oldest_ckpt(fx: &Fixture) -> String {
    fx.checkpoint_rel(fx.oldest().unwrap())
}

fn ckpt_flip(at: impl Fn(u64) -> u64, what: &str) -> Case {
    let fx = plain();
    let file = newest_ckpt(fx);
    let len = fs::metadata(fx.dir.join(&file)).unwrap().len();
    checkpoint_case(
        "flip one bit",
        &format!("newest checkpoint: {what}"),
        vec![Op::Flip {
            file,
            offset: at(len),
            mask: 0x08,
        }],
        1,
        fx.oldest(),
    )
}

// ---------------------------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------------------------

/// A damaged copy of the case's template.
fn damaged_copy(case: &Case) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    copy_dir(&case.fx.dir, &dir);
    for op in &case.ops {
        apply(&dir, op);
    }
    (tmp, dir)
}

/// Every file of the log and checkpoints, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for sub in ["wal", "checkpoints"] {
        if let Ok(entries) = fs::read_dir(dir.join(sub)) {
            for e in entries {
                let path = e.unwrap().path();
                files.push((path.clone(), fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

fn len_of(dir: &Path, file: &str) -> u64 {
    fs::metadata(dir.join(file)).unwrap().len()
}

/// Aggregates named by any batch of the fixture, plus the one the usability check writes.
fn all_ids(fx: &Fixture) -> BTreeSet<String> {
    fx.batches
        .iter()
        .flatten()
        .map(|d| d.aggregate.clone())
        .collect()
}

fn extra_batch() -> Vec<TestDelta> {
    vec![
        patch("after-damage", 5000, json!({"written": "after recovery"})),
        patch("air-0", 5000, json!({"after": true})),
    ]
}

/// The checkpoint number of a checkpoint file path.
fn checkpoint_number(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.strip_suffix(".ckpt").unwrap().parse().unwrap()
}

/// `check` reports exactly: the log damage the outcome predicts, every checkpoint file that
/// does not decode (damage at offset 0), every stale checkpoint (not damage), and the torn tail.
fn check_report(case: &Case, dir: &Path) {
    let report = aggrelog::check(dir).unwrap_or_else(|e| panic!("check failed: {e}"));
    let label = format!("check of {}: {report:#?}", case.position);
    let mut expected: Vec<(PathBuf, u64, u64)> = case
        .undecodable_checkpoints()
        .into_iter()
        .map(|n| (checkpoint_path(dir, n), 0, 0))
        .collect();
    let mut torn = None;
    match &case.outcome {
        Outcome::Prefix | Outcome::Fallback => {}
        Outcome::Torn { file, offset } => {
            torn = Some((dir.join(file), *offset, len_of(dir, file) - offset));
        }
        Outcome::TornFile { file, .. } => torn = Some((dir.join(file), 0, len_of(dir, file))),
        Outcome::Corrupt {
            file,
            offset,
            bytes,
        } => expected.push((dir.join(file), *offset, *bytes)),
        Outcome::Covered {
            file, start, end, ..
        } => expected.push((dir.join(file), *start, end - start)),
    }
    expected.sort();
    let mut found: Vec<(PathBuf, u64, u64)> = report
        .damage
        .iter()
        .map(|d| (d.file.clone(), d.offset, d.bytes))
        .collect();
    found.sort();
    assert_eq!(found, expected, "{label}: damage");
    assert_eq!(report.is_clean(), expected.is_empty(), "{label}");
    if let Some(reason) = case.reason {
        let log_damage = report
            .damage
            .iter()
            .find(|d| d.file.starts_with(dir.join("wal")))
            .expect("log damage");
        assert!(log_damage.reason.contains(reason), "{label}: reason");
    }
    let found_torn = report
        .torn
        .as_ref()
        .map(|t| (t.file.clone(), t.offset, t.bytes));
    assert_eq!(found_torn, torn, "{label}: torn tail");
    let mut stale: Vec<u64> = report
        .stale_checkpoints
        .iter()
        .map(|line| {
            let path = line.split(": ").next().unwrap();
            assert!(
                path.starts_with(dir.join("checkpoints").to_str().unwrap()),
                "{label}: {line}"
            );
            let n = checkpoint_number(Path::new(path));
            if let Some(phrase) = case.unsealed_phrase(n) {
                assert!(line.contains(&phrase), "{label}: {line}");
            }
            n
        })
        .collect();
    stale.sort();
    assert_eq!(stale, case.stale, "{label}: stale checkpoints");
}

/// Asserts what a successful open must show, then that the database is usable: a new batch
/// is accepted and survives a reopen.
fn verify_open(case: &Case, dir: &Path, db: Db, mode: RecoveryMode, damaged_len: Option<u64>) {
    let fx = case.fx;
    let label = format!("{mode:?} open after {} at {}", case.damage, case.position);
    let stats = db.stats();
    assert_eq!(
        stats.checkpoints_rejected.len(),
        case.rejected,
        "{label}: checkpoints rejected: {:?}",
        stats.checkpoints_rejected
    );
    assert_eq!(
        stats.checkpoint.map(|c| c.number),
        case.used,
        "{label}: checkpoint used"
    );
    // Open tries the checkpoint files newest first: those newer than the one used were
    // rejected, and each rejection names its checkpoint.
    let newer: Vec<u64> = case
        .checkpoint_files()
        .into_iter()
        .rev()
        .take_while(|&n| Some(n) != case.used)
        .collect();
    assert_eq!(newer.len(), case.rejected, "{label}: rejected {newer:?}");
    for (n, why) in newer.iter().zip(&stats.checkpoints_rejected) {
        assert!(
            why.contains(&format!("checkpoint {n}:")) || why.contains(&format!("{n:020}.ckpt")),
            "{label}: rejection of checkpoint {n}: {why}"
        );
        if let Some(phrase) = case.unsealed_phrase(*n) {
            assert!(
                why.contains(&phrase),
                "{label}: rejection of checkpoint {n}: {why}"
            );
        }
    }
    let expect_skipped = |stats: &aggrelog::Stats| {
        assert!(
            stats.skipped.is_empty(),
            "{label}: skipped {:?}",
            stats.skipped
        );
    };
    match &case.outcome {
        Outcome::Prefix | Outcome::Fallback | Outcome::Covered { .. } => {
            assert_eq!(stats.torn_bytes_dropped, 0, "{label}");
            expect_skipped(&stats);
        }
        Outcome::Torn { file, offset } => {
            assert_eq!(
                stats.torn_bytes_dropped,
                damaged_len.unwrap() - offset,
                "{label}: torn bytes"
            );
            expect_skipped(&stats);
            assert_eq!(
                len_of(dir, file),
                *offset,
                "{label}: truncated to the frame start"
            );
        }
        Outcome::TornFile { file, recreated } => {
            assert_eq!(stats.torn_bytes_dropped, damaged_len.unwrap(), "{label}");
            expect_skipped(&stats);
            if *recreated {
                // Removed, then created afresh: the same 32-byte header as the original's.
                let original = fs::read(fx.dir.join(file)).unwrap();
                assert_eq!(
                    fs::read(dir.join(file)).unwrap(),
                    original[..SEGMENT_HEADER as usize],
                    "{label}: a fresh segment replaces the header-less file"
                );
            } else {
                assert!(
                    !dir.join(file).exists(),
                    "{label}: the header-less file is removed"
                );
            }
        }
        Outcome::Corrupt {
            file,
            offset,
            bytes,
        } => {
            assert_eq!(
                mode,
                RecoveryMode::SkipCorrupt,
                "{label}: Strict must refuse"
            );
            assert_eq!(stats.torn_bytes_dropped, 0, "{label}");
            let skipped: Vec<_> = stats
                .skipped
                .iter()
                .map(|d| (d.file.clone(), d.offset, d.bytes))
                .collect();
            assert_eq!(
                skipped,
                vec![(dir.join(file), *offset, *bytes)],
                "{label}: skipped"
            );
            if let Some(reason) = case.reason {
                assert!(
                    stats.skipped[0].reason.contains(reason),
                    "{label}: {:?}",
                    stats.skipped[0]
                );
            }
        }
    }
    if let Outcome::Covered {
        file,
        start,
        end,
        min_failures,
    } = &case.outcome
    {
        // Every read is right or fails naming the damaged record's segment and offset (rule 3:
        // even when its length field runs past the committed end); never a wrong state.
        let full = oracle(&fx.batches);
        let mut failures = 0;
        for id in all_ids(fx) {
            match db.get(&id) {
                Ok(found) => assert_eq!(
                    found.map(|s| (s.seq, s.state)),
                    full.get(&id).cloned(),
                    "{label}: {id}"
                ),
                Err(Error::Corruption {
                    file: f, offset, ..
                }) => {
                    assert_eq!(f, dir.join(file), "{label}: {id}");
                    assert_eq!(
                        offset, *start,
                        "{label}: {id}: not the offset of the damaged record {start}..{end}"
                    );
                    failures += 1;
                }
                Err(e) => panic!("{label}: {id}: unexpected error {e}"),
            }
        }
        assert!(
            failures >= *min_failures,
            "{label}: {failures} reads failed, expected at least {min_failures}"
        );
        db.close().unwrap();
        return;
    }
    assert_state(&db, &case.survivors, &label);
    // Usable after recovery: a new batch is accepted and survives a reopen.
    db.write(&batch_of(&extra_batch())).unwrap();
    db.close().unwrap();
    let db = Db::open(dir, fx.options.clone().recovery(mode))
        .unwrap_or_else(|e| panic!("{label}: reopen: {e}"));
    let mut expected = case.survivors.clone();
    expected.push(extra_batch());
    assert_state(&db, &expected, &format!("{label}, reopened"));
    db.close().unwrap();
}

fn assert_state(db: &Db, survivors: &[Vec<TestDelta>], label: &str) {
    let expected = oracle(survivors);
    let found = scan_all(db);
    if found != expected {
        let diff: Vec<_> = expected
            .keys()
            .chain(found.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| expected.get(*k) != found.get(*k))
            .take(4)
            .map(|k| {
                format!(
                    "{k}: expected {:?}, found {:?}",
                    expected.get(k),
                    found.get(k)
                )
            })
            .collect();
        panic!("{label}: wrong state: {diff:#?}");
    }
}

fn damaged_len(case: &Case, dir: &Path) -> Option<u64> {
    match &case.outcome {
        Outcome::Torn { file, .. } | Outcome::TornFile { file, .. } => Some(len_of(dir, file)),
        _ => None,
    }
}

fn run(case: Case) {
    // check, then Strict, on one copy.
    let (_a, dir) = damaged_copy(&case);
    check_report(&case, &dir);
    let before = snapshot(&dir);
    let len = damaged_len(&case, &dir);
    let strict = Db::open(&dir, case.fx.options.clone().recovery(RecoveryMode::Strict));
    let label = format!("Strict open after {} at {}", case.damage, case.position);
    match (&case.outcome, strict) {
        (
            Outcome::Corrupt { file, offset, .. },
            Err(Error::Corruption {
                file: f,
                offset: o,
                reason,
            }),
        ) => {
            assert_eq!((f, o), (dir.join(file), *offset), "{label}: {reason}");
            if let Some(expected) = case.reason {
                assert!(reason.contains(expected), "{label}: {reason}");
            }
            assert!(
                snapshot(&dir) == before,
                "{label}: a refused open changed files"
            );
        }
        (Outcome::Corrupt { .. }, Ok(db)) => {
            panic!(
                "{label}: opened, expected a Corruption error; stats {:?}",
                db.stats()
            )
        }
        (_, Ok(db)) => verify_open(&case, &dir, db, RecoveryMode::Strict, len),
        (_, Err(e)) => panic!("{label}: {e}"),
    }
    // SkipCorrupt on a fresh copy.
    let (_b, dir) = damaged_copy(&case);
    let len = damaged_len(&case, &dir);
    let label = format!(
        "SkipCorrupt open after {} at {}",
        case.damage, case.position
    );
    let db = Db::open(
        &dir,
        case.fx.options.clone().recovery(RecoveryMode::SkipCorrupt),
    )
    .unwrap_or_else(|e| panic!("{label}: {e}"));
    verify_open(&case, &dir, db, RecoveryMode::SkipCorrupt, len);
}

// ---------------------------------------------------------------------------------------------
// The outcome table
// ---------------------------------------------------------------------------------------------

/// How the table names checkpoint files.
fn checkpoint_names(fx: &Fixture, numbers: &[u64]) -> String {
    let name = |n: u64| {
        if Some(n) == fx.newest() {
            "the newest checkpoint"
        } else if Some(n) == fx.oldest() {
            "the oldest checkpoint"
        } else {
            "the bogus newer checkpoint"
        }
    };
    match numbers {
        [n] => name(*n).into(),
        [_, _]
            if fx.checkpoints.len() == 2
                && fx.checkpoints.iter().all(|c| numbers.contains(&c.number)) =>
        {
            "both checkpoints".into()
        }
        _ => numbers
            .iter()
            .map(|&n| name(n))
            .collect::<Vec<_>>()
            .join(" and "),
    }
}

fn describe(case: &Case) -> (String, String, String) {
    let fx = case.fx;
    // Why open fell back: a checkpoint file that does not decode, a reference the damage
    // broke, or a segment up to its position without its end record (section 5a).
    let unsealed = case.staleness.iter().find_map(|(_, s)| s.unsealed);
    let broken: Vec<u64> = case
        .staleness
        .iter()
        .filter(|(_, s)| s.broken_reference)
        .map(|(n, _)| *n)
        .collect();
    let (it, its_positions) = match case.stale.len() {
        1 => ("a frame it references", "its position"),
        _ => ("a frame they reference", "their positions"),
    };
    let why = match (unsealed, broken.as_slice()) {
        (None, []) => String::new(),
        (None, _) => format!(" ({it} fails the 5a checks)"),
        (Some(segment), []) => format!(
            " (segment {segment}, at or before {its_positions}, does not end with its end record)"
        ),
        (Some(segment), _) => {
            let references = if broken.len() == 1 {
                "also references"
            } else {
                "also reference"
            };
            format!(
                " (segment {segment}, at or before {its_positions}, does not end with its end \
                record; {} {references} a frame that fails the 5a checks)",
                checkpoint_names(fx, &broken)
            )
        }
    };
    let fallback = match (case.rejected, case.used) {
        (0, used) if used == fx.newest() => String::new(),
        (0, Some(_)) => "uses the previous checkpoint; ".into(),
        (0, None) => "no checkpoint left: full replay; ".into(),
        (_, used) if used == fx.newest() => "the bogus file is rejected; ".into(),
        (1, Some(_)) => {
            format!("the newest checkpoint is rejected{why}, falls back to the previous one; ")
        }
        (_, Some(_)) => format!("checkpoints rejected{why}, falls back to an older one; "),
        (_, None) => format!("both checkpoints rejected{why}: full replay; "),
    };
    let mut check_notes = Vec::new();
    let undecodable = case.undecodable_checkpoints();
    if !undecodable.is_empty() {
        check_notes.push(format!(
            "damage listed: {} (does not decode; offset 0)",
            checkpoint_names(fx, &undecodable)
        ));
    }
    if !case.stale.is_empty() {
        check_notes.push(format!(
            "{} listed as stale (not damage)",
            checkpoint_names(fx, &case.stale)
        ));
    }
    let with_notes = |log: &str| {
        let mut parts = vec![log.to_string()];
        parts.extend(check_notes.iter().cloned());
        parts.join("; ")
    };
    let verdict = |log_damage: bool| {
        if log_damage || !undecodable.is_empty() {
            "not clean"
        } else {
            "clean"
        }
    };
    let lost = &case.lost;
    let same = "same as Strict".to_string();
    match &case.outcome {
        Outcome::Prefix => (
            format!("opens; nothing to report (a crash may leave any prefix); {lost}"),
            same,
            with_notes(verdict(false)),
        ),
        Outcome::Torn { .. } => (
            format!("opens; {fallback}torn tail truncated from the frame on, in `torn_bytes_dropped`; {lost}"),
            same,
            with_notes(&format!("{}; torn tail listed", verdict(false))),
        ),
        Outcome::TornFile { recreated, .. } => {
            let fresh = if *recreated {
                "; the segment before it ends with its end record, so open continues in a fresh \
                segment of the same id (header only)"
            } else {
                ""
            };
            (
                format!("opens; {fallback}the file is removed, its bytes in `torn_bytes_dropped`{fresh}; {lost}"),
                same,
                with_notes(&format!("{}; torn tail listed", verdict(false))),
            )
        }
        Outcome::Corrupt {
            file,
            offset,
            bytes,
        } => {
            let segment: u64 = file[4..24].parse().unwrap();
            let is_frame = fx
                .frames
                .iter()
                .any(|f| f.segment == segment && f.offset == *offset && f.len == *bytes);
            let (at, range) = if *offset == 0 {
                ("offset 0", "the header")
            } else if *bytes == 0 {
                (
                    "the offset where its valid frames end (\"ends without its end record\")",
                    "0 bytes where the segment's valid frames end",
                )
            } else if is_frame {
                ("the frame's offset", "the frame")
            } else {
                ("the frame's offset", "the frame to the end of the file")
            };
            (
                format!("`Corruption` naming the file and {at}; nothing changed"),
                format!("opens; {fallback}`skipped` = {range}; {lost}"),
                with_notes(&format!("{}; damage listed: {range}", verdict(true))),
            )
        }
        Outcome::Covered {
            file,
            start,
            end,
            min_failures,
        } => {
            let segment: u64 = file[4..24].parse().unwrap();
            let record = fx
                .frames
                .iter()
                .find(|f| f.segment == segment && f.offset == *start);
            let holds_deltas = record.is_some_and(|f| matches!(f.kind, TYPE_BATCH | TYPE_STATE));
            let reads = if !holds_deltas {
                "nothing reads the record: every read is right"
            } else if *min_failures == 0 {
                "every read is right or fails with `Corruption` naming the record"
            } else {
                "reads that need the record fail with `Corruption` naming it, all others are right"
            };
            // A covered end record cannot be missing: section 5a checks it.
            assert!(start < end, "{}", case.position);
            let range = "the frame";
            (
                format!(
                    "opens from the checkpoint; {fallback}the damage is not seen (5a: before \
                    its position, open reads only the frame headers the checkpoint references \
                    and the end records of the sealed segments, and they still pass; no other \
                    CRC there is verified); {reads}"
                ),
                same,
                with_notes(&format!("{}; damage listed: {range}", verdict(true))),
            )
        }
        Outcome::Fallback => (
            format!("opens; {fallback}full state"),
            same,
            with_notes(verdict(false)),
        ),
    }
}

/// One `#[test]` per case (in `mod case`) and `all_cases()` for the table. A case is a
/// constructor function named `name`, or `name = expression` for a one-line constructor.
macro_rules! cases {
    ($( $(#[$attr:meta])* $name:ident $(= $make:expr)?, )*) => {
        $( $( fn $name() -> Case { $make } )? )*

        mod case {
            $( $(#[$attr])* #[test] fn $name() { super::run(super::$name()) } )*
        }

        fn all_cases() -> Vec<(&'static str, fn() -> Case)> {
            vec![$((stringify!($name), $name as fn() -> Case)),*]
        }
    };
}

/// Prints the rows of DESIGN-damage-table.md (`cargo test --test damage_matrix -- --ignored
/// outcome_table --nocapture`).
#[test]
#[ignore = "prints the outcome table; run explicitly"]
fn outcome_table() {
    // The templates' shape, for the text above the table.
    for fx in [plain(), folded(), compacted()] {
        let segments: Vec<String> = fx
            .segments
            .iter()
            .map(|(id, len)| format!("{id} ({len} B)"))
            .collect();
        let checkpoints: Vec<String> = fx
            .checkpoints
            .iter()
            .map(|c| {
                format!(
                    "{} at {}:{}",
                    c.number, c.position.segment, c.position.offset
                )
            })
            .collect();
        let batches = fx.frames.iter().filter(|f| f.batch.is_some()).count();
        let state_segments: BTreeSet<u64> = fx
            .frames
            .iter()
            .filter(|f| f.kind == TYPE_STATE)
            .map(|f| f.segment)
            .collect();
        println!(
            "<!-- {}: {} batches written, {batches} in the log; segments {}; checkpoints {}; \
            frames: {} batch, {} state (in segments {state_segments:?}), {} seal, {} end -->",
            fx.name,
            fx.batches.len(),
            segments.join(", "),
            checkpoints.join(", "),
            fx.frames.iter().filter(|f| f.kind == TYPE_BATCH).count(),
            fx.frames.iter().filter(|f| f.kind == TYPE_STATE).count(),
            fx.frames.iter().filter(|f| f.kind == TYPE_SEAL).count(),
            fx.frames.iter().filter(|f| f.kind == TYPE_END).count(),
        );
    }
    println!();
    println!("| damage | position | Strict | SkipCorrupt | check |");
    println!("|---|---|---|---|---|");
    for (name, make) in all_cases() {
        let case = make();
        let (strict, skip, check) = describe(&case);
        let cell = |expected: String, observed: Option<&str>| match observed {
            Some(observed) => format!("expected: {expected}. **BUG, observed:** {observed}"),
            None => expected,
        };
        let strict = cell(strict, case.observed.strict);
        let skip = cell(skip, case.observed.skip);
        let check = cell(check, case.observed.check);
        let fixture = match case.fx.name {
            "plain" => String::new(),
            other => format!(" ({other} fixture)"),
        };
        println!(
            "| {} | {}{fixture} (`{name}`) | {strict} | {skip} | {check} |",
            case.damage, case.position
        );
    }
}

#[test]
fn every_case_damages_something_distinct() {
    let mut seen = BTreeSet::new();
    for (name, make) in all_cases() {
        let case = make();
        assert!(!case.ops.is_empty(), "{name}");
        assert!(
            seen.insert(format!("{:?}{}", case.ops, case.fx.name)),
            "{name} repeats a case"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

// Bit flips in each frame field, at each kind of position

// Seal and state record bodies
fn flip_seal_body() -> Case {
    let fx = plain();
    let f = kind_frame(fx, TYPE_SEAL, 0);
    // The seal (at 1) changes nothing in the state: losing it loses no delta.
    flip_frame(fx, &f, Field::Body, "seal record after P")
}

fn zero_seal_body() -> Case {
    let fx = plain();
    let f = kind_frame(fx, TYPE_SEAL, 0);
    zero_in_frame(
        fx,
        &f,
        FRAME_HEADER,
        8,
        "seal record body",
        "seal record after P",
    )
}

fn flip_state_body() -> Case {
    // A state record skipped while the deltas it folded are still in the log: the
    // supersede rule does not apply, the deltas give the same state.
    let fx = folded();
    flip_frame(
        fx,
        &kind_frame(fx, TYPE_STATE, 1),
        Field::Body,
        "state record after P, deltas still in the log",
    )
}

fn flip_state_length() -> Case {
    let fx = folded();
    flip_frame(
        fx,
        &kind_frame(fx, TYPE_STATE, 1),
        Field::Length,
        "state record after P, deltas still in the log",
    )
}

fn flip_state_type() -> Case {
    let fx = folded();
    flip_frame(
        fx,
        &kind_frame(fx, TYPE_STATE, 2),
        Field::Type,
        "state record after P, deltas still in the log",
    )
}

fn zero_state_record() -> Case {
    let fx = folded();
    let f = kind_frame(fx, TYPE_STATE, 0);
    zero_in_frame(
        fx,
        &f,
        0,
        f.len,
        "whole state record",
        "state record after P, deltas still in the log",
    )
}

fn flip_state_body_covered() -> Case {
    // After a full compaction: the state record is the only copy of the folded deltas,
    // and it is before both checkpoints' positions.
    let fx = compacted();
    let f = kind_frame(fx, TYPE_STATE, 2);
    flip_frame(
        fx,
        &f,
        Field::Body,
        "state record before the newest checkpoint's position, its deltas reclaimed",
    )
}

fn length_minus_one_covered() -> Case {
    // The other direction of `flip_length_covered` (which makes the frame one byte longer,
    // still inside the file and before both positions: not seen). One byte shorter, the
    // batch's last delta no longer lies inside it: both checkpoints reject it (section 5a)
    // and the full replay meets the damage.
    let fx = plain();
    let f = covered(fx);
    let length = u32::try_from(f.len - FRAME_HEADER - 1).unwrap();
    frame_case(
        fx,
        &f,
        "rewrite 4 bytes".into(),
        format!("{COVERED}: frame length field (length -1)"),
        Op::Overwrite {
            file: segment_rel(f.segment),
            offset: f.offset + 4,
            bytes: length.to_le_bytes().to_vec(),
        },
        0,
    )
}

fn flip_state_length_covered() -> Case {
    // The same state record with its length field off by one: both checkpoints reference it
    // as a base whose length no longer matches its frame, so both are rejected; the full
    // replay meets the damage and SkipCorrupt loses what the record held.
    let fx = compacted();
    let f = kind_frame(fx, TYPE_STATE, 2);
    flip_frame(
        fx,
        &f,
        Field::Length,
        "state record before the newest checkpoint's position, its deltas reclaimed",
    )
}

fn flip_state_body_no_checkpoint() -> Case {
    // Both checkpoints gone: the full replay meets the damaged state record. SkipCorrupt
    // loses exactly what it held: its aggregate's deltas folded by the compaction.
    let fx = compacted();
    let f = kind_frame(fx, TYPE_STATE, 2);
    let aggregate = f.aggregate.clone().unwrap();
    let mut case = flip_frame(
        fx,
        &f,
        Field::Body,
        "state record, its deltas reclaimed, no checkpoint left",
    )
    .op(Op::Delete {
        file: newest_ckpt(fx),
    })
    .op(Op::Delete {
        file: oldest_ckpt(fx),
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(f.segment),
        offset: f.offset,
        bytes: f.len,
    })
    .checkpoints(0, None);
    case.survivors = fx.without_folded(&aggregate);
    case.lost =
        format!("state = oracle without the deltas of {aggregate:?} folded into the record");
    case
}

// Zeroed ranges
fn zero_length_mid() -> Case {
    let fx = plain();
    zero_in_frame(fx, &mid(fx), 4, 4, "frame length field", MID)
}

fn zero_crc_mid() -> Case {
    let fx = plain();
    zero_in_frame(fx, &mid(fx), 0, 4, "frame CRC field", MID)
}

fn zero_body_range_mid() -> Case {
    let fx = plain();
    zero_in_frame(fx, &mid(fx), 40, 64, "64 body bytes", MID)
}

fn zero_frame_mid() -> Case {
    let fx = plain();
    let f = mid(fx);
    zero_in_frame(fx, &f, 0, f.len, "whole frame", MID)
}

fn zero_body_range_last_mid() -> Case {
    let fx = plain();
    zero_in_frame(fx, &last_mid(fx), 40, 64, "64 body bytes", LAST_MID)
}

fn zero_body_range_last_last() -> Case {
    let fx = plain();
    zero_in_frame(fx, &last_last(fx), 40, 64, "64 body bytes", LAST_LAST)
}

fn zero_body_range_covered() -> Case {
    let fx = plain();
    zero_in_frame(fx, &covered(fx), 40, 64, "64 body bytes", COVERED)
}

fn zero_end_record_mid() -> Case {
    let fx = plain();
    let f = mid_end(fx);
    zero_in_frame(fx, &f, 0, f.len, "whole end record", MID_END)
}

fn zero_tail_of_middle_segment() -> Case {
    // From a frame to the end of a sealed segment: damage running to the end (not a torn
    // tail: a later segment exists).
    let fx = plain();
    let f = mid(fx);
    let seg = fx.middle_segment();
    let len = fx.segment_len(seg) - f.offset;
    Case::new(
        fx,
        format!("zero {len} bytes"),
        "whole tail of a middle segment, from a frame start",
    )
    .op(Op::Zero {
        file: segment_rel(seg),
        offset: f.offset,
        len,
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(seg),
        offset: f.offset,
        bytes: len,
    })
    .lose(&fx.batches_from(seg, f.offset))
}

fn zero_tail_of_last_segment() -> Case {
    // From an acknowledged frame to the end of the last segment: no valid frame follows,
    // so rule 1 treats it all as a torn tail.
    let fx = plain();
    let f = last_mid(fx);
    let seg = fx.last_segment();
    let len = fx.segment_len(seg) - f.offset;
    Case::new(
        fx,
        format!("zero {len} bytes"),
        "whole tail of the last segment, from its second frame",
    )
    .op(Op::Zero {
        file: segment_rel(seg),
        offset: f.offset,
        len,
    })
    .outcome(Outcome::Torn {
        file: segment_rel(seg),
        offset: f.offset,
    })
    .lose(&fx.batches_from(seg, f.offset))
}

fn zero_last_commit_record() -> Case {
    // The commit record that opens the last write is zeros and the batch after it is intact:
    // the shape a crash leaves when the write's sectors persisted out of order. No commit
    // record after it proves it durable, so rule 1 makes it a torn tail, batch included.
    let fx = plain();
    let seg = fx.last_segment();
    let frames = fx.frames_of(seg);
    let f = frames
        .iter()
        .rev()
        .find(|f| f.kind == TYPE_COMMIT)
        .unwrap()
        .clone();
    assert_eq!(
        frames.last().unwrap().kind,
        TYPE_BATCH,
        "a batch follows it"
    );
    Case::new(
        fx,
        format!("zero {} bytes", f.len),
        "commit record of the last write (its batch intact after it)",
    )
    .op(Op::Zero {
        file: segment_rel(seg),
        offset: f.offset,
        len: f.len,
    })
    .outcome(Outcome::Torn {
        file: segment_rel(seg),
        offset: f.offset,
    })
    .lose(&fx.batches_from(seg, f.offset))
}

fn zero_mid_commit_record() -> Case {
    // The commit record of an earlier write of the last segment: the next write's commit
    // record says it was durable, so it is corruption.
    let fx = plain();
    let seg = fx.last_segment();
    let f = fx
        .frames_of(seg)
        .into_iter()
        .filter(|f| f.kind == TYPE_COMMIT)
        .nth(1)
        .unwrap();
    assert!(!fx.unsynced_at(&f));
    Case::new(
        fx,
        format!("zero {} bytes", f.len),
        "commit record of an earlier write of the last segment",
    )
    .op(Op::Zero {
        file: segment_rel(seg),
        offset: f.offset,
        len: f.len,
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(seg),
        offset: f.offset,
        bytes: f.len,
    })
}

fn zero_header_middle() -> Case {
    let fx = plain();
    let seg = fx.middle_segment();
    header_case(
        fx,
        seg,
        "zero 32 bytes",
        "(all of it)",
        Op::Zero {
            file: segment_rel(seg),
            offset: 0,
            len: SEGMENT_HEADER,
        },
    )
}

// Segment headers

fn header_naming_another_segment() -> Case {
    // A well-formed header (valid CRC) naming segment 99: "an id that does not match the
    // file name".
    let fx = plain();
    let seg = fx.middle_segment();
    let mut header = fs::read(fx.dir.join(segment_rel(seg))).unwrap()[..32].to_vec();
    header[16..24].copy_from_slice(&99u64.to_le_bytes());
    let crc = crc32fast::hash(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header_case(
        fx,
        seg,
        "rewrite the header",
        "(valid CRC, names segment 99)",
        Op::Overwrite {
            file: segment_rel(seg),
            offset: 0,
            bytes: header,
        },
    )
}

// Truncation
fn truncate_last_inside_last_frame() -> Case {
    let fx = plain();
    let f = last_last(fx);
    Case::new(fx, "truncate", format!("{LAST_LAST}, cut inside its body"))
        .op(Op::Truncate {
            file: segment_rel(f.segment),
            len: f.offset + 50,
        })
        .outcome(Outcome::Torn {
            file: segment_rel(f.segment),
            offset: f.offset,
        })
        .lose(&[f.batch.unwrap()])
}

fn truncate_last_inside_frame_header() -> Case {
    let fx = plain();
    let f = last_last(fx);
    Case::new(
        fx,
        "truncate",
        format!("{LAST_LAST}, cut inside its frame header"),
    )
    .op(Op::Truncate {
        file: segment_rel(f.segment),
        len: f.offset + 5,
    })
    .outcome(Outcome::Torn {
        file: segment_rel(f.segment),
        offset: f.offset,
    })
    .lose(&[f.batch.unwrap()])
}

fn truncate_last_and_zero_fill() -> Case {
    let fx = plain();
    let f = last_last(fx);
    Case::new(
        fx,
        "truncate, zero-fill to the old length",
        format!("{LAST_LAST}, cut inside its body"),
    )
    .op(Op::CutAndZeroFill {
        file: segment_rel(f.segment),
        len: f.offset + 50,
    })
    .outcome(Outcome::Torn {
        file: segment_rel(f.segment),
        offset: f.offset,
    })
    .lose(&[f.batch.unwrap()])
}

fn truncate_last_at_frame_boundary() -> Case {
    let fx = plain();
    let f = last_last(fx);
    Case::new(
        fx,
        "truncate",
        format!("{LAST_LAST}, cut at its start (a frame boundary)"),
    )
    .op(Op::Truncate {
        file: segment_rel(f.segment),
        len: f.offset,
    })
    .outcome(Outcome::Prefix)
    .lose(&[f.batch.unwrap()])
}

fn truncate_last_to_header() -> Case {
    let fx = plain();
    let seg = fx.last_segment();
    Case::new(fx, "truncate", "last segment, cut to its 32-byte header")
        .op(Op::Truncate {
            file: segment_rel(seg),
            len: SEGMENT_HEADER,
        })
        .outcome(Outcome::Prefix)
        .lose(&fx.batches_from(seg, 0))
}

fn truncate_last_inside_header() -> Case {
    let fx = plain();
    let seg = fx.last_segment();
    Case::new(
        fx,
        "truncate",
        "last segment, cut inside its header (20 bytes)",
    )
    .op(Op::Truncate {
        file: segment_rel(seg),
        len: 20,
    })
    .outcome(Outcome::TornFile {
        file: segment_rel(seg),
        recreated: fx.frames_of(seg - 1).last().unwrap().kind == TYPE_END,
    })
    .lose(&fx.batches_from(seg, 0))
}

fn truncate_middle_inside_frame() -> Case {
    let fx = plain();
    let f = mid(fx);
    let cut = f.offset + 50;
    Case::new(
        fx,
        "truncate",
        format!("{MID}, cut inside it (the whole tail of the segment)"),
    )
    .op(Op::Truncate {
        file: segment_rel(f.segment),
        len: cut,
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(f.segment),
        offset: f.offset,
        bytes: cut - f.offset,
    })
    .lose(&fx.batches_from(f.segment, f.offset))
}

fn truncate_middle_inside_last_frame() -> Case {
    let fx = plain();
    let f = mid_last(fx);
    let cut = f.offset + 50;
    Case::new(fx, "truncate", format!("{MID_LAST}, cut inside it"))
        .op(Op::Truncate {
            file: segment_rel(f.segment),
            len: cut,
        })
        .outcome(Outcome::Corrupt {
            file: segment_rel(f.segment),
            offset: f.offset,
            bytes: cut - f.offset,
        })
        .lose(&[f.batch.unwrap()])
}

fn truncate_middle_at_frame_boundary() -> Case {
    // Rule 1 of the end record: the segment's valid frames end without it and valid records
    // follow in later segments, so it was truncated (0 bytes of damage where its frames end).
    let fx = plain();
    let f = mid(fx);
    Case::new(
        fx,
        "truncate",
        format!("{MID}, cut at its start (a frame boundary)"),
    )
    .op(Op::Truncate {
        file: segment_rel(f.segment),
        len: f.offset,
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(f.segment),
        offset: f.offset,
        bytes: 0,
    })
    .reason(UNSEALED)
    .lose(&fx.batches_from(f.segment, f.offset))
}

fn truncate_middle_end_record() -> Case {
    // Only the end record is cut off: no delta is lost, but the cut is still reported.
    let fx = plain();
    let f = mid_end(fx);
    Case::new(
        fx,
        "truncate",
        format!("{MID_END}, cut at its start (the segment's last batch is intact)"),
    )
    .op(Op::Truncate {
        file: segment_rel(f.segment),
        len: f.offset,
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(f.segment),
        offset: f.offset,
        bytes: 0,
    })
    .reason(UNSEALED)
}

fn truncate_middle_inside_end_record() -> Case {
    let fx = plain();
    let f = mid_end(fx);
    let cut = f.offset + FRAME_HEADER;
    Case::new(
        fx,
        "truncate",
        format!("{MID_END}, cut after its frame header"),
    )
    .op(Op::Truncate {
        file: segment_rel(f.segment),
        len: cut,
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(f.segment),
        offset: f.offset,
        bytes: cut - f.offset,
    })
}

fn truncate_middle_inside_header() -> Case {
    let fx = plain();
    let seg = fx.middle_segment();
    Case::new(
        fx,
        "truncate",
        "middle segment, cut inside its header (20 bytes)",
    )
    .op(Op::Truncate {
        file: segment_rel(seg),
        len: 20,
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(seg),
        offset: 0,
        bytes: 20,
    })
    .lose(&fx.batches_from(seg, 0))
}

fn truncate_covered_after_oldest_checkpoint() -> Case {
    // Segment 1 cut inside a frame between the two checkpoints' positions. The newest
    // checkpoint points past the cut; and segment 1, at or before both positions, no longer
    // ends with its end record: both are rejected, and the full replay meets the damaged end of
    // a sealed segment followed by a segment with a valid header.
    let fx = plain();
    let f = fx.batch_frames_of(1)[6].clone();
    assert!(f.location() > fx.checkpoints[0].position);
    let cut = f.offset + 50;
    let case = Case::new(
        fx,
        "truncate",
        "segment between the two checkpoints' positions, cut inside a frame",
    )
    .op(Op::Truncate {
        file: segment_rel(1),
        len: cut,
    })
    .judged()
    .outcome(Outcome::Corrupt {
        file: segment_rel(1),
        offset: f.offset,
        bytes: cut - f.offset,
    })
    .lose(&fx.batches_from(1, f.offset));
    assert_eq!((case.rejected, case.used), (2, None), "both rejected");
    case
}

fn truncate_covered_inside_last_frame() -> Case {
    // The last batch of segment 1 (after the oldest checkpoint's position, before the
    // newest's) cut inside: the newest checkpoint references a frame that now runs past the
    // file end, and segment 1 no longer ends with its end record, which rejects the oldest
    // too; the full replay meets the damaged end of a sealed segment.
    let fx = plain();
    let f = fx.batch_frames_of(1).last().unwrap().clone();
    assert!(f.location() > fx.checkpoints[0].position);
    let cut = f.offset + 50;
    let case = Case::new(
        fx,
        "truncate",
        "last batch of a segment before the newest checkpoint's position, cut inside it",
    )
    .op(Op::Truncate {
        file: segment_rel(1),
        len: cut,
    })
    .judged()
    .outcome(Outcome::Corrupt {
        file: segment_rel(1),
        offset: f.offset,
        bytes: cut - f.offset,
    })
    .lose(&[f.batch.unwrap()]);
    assert_eq!((case.rejected, case.used), (2, None), "both rejected");
    case
}

fn truncate_covered_end_record() -> Case {
    // Segment 1 loses only its end record. No checkpoint references it, but both positions
    // lie in segment 1 or later: both are rejected (section 5a), and the full replay finds
    // segment 1's valid frames ending without it while segment 2 has a valid header. Nothing
    // is lost.
    let fx = plain();
    let f = covered_end(fx);
    let case = Case::new(fx, "truncate", format!("{COVERED_END}, cut at its start"))
        .op(Op::Truncate {
            file: segment_rel(1),
            len: f.offset,
        })
        .judged()
        .outcome(Outcome::Corrupt {
            file: segment_rel(1),
            offset: f.offset,
            bytes: 0,
        })
        .reason(UNSEALED);
    assert_eq!((case.rejected, case.used), (2, None), "both rejected");
    case
}

fn truncate_covered_before_both_checkpoints() -> Case {
    let fx = plain();
    let f = covered(fx);
    let cut = f.offset + 50;
    let case = Case::new(
        fx,
        "truncate",
        "segment before both checkpoints' positions, cut inside a frame",
    )
    .op(Op::Truncate {
        file: segment_rel(1),
        len: cut,
    })
    .judged()
    .outcome(Outcome::Corrupt {
        file: segment_rel(1),
        offset: f.offset,
        bytes: cut - f.offset,
    })
    .lose(&fx.batches_from(1, f.offset));
    assert_eq!((case.rejected, case.used), (2, None), "both rejected");
    case
}

// Checkpoints

fn checkpoint_truncated_by_one() -> Case {
    let fx = plain();
    let file = newest_ckpt(fx);
    let len = len_of(&fx.dir, &file);
    checkpoint_case(
        "truncate",
        "newest checkpoint, last byte cut",
        vec![Op::Truncate { file, len: len - 1 }],
        1,
        fx.oldest(),
    )
}

fn checkpoint_truncated_to_half() -> Case {
    let fx = plain();
    let file = newest_ckpt(fx);
    let len = len_of(&fx.dir, &file);
    checkpoint_case(
        "truncate",
        "newest checkpoint, cut to half",
        vec![Op::Truncate { file, len: len / 2 }],
        1,
        fx.oldest(),
    )
}

fn checkpoint_truncated_to_empty() -> Case {
    let fx = plain();
    let file = newest_ckpt(fx);
    checkpoint_case(
        "truncate",
        "newest checkpoint, cut to 0 bytes",
        vec![Op::Truncate { file, len: 0 }],
        1,
        fx.oldest(),
    )
}

fn checkpoint_zeroed() -> Case {
    let fx = plain();
    let file = newest_ckpt(fx);
    let len = len_of(&fx.dir, &file);
    checkpoint_case(
        &format!("zero {len} bytes"),
        "newest checkpoint, all of it",
        vec![Op::Zero {
            file,
            offset: 0,
            len,
        }],
        1,
        fx.oldest(),
    )
}

fn checkpoint_zero_chains() -> Case {
    let fx = plain();
    let file = newest_ckpt(fx);
    checkpoint_case(
        "zero 40 bytes",
        "newest checkpoint, chain bytes",
        vec![Op::Zero {
            file,
            offset: 110,
            len: 40,
        }],
        1,
        fx.oldest(),
    )
}

fn checkpoint_deleted() -> Case {
    let fx = plain();
    checkpoint_case(
        "delete",
        "newest checkpoint file",
        vec![Op::Delete {
            file: newest_ckpt(fx),
        }],
        0,
        fx.oldest(),
    )
}

fn checkpoint_oldest_flipped() -> Case {
    // Never read: the newest is valid.
    let fx = plain();
    let file = oldest_ckpt(fx);
    checkpoint_case(
        "flip one bit",
        "oldest checkpoint, chain bytes",
        vec![Op::Flip {
            file,
            offset: 120,
            mask: 0x01,
        }],
        0,
        fx.newest(),
    )
}

fn checkpoint_both_flipped() -> Case {
    let fx = plain();
    checkpoint_case(
        "flip one bit in each",
        "both checkpoints",
        vec![
            Op::Flip {
                file: newest_ckpt(fx),
                offset: 100,
                mask: 0x01,
            },
            Op::Flip {
                file: oldest_ckpt(fx),
                offset: 100,
                mask: 0x01,
            },
        ],
        2,
        None,
    )
}

fn checkpoint_both_deleted() -> Case {
    let fx = plain();
    checkpoint_case(
        "delete",
        "both checkpoint files",
        vec![
            Op::Delete {
                file: newest_ckpt(fx),
            },
            Op::Delete {
                file: oldest_ckpt(fx),
            },
        ],
        0,
        None,
    )
}

fn checkpoint_stray_temp_file() -> Case {
    // A leftover temp file of an interrupted checkpoint write is ignored.
    let fx = plain();
    let file = format!("{}.tmp", fx.checkpoint_rel(fx.newest().unwrap() + 1));
    checkpoint_case(
        "add a garbage file",
        "next checkpoint's `.ckpt.tmp`",
        vec![Op::Create {
            file,
            bytes: b"AGGRCKPT garbage".to_vec(),
        }],
        0,
        fx.newest(),
    )
}

fn checkpoint_garbage_newer() -> Case {
    // A file named like a newer checkpoint but holding garbage: rejected, the real newest
    // one is used.
    let fx = plain();
    let file = fx.checkpoint_rel(fx.newest().unwrap() + 1);
    let mut bytes = fs::read(fx.dir.join(newest_ckpt(fx))).unwrap();
    bytes[60] ^= 0x01;
    checkpoint_case(
        "add a damaged copy",
        "as a newer checkpoint",
        vec![Op::Create { file, bytes }],
        1,
        fx.newest(),
    )
}

fn checkpoint_newest_flipped_compacted() -> Case {
    // After a full compaction: falls back to the compaction's checkpoint.
    let fx = compacted();
    let file = newest_ckpt(fx);
    Case::new(fx, "flip one bit", "newest checkpoint, chain bytes")
        .op(Op::Flip {
            file,
            offset: 120,
            mask: 0x01,
        })
        .checkpoints(1, fx.oldest())
}

fn checkpoint_both_deleted_compacted() -> Case {
    // The log alone suffices after compaction (section 5b): a full replay of what is left.
    let fx = compacted();
    Case::new(fx, "delete", "both checkpoint files")
        .op(Op::Delete {
            file: newest_ckpt(fx),
        })
        .op(Op::Delete {
            file: oldest_ckpt(fx),
        })
        .checkpoints(0, None)
}

// A damaged checkpoint exposes log damage it covered
fn checkpoint_deleted_exposes_damage() -> Case {
    // A frame between the two positions, covered only by the newest checkpoint: once that
    // is gone, the replay from the oldest meets the damage.
    let fx = plain();
    let f = fx.frames_of(2)[1].clone();
    assert!(f.location() < fx.position() && f.location() > fx.checkpoints[0].position);
    flip_frame(
        fx,
        &f,
        Field::Body,
        "record between the two checkpoints' positions, newest checkpoint deleted",
    )
    .op(Op::Delete {
        file: newest_ckpt(fx),
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(2),
        offset: f.offset,
        bytes: f.len,
    })
    .lose(&[f.batch.unwrap()])
    .checkpoints(0, fx.oldest())
}

fn checkpoint_flipped_exposes_damage() -> Case {
    let fx = plain();
    let f = fx.batch_frames_of(1)[6].clone();
    assert!(f.location() > fx.checkpoints[0].position);
    flip_frame(
        fx,
        &f,
        Field::Crc,
        "record between the two checkpoints' positions, newest checkpoint damaged",
    )
    .op(Op::Flip {
        file: newest_ckpt(fx),
        offset: 50,
        mask: 0x01,
    })
    .outcome(Outcome::Corrupt {
        file: segment_rel(1),
        offset: f.offset,
        bytes: f.len,
    })
    .lose(&[f.batch.unwrap()])
    .checkpoints(1, fx.oldest())
}

cases! {
    flip_crc_mid = frame_flip(mid, MID, Field::Crc),
    flip_length_mid = frame_flip(mid, MID, Field::Length),
    flip_length_high_mid = frame_flip(mid, MID, Field::LengthHigh),
    flip_type_mid = frame_flip(mid, MID, Field::Type),
    flip_type_unknown_mid = frame_flip(mid, MID, Field::TypeUnknown),
    flip_flags_mid = frame_flip(mid, MID, Field::Flags),
    flip_flags_unknown_mid = frame_flip(mid, MID, Field::FlagsUnknown),
    flip_reserved_mid = frame_flip(mid, MID, Field::Reserved),
    flip_body_mid = frame_flip(mid, MID, Field::Body),
    flip_length_high_mid_last = frame_flip(mid_last, MID_LAST, Field::LengthHigh),
    flip_crc_mid_last = frame_flip(mid_last, MID_LAST, Field::Crc),
    flip_length_mid_last = frame_flip(mid_last, MID_LAST, Field::Length),
    flip_type_mid_last = frame_flip(mid_last, MID_LAST, Field::Type),
    flip_flags_mid_last = frame_flip(mid_last, MID_LAST, Field::Flags),
    flip_reserved_mid_last = frame_flip(mid_last, MID_LAST, Field::Reserved),
    flip_body_mid_last = frame_flip(mid_last, MID_LAST, Field::Body),
    flip_crc_mid_end = frame_flip(mid_end, MID_END, Field::Crc),
    flip_length_mid_end = frame_flip(mid_end, MID_END, Field::Length),
    flip_type_mid_end = frame_flip(mid_end, MID_END, Field::Type),
    flip_type_unknown_mid_end = frame_flip(mid_end, MID_END, Field::TypeUnknown),
    flip_reserved_mid_end = frame_flip(mid_end, MID_END, Field::Reserved),
    flip_body_mid_end = frame_flip(mid_end, MID_END, Field::Body),
    flip_crc_last_mid = frame_flip(last_mid, LAST_MID, Field::Crc),
    flip_length_last_mid = frame_flip(last_mid, LAST_MID, Field::Length),
    flip_type_last_mid = frame_flip(last_mid, LAST_MID, Field::Type),
    flip_flags_last_mid = frame_flip(last_mid, LAST_MID, Field::Flags),
    flip_reserved_last_mid = frame_flip(last_mid, LAST_MID, Field::Reserved),
    flip_body_last_mid = frame_flip(last_mid, LAST_MID, Field::Body),
    flip_crc_last_last = frame_flip(last_last, LAST_LAST, Field::Crc),
    flip_length_last_last = frame_flip(last_last, LAST_LAST, Field::Length),
    flip_length_high_last_last = frame_flip(last_last, LAST_LAST, Field::LengthHigh),
    flip_type_last_last = frame_flip(last_last, LAST_LAST, Field::Type),
    flip_flags_last_last = frame_flip(last_last, LAST_LAST, Field::Flags),
    flip_reserved_last_last = frame_flip(last_last, LAST_LAST, Field::Reserved),
    flip_body_last_last = frame_flip(last_last, LAST_LAST, Field::Body),
    flip_crc_covered = frame_flip(covered, COVERED, Field::Crc),
    flip_length_covered = frame_flip(covered, COVERED, Field::Length),
    length_minus_one_covered,
    flip_length_high_covered = frame_flip(covered, COVERED, Field::LengthHigh),
    flip_type_covered = frame_flip(covered, COVERED, Field::Type),
    flip_type_unknown_covered = frame_flip(covered, COVERED, Field::TypeUnknown),
    flip_flags_covered = frame_flip(covered, COVERED, Field::Flags),
    flip_flags_unknown_covered = frame_flip(covered, COVERED, Field::FlagsUnknown),
    flip_reserved_covered = frame_flip(covered, COVERED, Field::Reserved),
    flip_body_covered = frame_flip(covered, COVERED, Field::Body),
    flip_length_last_before_position = frame_flip(last_before_position, LAST_BEFORE_P, Field::Length),
    flip_crc_covered_end = frame_flip(covered_end, COVERED_END, Field::Crc),
    flip_length_covered_end = frame_flip(covered_end, COVERED_END, Field::Length),
    flip_seal_body,
    zero_seal_body,
    flip_state_body,
    flip_state_length,
    flip_state_type,
    zero_state_record,
    flip_state_body_covered,
    flip_state_length_covered,
    flip_state_body_no_checkpoint,
    zero_length_mid,
    zero_crc_mid,
    zero_body_range_mid,
    zero_frame_mid,
    zero_body_range_last_mid,
    zero_body_range_last_last,
    zero_body_range_covered,
    zero_end_record_mid,
    zero_tail_of_middle_segment,
    zero_tail_of_last_segment,
    zero_last_commit_record,
    zero_mid_commit_record,
    zero_header_middle,
    flip_header_magic_middle = header_flip(middle, "magic", 2, 0x01),
    flip_header_version_middle = header_flip(middle, "version", 8, 0x02),
    flip_header_length_middle = header_flip(middle, "header length", 12, 0x04),
    flip_header_id_middle = header_flip(middle, "segment id", 16, 0x08),
    flip_header_reserved_middle = header_flip(middle, "reserved", 24, 0x10),
    flip_header_crc_middle = header_flip(middle, "CRC", 29, 0x20),
    flip_header_magic_last = header_flip(last, "magic", 0, 0x40),
    flip_header_id_last = header_flip(last, "segment id", 16, 0x01),
    flip_header_crc_last = header_flip(last, "CRC", 28, 0x01),
    flip_header_id_covered = header_flip(first, "segment id", 16, 0x02),
    header_naming_another_segment,
    truncate_last_inside_last_frame,
    truncate_last_inside_frame_header,
    truncate_last_and_zero_fill,
    truncate_last_at_frame_boundary,
    truncate_last_to_header,
    truncate_last_inside_header,
    truncate_middle_inside_frame,
    truncate_middle_inside_last_frame,
    truncate_middle_at_frame_boundary,
    truncate_middle_end_record,
    truncate_middle_inside_end_record,
    truncate_middle_inside_header,
    truncate_covered_after_oldest_checkpoint,
    truncate_covered_inside_last_frame,
    truncate_covered_end_record,
    truncate_covered_before_both_checkpoints,
    checkpoint_flip_magic = ckpt_flip(|_| 1, "magic"),
    checkpoint_flip_version = ckpt_flip(|_| 8, "version"),
    checkpoint_flip_number = ckpt_flip(|_| 16, "checkpoint number"),
    checkpoint_flip_position = ckpt_flip(|_| 33, "position offset"),
    checkpoint_flip_count = ckpt_flip(|_| 96, "aggregate count"),
    checkpoint_flip_chain = ckpt_flip(|len| len / 2, "chain bytes"),
    checkpoint_flip_trailer_crc = ckpt_flip(|len| len - 2, "trailer CRC"),
    checkpoint_truncated_by_one,
    checkpoint_truncated_to_half,
    checkpoint_truncated_to_empty,
    checkpoint_zeroed,
    checkpoint_zero_chains,
    checkpoint_deleted,
    checkpoint_oldest_flipped,
    checkpoint_both_flipped,
    checkpoint_both_deleted,
    checkpoint_stray_temp_file,
    checkpoint_garbage_newer,
    checkpoint_newest_flipped_compacted,
    checkpoint_both_deleted_compacted,
    checkpoint_deleted_exposes_damage,
    checkpoint_flipped_exposes_damage,
}
