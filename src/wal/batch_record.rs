//! A batch frame read back: its stored body as a payload (decompressed when stored so), its
//! deltas decoded, and [`BatchRecord`], a batch record with where it lies. Shared by recovery,
//! the fragments of spanning batches, export and the fuzz targets.

use std::borrow::Cow;

use super::batch::{decompress_payload, BatchDecoder, Checksums, DeltaRecord};
use super::format::FLAG_ZSTD;
use super::frame::Frame;
use crate::decode::Decoded;

/// One valid batch record (a batch, or one fragment of a spanning batch), its deltas decoded
/// and verified.
#[derive(Clone, Copy)]
pub struct BatchRecord<'a> {
    /// Segment id.
    pub segment: u64,
    /// Offset of the frame in the segment.
    pub offset: u64,
    /// Stamp position of the first delta (the others follow it).
    pub first_position: u32,
    /// The batch's deltas in order.
    pub deltas: &'a [DeltaRecord<'a>],
}

/// The stored body of a batch frame as a payload, decompressing when flagged.
pub fn batch_payload<'a>(frame: &Frame<'a>) -> Decoded<Cow<'a, [u8]>> {
    if frame.header.flags & FLAG_ZSTD != 0 {
        decompress_payload(frame.body).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(frame.body))
    }
}

/// Decodes every delta of the payload of a batch frame with `flags` whose CRC was verified, or
/// none; returns them with the stamp position of the first.
pub fn decode_batch(payload: &[u8], flags: u8) -> Decoded<(u32, Vec<DeltaRecord<'_>>)> {
    let decoder = BatchDecoder::of_frame(payload, flags, Checksums::CoveredByFrame)?;
    let first_position = decoder.first_position();
    Ok((first_position, decoder.collect::<Decoded<Vec<_>>>()?))
}
