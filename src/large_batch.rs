//! [`LargeBatch`]: a batch of any size, written as fragments as it is built and made one
//! atomic batch by its batch commit (DESIGN.md, section 3.6).

use serde_json::Value;

use crate::batch::{patch_body, Batch};
use crate::checkpoint::write::checkpoint_after_write;
use crate::engine::{Engine, SegmentPin};
use crate::error::{Error, Result};
use crate::index_builder::delta_refs;
use crate::model::{DeltaKind, Model};
use crate::wal::batch::{encoded_delta_bytes, BatchDecoder, Checksums};
use crate::wal::format::{RecordType, FRAME_HEADER_BYTES};
use crate::wal::fragments::FragmentError;
use crate::wal::log::NewRecord;
use crate::wal::records::{encode_batch_commit_body, BatchCommitBody, FragmentRef};
use crate::wal::RecordLocation;
use crate::write::{write_batch, StoredBatch, WriteReceipt};

/// Payload bytes of a fragment at most (less when a segment is small).
pub const FRAGMENT_PAYLOAD_BYTES: usize = 4 << 20;

/// A batch of any size, from [`Db::large_batch`](crate::Db::large_batch): add deltas as to a
/// [`Batch`], then [`commit`](LargeBatch::commit). Deltas are written to the log as fragments of at most
/// [`FRAGMENT_PAYLOAD_BYTES`] while they are added, so memory stays one fragment however
/// large the batch; none of them is visible, or survives a crash, until the commit returns.
/// Dropping it uncommitted abandons it: its fragments are dead bytes, reclaimed by compaction.
/// Delta positions run over the whole batch, as in one [`Batch`]. A batch that never filled a
/// fragment is committed as an ordinary batch record.
pub struct LargeBatch<'db, M: Model> {
    engine: &'db Engine<M>,
    /// Whether a committed batch may be followed by an automatic checkpoint (no background
    /// worker takes them).
    checkpoint_after: bool,
    /// Deltas not yet written as a fragment.
    part: Batch,
    /// Fragments written, in order.
    fragments: Vec<FragmentRef>,
    /// Deltas added so far (the position of the next).
    deltas: u64,
    top_seq: u64,
    stored_bytes: u64,
    /// The lowest seal any fragment was checked against, and the lowest delta of the batch
    /// (seq, aggregate, position): a seal raised above it before the commit refuses the batch.
    checked_seal: Option<u64>,
    lowest: Option<(u64, String, u32)>,
    fragment_limit: usize,
    /// A fragment could not be written: its deltas are lost to the batch, which can no longer
    /// be committed.
    failed: bool,
    /// Keeps compaction from reclaiming the segments the fragments are in until the commit.
    _pin: SegmentPin<'db>,
}

impl<'db, M: Model> LargeBatch<'db, M> {
    /// An empty large batch on `engine` (fails on a read-only or refused log).
    pub(crate) fn begin(engine: &'db Engine<M>, checkpoint_after: bool) -> Result<Self> {
        engine.log().check_writable()?;
        // Pinned before the first fragment is appended (DESIGN.md, section 3.6).
        let pin = engine.pin_segments();
        let fragment_limit =
            FRAGMENT_PAYLOAD_BYTES.min(engine.log().max_record_body_bytes() as usize / 2);
        Ok(LargeBatch {
            engine,
            checkpoint_after,
            part: Batch::new(),
            fragments: Vec::new(),
            deltas: 0,
            top_seq: 0,
            stored_bytes: 0,
            checked_seal: None,
            lowest: None,
            fragment_limit,
            failed: false,
            _pin: pin,
        })
    }

    /// Adds an RFC 7396 merge patch for `aggregate` at `seq` (as [`Batch::patch`]).
    pub fn patch(&mut self, aggregate: &str, seq: u64, patch: &Value) -> Result<&mut Self> {
        self.push_raw(aggregate, seq, DeltaKind::Patch, &patch_body(patch)?)
    }

    /// Adds a delete of `aggregate` at `seq` (as [`Batch::delete`]).
    pub fn delete(&mut self, aggregate: &str, seq: u64) -> Result<&mut Self> {
        self.push_raw(aggregate, seq, DeltaKind::Delete, &[])
    }

    /// Names the deltas added from now on as the upstream batch `name` (as [`Batch::name`]);
    /// each fragment records the name of its deltas.
    pub fn name(&mut self, name: &str) -> Result<&mut Self> {
        self.part.name(name)?;
        Ok(self)
    }

