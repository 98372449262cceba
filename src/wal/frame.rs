//! Walking the frames of one segment, validating each, and classifying damage.
//!
//! The scanner never trusts a length: a frame's length must fit in the bytes that remain, its
//! type, flags and reserved bytes must be known, and its CRC must match, or the frame is damage.
//! After damage the scanner looks for the next offset where a complete valid frame starts: if
//! there is one, the damage is *followed by valid records* (never a torn tail); if not, the
//! damage runs to the end of the segment.

use super::format::{decode_frame_header, frame_crc, FrameHeader, FRAME_HEADER_BYTES};
use crate::decode::{DecodeError, Decoded};

/// A frame whose header and CRC checked out.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Offset of the frame header within the segment file.
    pub offset: u64,
    /// The decoded header.
    pub header: FrameHeader,
    /// The stored body.
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// Offset just past this frame.
    pub fn end(&self) -> u64 {
        self.offset + (FRAME_HEADER_BYTES + self.body.len()) as u64
    }
}

/// A run of bytes that holds no valid frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedRange {
    /// Offset of the first damaged byte (where a frame was expected).
    pub offset: u64,
    /// Number of damaged bytes.
    pub bytes: u64,
    /// Why the frame at `offset` was rejected.
    pub reason: String,
    /// Whether a valid frame follows the damage in this segment.
    pub followed_by_valid: bool,
}

/// One step of a scan.
#[derive(Debug)]
pub enum ScanEvent<'a> {
    /// A valid frame.
    Frame(Frame<'a>),
    /// Damaged bytes; scanning resumes after them (at the next valid frame or the end).
    Damage(DamagedRange),
}

/// Iterates over the frames of a segment's bytes from `start`.
pub struct FrameScanner<'a> {
    data: &'a [u8],
    segment_id: u64,
    offset: usize,
}

impl<'a> FrameScanner<'a> {
    /// Scans `data` (the whole segment file, header included) from byte `start`.
    pub fn new(data: &'a [u8], segment_id: u64, start: usize) -> Self {
        FrameScanner {
            data,
            segment_id,
            offset: start.min(data.len()),
        }
    }

    /// Finds the first offset after `from` where a valid frame starts.
    fn resync(&self, from: usize) -> Option<Frame<'a>> {
        let last_start = self.data.len().checked_sub(FRAME_HEADER_BYTES)?;
        (from..=last_start).find_map(|at| frame_at(self.data, self.segment_id, at).ok())
    }
}

impl<'a> Iterator for FrameScanner<'a> {
    type Item = ScanEvent<'a>;

    fn next(&mut self) -> Option<ScanEvent<'a>> {
        if self.offset >= self.data.len() {
            return None;
        }
        match frame_at(self.data, self.segment_id, self.offset) {
            Ok(frame) => {
                self.offset = frame.end() as usize;
                Some(ScanEvent::Frame(frame))
            }
            Err(error) => {
                let start = self.offset;
                let next = self.resync(start + 1);
                let end = next.map_or(self.data.len(), |f| f.offset as usize);
                self.offset = end;
                Some(ScanEvent::Damage(DamagedRange {
                    offset: start as u64,
                    bytes: (end - start) as u64,
                    reason: error.reason,
                    followed_by_valid: next.is_some(),
                }))
            }
        }
    }
}

/// The header of the frame at `offset` of `data`, decoded (known type and flags, zero reserved
/// bytes) but not checksum-verified: what a reader that looks a record up by location needs,
/// the CRC having been verified when the record was appended or recovered.
pub fn frame_header_at(data: &[u8], offset: usize) -> Decoded<FrameHeader> {
    let available = data.len().saturating_sub(offset);
    let bytes: &[u8; FRAME_HEADER_BYTES] = data
        .get(offset..offset + FRAME_HEADER_BYTES)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            let reason =
                format!("incomplete frame header ({available} of {FRAME_HEADER_BYTES} bytes)");
            DecodeError::new(offset, reason)
        })?;
    decode_frame_header(bytes).map_err(|e| e.shifted(offset))
}

/// Validates the frame starting at `offset` of `data`: header, length within the data, CRC.
pub fn frame_at(data: &[u8], segment_id: u64, offset: usize) -> Decoded<Frame<'_>> {
    let header = frame_header_at(data, offset)?;
    let header_bytes = &data[offset..offset + FRAME_HEADER_BYTES];
    let body_start = offset + FRAME_HEADER_BYTES;
    let length = header.length as usize;
    if length > data.len() - body_start {
        let reason = format!(
            "frame length {length} exceeds the {} bytes left in the segment",
            data.len() - body_start
        );
        return Err(DecodeError::new(offset + 4, reason));
    }
    let body = &data[body_start..body_start + length];
    let crc = frame_crc(segment_id, offset as u64, &header_bytes[4..], body);
    if crc != header.crc {
        let reason = format!(
            "frame checksum mismatch (stored {:#010x}, computed {crc:#010x})",
            header.crc
        );
        return Err(DecodeError::new(offset, reason));
    }
    Ok(Frame {
        offset: offset as u64,
        header,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::{write_frame, RecordType, SEGMENT_HEADER_BYTES};

    fn segment(bodies: &[&[u8]]) -> Vec<u8> {
        let mut data = vec![0u8; SEGMENT_HEADER_BYTES];
        for body in bodies {
            let offset = data.len() as u64;
            write_frame(&mut data, 3, offset, RecordType::Batch, 0, body);
        }
        data
    }

    fn events(data: &[u8]) -> Vec<ScanEvent<'_>> {
        FrameScanner::new(data, 3, SEGMENT_HEADER_BYTES).collect()
    }

    #[test]
    fn clean_segment_yields_every_frame() {
        let data = segment(&[b"one", b"two", b"three"]);
        let bodies: Vec<_> = events(&data)
            .into_iter()
            .map(|e| match e {
                ScanEvent::Frame(f) => f.body.to_vec(),
                ScanEvent::Damage(d) => panic!("unexpected damage {d:?}"),
            })
            .collect();
        assert_eq!(
            bodies,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn damage_in_the_middle_is_followed_by_valid() {
        let mut data = segment(&[b"one", b"two", b"three"]);
        let second = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 3;
        data[second + FRAME_HEADER_BYTES] ^= 1;
        let evs = events(&data);
        assert_eq!(evs.len(), 3);
        match &evs[1] {
            ScanEvent::Damage(d) => {
                assert_eq!(d.offset, second as u64);
                assert!(d.followed_by_valid);
                assert_eq!(d.bytes, (FRAME_HEADER_BYTES + 3) as u64);
            }
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn damage_at_the_end_is_not_followed_by_valid() {
        let data = segment(&[b"one", b"two"]);
        let cut = data.len() - 1;
        let evs = events(&data[..cut]);
        match evs.last() {
            Some(ScanEvent::Damage(d)) => assert!(!d.followed_by_valid),
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn a_frame_from_another_segment_does_not_validate() {
        let data = segment(&[b"one"]);
        assert!(frame_at(&data, 3, SEGMENT_HEADER_BYTES).is_ok());
        assert!(frame_at(&data, 4, SEGMENT_HEADER_BYTES).is_err());
    }
}
