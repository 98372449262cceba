//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and crash reproducers
//! (`fuzz/regressions/<target>/`) through the fuzz target bodies of `aggrelog::testing::fuzzing`, so that
//! CI exercises them without a fuzzer.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpora` regenerates the seed inputs
//! (files named `seed-*`) from databases written by the engine.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use aggrelog::model::binary;
use aggrelog::model::{DeltaKind, DeltaView, MergePatch, Model, PatchState, Stamp};
use aggrelog::testing::fuzzing::{
    self, REC_BATCH, REC_COMPRESS, REC_DELTAS, REC_RAW, REC_SEAL, REC_SPANNING, REC_STATE,
};
use aggrelog::testing::fuzzing::{CKPT_ENVELOPE, SEG_GAP, SEG_RECORDS, SEG_VALID_HEADER};
use aggrelog::testing::internals::batch_record::{batch_payload, decode_batch};
use aggrelog::testing::internals::encode_patch;
use aggrelog::testing::internals::format::{
    RecordType, FLAG_POSITIONS, FLAG_TRAILER, FLAG_ZSTD, SEGMENT_HEADER_BYTES,
};
use aggrelog::testing::internals::frame::{Frame, FrameScanner, ScanEvent};
use aggrelog::{Batch, Compression, Db, Options};
use serde_json::{json, Value};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("open_arbitrary", fuzzing::open_arbitrary),
    ("decode_frame", fuzzing::decode_frame),
    ("ops_with_crash", fuzzing::ops_with_crash),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The non-hidden files of `dir`, sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

/// Runs every file through `target`; returns the failures.
fn replay(files: &[PathBuf], target: Target) -> Vec<String> {
    let mut failures = Vec::new();
    for file in files {
        let data = fs::read(file).expect("read input");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {message}", file.display()));
        }
    }
    failures
}

fn replay_target(name: &str, target: Target) {
    let corpus = inputs(&fuzz_dir().join("corpus").join(name));
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} is missing or empty");
    let regressions = inputs(&fuzz_dir().join("regressions").join(name));
    let failures = replay(&[corpus, regressions].concat(), target);
    assert!(
        failures.is_empty(),
        "{name} failed on:\n{}",
        failures.join("\n")
    );
}

#[test]
fn open_arbitrary_corpus() {
    replay_target("open_arbitrary", fuzzing::open_arbitrary);
}

#[test]
fn decode_frame_corpus() {
    replay_target("decode_frame", fuzzing::decode_frame);
}

#[test]
fn ops_with_crash_corpus() {
    replay_target("ops_with_crash", fuzzing::ops_with_crash);
}

