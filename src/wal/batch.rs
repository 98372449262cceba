//! The body of a batch record: a count followed by delta records (see DESIGN.md, 3.3).
//!
//! ```text
//! payload        := [first_position:u32] count:u32 delta*count [position:u32 * count]
//!                   [trailer trailer_len:u32]
//! delta          := id_len:u16 id:[u8; id_len] seq:u64 kind:u8 body_len:u32 body checksum:u32
//! checksum       := crc32(id_len ..= body)      (kind 1 = patch, 2 = delete with empty body)
//! stored body    := payload                     (frame flag clear)
//!                 | raw_len:u32 zstd(payload)   (frame flag FLAG_ZSTD)
//! ```
//! Integers are little-endian. `first_position` is there with frame flag `FLAG_POSITIONED`,
//! the positions table with `FLAG_POSITIONS` (never both), the trailer (source ranges and name
//! spans, [`trailer`](super::trailer)) with `FLAG_TRAILER`. The delta at index `i` has stamp position
//! `table[i]`, or `first_position + i` (`first_position` is 0 without the flag). The per-delta
//! checksum lets a reader verify one delta without re-checking its whole batch, and is the
//! [`Stamp`](crate::model::Stamp) tie-breaker.

use std::borrow::Cow;

use byteorder::{ByteOrder, LittleEndian};

use super::format::{FLAG_POSITIONED, FLAG_POSITIONS, FLAG_TRAILER, MAX_BATCH_PAYLOAD_BYTES};
use super::trailer::{self, Trailer};
use crate::decode::{DecodeError, Decoded};
use crate::model::DeltaKind;
use crate::sources::SourceRange;
use crate::text;

/// Longest aggregate id in bytes.
pub const MAX_AGGREGATE_ID_BYTES: usize = 1024;
/// Bytes of a delta record around its id and body.
const DELTA_OVERHEAD_BYTES: usize = 2 + 8 + 1 + 4 + 4;
/// Smallest possible delta record (a one-byte id, empty body).
const MIN_DELTA_BYTES: usize = DELTA_OVERHEAD_BYTES + 1;
const KIND_PATCH: u8 = 1;
const KIND_DELETE: u8 = 2;

/// Bytes a delta record with an id of `aggregate_bytes` and a body of `body_bytes` takes.
pub(crate) fn encoded_delta_bytes(aggregate_bytes: usize, body_bytes: usize) -> usize {
    DELTA_OVERHEAD_BYTES + aggregate_bytes + body_bytes
}

/// One delta record decoded from a batch payload, borrowing from it.
#[derive(Clone, Copy, Debug)]
pub struct DeltaRecord<'a> {
    /// Byte offset of the record within the batch payload.
    pub offset: u32,
    /// Stamp position.
    pub position: u32,
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
    /// The header and the records (the optional trailing parts are added by `finish`).
    payload: Vec<u8>,
    count: u32,
    /// Stamp position of the first delta; a payload starting elsewhere than 0 carries it.
    first_position: u32,
    /// Every delta's position, once one is not the next after the previous.
    table: Option<Vec<u32>>,
    /// Source ranges the batch holds.
    sources: Vec<SourceRange>,
    /// Batch names, each with the index of the first delta it names (it names the deltas up
    /// to the next name's first).
    names: Vec<(String, u32)>,
    /// Trailer bytes of the names that name at least one delta (kept as deltas are pushed: the
    /// size of a batch is asked at every push).
    named_bytes: usize,
}

impl Default for BatchEncoder {
    fn default() -> Self {
        BatchEncoder::starting_at(0)
    }
}

impl BatchEncoder {
    /// An empty payload whose first delta takes stamp position `first_position`.
    pub fn starting_at(first_position: u32) -> Self {
        let mut payload = Vec::new();
        if first_position > 0 {
            payload.extend_from_slice(&first_position.to_le_bytes());
        }
        payload.extend_from_slice(&[0; 4]);
        BatchEncoder {
            payload,
            count: 0,
            first_position,
            table: None,
            sources: Vec::new(),
            names: Vec::new(),
            named_bytes: 0,
        }
    }

    /// An empty payload with a positions table from the start, as a decoded payload that has
    /// one is encoded again.
    #[cfg(any(test, feature = "testing"))]
    pub fn tabled() -> Self {
        BatchEncoder {
            table: Some(Vec::new()),
            ..BatchEncoder::default()
        }
    }

    /// Stamp position of the first delta.
    pub fn first_position(&self) -> u32 {
        self.first_position
    }

