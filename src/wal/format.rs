//! Byte layout of segment headers and record frames (see DESIGN.md, "On-disk format").
//!
//! ```text
//! segment header (32 bytes)        frame header (12 bytes), then `length` body bytes
//!  0  8 magic "AGGRLOG\0"          0  4 crc32 (see `frame_crc`)
//!  8  4 format version (u32 = 2)   4  4 length of the body as stored (u32)
//! 12  4 header length (u32 = 32)   8  1 record type (1 batch, 2 state, 3 seal, 4 end, 5 commit)
//! 16  8 segment id (u64)           9  1 flags (bit 0: body is zstd-compressed)
//! 24  4 reserved (0)              10  2 reserved (0)
//! 28  4 crc32 of bytes 0..28
//! ```
//! All integers are little-endian.

use byteorder::{ByteOrder, LittleEndian};

use crate::decode::{DecodeError, Decoded};

/// Where a record's frame starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RecordLocation {
    /// Segment id.
    pub segment: u64,
    /// Byte offset of the frame header within the segment file.
    pub offset: u64,
}

impl RecordLocation {
    /// The beginning of the log: replaying from here yields every record.
    pub const START: RecordLocation = RecordLocation {
        segment: 0,
        offset: 0,
    };
}

/// Magic bytes opening every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AGGRLOG\0";
/// Version of the segment format this code writes: version 2 opens every write with a commit
/// record; version 3 may hold spanning batches (fragments and batch commits); version 4 may hold
/// positions tables, source ranges and sources records; version 5 may hold retraction and
/// references records.
pub const FORMAT_VERSION: u32 = 5;
/// The oldest segment format version this code reads (version 1 has no commit records).
pub const OLDEST_READ_VERSION: u32 = 1;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Size of a frame header in bytes.
pub const FRAME_HEADER_BYTES: usize = 12;
/// Upper bound on a batch payload (uncompressed) in bytes: bounds every allocation on read.
pub const MAX_BATCH_PAYLOAD_BYTES: usize = 256 << 20;

/// Kinds of record a frame can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// An atomic batch of deltas.
    Batch = 1,
    /// A compaction state record: one aggregate's folded state.
    State = 2,
    /// A seal: no delta with a lower seq will be accepted any more.
    Seal = 3,
    /// The last record of every sealed segment (body: the next segment's id, u64): a sealed
    /// segment that does not end with it was truncated.
    End = 4,
    /// Opens every write (format version 2): body = `durable_through` (u64), the offset up to
    /// which the writer knew the segment durable when it issued the write.
    Commit = 5,
    /// One part of a spanning batch (format version 3): the body of a batch, meaningless until
    /// a [`RecordType::BatchCommit`] lists it.
    Fragment = 6,
    /// Makes the fragments it lists one atomic batch, applied at its own place in the log
    /// (format version 3; body in `records`).
    BatchCommit = 7,
    /// The engine's whole map of source positions, re-recorded by compaction before it deletes
    /// segments (format version 4; body in `crate::sources`).
    Sources = 8,
    /// Sets a batch name's retraction register (format version 5; body in `admin_records`).
    Retraction = 9,
    /// Declares reference fields (format version 5; body in `admin_records`).
    References = 10,
}

/// Bytes of an end-of-segment frame (header + the next segment id).
pub const END_FRAME_BYTES: usize = FRAME_HEADER_BYTES + 8;
/// Bytes of a commit frame (header + `durable_through`).
pub const COMMIT_FRAME_BYTES: usize = FRAME_HEADER_BYTES + 8;

/// Frame flag: the body is `[u32 uncompressed length][zstd frame]`.
pub const FLAG_ZSTD: u8 = 0b0000_0001;
/// Frame flag of a batch: its payload starts with `first_position: u32`, the stamp position of
/// its first delta (the others follow it); without it the first position is 0.
pub const FLAG_POSITIONED: u8 = 0b0000_0010;
/// Frame flag of a batch or fragment: its payload ends with a positions table, one u32 per
/// delta (never with [`FLAG_POSITIONED`]).
pub const FLAG_POSITIONS: u8 = 0b0000_0100;
/// Frame flag of a batch or fragment: its payload ends with a trailer (source ranges, name
/// spans: `trailer`) and its length (u32).
pub const FLAG_TRAILER: u8 = 0b0000_1000;
const KNOWN_FLAGS: u8 = FLAG_ZSTD | FLAG_POSITIONED | FLAG_POSITIONS | FLAG_TRAILER;

