//! Snapshot checkpoints of the index, so that open replays only the log after them.
//!
//! A checkpoint is one file `checkpoints/NNNNNNNNNNNNNNNNNNNN.ckpt` (20-digit number), written
//! as `.ckpt.tmp`, fsynced, renamed into place, and the directory fsynced. Layout (DESIGN.md,
//! "Checkpoints"; integers little-endian):
//!
//! ```text
//!  0  8 magic "AGGRCKPT"          56  8 created, Unix ms
//!  8  4 version (3; 1-2 read)   64  8 deltas counter
//! 12  4 header length (96)        72  8 duplicates counter
//! 16  8 checkpoint number         80  8 conflicts counter
//! 24  8 position: segment id      88  8 batches counter
//! 32  8 position: offset          96  8 aggregate count, then one chain per aggregate
//! 40  8 seal (0 = none)           then (version 2) sources, (version 3) retractions, references
//! 48  8 highest seq seen          end-4 4 CRC32 of every byte before it
//! chain := id_len id flags:u8 [base: segment offset len horizon_code max_seq]
//!          delta_count (seq segment position checksum:u32 offset delta_offset len) * delta_count
//! sources := count (topic_len topic partition next_offset dead_letters reapplied) * count
//! retractions := count (name_len name version state:u8 place_count
//!                 (segment record_offset first_delta_offset last_delta_offset) * place_count) * count
//! references := count (len pointer) * count
//! (every field without a width is a varint; horizon_code as in state records)
//! ```

use std::path::{Path, PathBuf};

use byteorder::{ByteOrder, LittleEndian};

use crate::decode::{DecodeError, Decoded, Reader};
use crate::error::{Error, Result};
use crate::index::{Chain, DeltaRef, IndexCounters, StateRef};
use crate::layout::{checkpoint_file_name, parse_checkpoint_file_name, CHECKPOINT_TEMP_SUFFIX};
use crate::sources::{validate_topic, SourcePosition};
use crate::storage::Storage;
use crate::varint;
use crate::wal::admin_records::{validate_pointer, Register};
use crate::wal::batch::validate_aggregate_id;
use crate::wal::records::{decode_horizon, encode_horizon};
use crate::wal::trailer::{validate_batch_name, Place};
use crate::wal::RecordLocation;

const MAGIC: [u8; 8] = *b"AGGRCKPT";
/// The version written; version 2 (no retractions and references sections) and version 1 (no
/// sources section either) are still read.
const VERSION: u32 = 3;
const HEADER_BYTES: usize = 96;
const TRAILER_BYTES: usize = 4;
/// Smallest encoded delta reference: six one-byte varints and the 4-byte checksum.
const MIN_DELTA_BYTES: usize = 6 + 4;
/// Smallest encoded chain: id length, a one-byte id, flags, delta count.
const MIN_CHAIN_BYTES: usize = 4;

/// The fixed fields of a checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// Monotonic checkpoint number.
    pub number: u64,
    /// Log position covered: every record before it is reflected in `chains`.
    pub position: RecordLocation,
    /// The seal in force (0 = none).
    pub seal: u64,
    /// Highest delta seq seen.
    pub max_seq: u64,
    /// Creation time, Unix milliseconds.
    pub created_unix_ms: u64,
    /// Index counters.
    pub counters: IndexCounters,
    /// Batch records seen.
    pub batches: u64,
}

/// The database-wide facts a checkpoint holds besides the index, at its position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The source positions (DESIGN.md, section 5e).
    pub sources: Vec<SourcePosition>,
    /// Every retraction register, with the places of each retracted name (section 5f).
    pub retractions: Vec<(String, Register, Vec<Place>)>,
    /// The declared reference pointers (section 6c).
    pub references: Vec<String>,
}

/// A decoded checkpoint: its fixed fields, every aggregate's chain in id order, and the facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Fixed fields.
    pub meta: CheckpointMeta,
    /// Every aggregate's chain.
    pub chains: Vec<(Box<str>, Chain)>,
    /// Source positions, retractions and references.
    pub facts: Facts,
}