    /// The position the next delta takes unless given one.
    pub fn next_position(&self) -> Option<u32> {
        match &self.table {
            Some(table) => table.last().and_then(|p| p.checked_add(1)),
            None => self.first_position.checked_add(self.count),
        }
    }

    /// Frame flags for the payload [`BatchEncoder::finish`] gives.
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.table.is_some() {
            flags |= FLAG_POSITIONS;
        } else if self.first_position > 0 {
            flags |= FLAG_POSITIONED;
        }
        if self.has_trailer_entries() {
            flags |= FLAG_TRAILER;
        }
        flags
    }

    /// Whether one more delta still fits (positions and the count are 32 bits).
    pub fn has_room(&self) -> bool {
        self.count < u32::MAX - 1 && self.next_position().is_some_and(|p| p < u32::MAX)
    }

    fn count_at(&self) -> usize {
        if self.table.is_none() && self.first_position > 0 {
            4
        } else {
            0
        }
    }

    /// Appends one delta at the next position; the id must already be valid. Returns the
    /// delta's checksum.
    #[cfg(any(test, feature = "testing"))]
    pub fn push(&mut self, aggregate: &str, seq: u64, kind: DeltaKind, body: &[u8]) -> u32 {
        let position = self.next_position().unwrap_or(u32::MAX);
        self.push_at(aggregate, seq, position, kind, body)
    }

    /// Appends one delta at stamp `position`; the id must already be valid. Returns the
    /// delta's checksum.
    pub fn push_at(
        &mut self,
        aggregate: &str,
        seq: u64,
        position: u32,
        kind: DeltaKind,
        body: &[u8],
    ) -> u32 {
        if self.table.is_none() && self.next_position() != Some(position) {
            self.start_table();
        }
        if let Some(table) = &mut self.table {
            table.push(position);
        }
        if let Some((name, first)) = self.names.last() {
            if *first == self.count {
                self.named_bytes += trailer::name_span_bytes(name.len());
            }
        }
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
        let at = self.count_at();
        LittleEndian::write_u32(&mut self.payload[at..at + 4], self.count);
        checksum
    }

    /// Switches to a positions table: the positions so far are listed, and a leading first
    /// position (which a table replaces) is dropped.
    fn start_table(&mut self) {
        let listed = (0..self.count).map(|i| self.first_position + i).collect();
        if self.first_position > 0 {
            self.payload.drain(..4);
        }
        self.table = Some(listed);
    }

    /// Adds a source range (validated by the caller).
    pub fn add_source(&mut self, range: SourceRange) {
        self.sources.push(range);
    }

    /// The source ranges added.
    pub fn sources(&self) -> &[SourceRange] {
        &self.sources
    }

    /// Names the deltas pushed from now on (until the next name) as belonging to the upstream
    /// batch `name` (validated by the caller).
    pub fn name_from_here(&mut self, name: String) {
        if self
            .names
            .last()
            .is_some_and(|(_, first)| *first == self.count)
        {
            self.names.pop();
        }
        self.names.push((name, self.count));
    }

    /// Bytes the next delta adds to the payload besides its record and positions table: the
    /// span of a name given but not yet over any delta, and the trailer's end field when that
    /// span starts the trailer.
    pub fn pending_name_bytes(&self) -> usize {
        match self.names.last() {
            Some((name, first)) if *first == self.count => {
                let trailer_end = if self.has_trailer_entries() { 0 } else { 4 };
                trailer::name_span_bytes(name.len()) + trailer_end
            }
            _ => 0,
        }
    }

    /// Bytes a source range adds to the payload, the trailer's end field included when it
    /// starts the trailer.
    pub fn source_bytes(&self, range: &SourceRange) -> usize {
        let trailer_end = if self.has_trailer_entries() { 0 } else { 4 };
        trailer::sources_bytes(std::slice::from_ref(range)) + trailer_end
    }

    /// The name in force for the next delta, if any.
    pub fn current_name(&self) -> Option<&str> {
        self.names.last().map(|(name, _)| name.as_str())
    }

    /// Whether the payload has a trailer (source ranges, or a name over at least one delta).
    fn has_trailer_entries(&self) -> bool {
        !self.sources.is_empty() || self.named_bytes > 0
    }

    /// Each name with the first delta and the number of deltas it names (names over no delta
    /// left out).
    fn named_spans(&self) -> impl Iterator<Item = (&str, u32, u32)> {
        let ends = (self.names.iter().skip(1).map(|(_, first)| *first)).chain([self.count]);
        (self.names.iter().zip(ends))
            .filter(|((_, first), end)| first < end)
            .map(|((name, first), end)| (name.as_str(), *first, end - first))
    }

    /// Number of deltas pushed.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether no delta was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the payload.
    pub fn payload_bytes(&self) -> usize {
        let table = self.table.as_ref().map_or(0, |t| 4 * t.len());
        // Kept, not built: a batch with a name per message is asked this at every push.
        let trailer = match self.has_trailer_entries() {
            true => trailer::sources_bytes(&self.sources) + self.named_bytes + 4,
            false => 0,
        };
        self.payload.len() + table + trailer
    }

    /// The header and the records, without the trailing parts.
    pub fn records(&self) -> &[u8] {
        &self.payload
    }

    /// Whether the payload ends with a positions table or source ranges, which
    /// [`BatchEncoder::payload`] then appends to a copy.
    pub fn has_trailer(&self) -> bool {
        self.table.is_some() || self.has_trailer_entries()
    }

    /// The payload, with its positions table and source ranges when it has them (frame flags
    /// from [`BatchEncoder::flags`]).
    pub fn payload(&self) -> Cow<'_, [u8]> {
        if !self.has_trailer() {
            return Cow::Borrowed(&self.payload);
        }
        let mut payload = Vec::with_capacity(self.payload_bytes());
        payload.extend_from_slice(&self.payload);
        for position in self.table.iter().flatten() {
            payload.extend_from_slice(&position.to_le_bytes());
        }
        if self.has_trailer_entries() {
            trailer::encode(&self.sources, self.named_spans(), &mut payload);
        }
        debug_assert_eq!(payload.len(), self.payload_bytes());
        Cow::Owned(payload)
    }
}