    /// [`LargeBatch::patch`] at stamp position `position` (as [`Batch::patch_at`]).
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

    /// [`LargeBatch::delete`] at stamp position `position` (as [`Batch::delete_at`]).
    pub fn delete_at(&mut self, aggregate: &str, seq: u64, position: u32) -> Result<&mut Self> {
        self.push_raw_at(aggregate, seq, Some(position), DeltaKind::Delete, &[])
    }

    /// Adds a delta already in the model's binary form (as [`Batch::push_raw`]). May write a
    /// fragment to the log (unsynced). A delta that is not valid is refused and the batch goes
    /// on; a fragment that cannot be written (a seal rejection, an I/O error) fails the batch:
    /// every later call fails too, and nothing of it can be committed.
    pub fn push_raw(
        &mut self,
        aggregate: &str,
        seq: u64,
        kind: DeltaKind,
        body: &[u8],
    ) -> Result<&mut Self> {
        self.push_raw_at(aggregate, seq, None, kind, body)
    }

    /// [`LargeBatch::push_raw`] at stamp position `position` (`None`: the delta's index in the
    /// batch).
    pub fn push_raw_at(
        &mut self,
        aggregate: &str,
        seq: u64,
        position: Option<u32>,
        kind: DeltaKind,
        body: &[u8],
    ) -> Result<&mut Self> {
        self.check_not_failed()?;
        let grown = self.part.payload_bytes() + encoded_delta_bytes(aggregate.len(), body.len());
        if !self.part.is_empty() && grown > self.fragment_limit {
            self.write_fragment()?;
        }
        self.part
            .push_raw_at(aggregate, seq, position, kind, body)?;
        if self.part.payload_bytes() >= self.fragment_limit {
            self.write_fragment()?;
        }
        Ok(self)
    }

    /// Adds every delta of `part`, in order, after the deltas already added (their positions
    /// continue the batch's; `part`'s own first position is not used).
    pub fn extend(&mut self, part: &Batch) -> Result<&mut Self> {
        let decoded =
            BatchDecoder::of_frame(part.payload(), part.flags(), Checksums::CoveredByFrame);
        let decoder =
            decoded.map_err(|e| Error::Internal(format!("a batch does not decode: {e}")))?;
        for delta in decoder {
            let delta =
                delta.map_err(|e| Error::Internal(format!("a batch does not decode: {e}")))?;
            self.push_raw(delta.aggregate, delta.seq, delta.kind, delta.body)?;
        }
        Ok(self)
    }

    /// Number of deltas added.
    pub fn len(&self) -> u64 {
        self.deltas + self.part.len() as u64
    }

    /// Fragments written to the log so far.
    pub fn fragments_written(&self) -> usize {
        self.fragments.len()
    }

    /// Whether no delta was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the deltas not yet written, then the batch commit, durably under
    /// [`SyncMode::Always`](crate::SyncMode::Always), and indexes the whole batch at once.
    /// After any crash the batch is wholly present if this returned, and wholly present or
    /// wholly absent otherwise. A batch with a delta below the seal that is not already held
    /// fails with [`Error::Sealed`], and nothing of it is committed.
    pub fn commit(mut self) -> Result<WriteReceipt> {
        self.check_not_failed()?;
        if self.fragments.is_empty() {
            // It fits one fragment: an ordinary batch record says the same in one frame.
            let receipt = write_batch(self.engine, &self.part)?;
            self.after_commit();
            return Ok(receipt);
        }
        if !self.part.is_empty() {
            self.write_fragment()?;
        }
        let engine = self.engine;
        let commit = BatchCommitBody {
            deltas: self.deltas,
            fragments: std::mem::take(&mut self.fragments),
        };
        let record = NewRecord {
            record_type: RecordType::BatchCommit,
            flags: 0,
            body: encode_batch_commit_body(&commit),
        };
        let commit_bytes = (FRAME_HEADER_BYTES + record.body.len()) as u64;
        let location = {
            let _gate = engine.gate_shared();
            self.check_seal_unchanged()?;
            let location = engine.log().append_records(vec![record], true)?;
            let location = location
                .first()
                .copied()
                .ok_or_else(|| Error::Internal("an append returned no location".into()))?;
            self.index(&commit, location)?;
            location
        };
        engine.count_write(self.top_seq, self.stored_bytes + commit_bytes);
        self.after_commit();
        Ok(WriteReceipt {
            location: Some(location),
            deltas: self.deltas as usize,
            redelivered: false,
        })
    }