/// Serializes a checkpoint straight from the index's chains (`count` of them) and the facts.
pub fn encode<'a>(
    checkpoint: &CheckpointMeta,
    count: usize,
    chains: impl Iterator<Item = (&'a str, &'a Chain)>,
    facts: &Facts,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + count * 64);
    out.extend_from_slice(&MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, HEADER_BYTES as u32);
    for value in [
        checkpoint.number,
        checkpoint.position.segment,
        checkpoint.position.offset,
        checkpoint.seal,
        checkpoint.max_seq,
        checkpoint.created_unix_ms,
        checkpoint.counters.deltas,
        checkpoint.counters.duplicates,
        checkpoint.counters.conflicts,
        checkpoint.batches,
        count as u64,
    ] {
        put_u64(&mut out, value);
    }
    let mut written = 0;
    for (id, chain) in chains {
        encode_chain(id, chain, &mut out);
        written += 1;
    }
    debug_assert_eq!(written, count, "chain count matches the header");
    encode_sources(&facts.sources, &mut out);
    encode_retractions(&facts.retractions, &mut out);
    encode_references(&facts.references, &mut out);
    let crc = crc32fast::hash(&out);
    put_u32(&mut out, crc);
    out
}

fn encode_chain(id: &str, chain: &Chain, out: &mut Vec<u8>) {
    varint::write(id.len() as u64, out);
    out.extend_from_slice(id.as_bytes());
    out.push(u8::from(chain.base.is_some()));
    if let Some(base) = chain.base {
        for value in [base.segment, base.record_offset, base.len] {
            varint::write(u64::from(value), out);
        }
        varint::write(encode_horizon(base.horizon), out);
        varint::write(base.max_seq, out);
    }
    varint::write(chain.deltas.len() as u64, out);
    for d in &chain.deltas {
        varint::write(d.seq, out);
        varint::write(u64::from(d.segment), out);
        varint::write(u64::from(d.position), out);
        put_u32(out, d.checksum);
        for value in [d.record_offset, d.delta_offset, d.len] {
            varint::write(u64::from(value), out);
        }
    }
}

fn encode_sources(sources: &[SourcePosition], out: &mut Vec<u8>) {
    varint::write(sources.len() as u64, out);
    for p in sources {
        varint::write(p.topic.len() as u64, out);
        out.extend_from_slice(p.topic.as_bytes());
        for value in [
            u64::from(p.partition),
            p.next_offset,
            p.dead_letters,
            p.reapplied,
        ] {
            varint::write(value, out);
        }
    }
}

fn encode_retractions(retractions: &[(String, Register, Vec<Place>)], out: &mut Vec<u8>) {
    varint::write(retractions.len() as u64, out);
    for (name, register, places) in retractions {
        varint::write(name.len() as u64, out);
        out.extend_from_slice(name.as_bytes());
        varint::write(register.version, out);
        out.push(register.state_byte());
        varint::write(places.len() as u64, out);
        for p in places {
            let fields = [
                p.segment,
                p.record_offset,
                p.first_delta_offset,
                p.last_delta_offset,
            ];
            fields
                .iter()
                .for_each(|&v| varint::write(u64::from(v), out));
        }
    }
}