/// Iterates over the delta records of a batch payload, validating every length.
pub struct BatchDecoder<'a> {
    payload: &'a [u8],
    offset: usize,
    /// Where the records end (the optional trailing parts start).
    records_end: usize,
    remaining: u32,
    checksums: Checksums,
    first_position: u32,
    /// The positions table (empty without one).
    table: &'a [u8],
    /// Deltas the payload declares (the next delta's index is `count - remaining`).
    count: u32,
    /// The trailer's entries (empty without one).
    trailer: &'a [u8],
}

/// Whether a decoder verifies each delta's own CRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksums {
    /// Verify every delta record's CRC (the payload's frame CRC was not checked).
    Verify,
    /// The payload comes from a frame whose CRC was just verified, and that CRC covers every
    /// byte of every delta record (their stored CRCs included): checking each record's CRC
    /// again would only check the writer. Lengths, kinds and UTF-8 are still validated.
    CoveredByFrame,
}

impl<'a> BatchDecoder<'a> {
    /// Starts decoding `payload`, verifying every delta's CRC; fails when the count cannot fit
    /// in it.
    #[cfg(any(test, feature = "testing"))]
    pub fn new(payload: &'a [u8]) -> Decoded<Self> {
        Self::with_checksums(payload, Checksums::Verify)
    }

    /// Starts decoding an unpositioned `payload` with the given checksum policy.
    #[cfg(any(test, feature = "testing"))]
    pub fn with_checksums(payload: &'a [u8], checksums: Checksums) -> Decoded<Self> {
        Self::of_frame(payload, 0, checksums)
    }

    /// Starts decoding the payload of a batch frame with `flags` (which say whether it starts
    /// with its first position, ends with a positions table, ends with source ranges) under
    /// the given checksum policy. The trailing parts are located and bounded here.
    pub fn of_frame(payload: &'a [u8], flags: u8, checksums: Checksums) -> Decoded<Self> {
        let positioned = flags & FLAG_POSITIONED != 0;
        let tabled = flags & FLAG_POSITIONS != 0;
        if positioned && tabled {
            return Err(DecodeError::new(
                0,
                "a first position and a positions table",
            ));
        }
        let (records_end, trailer) = split_trailer(payload, flags)?;
        let header = if positioned { 8 } else { 4 };
        if records_end < header {
            return Err(DecodeError::new(0, "batch payload shorter than its header"));
        }
        let first_position = if positioned {
            LittleEndian::read_u32(&payload[..4])
        } else {
            0
        };
        let count = LittleEndian::read_u32(&payload[header - 4..header]);
        let table_bytes = if tabled { 4 * count as usize } else { 0 };
        let fits = (records_end - header).checked_sub(table_bytes);
        if fits.is_none_or(|room| count as usize > room / MIN_DELTA_BYTES) {
            let reason = format!("batch claims {count} deltas in {} bytes", payload.len());
            return Err(DecodeError::new(0, reason));
        }
        if first_position.checked_add(count).is_none() {
            let reason = format!("positions {first_position} + {count} overflow 32 bits");
            return Err(DecodeError::new(0, reason));
        }
        let records_end = records_end - table_bytes;
        Ok(BatchDecoder {
            payload,
            offset: header,
            records_end,
            remaining: count,
            checksums,
            first_position,
            table: &payload[records_end..records_end + table_bytes],
            count,
            trailer,
        })
    }

