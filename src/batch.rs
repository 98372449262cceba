//! [`Batch`]: the unit of atomic writes.

use std::sync::OnceLock;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{merge_patch, DeltaKind};
use crate::sources::{validate_range, SourceRange};
use crate::wal::batch::{encoded_delta_bytes, validate_aggregate_id, BatchEncoder};
use crate::wal::format::MAX_BATCH_PAYLOAD_BYTES;
use crate::wal::trailer::validate_batch_name;

/// A set of deltas written atomically by [`Db::write`](crate::Db::write): after any crash either
/// all of them are in the log or none is. A delta's position is part of its stamp
/// `(seq, position)`, so the deltas of one upstream batch keep their order whatever the order
/// in which batches arrive. By default the position is the delta's index in the batch;
/// [`Batch::patch_at`] gives one explicitly (a batch grouping several upstream messages, each
/// numbering its own deltas). Ids, seqs and patches are validated as they are added: a batch
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
///     .delete("aircraft-9", 42)?
///     .patch_at("aircraft-2", 7, 0, &json!({"cabin": {"rows": 30}}))?; // position 0
/// assert_eq!(batch.len(), 4);
/// // A patch must be a JSON object, an id 1 to 1024 bytes.
/// assert!(matches!(batch.patch("x", 1, &json!([1])), Err(Error::InvalidInput(_))));
/// assert!(matches!(batch.delete("", 1), Err(Error::InvalidInput(_))));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Batch {
    encoder: BatchEncoder,
    /// The payload with its trailing parts (positions table, source ranges), built once when
    /// it has them; reset by every change.
    finished: OnceLock<Vec<u8>>,
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
            finished: OnceLock::new(),
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

    /// [`Batch::patch`] at stamp position `position` instead of the next one: the stamp is then
    /// `(seq, position)` whatever else the batch holds, so upstream deltas grouped into batches
    /// in any way are the same deltas.
    pub fn patch_at(
        &mut self,
        aggregate: &str,
        seq: u64,
        position: u32,
        patch: &Value,
    ) -> Result<&mut Self> {
        let body = patch_body(patch)?;
        self.push_raw_at(aggregate, seq, Some(position), DeltaKind::Patch, &body)
    }

    /// [`Batch::delete`] at stamp position `position` (see [`Batch::patch_at`]).
    pub fn delete_at(&mut self, aggregate: &str, seq: u64, position: u32) -> Result<&mut Self> {
        self.push_raw_at(aggregate, seq, Some(position), DeltaKind::Delete, &[])
    }

    /// Records that the batch holds the messages `range.first_offset..range.next_offset` of a
    /// queue partition: committed in the same atomic write as the deltas, and applied to
    /// [`Db::source_positions`](crate::Db::source_positions) (DESIGN.md, section 5e). A batch
    /// with a source range and no delta still writes. Fails on an empty or too long topic or
    /// an empty range.
    pub fn set_source(&mut self, range: SourceRange) -> Result<&mut Self> {
        validate_range(&range).map_err(Error::InvalidInput)?;
        if self.encoder.payload_bytes() + self.encoder.source_bytes(&range)
            > MAX_BATCH_PAYLOAD_BYTES
        {
            return Err(too_large());
        }
        self.finished = OnceLock::new();
        self.encoder.add_source(range);
        Ok(self)
    }

    /// The stamp position the next delta takes unless given one (`None`: past 32 bits).
    pub fn next_position(&self) -> Option<u32> {
        self.encoder.next_position()
    }

    /// Names the deltas added from now on (until the next call) as the upstream batch `name`
    /// (1 to 1024 bytes): called before the first delta, it names the whole batch. The name is
    /// stored with the deltas (`aggrelog batches` lists them, `Db::history` shows them). A
    /// batch grouping several upstream batches names each one's deltas, as the Kafka follower
    /// does per message.
    pub fn name(&mut self, name: &str) -> Result<&mut Self> {
        validate_batch_name(name).map_err(Error::InvalidInput)?;
        self.finished = OnceLock::new();
        self.encoder.name_from_here(name.to_owned());
        Ok(self)
    }

    /// The name in force for the next delta, if any.
    pub fn current_name(&self) -> Option<&str> {
        self.encoder.current_name()
    }

    /// Whether a source range was set.
    pub fn has_source(&self) -> bool {
        !self.encoder.sources().is_empty()
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
        self.push_raw_at(aggregate, seq, None, kind, body)
    }

    /// [`Batch::push_raw`] at stamp position `position` (`None`: the next one).
    pub fn push_raw_at(
        &mut self,
        aggregate: &str,
        seq: u64,
        position: Option<u32>,
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
        // A delta may add a table entry for itself and one for every earlier delta.
        let table_bytes = 4 * (self.encoder.len() as usize + 1);
        let grown = self.encoder.payload_bytes()
            + encoded_delta_bytes(aggregate.len(), body.len())
            + table_bytes
            + self.encoder.pending_name_bytes();
        if grown > MAX_BATCH_PAYLOAD_BYTES {
            return Err(too_large());
        }
        self.finished = OnceLock::new();
        let position = position
            .or(self.encoder.next_position())
            .unwrap_or(u32::MAX);
        self.encoder.push_at(aggregate, seq, position, kind, body);
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
        self.encoder.payload_bytes()
    }

    /// The payload as the log stores it (before compression).
    pub(crate) fn payload(&self) -> &[u8] {
        if !self.encoder.has_trailer() {
            return self.encoder.records();
        }
        self.finished
            .get_or_init(|| self.encoder.payload().into_owned())
    }

    /// Frame flags saying which optional parts [`Batch::payload`] has.
    pub(crate) fn flags(&self) -> u8 {
        self.encoder.flags()
    }
}