#[test]
fn every_target_has_a_test() {
    assert_eq!(TARGETS.len(), 3);
    let listed = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        assert!(listed.contains(&format!("name = \"{name}\"")), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Seed generation.

/// The files of a database written by the engine: `(id, bytes)` of segments and checkpoints.
struct Files {
    segments: Vec<(u64, Vec<u8>)>,
    checkpoints: Vec<(u64, Vec<u8>)>,
}

fn read_numbered(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut files: Vec<(u64, Vec<u8>)> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
        .map(|p| {
            let stem = p.file_name().unwrap().to_string_lossy()[..20].to_string();
            (
                stem.parse().expect("numbered file"),
                fs::read(&p).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

fn options(compress: bool) -> Options {
    let compression = compress.then_some(Compression {
        level: 1,
        min_batch_bytes: 64,
    });
    Options::default()
        .segment_size_bytes(4096)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
        .compression(compression)
}

fn aircraft_patch(i: u64) -> Value {
    match i % 5 {
        0 => json!({"engine": {"serial": format!("ESN-{i}"), "cycles": i * 10}}),
        1 => json!({"cabin": {"seats": 180, "layout": "3-3"}, "tail": null}),
        2 => json!({"wing": {"span_m": 35.8, "winglets": true}, "tags": ["a", -(i as i64)]}),
        3 => json!({"engine": {"cycles": null}, "avionics": {"fw": "1.2"}}),
        _ => json!({"e": {"": 1.5e300, "é": [[], {}], "n": -9_223_372_036_854_775_808i64}}),
    }
}

/// Writes `batches` batches of 1-4 deltas over ids `ac-0`..`ac-{ids}` (one in nine a delete),
/// seq `base + batch`, delivered late every seventh batch.
fn write_batches(db: &Db, base: u64, batches: u64, ids: u64) {
    for b in 0..batches {
        let seq = if b % 7 == 6 { base + b - 3 } else { base + b };
        let mut batch = Batch::new();
        for d in 0..(b % 4 + 1) {
            let id = format!("ac-{}", (b * 3 + d) % ids);
            let i = b * 4 + d;
            if i % 9 == 8 {
                batch.delete(&id, seq).expect("delete");
            } else {
                batch.patch(&id, seq, &aircraft_patch(i)).expect("patch");
            }
        }
        db.write(&batch).expect("write");
    }
}

/// A batch as the Kafka follower writes it: deltas at positions of their own (a positions table)
/// and a source range; the compaction after it re-records the positions in a sources record.
fn write_followed_batch(db: &Db, seq: u64, first_offset: u64) {
    let mut batch = Batch::new();
    batch
        .name(&format!("deltas/3/{first_offset}"))
        .expect("name");
    for (i, position) in [2u32, 0, 1].into_iter().enumerate() {
        let id = format!("ac-{i}");
        batch
            .patch_at(&id, seq, position, &aircraft_patch(i as u64))
            .expect("patch");
    }
    let range = aggrelog::SourceRange {
        topic: "deltas".into(),
        partition: 3,
        first_offset,
        next_offset: first_offset + 3,
        dead_letters: 1,
    };
    batch.set_source(range).expect("source");
    db.write(&batch).expect("write");
}

/// A database: plain batches, then (`maintained`) a batch with a positions table and a source
/// range, a seal, compaction, more batches (that batch again among them) and two checkpoints.
fn build_db(compress: bool, maintained: bool, batches: u64) -> Files {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(dir.path(), options(compress)).expect("open");
    write_batches(&db, 10, batches, 5);
    if maintained {
        write_followed_batch(&db, 11, 40);
        // Retracted, then folded by the compaction below: a frozen register.
        db.retract("deltas/3/40").expect("retract");
        db.declare_references(&["/parent", "/components/*/ref"])
            .expect("declare");
        db.checkpoint().expect("checkpoint");
        db.seal(12).expect("seal");
        db.compact().expect("compact");
        write_batches(&db, 40, batches / 2 + 1, 7);
        write_followed_batch(&db, 41, 43);
        db.retract("deltas/3/43").expect("retract");
        db.unretract("deltas/3/43").expect("unretract");
        // A batch larger than a segment: fragments and a batch commit.
        let mut large = db.large_batch().expect("large batch");
        for i in 0..90 {
            let id = format!("ac-{}", i % 9);
            large.patch(&id, 50, &aircraft_patch(i)).expect("patch");
        }
        large.commit().expect("commit");
        db.checkpoint().expect("checkpoint");
    }
    db.close().expect("close");
    Files {
        segments: read_numbered(&dir.path().join("wal")),
        checkpoints: read_numbered(&dir.path().join("checkpoints")),
    }
}

/// A database whose four segments hold a spanning batch: fragments over three of them and its
/// batch commit, between ordinary batches.
fn build_spanning_db(compress: bool) -> Files {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(dir.path(), options(compress)).expect("open");
    write_batches(&db, 10, 2, 5);
    let mut large = db.large_batch().expect("large batch");
    for i in 0..90 {
        large
            .patch(&format!("ac-{}", i % 6), 20, &aircraft_patch(i))
            .expect("patch");
    }
    assert!(large.fragments_written() >= 1, "it spans fragments");
    large.commit().expect("commit");
    write_batches(&db, 30, 2, 5);
    db.close().expect("close");
    let files = Files {
        segments: read_numbered(&dir.path().join("wal")),
        checkpoints: read_numbered(&dir.path().join("checkpoints")),
    };
    assert!(
        files.segments.len() <= 4,
        "{} segments",
        files.segments.len()
    );
    files
}

fn frames(id: u64, segment: &[u8]) -> Vec<Frame<'_>> {
    FrameScanner::new(segment, id, SEGMENT_HEADER_BYTES)
        .filter_map(|e| match e {
            ScanEvent::Frame(f) => Some(f),
            ScanEvent::Damage(_) => None,
        })
        .collect()
}

/// A record script holding the frames of a segment; batches re-encoded as delta scripts when
/// `deltas`, compressed ones stored as payloads to be compressed again.
fn record_script(id: u64, segment: &[u8], deltas: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames(id, segment) {
        let (ctrl, body) = match frame.header.record_type {
            // The input format has no end records: the scenario's segments stay unsealed.
            RecordType::End => continue,
            // Record scripts cannot write sources, retraction or references records
            // (`decode_frame` decodes their bodies from raw bytes; `open_arbitrary` reads them
            // in the seeds' raw segments).
            RecordType::Sources | RecordType::Retraction | RecordType::References => continue,
            RecordType::State => (REC_STATE, frame.body.to_vec()),
            RecordType::Seal => (REC_SEAL, frame.body.to_vec()),
            RecordType::Commit => (REC_RAW | REC_DELTAS, frame.body.to_vec()),
            RecordType::BatchCommit => (REC_SEAL | REC_SPANNING, vec![0]),
            RecordType::Batch | RecordType::Fragment => {
                let payload = batch_payload(&frame).expect("payload").into_owned();
                let mut ctrl = REC_BATCH;
                if frame.header.flags & FLAG_ZSTD != 0 {
                    ctrl |= REC_COMPRESS;
                }
                if frame.header.record_type == RecordType::Fragment {
                    ctrl |= REC_SPANNING;
                }
                if deltas {
                    (
                        ctrl | REC_DELTAS,
                        delta_script(&payload, frame.header.flags),
                    )
                } else {
                    (ctrl, payload)
                }
            }
        };
        fuzzing::encode_record(ctrl, &body, &mut out);
    }
    out
}

fn delta_script(payload: &[u8], flags: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for d in decode_batch(payload, flags).expect("batch").deltas {
        let seq = u16::try_from(d.seq).expect("small seq");
        fuzzing::encode_delta(d.aggregate, seq, d.kind, d.body, &mut out);
    }
    out
}

/// Segment modes for consecutive real ids starting at `first`.
fn segment_inputs(files: &Files) -> Vec<(u8, &[u8])> {
    let mut previous = files.segments[0].0;
    files
        .segments
        .iter()
        .map(|(id, bytes)| {
            let mode = if *id > previous + 1 { SEG_GAP } else { 0 };
            previous = *id;
            (mode, bytes.as_slice())
        })
        .collect()
}

fn checkpoint_inputs(files: &Files, envelope: bool) -> Vec<(u8, Vec<u8>)> {
    let newest = files.checkpoints.iter().rev().take(2).rev();
    newest
        .map(|(number, bytes)| {
            let mode = ((number - 1) as u8) << 1;
            if envelope {
                let inner = bytes[16..bytes.len() - 4].to_vec();
                (mode | CKPT_ENVELOPE, inner)
            } else {
                (mode, bytes.clone())
            }
        })
        .collect()
}

fn open_input(files: &Files, segments: &[(u8, &[u8])], checkpoints: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let checkpoints: Vec<(u8, &[u8])> = checkpoints.iter().map(|(m, b)| (*m, &b[..])).collect();
    fuzzing::encode_open_input(files.segments[0].0, segments, &checkpoints)
}

/// Seeds of `open_arbitrary` from one database.
fn open_seeds(name: &str, files: &Files, seeds: &mut Vec<(String, Vec<u8>)>) {
    let raw = segment_inputs(files);
    let last = raw.len() - 1;
    seeds.push((format!("{name}-raw"), open_input(files, &raw, &[])));
    if raw.len() > 1 {
        // Large: only the raw files and one record script.
        let script = record_script(files.segments[0].0, raw[0].1, true);
        let mut segs = raw.clone();
        segs[0] = (raw[0].0 | SEG_VALID_HEADER | SEG_RECORDS, &script);
        seeds.push((format!("{name}-script"), open_input(files, &segs, &[])));
        return;
    }
    for envelope in [false, true] {
        let ckpts = checkpoint_inputs(files, envelope);
        if !ckpts.is_empty() {
            seeds.push((
                format!("{name}-ckpt-{envelope}"),
                open_input(files, &raw, &ckpts),
            ));
        }
    }
    for (tag, cut) in [("torn", 7usize), ("header", raw[last].1.len() - 20)] {
        let mut torn = raw.clone();
        torn[last].1 = &raw[last].1[..raw[last].1.len() - cut];
        seeds.push((format!("{name}-{tag}"), open_input(files, &torn, &[])));
    }
    let mut flipped: Vec<Vec<u8>> = raw.iter().map(|(_, b)| b.to_vec()).collect();
    let middle = flipped[0].len() / 2;
    flipped[0][middle] ^= 0x20;
    let flipped: Vec<(u8, &[u8])> = raw
        .iter()
        .zip(&flipped)
        .map(|(r, b)| (r.0, &b[..]))
        .collect();
    seeds.push((format!("{name}-flip"), open_input(files, &flipped, &[])));
    for deltas in [false, true] {
        let scripts: Vec<Vec<u8>> = files
            .segments
            .iter()
            .map(|(id, bytes)| record_script(*id, bytes, deltas))
            .collect();
        let modes = SEG_VALID_HEADER | SEG_RECORDS;
        let segs: Vec<(u8, &[u8])> = raw
            .iter()
            .zip(&scripts)
            .map(|(r, s)| (r.0 | modes, &s[..]))
            .collect();
        let ckpts = checkpoint_inputs(files, true);
        seeds.push((
            format!("{name}-script-{deltas}"),
            open_input(files, &segs, &ckpts),
        ));
    }
}

/// Small hand-made `open_arbitrary` inputs.
fn open_edge_seeds(seeds: &mut Vec<(String, Vec<u8>)>) {
    let edge = |segments: &[(u8, &[u8])]| fuzzing::encode_open_input(1, segments, &[]);
    seeds.push(("edge-empty".into(), edge(&[(0, b"")])));
    seeds.push(("edge-header-only".into(), edge(&[(SEG_VALID_HEADER, b"")])));
    let mut script = Vec::new();
    fuzzing::encode_record(REC_SEAL, &5u64.to_le_bytes(), &mut script);
    let mut deltas = Vec::new();
    let mut body = Vec::new();
    encode_patch(&json!({"a": 1, "b": {"c": null}}), &mut body).expect("patch");
    fuzzing::encode_delta("E", 3, DeltaKind::Patch, &body, &mut deltas);
    fuzzing::encode_delta("E", 3, DeltaKind::Delete, &[], &mut deltas);
    fuzzing::encode_delta("F", 9, DeltaKind::Patch, &body, &mut deltas);
    fuzzing::encode_record(REC_BATCH | REC_DELTAS, &deltas, &mut script);
    fuzzing::encode_record(0, &[0; 9], &mut script);
    let modes = SEG_VALID_HEADER | SEG_RECORDS;
    seeds.push(("edge-script".into(), edge(&[(modes, &script)])));
    let two = [(modes, &script[..]), (modes | SEG_GAP, &script[..])];
    seeds.push(("edge-gap".into(), edge(&two)));
}

/// Prefixes `rest` with a `decode_frame` selector, scan start and segment id.
fn decode_input(selector: u8, start: u8, segment: u64, rest: &[u8]) -> Vec<u8> {
    [&[selector, start, segment as u8][..], rest].concat()
}

/// A state record of folding `patches` (seqs 1, 2, ...), optionally forgetting below `seal`.
fn state_record(patches: &[Value], seal: u64) -> Vec<u8> {
    let mut state = PatchState::default();
    for (seq, patch) in (1..).zip(patches) {
        let mut body = Vec::new();
        let kind = if patch.is_null() {
            DeltaKind::Delete
        } else {
            DeltaKind::Patch
        };
        if kind == DeltaKind::Patch {
            encode_patch(patch, &mut body).expect("patch");
        }
        let stamp = Stamp::new(seq, seq as u32 % 3, 0x9e37_79b9u32.wrapping_mul(seq as u32));
        let delta = DeltaView {
            stamp,
            kind,
            body: &body,
        };
        MergePatch.fold(&mut state, delta).expect("fold");
    }
    MergePatch.forget_below(&mut state, seal);
    let mut out = Vec::new();
    MergePatch.encode_state(&state, &mut out);
    out
}

/// Seeds of `decode_frame`.
fn decode_seeds(files: &[Files], seeds: &mut Vec<(String, Vec<u8>)>) {
    for (n, db) in files.iter().enumerate() {
        let (id, segment) = &db.segments[db.segments.len() - 1];
        let head = &segment[..segment.len().min(1500)];
        seeds.push((format!("segment-{n}"), decode_input(0, 32, *id, head)));
        for (i, frame) in frames(*id, segment).iter().take(6).enumerate() {
            let kind = frame.header.record_type as u8;
            let selector = 1 | (kind << 1) | if frame.header.flags != 0 { 8 } else { 0 };
            seeds.push((
                format!("frame-{n}-{i}"),
                decode_input(selector, 0, *id, frame.body),
            ));
            if frame.header.record_type == RecordType::Batch && i % 2 == 0 {
                let payload = batch_payload(frame).expect("payload");
                seeds.push((format!("payload-{n}-{i}"), decode_input(0, 0, 0, &payload)));
                seeds.push((
                    format!("zstd-{n}-{i}"),
                    decode_input(1 | 16, 0, *id, &payload),
                ));
            }
        }
        if let Some((_, ckpt)) = db.checkpoints.last() {
            seeds.push((format!("checkpoint-{n}"), decode_input(0, 0, 0, ckpt)));
        }
        format_4_and_5_seeds(n, db, seeds);
    }
    let values = [
        json!({"a": [1, -2], "b": "é"}),
        json!({"x": {"y": {"z": [null, true, false, 1.5, u64::MAX, i64::MIN]}}}),
        json!({}),
    ];
    for (i, value) in values.iter().enumerate() {
        let mut body = Vec::new();
        binary::encode_value(value, &mut body);
        seeds.push((format!("value-{i}"), decode_input(0, 0, 0, &body)));
    }
    let patches = [
        json!({"a": 1, "b": {"c": "d"}}),
        json!({"b": null, "e": [1]}),
        Value::Null,
        json!({"a": {"f": 2.5}, "g": true}),
    ];
    for (i, seal) in [0u64, 3, 10].into_iter().enumerate() {
        seeds.push((
            format!("state-{i}"),
            decode_input(0, 0, 0, &state_record(&patches, seal)),
        ));
    }
    seeds.push((
        "varints".into(),
        decode_input(0, 0, 0, &[0x80, 0x01, 0xff, 0x7f, 0x00, 0x80]),
    ));
}

/// Seeds of the records formats 4 and 5 added, wherever they are in `db`: a batch payload with
/// a positions table, source ranges or names, a sources, retraction or references record body.
fn format_4_and_5_seeds(n: usize, db: &Files, seeds: &mut Vec<(String, Vec<u8>)>) {
    let trailed = FLAG_POSITIONS | FLAG_TRAILER;
    for (id, segment) in &db.segments {
        for frame in frames(*id, segment) {
            let name = match frame.header.record_type {
                RecordType::Batch if frame.header.flags & trailed != 0 => "trailed",
                RecordType::Sources => "sources",
                RecordType::Retraction => "retraction",
                RecordType::References => "references",
                _ => continue,
            };
            let body = batch_payload(&frame).expect("payload").into_owned();
            seeds.push((format!("{name}-{n}-{id}"), decode_input(0, 0, 0, &body)));
        }
    }
}

/// Seeds of `ops_with_crash`: deterministic pseudo-random byte strings of various lengths.
fn ops_seeds(seeds: &mut Vec<(String, Vec<u8>)>) {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for (i, len) in [0usize, 1, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512]
        .iter()
        .enumerate()
    {
        let bytes = (0..*len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        seeds.push((format!("random-{i:02}"), bytes));
    }
}

fn write_seeds(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    for old in inputs(&dir) {
        if old
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")
        {
            fs::remove_file(old).expect("remove old seed");
        }
    }
    for (name, bytes) in seeds {
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}

#[test]
#[ignore = "regenerates fuzz/corpus/*/seed-*"]
fn write_seed_corpora() {
    let dbs = [
        ("plain", build_db(false, false, 6)),
        ("zstd", build_db(true, false, 5)),
        ("maintained", build_db(false, true, 8)),
        ("maintained-zstd", build_db(true, true, 6)),
        ("rotated", build_db(false, false, 40)),
        ("spanning", build_spanning_db(false)),
        ("spanning-zstd", build_spanning_db(true)),
    ];
    let mut open = Vec::new();
    for (name, files) in &dbs {
        open_seeds(name, files, &mut open);
    }
    open_edge_seeds(&mut open);
    write_seeds("open_arbitrary", &open);
    let mut decode = Vec::new();
    let files: Vec<Files> = dbs.into_iter().map(|(_, f)| f).collect();
    decode_seeds(&files, &mut decode);
    write_seeds("decode_frame", &decode);
    let mut ops = Vec::new();
    ops_seeds(&mut ops);
    write_seeds("ops_with_crash", &ops);
}