    /// Stamp position of the batch's first delta when the others follow it; `None` for a
    /// batch with a positions table.
    pub fn first_position(&self) -> Option<u32> {
        self.table.is_empty().then_some(self.first_position)
    }

    /// The trailer: source ranges and name spans (empty without the flag).
    pub fn trailer(&self) -> Decoded<Trailer<'a>> {
        let base = self.payload.len().saturating_sub(4 + self.trailer.len());
        match self.trailer.is_empty() {
            true => Ok(Trailer::default()),
            false => Trailer::decode(self.trailer, self.count).map_err(|e| e.shifted(base)),
        }
    }

    /// A decoder that yields nothing.
    pub fn exhausted() -> BatchDecoder<'static> {
        BatchDecoder {
            payload: &[],
            offset: 0,
            records_end: 0,
            remaining: 0,
            checksums: Checksums::Verify,
            first_position: 0,
            table: &[],
            count: 0,
            trailer: &[],
        }
    }

    /// Number of deltas left to decode (the declared count at first, which `new` checked
    /// against the payload's length).
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    fn position_of(&self, index: u32) -> u32 {
        let at = 4 * index as usize;
        match self.table.get(at..at + 4) {
            Some(entry) => LittleEndian::read_u32(entry),
            None => self.first_position + index,
        }
    }
}

/// Splits the trailer (with `FLAG_TRAILER`) off the end of `payload`: returns where the rest
/// ends and the trailer's entries.
fn split_trailer(payload: &[u8], flags: u8) -> Decoded<(usize, &[u8])> {
    if flags & FLAG_TRAILER == 0 {
        return Ok((payload.len(), &[]));
    }
    let Some(len_at) = payload.len().checked_sub(4) else {
        return Err(DecodeError::new(
            0,
            "batch payload shorter than its trailer length",
        ));
    };
    let trailer_len = LittleEndian::read_u32(&payload[len_at..]) as usize;
    match len_at.checked_sub(trailer_len) {
        Some(start) if trailer_len > 0 => Ok((start, &payload[start..len_at])),
        _ => {
            let reason = format!("a trailer of {trailer_len} bytes in a payload of {len_at}");
            Err(DecodeError::new(len_at, reason))
        }
    }
}

impl<'a> Iterator for BatchDecoder<'a> {
    type Item = Decoded<DeltaRecord<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return if self.offset == self.records_end {
                None
            } else {
                let trailing_at = self.offset;
                self.remaining = 0;
                self.offset = self.records_end;
                let reason = "trailing bytes after the last delta";
                Some(Err(DecodeError::new(trailing_at, reason)))
            };
        }
        let index = self.count - self.remaining;
        self.remaining -= 1;
        let records = &self.payload[..self.records_end];
        match decode_delta(records, self.offset, self.checksums) {
            Ok((mut record, next)) => {
                record.position = self.position_of(index);
                self.offset = next;
                Some(Ok(record))
            }
            Err(e) => {
                self.remaining = 0;
                self.offset = self.records_end;
                Some(Err(e))
            }
        }
    }
}

/// Decodes and verifies the delta record at `offset` of `payload`, whose stamp position the
/// caller knows (a record does not hold it); returns it and the offset of the next record.
pub fn decode_delta_at(
    payload: &[u8],
    offset: usize,
    position: u32,
) -> Decoded<(DeltaRecord<'_>, usize)> {
    let (record, next) = decode_delta(payload, offset, Checksums::Verify)?;
    Ok((DeltaRecord { position, ..record }, next))
}

