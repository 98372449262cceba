//! The body of a batch record: a count followed by delta records (see DESIGN.md).
//!
//! ```text
//! payload        := count:u32 delta*count
//! delta          := id_len:u16 id:[u8; id_len] seq:u64 kind:u8 body_len:u32 body checksum:u32
//! checksum       := crc32(id_len ..= body)      (kind 1 = patch, 2 = delete with empty body)
//! stored body    := payload                     (frame flag clear)
//!                 | raw_len:u32 zstd(payload)   (frame flag FLAG_ZSTD)
//! ```
//! Integers are little-endian. The per-delta checksum lets a reader verify one delta without
//! re-checking its whole batch, and is the [`Stamp`](crate::model::Stamp) tie-breaker.

use byteorder::{ByteOrder, LittleEndian};

use super::format::MAX_BATCH_PAYLOAD_BYTES;
use crate::model::DeltaKind;

/// Longest aggregate id in bytes.
pub const MAX_AGGREGATE_ID_BYTES: usize = 1024;
/// Bytes of a delta record around its id and body.
const DELTA_OVERHEAD_BYTES: usize = 2 + 8 + 1 + 4 + 4;
/// Smallest possible delta record (a one-byte id, empty body).
const MIN_DELTA_BYTES: usize = DELTA_OVERHEAD_BYTES + 1;
const KIND_PATCH: u8 = 1;
const KIND_DELETE: u8 = 2;

/// One delta record decoded from a batch payload, borrowing from it.
#[derive(Clone, Copy, Debug)]
pub struct DeltaRecord<'a> {
    /// Byte offset of the record within the batch payload.
    pub offset: u32,
    /// The aggregate id.
    pub aggregate: &'a str,
    /// Upstream sequence number.
    pub seq: u64,
    /// Patch or delete.
    pub kind: DeltaKind,
    /// Encoded body (empty for a delete).
    pub body: &'a [u8],
    /// CRC32 of the record's bytes (id length through body).
    pub checksum: u32,
}

/// Checks an aggregate id: 1 to 1024 bytes.
pub fn validate_aggregate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("aggregate id is empty".into());
    }
    if id.len() > MAX_AGGREGATE_ID_BYTES {
        return Err(format!(
            "aggregate id is {} bytes, more than the {MAX_AGGREGATE_ID_BYTES}-byte limit",
            id.len()
        ));
    }
    Ok(())
}

/// Builds a batch payload delta by delta.
#[derive(Clone, Debug)]
pub struct BatchEncoder {
    payload: Vec<u8>,
    count: u32,
}

impl Default for BatchEncoder {
    fn default() -> Self {
        BatchEncoder {
            payload: vec![0; 4],
            count: 0,
        }
    }
}

impl BatchEncoder {
    /// Appends one delta; the id must already be valid. Returns the delta's checksum.
    pub fn push(&mut self, aggregate: &str, seq: u64, kind: DeltaKind, body: &[u8]) -> u32 {
        let start = self.payload.len();
        let mut fixed = [0u8; 8];
        LittleEndian::write_u16(&mut fixed[..2], aggregate.len() as u16);
        self.payload.extend_from_slice(&fixed[..2]);
        self.payload.extend_from_slice(aggregate.as_bytes());
        LittleEndian::write_u64(&mut fixed, seq);
        self.payload.extend_from_slice(&fixed);
        self.payload.push(match kind {
            DeltaKind::Patch => KIND_PATCH,
            DeltaKind::Delete => KIND_DELETE,
        });
        LittleEndian::write_u32(&mut fixed[..4], body.len() as u32);
        self.payload.extend_from_slice(&fixed[..4]);
        self.payload.extend_from_slice(body);
        let checksum = crc32fast::hash(&self.payload[start..]);
        LittleEndian::write_u32(&mut fixed[..4], checksum);
        self.payload.extend_from_slice(&fixed[..4]);
        self.count += 1;
        LittleEndian::write_u32(&mut self.payload[..4], self.count);
        checksum
    }

    /// Number of deltas pushed.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether no delta was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The payload encoded so far.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// Iterates over the delta records of a batch payload, validating every length.
pub struct BatchDecoder<'a> {
    payload: &'a [u8],
    offset: usize,
    remaining: u32,
}

impl<'a> BatchDecoder<'a> {
    /// Starts decoding `payload`; fails when the count cannot fit in it.
    pub fn new(payload: &'a [u8]) -> Result<Self, String> {
        if payload.len() < 4 {
            return Err("batch payload shorter than its count".into());
        }
        let count = LittleEndian::read_u32(&payload[..4]);
        if count as usize > (payload.len() - 4) / MIN_DELTA_BYTES {
            return Err(format!(
                "batch claims {count} deltas in {} bytes",
                payload.len()
            ));
        }
        Ok(BatchDecoder {
            payload,
            offset: 4,
            remaining: count,
        })
    }

    /// Number of deltas the batch declares.
    pub fn count(payload: &[u8]) -> u32 {
        payload.get(..4).map_or(0, LittleEndian::read_u32)
    }
}

impl<'a> Iterator for BatchDecoder<'a> {
    type Item = Result<DeltaRecord<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return if self.offset == self.payload.len() {
                None
            } else {
                self.remaining = 0;
                self.offset = self.payload.len();
                Some(Err("trailing bytes after the last delta".into()))
            };
        }
        self.remaining -= 1;
        match decode_delta_at(self.payload, self.offset) {
            Ok((record, next)) => {
                self.offset = next;
                Some(Ok(record))
            }
            Err(e) => {
                self.remaining = 0;
                self.offset = self.payload.len();
                Some(Err(e))
            }
        }
    }
}