/// Encodes the header of segment `segment_id` in format `version` (the current one is
/// [`FORMAT_VERSION`]; tests and fuzzers write older ones).
pub fn encode_segment_header(segment_id: u64, version: u32) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    LittleEndian::write_u32(&mut header[8..12], version);
    LittleEndian::write_u32(&mut header[12..16], SEGMENT_HEADER_BYTES as u32);
    LittleEndian::write_u64(&mut header[16..24], segment_id);
    let crc = crc32fast::hash(&header[0..28]);
    LittleEndian::write_u32(&mut header[28..32], crc);
    header
}

/// What a valid segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment id it names.
    pub id: u64,
    /// Its format version (`OLDEST_READ_VERSION..=FORMAT_VERSION`).
    pub version: u32,
}

/// Validates a segment header.
pub fn decode_segment_header(bytes: &[u8]) -> Decoded<SegmentHeader> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        let reason = format!(
            "segment header truncated: {} of {SEGMENT_HEADER_BYTES} bytes",
            bytes.len()
        );
        return Err(DecodeError::new(bytes.len(), reason));
    }
    let header = &bytes[..SEGMENT_HEADER_BYTES];
    if header[0..8] != SEGMENT_MAGIC {
        return Err(DecodeError::new(0, "bad segment magic"));
    }
    let stored_crc = LittleEndian::read_u32(&header[28..32]);
    if crc32fast::hash(&header[0..28]) != stored_crc {
        return Err(DecodeError::new(28, "segment header checksum mismatch"));
    }
    let version = LittleEndian::read_u32(&header[8..12]);
    if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
        let reason = format!("unsupported segment format version {version}");
        return Err(DecodeError::new(8, reason));
    }
    let header_len = LittleEndian::read_u32(&header[12..16]);
    if header_len as usize != SEGMENT_HEADER_BYTES {
        let reason = format!("unexpected segment header length {header_len}");
        return Err(DecodeError::new(12, reason));
    }
    Ok(SegmentHeader {
        id: LittleEndian::read_u64(&header[16..24]),
        version,
    })
}

/// A decoded, not yet checksum-verified frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Stored CRC32.
    pub crc: u32,
    /// Body length in bytes as stored.
    pub length: u32,
    /// Record type.
    pub record_type: RecordType,
    /// Flag bits.
    pub flags: u8,
}

/// Parses the 12 header bytes of a frame, rejecting unknown types, flags and reserved bits.
pub fn decode_frame_header(bytes: &[u8; FRAME_HEADER_BYTES]) -> Decoded<FrameHeader> {
    let record_type = match bytes[8] {
        1 => RecordType::Batch,
        2 => RecordType::State,
        3 => RecordType::Seal,
        4 => RecordType::End,
        5 => RecordType::Commit,
        6 => RecordType::Fragment,
        7 => RecordType::BatchCommit,
        8 => RecordType::Sources,
        9 => RecordType::Retraction,
        10 => RecordType::References,
        other => return Err(DecodeError::new(8, format!("unknown record type {other}"))),
    };
    let flags = bytes[9];
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::new(
            9,
            format!("unknown frame flags {flags:#04x}"),
        ));
    }
    if bytes[10] != 0 || bytes[11] != 0 {
        return Err(DecodeError::new(10, "nonzero reserved frame bytes"));
    }
    Ok(FrameHeader {
        crc: LittleEndian::read_u32(&bytes[0..4]),
        length: LittleEndian::read_u32(&bytes[4..8]),
        record_type,
        flags,
    })
}

/// The CRC32 of a frame: over the segment id and the frame's offset in its segment (both u64
/// LE), the frame header bytes after the CRC field, then the body. Covering the segment id and
/// offset makes a frame that was copied, misplaced or left over from an older file fail.
pub fn frame_crc(segment_id: u64, offset: u64, header_tail: &[u8], body: &[u8]) -> u32 {
    let mut place = [0u8; 16];
    LittleEndian::write_u64(&mut place[0..8], segment_id);
    LittleEndian::write_u64(&mut place[8..16], offset);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&place);
    hasher.update(header_tail);
    hasher.update(body);
    hasher.finalize()
}