/// Decodes the delta record at `offset` of `payload`, verifying its CRC if asked. This is the
/// replay path's inner loop: one bounds check for the fixed fields, errors built out of line.
#[inline(always)]
fn decode_delta(
    payload: &[u8],
    offset: usize,
    checksums: Checksums,
) -> Decoded<(DeltaRecord<'_>, usize)> {
    let rest = match payload.get(offset..) {
        Some(rest) if rest.len() >= MIN_DELTA_BYTES => rest,
        Some(_) => return Err(delta_error(offset, "truncated")),
        None => return Err(delta_error(offset, "offset past end")),
    };
    let id_len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
    let id_end = 2 + id_len;
    // seq (8) + kind (1) + body length (4) follow the id.
    let Some(fixed) = rest.get(id_end..id_end + 13).filter(|_| id_len != 0) else {
        return Err(delta_error(offset, "bad aggregate id length"));
    };
    if id_len > MAX_AGGREGATE_ID_BYTES {
        return Err(delta_error(offset, "bad aggregate id length"));
    }
    let seq = u64::from_le_bytes(fixed[..8].try_into().unwrap_or_default());
    let kind = match fixed[8] {
        KIND_PATCH => DeltaKind::Patch,
        KIND_DELETE => DeltaKind::Delete,
        other => return Err(delta_error(offset, &format!("unknown delta kind {other}"))),
    };
    let body_len = u32::from_le_bytes(fixed[9..13].try_into().unwrap_or_default()) as usize;
    let body_start = id_end + 13;
    let body_end = body_start.saturating_add(body_len);
    let Some(stored) = rest.get(body_end..body_end.saturating_add(4)) else {
        return Err(delta_error(offset, "body length exceeds batch"));
    };
    if kind == DeltaKind::Delete && body_len != 0 {
        return Err(delta_error(offset, "delete with a body"));
    }
    let checksum = u32::from_le_bytes(stored.try_into().unwrap_or_default());
    if checksums == Checksums::Verify && crc32fast::hash(&rest[..body_end]) != checksum {
        return Err(delta_error(offset, "delta checksum mismatch"));
    }
    let Some(aggregate) = text::from_utf8(&rest[2..id_end]) else {
        return Err(delta_error(offset, "aggregate id is not UTF-8"));
    };
    let record = DeltaRecord {
        offset: offset as u32,
        position: 0,
        aggregate,
        seq,
        kind,
        body: &rest[body_start..body_end],
        checksum,
    };
    Ok((record, offset + body_end + 4))
}