/// Decodes and verifies the delta record at `offset` of `payload`; returns it and the offset of
/// the next record.
pub fn decode_delta_at(payload: &[u8], offset: usize) -> Result<(DeltaRecord<'_>, usize), String> {
    let err = |what: &str| format!("delta at payload offset {offset}: {what}");
    let rest = payload
        .get(offset..)
        .ok_or_else(|| err("offset past end"))?;
    if rest.len() < MIN_DELTA_BYTES {
        return Err(err("truncated"));
    }
    let id_len = LittleEndian::read_u16(&rest[..2]) as usize;
    if id_len == 0 || id_len > MAX_AGGREGATE_ID_BYTES || rest.len() < DELTA_OVERHEAD_BYTES + id_len
    {
        return Err(err("bad aggregate id length"));
    }
    let id_end = 2 + id_len;
    let seq = LittleEndian::read_u64(&rest[id_end..id_end + 8]);
    let kind = match rest[id_end + 8] {
        KIND_PATCH => DeltaKind::Patch,
        KIND_DELETE => DeltaKind::Delete,
        other => return Err(err(&format!("unknown delta kind {other}"))),
    };
    let body_len = LittleEndian::read_u32(&rest[id_end + 9..id_end + 13]) as usize;
    let body_start = id_end + 13;
    if body_len > rest.len() - DELTA_OVERHEAD_BYTES - id_len {
        return Err(err("body length exceeds batch"));
    }
    if kind == DeltaKind::Delete && body_len != 0 {
        return Err(err("delete with a body"));
    }
    let body_end = body_start + body_len;
    let checksum = LittleEndian::read_u32(&rest[body_end..body_end + 4]);
    if crc32fast::hash(&rest[..body_end]) != checksum {
        return Err(err("delta checksum mismatch"));
    }
    let aggregate =
        std::str::from_utf8(&rest[2..id_end]).map_err(|_| err("aggregate id is not UTF-8"))?;
    let record = DeltaRecord {
        offset: offset as u32,
        aggregate,
        seq,
        kind,
        body: &rest[body_start..body_end],
        checksum,
    };
    Ok((record, offset + body_end + 4))
}

/// Compresses a payload into the stored form `[raw_len:u32][zstd frame]`.
pub fn compress_payload(payload: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8; 4];
    LittleEndian::write_u32(&mut out, payload.len() as u32);
    let compressed = zstd::bulk::compress(payload, level)?;
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// Decompresses a stored compressed body, refusing sizes above [`MAX_BATCH_PAYLOAD_BYTES`] or
/// different from the recorded one.
pub fn decompress_payload(stored: &[u8]) -> Result<Vec<u8>, String> {
    if stored.len() < 4 {
        return Err("compressed body shorter than its length prefix".into());
    }
    let raw_len = LittleEndian::read_u32(&stored[..4]) as usize;
    if raw_len > MAX_BATCH_PAYLOAD_BYTES {
        return Err(format!(
            "compressed body claims {raw_len} bytes, above the {MAX_BATCH_PAYLOAD_BYTES}-byte bound"
        ));
    }
    let payload = zstd::bulk::decompress(&stored[4..], raw_len)
        .map_err(|e| format!("zstd decompression failed: {e}"))?;
    if payload.len() != raw_len {
        return Err(format!(
            "decompressed to {} bytes, expected {raw_len}",
            payload.len()
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BatchEncoder {
        let mut batch = BatchEncoder::default();
        batch.push("A", 1, DeltaKind::Patch, b"\x08\x00");
        batch.push("bb", 2, DeltaKind::Delete, b"");
        batch
    }

    #[test]
    fn payload_round_trips() {
        let batch = sample();
        let records: Vec<_> = BatchDecoder::new(batch.payload())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].aggregate, "A");
        assert_eq!(records[0].body, b"\x08\x00");
        assert_eq!(records[1].aggregate, "bb");
        assert_eq!(records[1].kind, DeltaKind::Delete);
        assert_eq!(records[1].seq, 2);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_not_a_panic() {
        let payload = sample().payload().to_vec();
        for len in 0..payload.len() {
            let ok = BatchDecoder::new(&payload[..len])
                .map(|d| d.collect::<Result<Vec<_>, _>>().is_ok())
                .unwrap_or(false);
            assert!(!ok, "truncated to {len}");
        }
        for byte in 0..payload.len() {
            let mut damaged = payload.clone();
            damaged[byte] ^= 0x04;
            let ok = BatchDecoder::new(&damaged)
                .map(|d| d.collect::<Result<Vec<_>, _>>().is_ok())
                .unwrap_or(false);
            assert!(!ok, "flip in byte {byte}");
        }
    }

    #[test]
    fn compression_round_trips_and_bounds_length() {
        let payload = sample().payload().to_vec();
        let stored = compress_payload(&payload, 1).unwrap();
        assert_eq!(decompress_payload(&stored).unwrap(), payload);
        let mut lying = stored.clone();
        LittleEndian::write_u32(&mut lying[..4], u32::MAX);
        assert!(decompress_payload(&lying).is_err());
    }
}