/// Decodes the body of a commit record: `durable_through`.
pub fn decode_commit_body(body: &[u8]) -> Decoded<u64> {
    let bytes: [u8; 8] = body
        .try_into()
        .map_err(|_| DecodeError::new(0, format!("commit record of {} bytes", body.len())))?;
    Ok(u64::from_le_bytes(bytes))
}

/// Appends a complete frame (header + body) for a record at `offset` of segment `segment_id`.
/// Returns the frame's CRC.
pub fn write_frame(
    out: &mut Vec<u8>,
    segment_id: u64,
    offset: u64,
    record_type: RecordType,
    flags: u8,
    body: &[u8],
) -> u32 {
    let crc = frame_crc_of(segment_id, offset, record_type, flags, body);
    let mut header = frame_header_tail(record_type, flags, body);
    LittleEndian::write_u32(&mut header[0..4], crc);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    crc
}

/// The CRC [`write_frame`] gives a frame of `record_type` with `flags` and `body` at `offset` of
/// segment `segment_id` (a spanning batch's commit lists its fragments' CRCs).
pub fn frame_crc_of(
    segment_id: u64,
    offset: u64,
    record_type: RecordType,
    flags: u8,
    body: &[u8],
) -> u32 {
    let header = frame_header_tail(record_type, flags, body);
    frame_crc(segment_id, offset, &header[4..], body)
}

/// A frame header with every field but the CRC.
fn frame_header_tail(record_type: RecordType, flags: u8, body: &[u8]) -> [u8; FRAME_HEADER_BYTES] {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    LittleEndian::write_u32(&mut header[4..8], body.len() as u32);
    header[8] = record_type as u8;
    header[9] = flags;
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let header = encode_segment_header(42, FORMAT_VERSION);
        let expected = SegmentHeader {
            id: 42,
            version: FORMAT_VERSION,
        };
        assert_eq!(decode_segment_header(&header), Ok(expected));
        for byte in 0..SEGMENT_HEADER_BYTES {
            let mut damaged = header;
            damaged[byte] ^= 0x10;
            assert!(decode_segment_header(&damaged).is_err(), "byte {byte}");
        }
        assert!(decode_segment_header(&header[..31]).is_err());
        let older = encode_segment_header(42, OLDEST_READ_VERSION);
        assert_eq!(decode_segment_header(&older).map(|h| h.version), Ok(1));
        for unknown in [0, FORMAT_VERSION + 1] {
            let header = encode_segment_header(42, unknown);
            let error = decode_segment_header(&header).unwrap_err();
            assert!(error.reason.contains("version") && error.offset == 8);
        }
    }

    #[test]
    fn frame_crc_depends_on_segment_and_offset() {
        let mut frame = Vec::new();
        write_frame(&mut frame, 7, 32, RecordType::Batch, 0, b"body");
        let header: [u8; FRAME_HEADER_BYTES] = frame[..12].try_into().unwrap();
        let parsed = decode_frame_header(&header).unwrap();
        assert_eq!(parsed.length, 4);
        assert_eq!(parsed.crc, frame_crc(7, 32, &frame[4..12], b"body"));
        assert_ne!(parsed.crc, frame_crc(8, 32, &frame[4..12], b"body"));
        assert_ne!(parsed.crc, frame_crc(7, 44, &frame[4..12], b"body"));
    }

    #[test]
    fn unknown_type_flags_and_reserved_bits_are_rejected() {
        let mut frame = Vec::new();
        write_frame(&mut frame, 1, 32, RecordType::Batch, 0, b"");
        for (byte, value) in [(8, 11u8), (8, 0), (9, 0x10), (9, 0x80), (10, 1), (11, 1)] {
            let mut header: [u8; FRAME_HEADER_BYTES] = frame[..12].try_into().unwrap();
            header[byte] = value;
            assert!(decode_frame_header(&header).is_err());
        }
    }
}
