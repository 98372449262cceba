//! The damage matrix of spanning batches (DESIGN.md, sections 3.6 and 5): one bit flipped in
//! the header, the body or the CRC of every frame of a log holding ordinary batches and two
//! batches larger than a segment, each checked against what the rules predict, from an
//! independent parse of the bytes (frame layout, commit records' `durable_through`, batch
//! commits' fragment lists):
//!
//! - damage in the last segment that no later commit record proves durable is a torn tail:
//!   both modes open, drop it and every batch whose record (a batch, or a spanning batch's
//!   batch commit) lies at or after it;
//! - any other damage is corruption at the damaged frame: Strict fails naming the file and
//!   offset; SkipCorrupt opens without the batch the frame belongs to (an ordinary batch, or
//!   the whole spanning batch when the frame is one of its fragments or its batch commit) and
//!   lists the range; `check` lists it.
//!
//! In every case a spanning batch is wholly present or wholly absent.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use aggrelog::{Db, Error, Options, RecordLocation, RecoveryMode};
use common::{batch_of, copy_dir, oracle, scan_all, TestDelta};
use serde_json::json;

const SEGMENT_SIZE: u64 = 8192;
const FRAME_HEADER: usize = 12;
const SEGMENT_HEADER: usize = 32;
const TYPE_BATCH: u8 = 1;
const TYPE_COMMIT: u8 = 5;
const TYPE_FRAGMENT: u8 = 6;
const TYPE_BATCH_COMMIT: u8 = 7;

fn options() -> Options {
    Options::default()
        .segment_size_bytes(SEGMENT_SIZE)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
}

/// One frame, parsed from the bytes (section 3.2).
#[derive(Clone, Debug)]
struct FrameInfo {
    segment: u64,
    offset: u64,
    len: u64,
    kind: u8,
    /// A commit record's `durable_through`.
    durable_through: Option<u64>,
    /// A batch commit's fragment locations.
    fragments: Vec<RecordLocation>,
}

impl FrameInfo {
    fn location(&self) -> RecordLocation {
        RecordLocation {
            segment: self.segment,
            offset: self.offset,
        }
    }
}

fn segment_rel(id: u64) -> String {
    format!("wal/{id:020}.seg")
}

