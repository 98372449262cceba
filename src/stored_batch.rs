//! [`StoredBatch`]: a [`Batch`] in the form the log stores it (compressed if configured), with
//! its deltas decoded for indexing, and the seal check every write makes under the commit gate.
//! Shared by [`Db::write`](crate::Db::write) (one batch record) and
//! [`LargeBatch`](crate::LargeBatch) (one fragment per part).

use crate::batch::Batch;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::model::Model;
use crate::wal::batch::{compress_payload, BatchDecoder, Checksums, DeltaRecord};
use crate::wal::format::{FLAG_POSITIONED, FLAG_ZSTD, FRAME_HEADER_BYTES};

/// A batch encoded for the log.
pub(crate) struct StoredBatch<'b> {
    /// The deltas, borrowed from the batch's payload.
    pub deltas: Vec<DeltaRecord<'b>>,
    /// Stamp position of the first delta.
    pub first_position: u32,
    /// Frame flags (compression, positioned).
    pub flags: u8,
    /// The frame body.
    pub body: Vec<u8>,
}

impl<'b> StoredBatch<'b> {
    /// Encodes `batch` (not empty) under `engine`'s compression option.
    pub fn new<M: Model>(engine: &Engine<M>, batch: &'b Batch) -> Result<Self> {
        debug_assert!(!batch.is_empty(), "an empty batch writes nothing");
        let payload = batch.payload();
        let positioned = if batch.first_position() > 0 {
            FLAG_POSITIONED
        } else {
            0
        };
        // `Batch` wrote these records and their CRCs itself: decode the structure only.
        let deltas = BatchDecoder::of_frame(payload, positioned, Checksums::CoveredByFrame)
            .and_then(|d| d.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Internal(format!("a batch does not decode: {e}")))?;
        let (flags, body) = match engine.options().compression {
            Some(c) if payload.len() >= c.min_batch_bytes => (
                FLAG_ZSTD | positioned,
                compress_payload(payload, c.level).map_err(Error::Compression)?,
            ),
            _ => (positioned, payload.to_vec()),
        };
        Ok(StoredBatch {
            deltas,
            first_position: batch.first_position(),
            flags,
            body,
        })
    }

    /// Bytes the batch takes in the log (frame header included).
    pub fn stored_bytes(&self) -> u64 {
        (FRAME_HEADER_BYTES + self.body.len()) as u64
    }

    /// The highest seq of its deltas.
    pub fn top_seq(&self) -> u64 {
        self.deltas.iter().map(|d| d.seq).max().unwrap_or(0)
    }

    /// Fails with [`Error::Sealed`] when a delta is below the seal and not already held
    /// unfolded (a redelivered batch is accepted whole). Call under the commit gate, so the seal
    /// cannot rise before the batch is in the log.
    pub fn check_seal<M: Model>(&self, engine: &Engine<M>) -> Result<()> {
        let seal = engine.seal();
        // The index is consulted only for a batch with deltas below the seal.
        if !self.deltas.iter().any(|d| d.seq < seal) {
            return Ok(());
        }
        let index = engine.index_read();
        match first_new_below(&index, &self.deltas, self.first_position, seal) {
            Some((position, low)) => Err(Error::Sealed {
                aggregate: low.aggregate.to_owned(),
                position,
                seq: low.seq,
                seal,
            }),
            None => Ok(()),
        }
    }
}

/// The first delta of a batch (whose first stamp position is `first_position`) that is below
/// the seal and not already held unfolded, with its index in the batch: what makes the batch a
/// rejected one.
fn first_new_below<'d, 'p>(
    index: &Index,
    deltas: &'d [DeltaRecord<'p>],
    first_position: u32,
    seal: u64,
) -> Option<(u32, &'d DeltaRecord<'p>)> {
    deltas.iter().zip(0u32..).find_map(|(d, at)| {
        let position = first_position + at;
        let held = d.seq >= seal || index.holds(d.aggregate, d.seq, position, d.checksum);
        (!held).then_some((at, d))
    })
}
