//! `Db::replay`: both ways of reading it (owned deltas, borrowed batches) yield every delta in
//! log order, compressed or not, from any position; damage is reported with file and offset,
//! including a malformed batch that a checkpoint kept open from decoding.

use std::path::Path;

use aggrelog::testing::internals::format::{
    frame_crc, COMMIT_FRAME_BYTES, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};

/// Where a segment's first batch frame starts: after the header and the commit record that
/// opens the write.
const FIRST_BATCH: usize = SEGMENT_HEADER_BYTES + COMMIT_FRAME_BYTES;
use aggrelog::{Batch, Compression, Db, Error, LogReader, Options, RecordLocation, ReplayedDelta};
use serde_json::json;

fn options(compress: bool) -> Options {
    Options::default()
        .background_compaction(false)
        .checkpoint_every_bytes(0)
        .segment_size_bytes(64 * 1024)
        .compression(compress.then(Compression::default))
}

/// Writes 40 batches of 25 deltas (ids with non-ASCII characters among them); returns what
/// each delta is, in write order: (aggregate, seq, is delete).
fn fill(db: &Db) -> Vec<(String, u64, bool)> {
    let mut written = Vec::new();
    for b in 0..40u64 {
        let mut batch = Batch::new();
        for d in 0..25u64 {
            let id = if d % 7 == 0 {
                format!("flygplan-ÅÄÖ-{d}")
            } else {
                format!("aircraft-{:04}", (b * 31 + d) % 97)
            };
            let seq = b * 100 + d;
            if d % 11 == 10 {
                batch.delete(&id, seq).unwrap();
            } else {
                let patch = json!({"engine": {"hours": seq, "note": "x".repeat(d as usize)}});
                batch.patch(&id, seq, &patch).unwrap();
            }
            written.push((id, seq, d % 11 == 10));
        }
        db.write(&batch).unwrap();
    }
    written
}

fn owned(db: &Db, from: RecordLocation) -> Vec<ReplayedDelta> {
    db.replay(from).map(Result::unwrap).collect()
}

/// The same replay read batch by batch, converted to owned deltas for comparison.
fn borrowed(db: &Db, from: RecordLocation) -> Vec<ReplayedDelta> {
    let mut replay = db.replay(from);
    let mut out = Vec::new();
    while let Some(batch) = replay.next_batch() {
        let batch = batch.unwrap();
        let location = batch.location;
        let before = out.len();
        for delta in batch.deltas() {
            out.push(delta.unwrap().to_owned_at(location));
        }
        assert_eq!(out.len() - before, batch.len());
    }
    assert_eq!(replay.totals().deltas, out.len() as u64);
    out
}

#[test]
fn both_readers_yield_every_delta_in_log_order_compressed_or_not() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(compress)).unwrap();
        let written = fill(&db);
        let a = owned(&db, RecordLocation::START);
        let b = borrowed(&db, RecordLocation::START);
        assert_eq!(a, b, "compress {compress}");
        let seen: Vec<_> = a
            .iter()
            .map(|d| (d.aggregate.clone(), d.seq, d.body.is_empty()))
            .collect();
        assert_eq!(seen, written, "compress {compress}");
        assert!(db.stats().segments > 1, "the log spans several segments");
        let mut replay = db.replay(RecordLocation::START);
        replay.by_ref().for_each(drop);
        let log_bytes = db.stats().log_bytes;
        assert_eq!(replay.totals().bytes, log_bytes, "every byte walked");
        assert_eq!(replay.totals().batches, 40);
    }
}

#[test]
fn a_replay_from_a_batch_starts_there() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(false)).unwrap();
    fill(&db);
    let all = owned(&db, RecordLocation::START);
    let from = all[250].location;
    let tail = borrowed(&db, from);
    let expected: Vec<_> = all.into_iter().filter(|d| d.location >= from).collect();
    assert_eq!(tail, expected);
    assert_eq!(tail[0].position, 0);
}

#[test]
fn dropping_a_replay_midway_returns_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(false)).unwrap();
    fill(&db);
    for take in [0, 1, 30] {
        let mut replay = db.replay(RecordLocation::START);
        for delta in replay.by_ref().take(take) {
            delta.unwrap();
        }
        drop(replay);
    }
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn a_bit_flip_is_an_error_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(false)).unwrap();
    fill(&db);
    let victim = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = FIRST_BATCH + FRAME_HEADER_BYTES + 40;
    bytes[at] ^= 0x10;
    std::fs::write(&victim, &bytes).unwrap();
    // The running database maps the file: a fresh replay sees the flipped byte.
    let mut replay = db.replay(RecordLocation::START);
    let Some(batch) = replay.next_batch() else {
        panic!("expected an error, got the end of the log");
    };
    match batch {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, victim);
            assert_eq!(offset, FIRST_BATCH as u64);
        }
        Err(other) => panic!("expected a corruption error, got {other}"),
        Ok(_) => panic!("a damaged frame was lent"),
    }
    assert!(
        replay.next_batch().is_none(),
        "the replay ends after an error"
    );
}