    fn after_commit(&self) {
        if self.checkpoint_after {
            checkpoint_after_write(self.engine);
        }
    }

    fn check_not_failed(&self) -> Result<()> {
        if self.failed {
            return Err(Error::InvalidInput(
                "a fragment of this large batch could not be written: it cannot be committed"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Appends the buffered deltas as one fragment, unsynced; a failure fails the batch.
    fn write_fragment(&mut self) -> Result<()> {
        let part = std::mem::replace(&mut self.part, Batch::new());
        let written = self.append_fragment(&part);
        self.failed = written.is_err();
        written
    }

    fn append_fragment(&mut self, part: &Batch) -> Result<()> {
        let engine = self.engine;
        let stored = StoredBatch::new(engine, part)?;
        {
            let _gate = engine.gate_shared();
            stored
                .check_seal(engine)
                .map_err(|e| in_whole_batch(e, self.deltas))?;
            let seal = engine.seal();
            self.checked_seal = Some(self.checked_seal.map_or(seal, |s| s.min(seal)));
        }
        self.note_deltas(&stored);
        let count = stored.deltas.len() as u32;
        let stored_bytes = stored.stored_bytes();
        let fragment = engine.log().append_fragment(stored.flags, stored.body)?;
        self.fragments.push(fragment);
        self.stored_bytes += stored_bytes;
        self.deltas += u64::from(count);
        self.part = Batch::starting_at(u32::try_from(self.deltas).map_err(|_| {
            Error::InvalidInput("a batch's delta positions must fit 32 bits".into())
        })?);
        if let Some(name) = part.current_name() {
            self.part.name(name)?;
        }
        Ok(())
    }

    /// Keeps the highest seq and the lowest delta of the batch.
    fn note_deltas(&mut self, stored: &StoredBatch<'_>) {
        self.top_seq = self.top_seq.max(stored.top_seq());
        for (at, delta) in stored.deltas.iter().enumerate() {
            let lower = |(seq, _, _): &(u64, String, u32)| delta.seq < *seq;
            if self.lowest.as_ref().is_none_or(lower) {
                let index = (self.deltas + at as u64) as u32;
                self.lowest = Some((delta.seq, delta.aggregate.to_owned(), index));
            }
        }
    }

    /// Fails with [`Error::Sealed`] when the seal rose above a delta of the batch after its
    /// fragment was checked (call under the commit gate).
    fn check_seal_unchanged(&self) -> Result<()> {
        let seal = self.engine.seal();
        match (&self.lowest, self.checked_seal) {
            (Some((seq, aggregate, position)), Some(checked)) if seal > checked && *seq < seal => {
                Err(Error::Sealed {
                    aggregate: aggregate.clone(),
                    position: *position,
                    seq: *seq,
                    seal,
                })
            }
            _ => Ok(()),
        }
    }

    /// Indexes every fragment's deltas, read back from the log, under one hold of the index
    /// lock, so readers of this handle see none of the batch or all of it. The batch commit is
    /// durable by now: if a fragment cannot be read back, the log is refused until a reopen
    /// indexes the batch from the log (as after a failed sync, DESIGN.md section 4). Damage is
    /// reported at the batch commit (`at`), naming the fragment, as recovery reports it.
    fn index(&self, commit: &BatchCommitBody, at: RecordLocation) -> Result<()> {
        let engine = self.engine;
        let log = engine.log();
        let mut index = engine.index_write();
        let applied = log.fragments().apply(commit, &mut |batch| {
            engine.note_named_batch(batch);
            index.insert_all(delta_refs(batch));
        });
        applied.map_err(|e| {
            log.poison(match e {
                FragmentError::Io(e) => e,
                FragmentError::Damaged(e) => {
                    Error::corruption(log.segment_path(at.segment), at.offset, e.reason)
                }
            })
        })
    }
}

/// A seal rejection of one fragment, with the index counted in the whole batch (`before`
/// deltas came before the fragment).
fn in_whole_batch(error: Error, before: u64) -> Error {
    match error {
        Error::Sealed {
            aggregate,
            position,
            seq,
            seal,
        } => Error::Sealed {
            aggregate,
            position: (before + u64::from(position)) as u32,
            seq,
            seal,
        },
        other => other,
    }
}
