//! Writing one batch, shared by [`Db::write`](crate::Db::write) (one batch record) and
//! [`LargeBatch`](crate::LargeBatch) (one fragment per part, or one batch record when it stays
//! small): [`StoredBatch`], a [`Batch`] in the form the log stores it (compressed if configured)
//! with its deltas decoded for indexing; the seal check every write makes under the commit gate;
//! [`write_batch`], the commit of one batch record; and [`WriteReceipt`].

use crate::batch::Batch;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index::Index;
use crate::index_builder::delta_refs;
use crate::model::Model;
use crate::sources::SourceRange;
use crate::wal::batch::{compress_payload, BatchDecoder, Checksums, DeltaRecord};
use crate::wal::format::{FLAG_ZSTD, FRAME_HEADER_BYTES, MAX_BATCH_PAYLOAD_BYTES};
use crate::wal::trailer::{NameSpan, Trailer};
use crate::wal::{BatchRecord, RecordLocation};

/// What a successful [`Db::write`](crate::Db::write) or
/// [`LargeBatch::commit`](crate::LargeBatch::commit) committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WriteReceipt {
    /// Where the batch record (or a spanning batch's batch commit) starts (`None` for an empty
    /// batch without a source range, which writes nothing).
    pub location: Option<RecordLocation>,
    /// Number of deltas committed.
    pub deltas: usize,
    /// Every delta was in the database already, unfolded (a redelivered batch): nothing was
    /// written, and the deltas were counted as duplicates.
    pub redelivered: bool,
}

/// Commits `batch` as one batch record: appended under the shared commit gate after the seal
/// check, durable on return under `SyncMode::Always`, then indexed, so that it is visible
/// once it returns and only after it is durable.
pub(crate) fn write_batch<M: Model>(engine: &Engine<M>, batch: &Batch) -> Result<WriteReceipt> {
    if batch.is_empty() && !batch.has_source() {
        return Ok(WriteReceipt {
            location: None,
            deltas: 0,
            redelivered: false,
        });
    }
    let stored = StoredBatch::new(engine, batch)?;
    let (stored_bytes, top_seq) = (stored.stored_bytes(), stored.top_seq());
    let StoredBatch {
        deltas,
        sources,
        names,
        flags,
        body,
    } = stored;
    let location = {
        let _gate = engine.gate_shared();
        check_seal(engine, &deltas)?;
        // A batch with source ranges or names is written whatever it holds: its range or the
        // arrival of the named batch must be stored (a retraction of another batch with the
        // same deltas must not take them away).
        if sources.is_empty() && names.is_empty() && held_already(engine, &deltas) {
            // A log that refuses appends may have lost what it held since its last good sync.
            engine.log().check_writable()?;
            engine.index_write().count_redelivered(deltas.len() as u64);
            engine.note_redelivered(deltas.len() as u64);
            return Ok(WriteReceipt {
                location: None,
                deltas: deltas.len(),
                redelivered: true,
            });
        }
        let location = engine.log().append(flags, body)?;
        let record = BatchRecord {
            segment: location.segment,
            offset: location.offset,
            deltas: &deltas,
            sources: &sources,
            names: &names,
        };
        engine.note_named_batch(&record);
        engine.index_write().insert_all(delta_refs(&record));
        engine.apply_source_ranges(&sources);
        location
    };
    engine.count_write(top_seq, stored_bytes);
    Ok(WriteReceipt {
        location: Some(location),
        deltas: deltas.len(),
        redelivered: false,
    })
}

/// Whether the index holds every delta unfolded already: a batch delivered again (DESIGN.md,
/// section 4). Under the commit gate, so that what the index holds is durable (writers index
/// only after their append). A new batch costs one lookup: its first delta is not held.
fn held_already<M: Model>(engine: &Engine<M>, deltas: &[DeltaRecord<'_>]) -> bool {
    let index = engine.index_read();
    (deltas.iter()).all(|d| index.holds(d.aggregate, d.seq, d.position, d.checksum))
}

/// A batch encoded for the log.
pub(crate) struct StoredBatch<'b> {
    /// The deltas, borrowed from the batch's payload.
    pub deltas: Vec<DeltaRecord<'b>>,
    /// The source ranges the batch holds.
    pub sources: Vec<SourceRange>,
    /// The names of its deltas' upstream batches.
    pub names: Vec<NameSpan<'b>>,
    /// Frame flags (compression, positions, sources).
    pub flags: u8,
    /// The frame body.
    pub body: Vec<u8>,
}

impl<'b> StoredBatch<'b> {
    /// Encodes `batch` (with a delta or a source range) under `engine`'s compression option.
    pub fn new<M: Model>(engine: &Engine<M>, batch: &'b Batch) -> Result<Self> {
        debug_assert!(
            !batch.is_empty() || batch.has_source(),
            "an empty batch writes nothing"
        );
        let (payload, layout) = (batch.payload(), batch.flags());
        // `Batch` keeps within the bound; a payload above it could be written but never read
        // back (a reader refuses it), so it is refused here, before anything is written.
        if payload.len() > MAX_BATCH_PAYLOAD_BYTES {
            return Err(Error::Internal(format!(
                "a batch payload of {} bytes exceeds the {MAX_BATCH_PAYLOAD_BYTES}-byte bound",
                payload.len()
            )));
        }
        // `Batch` wrote these records and their CRCs itself: decode the structure only.
        let decoded = BatchDecoder::of_frame(payload, layout, Checksums::CoveredByFrame)
            .and_then(|d| Ok((d.trailer()?, d.collect::<Result<Vec<_>, _>>()?)));
        let (Trailer { sources, names }, deltas) =
            decoded.map_err(|e| Error::Internal(format!("a batch does not decode: {e}")))?;
        let (flags, body) = match engine.options().compression {
            Some(c) if payload.len() >= c.min_batch_bytes => (
                FLAG_ZSTD | layout,
                compress_payload(payload, c.level).map_err(Error::Compression)?,
            ),
            _ => (layout, payload.to_vec()),
        };
        Ok(StoredBatch {
            deltas,
            sources,
            names,
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
        check_seal(engine, &self.deltas)
    }
}

/// [`StoredBatch::check_seal`] of `deltas`.
fn check_seal<M: Model>(engine: &Engine<M>, deltas: &[DeltaRecord<'_>]) -> Result<()> {
    let seal = engine.seal();
    // The index is consulted only for a batch with deltas below the seal.
    if !deltas.iter().any(|d| d.seq < seal) {
        return Ok(());
    }
    let index = engine.index_read();
    match first_new_below(&index, deltas, seal) {
        Some((position, low)) => Err(Error::Sealed {
            aggregate: low.aggregate.to_owned(),
            position,
            seq: low.seq,
            seal,
        }),
        None => Ok(()),
    }
}

/// The first delta of a batch that is below the seal and not already held unfolded, with its
/// index in the batch: what makes the batch a rejected one.
fn first_new_below<'d, 'p>(
    index: &Index,
    deltas: &'d [DeltaRecord<'p>],
    seal: u64,
) -> Option<(u32, &'d DeltaRecord<'p>)> {
    deltas.iter().zip(0u32..).find_map(|(d, at)| {
        let held = d.seq >= seal || index.holds(d.aggregate, d.seq, d.position, d.checksum);
        (!held).then_some((at, d))
    })
}