#[cold]
fn delta_error(offset: usize, what: &str) -> DecodeError {
    DecodeError::new(offset, format!("delta at payload offset {offset}: {what}"))
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
pub fn decompress_payload(stored: &[u8]) -> Decoded<Vec<u8>> {
    let mut payload = Vec::new();
    decompress_payload_into(stored, &mut payload)?;
    Ok(payload)
}

/// [`decompress_payload`] into a reused buffer (replaced, not appended to).
pub fn decompress_payload_into(stored: &[u8], payload: &mut Vec<u8>) -> Decoded<()> {
    if stored.len() < 4 {
        return Err(DecodeError::new(
            0,
            "compressed body shorter than its length prefix",
        ));
    }
    let raw_len = LittleEndian::read_u32(&stored[..4]) as usize;
    if raw_len > MAX_BATCH_PAYLOAD_BYTES {
        let reason = format!(
            "compressed body claims {raw_len} bytes, above the {MAX_BATCH_PAYLOAD_BYTES}-byte bound"
        );
        return Err(DecodeError::new(0, reason));
    }
    payload.clear();
    payload.reserve(raw_len);
    let written = zstd::bulk::Decompressor::new()
        .and_then(|mut d| d.decompress_to_buffer(&stored[4..], payload))
        .map_err(|e| DecodeError::new(4, format!("zstd decompression failed: {e}")))?;
    if written != raw_len {
        let reason = format!("decompressed to {written} bytes, expected {raw_len}");
        return Err(DecodeError::new(0, reason));
    }
    Ok(())
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
    fn a_positioned_payload_carries_its_first_position() {
        let mut batch = BatchEncoder::starting_at(40);
        batch.push("A", 1, DeltaKind::Patch, b"\x08\x00");
        batch.push("bb", 2, DeltaKind::Delete, b"");
        let payload = &*batch.payload();
        assert_eq!(&payload[..8], &[40, 0, 0, 0, 2, 0, 0, 0]);
        let decoder = BatchDecoder::of_frame(payload, FLAG_POSITIONED, Checksums::Verify).unwrap();
        assert_eq!(decoder.first_position(), Some(40));
        let records: Vec<_> = decoder.collect::<Decoded<_>>().unwrap();
        assert_eq!(records[1].aggregate, "bb");
        // Read as unpositioned it does not decode; a position past 32 bits is refused.
        assert!(BatchDecoder::with_checksums(payload, Checksums::Verify)
            .and_then(|d| d.collect::<Decoded<Vec<_>>>())
            .is_err());
        let mut overflowing = payload.to_vec();
        overflowing[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(BatchDecoder::of_frame(&overflowing, FLAG_POSITIONED, Checksums::Verify).is_err());
        assert!(BatchDecoder::of_frame(&payload[..6], FLAG_POSITIONED, Checksums::Verify).is_err());
        assert_eq!(
            &*BatchEncoder::default().payload(),
            &[0, 0, 0, 0],
            "position 0: the old layout"
        );
    }

    fn decode_all(payload: &[u8], flags: u8) -> Decoded<Vec<(String, u32)>> {
        let decoder = BatchDecoder::of_frame(payload, flags, Checksums::Verify)?;
        let records = decoder.collect::<Decoded<Vec<_>>>()?;
        Ok((records.iter())
            .map(|r| (r.aggregate.to_owned(), r.position))
            .collect())
    }

    #[test]
    fn positions_that_do_not_follow_each_other_go_to_a_table_after_the_records() {
        let mut batch = BatchEncoder::starting_at(7);
        batch.push("A", 1, DeltaKind::Patch, b"\x08\x00");
        batch.push_at("bb", 2, 0, DeltaKind::Delete, b"");
        batch.push("c", 2, DeltaKind::Delete, b"");
        assert_eq!(
            batch.flags(),
            FLAG_POSITIONS,
            "the table replaces the first position"
        );
        let payload = batch.payload().into_owned();
        let positions = vec![("A".into(), 7), ("bb".into(), 0), ("c".into(), 1)];
        assert_eq!(decode_all(&payload, FLAG_POSITIONS).unwrap(), positions);
        // Records keep their offsets: the first starts right after the count.
        assert_eq!(&payload[..4], &[3, 0, 0, 0]);
        assert_eq!(
            &payload[payload.len() - 12..],
            &[7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
        );
        // Without the flag the table is trailing bytes; with both position flags, damage.
        assert!(decode_all(&payload, 0).is_err());
        assert!(decode_all(&payload, FLAG_POSITIONS | FLAG_POSITIONED).is_err());
        for cut in 0..payload.len() {
            assert!(
                decode_all(&payload[..cut], FLAG_POSITIONS).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn source_ranges_close_the_payload_and_a_batch_may_hold_only_them() {
        let range = SourceRange {
            topic: "deltas".into(),
            partition: 1,
            first_offset: 10,
            next_offset: 12,
            dead_letters: 0,
        };
        for with_delta in [false, true] {
            let mut batch = BatchEncoder::default();
            if with_delta {
                batch.push_at("A", 1, 5, DeltaKind::Patch, b"\x08\x00");
            }
            batch.add_source(range.clone());
            let flags = batch.flags();
            let payload = batch.payload().into_owned();
            let decoder = BatchDecoder::of_frame(&payload, flags, Checksums::Verify).unwrap();
            assert_eq!(decoder.trailer().unwrap().sources, vec![range.clone()]);
            let expected = if with_delta {
                vec![("A".into(), 5)]
            } else {
                vec![]
            };
            assert_eq!(decode_all(&payload, flags).unwrap(), expected);
            for cut in 0..payload.len() {
                let cut_ok = BatchDecoder::of_frame(&payload[..cut], flags, Checksums::Verify)
                    .and_then(|d| d.trailer().map(|_| d.collect::<Decoded<Vec<_>>>()))
                    .is_ok_and(|records| records.is_ok());
                assert!(!cut_ok, "cut at {cut}");
            }
        }
    }

    #[test]
    fn ids_are_checked_as_utf8_with_or_without_checksums() {
        let mut batch = BatchEncoder::default();
        batch.push("A\u{e9}", 1, DeltaKind::Patch, b"\x08\x00");
        let mut payload = batch.payload().to_vec();
        payload[7] = 0xff; // The id's second byte (after count 4, id length 2, 'A').
        for checksums in [Checksums::Verify, Checksums::CoveredByFrame] {
            let first = BatchDecoder::with_checksums(&payload, checksums)
                .unwrap()
                .next()
                .unwrap();
            assert!(first.is_err(), "{checksums:?}");
        }
    }

    #[test]
    fn payload_round_trips() {
        let batch = sample();
        let payload = batch.payload();
        let records: Vec<_> = BatchDecoder::new(&payload)
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
