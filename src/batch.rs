//! [`Batch`]: the unit of atomic writes.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{merge_patch, DeltaKind};
use crate::wal::batch::{encoded_delta_bytes, validate_aggregate_id, BatchEncoder};
use crate::wal::format::MAX_BATCH_PAYLOAD_BYTES;

/// A set of deltas written atomically by [`Db::write`](crate::Db::write): after any crash either
/// all of them are in the log or none is. A delta's position in the batch is part of its stamp
/// `(seq, position)`, so the deltas of one upstream batch keep their order whatever the order
/// in which batches arrive. Ids, seqs and patches are validated as they are added: a batch
/// that was built writes.
///
/// ```
/// use aggrelog::{Batch, Error};
/// use serde_json::json;
///
/// # fn main() -> aggrelog::Result<()> {
/// let mut batch = Batch::new();
/// batch
///     .patch("aircraft-1", 42, &json!({"engine": {"serial": "ESN-1", "cycles": 3}}))?
///     .patch("aircraft-1", 42, &json!({"cabin": {"seat_12C": null}}))? // position 1
///     .delete("aircraft-9", 42)?;
/// assert_eq!(batch.len(), 3);
/// // A patch must be a JSON object, an id 1 to 1024 bytes.
/// assert!(matches!(batch.patch("x", 1, &json!([1])), Err(Error::InvalidInput(_))));
/// assert!(matches!(batch.delete("", 1), Err(Error::InvalidInput(_))));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Batch {
    encoder: BatchEncoder,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// An empty batch whose deltas take stamp positions `first_position`, `first_position + 1`,
    /// ...: one part of an upstream batch split into several writes (a file ingested in pieces)
    /// keeps the positions the whole would have given, so the same deltas written whole or
    /// split, once or again, are the same deltas (duplicates, never conflicts).
    pub fn starting_at(first_position: u32) -> Self {
        Batch {
            encoder: BatchEncoder::starting_at(first_position),
        }
    }

    /// Stamp position of the batch's first delta (0 unless made by [`Batch::starting_at`]).
    pub fn first_position(&self) -> u32 {
        self.encoder.first_position()
    }

    /// Adds an RFC 7396 merge patch for `aggregate` at `seq`; `patch` must be a JSON object.
    pub fn patch(&mut self, aggregate: &str, seq: u64, patch: &Value) -> Result<&mut Self> {
        self.push_raw(aggregate, seq, DeltaKind::Patch, &patch_body(patch)?)
    }

    /// Adds a delete of `aggregate` at `seq`: the aggregate is absent until a later patch.
    pub fn delete(&mut self, aggregate: &str, seq: u64) -> Result<&mut Self> {
        self.push_raw(aggregate, seq, DeltaKind::Delete, &[])
    }

    /// Adds a delta whose body is already in the model's binary form (for custom
    /// [`Model`](crate::model::Model)s). A delete must have an empty body.
    pub fn push_raw(
        &mut self,
        aggregate: &str,
        seq: u64,
        kind: DeltaKind,
        body: &[u8],
    ) -> Result<&mut Self> {
        validate_aggregate_id(aggregate).map_err(Error::InvalidInput)?;
        if !self.encoder.has_room() {
            return Err(Error::InvalidInput(
                "a batch's delta positions must fit 32 bits".into(),
            ));
        }
        if kind == DeltaKind::Delete && !body.is_empty() {
            return Err(Error::InvalidInput("a delete carries no body".into()));
        }
        let grown = self.encoder.payload().len() + encoded_delta_bytes(aggregate.len(), body.len());
        if grown > MAX_BATCH_PAYLOAD_BYTES {
            return Err(Error::InvalidInput(format!(
                "batch would exceed {MAX_BATCH_PAYLOAD_BYTES} bytes"
            )));
        }
        self.encoder.push(aggregate, seq, kind, body);
        Ok(self)
    }

    /// Number of deltas.
    pub fn len(&self) -> usize {
        self.encoder.len() as usize
    }

    /// Whether the batch holds no delta.
    pub fn is_empty(&self) -> bool {
        self.encoder.is_empty()
    }

    /// Encoded size of the batch payload in bytes.
    pub fn payload_bytes(&self) -> usize {
        self.encoder.payload().len()
    }

    pub(crate) fn payload(&self) -> &[u8] {
        self.encoder.payload()
    }
}

/// The body of a patch delta: `patch` (a JSON object) in the binary form of `MergePatch`.
pub(crate) fn patch_body(patch: &Value) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    merge_patch::encode_patch(patch, &mut body).map_err(Error::InvalidInput)?;
    Ok(body)
}