fn decode_retractions(r: &mut Reader<'_>) -> Decoded<Vec<(String, Register, Vec<Place>)>> {
    // Each entry takes at least 5 bytes (a one-byte name, three one-byte fields).
    let count = r.varint()?;
    let count = r.count(count, 5, "retraction registers")?;
    let mut retractions: Vec<(String, Register, Vec<Place>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.varint_text("batch name", validate_batch_name)?;
        let version = r.varint()?;
        let state = r.u8()?;
        let register = Register::from_state_byte(version, state)
            .ok_or_else(|| r.fail(format!("retraction state {state:#04x}")))?;
        let place_count = r.varint()?;
        let place_count = r.count(place_count, 4, "places")?;
        if !register.retracted && place_count > 0 {
            return Err(r.fail(format!("{place_count} places of a name not retracted")));
        }
        let mut places = Vec::with_capacity(place_count);
        for _ in 0..place_count {
            places.push(Place {
                segment: r.varint_u32()?,
                record_offset: r.varint_u32()?,
                first_delta_offset: r.varint_u32()?,
                last_delta_offset: r.varint_u32()?,
            });
        }
        if retractions
            .last()
            .is_some_and(|(last, _, _)| last.as_str() >= name)
        {
            return Err(r.fail(format!("retraction register {name:?} out of name order")));
        }
        retractions.push((name.to_owned(), register, places));
    }
    Ok(retractions)
}

fn encode_references(pointers: &[String], out: &mut Vec<u8>) {
    varint::write(pointers.len() as u64, out);
    for pointer in pointers {
        varint::write(pointer.len() as u64, out);
        out.extend_from_slice(pointer.as_bytes());
    }
}

fn decode_references(r: &mut Reader<'_>) -> Decoded<Vec<String>> {
    let count = r.varint()?;
    let count = r.count(count, 2, "reference pointers")?;
    let mut pointers = Vec::with_capacity(count);
    for _ in 0..count {
        let pointer = r.varint_text("pointer", validate_pointer)?;
        if pointers
            .last()
            .is_some_and(|last: &String| last.as_str() >= pointer)
        {
            return Err(r.fail(format!("reference pointer {pointer:?} out of order")));
        }
        pointers.push(pointer.to_owned());
    }
    Ok(pointers)
}

fn decode_sources(r: &mut Reader<'_>) -> Decoded<Vec<SourcePosition>> {
    // Each entry takes at least 6 bytes (a one-byte topic and five one-byte varints).
    let count = r.varint()?;
    let count = r.count(count, 6, "sources")?;
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        let topic = r.varint_text("source topic", validate_topic)?;
        sources.push(SourcePosition {
            topic: topic.to_owned(),
            partition: r.varint_u32()?,
            next_offset: r.varint()?,
            dead_letters: r.varint()?,
            reapplied: r.varint()?,
        });
    }
    Ok(sources)
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Parses and verifies checkpoint bytes: CRC, magic, version, and every length and count
/// against the bytes present before anything is allocated for it.
pub fn decode(bytes: &[u8]) -> Decoded<Checkpoint> {
    if bytes.len() < HEADER_BYTES + 8 + TRAILER_BYTES {
        let reason = format!("{} bytes is shorter than a checkpoint", bytes.len());
        return Err(DecodeError::new(0, reason));
    }
    let (content, trailer) = bytes.split_at(bytes.len() - TRAILER_BYTES);
    if crc32fast::hash(content) != LittleEndian::read_u32(trailer) {
        return Err(DecodeError::new(content.len(), "checksum mismatch"));
    }
    let mut r = Reader::new(content);
    if r.take(8)? != MAGIC {
        return Err(DecodeError::new(0, "bad magic"));
    }
    let version = r.u32()?;
    if !(1..=VERSION).contains(&version) || r.u32()? as usize != HEADER_BYTES {
        return Err(DecodeError::new(
            8,
            format!("unsupported checkpoint version {version}"),
        ));
    }
    let meta = CheckpointMeta {
        number: r.u64()?,
        position: RecordLocation {
            segment: r.u64()?,
            offset: r.u64()?,
        },
        seal: r.u64()?,
        max_seq: r.u64()?,
        created_unix_ms: r.u64()?,
        counters: IndexCounters {
            deltas: r.u64()?,
            duplicates: r.u64()?,
            conflicts: r.u64()?,
        },
        batches: r.u64()?,
    };
    let count = r.u64()?;
    let count = r.count(count, MIN_CHAIN_BYTES, "aggregates")?;
    let mut chains = Vec::with_capacity(count);
    for _ in 0..count {
        chains.push(decode_chain(&mut r)?);
    }
    let mut facts = Facts::default();
    if version >= 2 {
        facts.sources = decode_sources(&mut r)?;
    }
    if version >= 3 {
        facts.retractions = decode_retractions(&mut r)?;
        facts.references = decode_references(&mut r)?;
    }
    r.finished()?;
    Ok(Checkpoint {
        meta,
        chains,
        facts,
    })
}

