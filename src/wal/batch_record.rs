//! A batch frame read back: its stored body as a payload (decompressed when stored so), its
//! deltas decoded, and [`BatchRecord`], a batch record with where it lies. Shared by recovery,
//! the fragments of spanning batches, export and the fuzz targets.

use std::borrow::Cow;

use super::batch::{decompress_payload, BatchDecoder, Checksums, DeltaRecord};
use super::format::FLAG_ZSTD;
use super::frame::Frame;
use super::trailer::{NameSpan, Trailer};
use crate::decode::{DecodeError, Decoded};
use crate::sources::SourceRange;

/// One valid batch record (a batch, or one fragment of a spanning batch), its deltas decoded
/// and verified.
#[derive(Clone, Copy)]
pub struct BatchRecord<'a> {
    /// Segment id.
    pub segment: u64,
    /// Offset of the frame in the segment.
    pub offset: u64,
    /// The batch's deltas in order.
    pub deltas: &'a [DeltaRecord<'a>],
    /// The source ranges it holds (section 5e of DESIGN.md).
    pub sources: &'a [SourceRange],
    /// The names of its deltas' upstream batches.
    pub names: &'a [NameSpan<'a>],
}

/// A batch payload decoded whole.
pub struct DecodedBatch<'a> {
    /// Stamp position of the first delta when the others follow it (`None`: a positions
    /// table).
    pub first_position: Option<u32>,
    /// The deltas in order.
    pub deltas: Vec<DeltaRecord<'a>>,
    /// The source ranges.
    pub sources: Vec<SourceRange>,
    /// The name spans.
    pub names: Vec<NameSpan<'a>>,
}

/// The stored body of a batch frame as a payload, decompressing when flagged.
pub fn batch_payload<'a>(frame: &Frame<'a>) -> Decoded<Cow<'a, [u8]>> {
    if frame.header.flags & FLAG_ZSTD != 0 {
        decompress_payload(frame.body).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(frame.body))
    }
}

/// Decodes every delta and source range of the payload of a batch frame with `flags` whose
/// CRC was verified, or none.
pub fn decode_batch(payload: &[u8], flags: u8) -> Decoded<DecodedBatch<'_>> {
    let decoder = BatchDecoder::of_frame(payload, flags, Checksums::CoveredByFrame)?;
    let first_position = decoder.first_position();
    let Trailer { sources, names } = decoder.trailer()?;
    Ok(DecodedBatch {
        first_position,
        deltas: decoder.collect::<Decoded<Vec<_>>>()?,
        sources,
        names,
    })
}

/// [`decode_batch`] for a fragment of a spanning batch, which never carries source ranges.
pub fn decode_fragment(payload: &[u8], flags: u8) -> Decoded<DecodedBatch<'_>> {
    let fragment = decode_batch(payload, flags)?;
    if !fragment.sources.is_empty() {
        return Err(DecodeError::new(0, "a fragment with source ranges"));
    }
    Ok(fragment)
}