/// A frame whose CRC is valid but whose payload is malformed (a writer bug or a forged file):
/// a checkpoint lets open skip decoding it, and the replay's structural checks catch it.
#[test]
fn a_malformed_batch_behind_a_valid_crc_is_a_corruption_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), options(false)).unwrap();
        fill(&db);
        db.checkpoint().unwrap();
        db.close().unwrap();
    }
    let victim = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let frame = FIRST_BATCH;
    let body = frame + FRAME_HEADER_BYTES;
    let length = u32::from_le_bytes(bytes[frame + 4..frame + 8].try_into().unwrap()) as usize;
    // The first delta's id length (after the 4-byte count) now runs past the payload.
    bytes[body + 4..body + 6].copy_from_slice(&u16::MAX.to_le_bytes());
    let crc = frame_crc(
        1,
        frame as u64,
        &bytes[frame + 4..body],
        &bytes[body..body + length],
    );
    bytes[frame..frame + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&victim, &bytes).unwrap();

    let db = Db::open(dir.path(), options(false)).unwrap();
    let mut replay = db.replay(RecordLocation::START);
    let batch = replay.next_batch().unwrap().unwrap();
    let first = batch.deltas().next().unwrap();
    match first {
        Err(Error::Corruption {
            file,
            offset,
            reason,
        }) => {
            assert_eq!((file, offset), (victim, frame as u64));
            assert!(reason.contains("id length"), "{reason}");
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
    assert!(db.replay(RecordLocation::START).any(|d| d.is_err()));
}

/// Replays of 4 MiB or more check frames on a second thread: the same deltas, the same
/// totals, and damage reported at the same place as when the reader checks them itself.
#[test]
fn a_long_replay_checked_ahead_on_another_thread_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(false).segment_size_bytes(1 << 20)).unwrap();
    let filler = "z".repeat(3000);
    for b in 0..80u64 {
        let mut batch = Batch::new();
        for d in 0..25u64 {
            let patch = json!({"cabin": {"note": filler, "d": d}});
            batch
                .patch(&format!("a{}", (b + d) % 13), b * 100 + d, &patch)
                .unwrap();
        }
        db.write(&batch).unwrap();
    }
    assert!(db.stats().log_bytes >= 5 << 20, "{}", db.stats().log_bytes);
    let a = owned(&db, RecordLocation::START);
    assert_eq!(a.len(), 2000);
    assert_eq!(borrowed(&db, RecordLocation::START), a);
    let mut replay = db.replay(RecordLocation::START);
    replay.by_ref().for_each(drop);
    assert_eq!(replay.totals().bytes, db.stats().log_bytes);
    // Dropped after one batch, or before any: the checker thread stops.
    for batches in [0, 1] {
        let mut replay = db.replay(RecordLocation::START);
        for _ in 0..batches {
            replay.next_batch().unwrap().unwrap();
        }
        drop(replay);
    }

    // Damage in the third segment: the error names it, after the first two were read.
    let victim = segment_files(dir.path())[2].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = FIRST_BATCH + FRAME_HEADER_BYTES + 100;
    bytes[at] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    let mut replay = db.replay(RecordLocation::START);
    let mut read = 0;
    let error = loop {
        match replay.next_batch() {
            Some(Ok(batch)) => read += batch.len(),
            Some(Err(error)) => break error,
            None => panic!("the damage was not found"),
        }
    };
    match error {
        Error::Corruption { file, offset, .. } => {
            assert_eq!((file, offset), (victim, FIRST_BATCH as u64));
        }
        other => panic!("expected a corruption error, got {other}"),
    }
    assert!(read > 0 && read < 2000, "{read} deltas before the damage");
}

/// `LogReader` opens the log without an index and replays what `Db::replay` does, beside the
/// running writer; it counts the aggregates whose deltas compaction folded away, and its open
/// handles damage as an open does (Strict refuses, SkipCorrupt skips).
#[test]
fn a_log_reader_replays_beside_the_writer_what_the_database_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(true)).unwrap();
    fill(&db);
    let log = LogReader::open(dir.path(), options(true)).unwrap();
    let read: Vec<ReplayedDelta> = log
        .replay(RecordLocation::START)
        .map(Result::unwrap)
        .collect();
    assert_eq!(read, owned(&db, RecordLocation::START));
    assert_eq!(log.folded_aggregates(), 0);
    drop(db);

    let victim = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[FIRST_BATCH + FRAME_HEADER_BYTES + 40] ^= 0x10;
    std::fs::write(&victim, &bytes).unwrap();
    let refused = LogReader::open(dir.path(), options(true));
    assert!(
        matches!(&refused, Err(Error::Corruption { file, .. }) if *file == victim),
        "{:?}",
        refused.err()
    );
    let skipping = options(true).recovery(aggrelog::RecoveryMode::SkipCorrupt);
    let log = LogReader::open(dir.path(), skipping).unwrap();
    let rest = log
        .replay(RecordLocation::START)
        .map(Result::unwrap)
        .count();
    assert_eq!(
        rest,
        read.len() - 25,
        "the damaged batch is skipped, the others read"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(false)).unwrap();
    fill(&db);
    db.compact().unwrap();
    let log = LogReader::open(dir.path(), options(false)).unwrap();
    assert!(db.stats().folded_aggregates > 0);
    assert_eq!(log.folded_aggregates(), db.stats().folded_aggregates);
}