fn decode_chain(r: &mut Reader<'_>) -> Decoded<(Box<str>, Chain)> {
    let id = r.varint_text("id", validate_aggregate_id)?;
    let base = match r.u8()? {
        0 => None,
        1 => Some(StateRef {
            segment: r.varint_u32()?,
            record_offset: r.varint_u32()?,
            len: r.varint_u32()?,
            horizon: decode_horizon(r.varint()?),
            max_seq: r.varint()?,
        }),
        other => return Err(r.fail(format!("bad chain flags {other}"))),
    };
    let count = r.varint()?;
    let count = (r.count(count, MIN_DELTA_BYTES, "deltas"))
        .map_err(|e| DecodeError::new(e.offset, format!("chain of {id:?} {}", e.reason)))?;
    let mut deltas = Vec::with_capacity(count);
    for _ in 0..count {
        deltas.push(DeltaRef {
            seq: r.varint()?,
            segment: r.varint_u32()?,
            position: r.varint_u32()?,
            checksum: r.u32()?,
            record_offset: r.varint_u32()?,
            delta_offset: r.varint_u32()?,
            len: r.varint_u32()?,
        });
    }
    Ok((id.into(), Chain { base, deltas }))
}

/// The checkpoint files of a directory.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// `(number, path)` of each checkpoint, newest first.
    pub checkpoints: Vec<(u64, PathBuf)>,
    /// Leftover temporary files of interrupted writes.
    pub temporaries: Vec<PathBuf>,
}

/// The checkpoint files in `dir`.
pub fn list(storage: &dyn Storage, dir: &Path) -> Result<Listing> {
    if !storage.exists(dir).map_err(|e| Error::io(dir, e))? {
        return Ok(Listing::default());
    }
    let names = storage.list_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|n| parse_checkpoint_file_name(n).map(|number| (number, dir.join(n))))
        .collect();
    found.sort_unstable_by_key(|(number, _)| std::cmp::Reverse(*number));
    let temporaries = names
        .iter()
        .filter(|n| n.ends_with(CHECKPOINT_TEMP_SUFFIX))
        .map(|n| dir.join(n))
        .collect();
    Ok(Listing {
        checkpoints: found,
        temporaries,
    })
}

/// Reads and verifies one checkpoint file.
pub fn load(storage: &dyn Storage, path: &Path) -> Result<Checkpoint> {
    let len = storage.file_len(path).map_err(|e| Error::io(path, e))?;
    let view = storage
        .read_view(path, len)
        .map_err(|e| Error::io(path, e))?;
    decode(&view).map_err(|reason| Error::corruption(path, 0, format!("checkpoint: {reason}")))
}