fn read_frames(dir: &Path) -> (Vec<u64>, Vec<FrameInfo>) {
    let mut ids: Vec<u64> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .map(|n| n.trim_end_matches(".seg").parse().unwrap())
        .collect();
    ids.sort();
    let mut frames = Vec::new();
    for &id in &ids {
        let bytes = fs::read(dir.join(segment_rel(id))).unwrap();
        let mut at = SEGMENT_HEADER;
        while at < bytes.len() {
            let u32_at = |p: usize| u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap());
            let u64_at = |p: usize| u64::from_le_bytes(bytes[p..p + 8].try_into().unwrap());
            let length = u32_at(at + 4) as usize;
            let kind = bytes[at + 8];
            let body = at + FRAME_HEADER;
            let durable_through = (kind == TYPE_COMMIT).then(|| u64_at(body));
            let fragments = if kind == TYPE_BATCH_COMMIT {
                let count = u32_at(body) as usize;
                assert_eq!(length, 12 + 16 * count, "batch commit of {count} fragments");
                (0..count)
                    .map(|n| RecordLocation {
                        segment: u64_at(body + 12 + 16 * n),
                        offset: u64::from(u32_at(body + 20 + 16 * n)),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            frames.push(FrameInfo {
                segment: id,
                offset: at as u64,
                len: (FRAME_HEADER + length) as u64,
                kind,
                durable_through,
                fragments,
            });
            at = body + length;
        }
        assert_eq!(at, bytes.len(), "segment {id}: frames end at its end");
    }
    (ids, frames)
}

/// A log record that makes a batch present: an ordinary batch frame or a batch commit.
struct Written {
    deltas: Vec<TestDelta>,
    location: RecordLocation,
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    written: Vec<Written>,
    segments: Vec<u64>,
    frames: Vec<FrameInfo>,
}

fn small(k: u64) -> Vec<TestDelta> {
    (0..3)
        .map(|i| {
            let id = format!("air-{}", (k + i) % 5);
            common::patch(
                &id,
                k,
                json!({"engine": {"hours": k * 10 + i}, "pad": "s".repeat(30)}),
            )
        })
        .collect()
}

fn large(k: u64, n: u64) -> Vec<TestDelta> {
    let mut deltas = vec![common::patch(&format!("big-{k}-first"), k, json!({"m": k}))];
    deltas.extend((0..n).map(|i| {
        common::patch(
            &format!("air-{}", i % 9),
            k,
            json!({"cabin": {"row": i}, "pad": "l".repeat(30)}),
        )
    }));
    deltas.push(common::patch(&format!("big-{k}-last"), k, json!({"m": k})));
    deltas
}

/// Ordinary batches, a spanning batch over several segments, ordinary batches, and a spanning
/// batch as the last write (its fragments in the last segment unsynced until its commit).
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open(&dir, options()).unwrap();
    let mut written = Vec::new();
    let mut write = |deltas: Vec<TestDelta>| {
        let receipt = if deltas.len() > 10 {
            let mut batch = db.large_batch().unwrap();
            for d in &deltas {
                batch
                    .patch(&d.aggregate, d.seq, d.patch.as_ref().unwrap())
                    .unwrap();
            }
            assert!(batch.fragments_written() > 1);
            batch.commit().unwrap()
        } else {
            db.write(&batch_of(&deltas)).unwrap()
        };
        let location = receipt.location.unwrap();
        written.push(Written { deltas, location });
    };
    for k in 1..4 {
        write(small(k));
    }
    write(large(10, 400));
    for k in 4..7 {
        write(small(k));
    }
    write(large(20, 300));
    db.close().unwrap();
    let (segments, frames) = read_frames(&dir);
    assert!(segments.len() >= 6, "{segments:?}");
    Fixture {
        _tmp: tmp,
        dir,
        written,
        segments,
        frames,
    }
}

impl Fixture {
    fn frame_at(&self, location: RecordLocation) -> &FrameInfo {
        self.frames
            .iter()
            .find(|f| f.location() == location)
            .unwrap()
    }

    /// The written batch frame `f` belongs to: its batch, its batch commit, or a fragment it
    /// lists.
    fn owner(&self, f: &FrameInfo) -> Option<usize> {
        self.written.iter().position(|w| {
            let record = self.frame_at(w.location);
            w.location == f.location() || record.fragments.contains(&f.location())
        })
    }

    /// Rule 1: damage at `f` is a torn tail when it lies in the last segment and no commit
    /// record after it says it was durable.
    fn unsynced_at(&self, f: &FrameInfo) -> bool {
        let last = *self.segments.last().unwrap();
        f.segment == last
            && !self.frames.iter().any(|later| {
                later.segment == last
                    && later.offset > f.offset
                    && later.durable_through.is_some_and(|d| d > f.offset)
            })
    }

    fn survivors(&self, lost: &[usize]) -> Vec<Vec<TestDelta>> {
        (self.written.iter().enumerate())
            .filter(|(k, _)| !lost.contains(k))
            .map(|(_, w)| w.deltas.clone())
            .collect()
    }
}

/// Spanning batches are whole or absent in `states`.
fn assert_whole_or_absent(
    states: &std::collections::BTreeMap<String, (u64, serde_json::Value)>,
    label: &str,
) {
    for k in [10, 20] {
        let first = states.contains_key(&format!("big-{k}-first"));
        let last = states.contains_key(&format!("big-{k}-last"));
        assert_eq!(first, last, "{label}: spanning batch {k} partly present");
    }
}

fn run_case(fx: &Fixture, f: &FrameInfo, at: u64, what: &str) {
    let label = format!(
        "flip {what} (byte {at}) of the type {} frame at {}:{}",
        f.kind,
        segment_rel(f.segment),
        f.offset
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    copy_dir(&fx.dir, &dir);
    let path = dir.join(segment_rel(f.segment));
    let mut bytes = fs::read(&path).unwrap();
    bytes[at as usize] ^= 0x08;
    fs::write(&path, &bytes).unwrap();

    if fx.unsynced_at(f) {
        let lost: Vec<usize> = (0..fx.written.len())
            .filter(|&k| fx.written[k].location >= f.location())
            .collect();
        let expected = oracle(&fx.survivors(&lost));
        let report = aggrelog::check(&dir).unwrap();
        assert!(
            report.is_clean(),
            "{label}: a torn tail is not damage: {report:?}"
        );
        for mode in [RecoveryMode::Strict, RecoveryMode::SkipCorrupt] {
            let db = Db::open(&dir, options().recovery(mode)).unwrap();
            assert!(db.stats().torn_bytes_dropped > 0, "{label}");
            let states = scan_all(&db);
            assert_whole_or_absent(&states, &label);
            assert_eq!(
                states, expected,
                "{label}, {mode:?}: torn from {}",
                f.offset
            );
            drop(db);
            // The next mode starts from the same damage.
            fs::write(&path, &bytes).unwrap();
        }
        return;
    }
    match Db::open(&dir, options()) {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(
                (file, offset),
                (path.clone(), f.offset),
                "{label}: Strict names the frame"
            )
        }
        other => panic!(
            "{label}: Strict must fail with corruption, got {:?}",
            other.err()
        ),
    }
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "{label}: Strict changes nothing"
    );
    let report = aggrelog::check(&dir).unwrap();
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.file == path && d.offset == f.offset),
        "{label}: check lists it: {report:?}"
    );
    let db = Db::open(&dir, options().recovery(RecoveryMode::SkipCorrupt)).unwrap();
    let skipped = db.stats().skipped;
    assert!(
        skipped
            .iter()
            .any(|d| d.file == path && d.offset == f.offset),
        "{label}: SkipCorrupt lists it: {skipped:?}"
    );
    let lost: Vec<usize> = fx.owner(f).into_iter().collect();
    let states = scan_all(&db);
    assert_whole_or_absent(&states, &label);
    assert_eq!(
        states,
        oracle(&fx.survivors(&lost)),
        "{label}: SkipCorrupt loses {lost:?}"
    );
}