/// The body of a patch delta: `patch` (a JSON object) in the binary form of `MergePatch`.
pub(crate) fn patch_body(patch: &Value) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    merge_patch::encode_patch(patch, &mut body).map_err(Error::InvalidInput)?;
    Ok(body)
}

#[cold]
fn too_large() -> Error {
    Error::InvalidInput(format!(
        "batch would exceed {MAX_BATCH_PAYLOAD_BYTES} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest body whose delta fits an empty, unnamed batch under the bound.
    fn largest_body() -> Vec<u8> {
        let empty = Batch::new().payload_bytes();
        let fixed = empty + encoded_delta_bytes(1, 0) + 4;
        vec![b'x'; MAX_BATCH_PAYLOAD_BYTES - fixed]
    }

    #[test]
    fn a_name_or_a_source_counts_against_the_payload_bound() {
        let body = largest_body();
        let mut unnamed = Batch::new();
        unnamed.push_raw("a", 1, DeltaKind::Patch, &body).unwrap();
        assert!(unnamed.payload().len() <= MAX_BATCH_PAYLOAD_BYTES);

        // The name's span is only written with its first delta, and must fit then too.
        let mut named = Batch::new();
        named.name("upstream-7").unwrap();
        let error = named.push_raw("a", 1, DeltaKind::Patch, &body).unwrap_err();
        assert!(error.to_string().contains("would exceed"), "{error}");
        let room = named.encoder.pending_name_bytes();
        named
            .push_raw("a", 1, DeltaKind::Patch, &body[room..])
            .unwrap();
        assert!(named.payload().len() <= MAX_BATCH_PAYLOAD_BYTES);

        let range = SourceRange {
            topic: "t".into(),
            partition: 0,
            first_offset: 0,
            next_offset: 1,
            dead_letters: 0,
        };
        let error = unnamed.set_source(range).unwrap_err();
        assert!(error.to_string().contains("would exceed"), "{error}");
        assert!(unnamed.payload().len() <= MAX_BATCH_PAYLOAD_BYTES);
    }
}