/// Writes encoded checkpoint `number` atomically: temporary file, fsync, rename, directory
/// fsync.
pub fn write(storage: &dyn Storage, dir: &Path, number: u64, bytes: &[u8]) -> Result<PathBuf> {
    if !storage.exists(dir).map_err(|e| Error::io(dir, e))? {
        storage.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if let Some(parent) = dir.parent() {
            storage.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
        }
    }
    let name = checkpoint_file_name(number);
    let temp = dir.join(format!("{name}.tmp"));
    if storage.exists(&temp).map_err(|e| Error::io(&temp, e))? {
        storage.remove(&temp).map_err(|e| Error::io(&temp, e))?;
    }
    let mut file = storage.create_new(&temp).map_err(|e| Error::io(&temp, e))?;
    file.append(bytes)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(&temp, e))?;
    drop(file);
    let path = dir.join(name);
    storage
        .rename(&temp, &path)
        .map_err(|e| Error::io(&path, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(path)
}

/// Deletes all but the newest `keep` checkpoints, and leftover temporary files.
pub fn retain(storage: &dyn Storage, dir: &Path, keep: usize) -> Result<()> {
    let listing = list(storage, dir)?;
    let doomed: Vec<PathBuf> = listing
        .checkpoints
        .into_iter()
        .skip(keep)
        .map(|(_, p)| p)
        .chain(listing.temporaries)
        .collect();
    for path in &doomed {
        storage.remove(path).map_err(|e| Error::io(path, e))?;
    }
    if !doomed.is_empty() {
        storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let delta = DeltaRef {
            seq: 9,
            segment: 2,
            position: 3,
            checksum: 0xdead_beef,
            record_offset: 32,
            delta_offset: 4,
            len: 77,
        };
        let base = StateRef {
            segment: 3,
            record_offset: 100,
            len: 300,
            horizon: u64::MAX,
            max_seq: 8,
        };
        let meta = CheckpointMeta {
            number: 4,
            position: RecordLocation {
                segment: 3,
                offset: 400,
            },
            seal: 2,
            max_seq: 9,
            created_unix_ms: 1_700_000_000_000,
            counters: IndexCounters {
                deltas: 10,
                duplicates: 1,
                conflicts: 2,
            },
            batches: 5,
        };
        let chains = vec![
            (
                "a".into(),
                Chain {
                    base: Some(base),
                    deltas: vec![delta],
                },
            ),
            (
                "b".into(),
                Chain {
                    base: None,
                    deltas: vec![delta, delta],
                },
            ),
        ];
        let sources = vec![SourcePosition {
            topic: "deltas".into(),
            partition: 2,
            next_offset: 300,
            dead_letters: 4,
            reapplied: 0,
        }];
        let retractions = vec![
            (
                "bad batch".to_owned(),
                Register {
                    version: 3,
                    retracted: true,
                    frozen: true,
                },
                vec![Place {
                    segment: 1,
                    record_offset: 32,
                    first_delta_offset: 4,
                    last_delta_offset: 90,
                }],
            ),
            ("good".to_owned(), Register::default(), Vec::new()),
        ];
        let facts = Facts {
            sources,
            retractions,
            references: vec!["/parent".into()],
        };
        Checkpoint {
            meta,
            chains,
            facts,
        }
    }

    fn bytes_of(checkpoint: &Checkpoint) -> Vec<u8> {
        let chains = checkpoint.chains.iter().map(|(id, c)| (&**id, c));
        encode(
            &checkpoint.meta,
            checkpoint.chains.len(),
            chains,
            &checkpoint.facts,
        )
    }

    #[test]
    fn round_trips() {
        let checkpoint = sample();
        assert_eq!(decode(&bytes_of(&checkpoint)), Ok(checkpoint));
    }

    #[test]
    fn registers_and_pointers_out_of_order_are_rejected() {
        let mut checkpoint = sample();
        checkpoint.facts.retractions.reverse();
        let error = decode(&bytes_of(&checkpoint)).unwrap_err();
        assert!(error.reason.contains("out of name order"), "{error}");
        let mut checkpoint = sample();
        checkpoint.facts.references = vec!["/parent".into(), "/parent".into()];
        let error = decode(&bytes_of(&checkpoint)).unwrap_err();
        assert!(error.reason.contains("out of order"), "{error}");
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected() {
        let bytes = bytes_of(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "len {len}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(decode(&damaged).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn lying_counts_are_rejected_before_allocating() {
        let mut checkpoint = sample();
        checkpoint.chains.clear();
        let mut bytes = bytes_of(&checkpoint);
        let count_at = HEADER_BYTES;
        LittleEndian::write_u64(&mut bytes[count_at..count_at + 8], u64::MAX);
        let len = bytes.len();
        let crc = crc32fast::hash(&bytes[..len - 4]);
        LittleEndian::write_u32(&mut bytes[len - 4..], crc);
        assert!(decode(&bytes).unwrap_err().reason.contains("claims"));
    }
}