#[test]
fn every_frame_of_a_log_with_spanning_batches_damaged_gives_the_predicted_outcome() {
    let fx = fixture();
    let kinds: Vec<u8> = fx.frames.iter().map(|f| f.kind).collect();
    assert!(
        kinds.contains(&TYPE_FRAGMENT)
            && kinds.contains(&TYPE_BATCH_COMMIT)
            && kinds.contains(&TYPE_BATCH)
    );
    let mut cases = 0;
    for f in &fx.frames {
        let body = f.offset + FRAME_HEADER as u64;
        run_case(&fx, f, f.offset, "the CRC");
        run_case(&fx, f, f.offset + 4, "the length");
        if f.len > FRAME_HEADER as u64 {
            run_case(&fx, f, body + (f.len - FRAME_HEADER as u64) / 2, "the body");
        }
        cases += 3;
    }
    let torn = fx.frames.iter().filter(|f| fx.unsynced_at(f)).count();
    let fragments = fx.frames.iter().filter(|f| f.kind == TYPE_FRAGMENT).count();
    eprintln!(
        "{cases} cases over {} frames ({fragments} fragments, {torn} in the unsynced tail)",
        fx.frames.len()
    );
    assert!(
        torn >= 3,
        "the last spanning batch's tail is unsynced until its commit"
    );
}
