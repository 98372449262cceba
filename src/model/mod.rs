//! The fold that turns an aggregate's deltas into its state.
//!
//! A [`Model`] folds stored deltas, in *any* order, into a per-aggregate state. The engine never
//! sorts deltas before folding: it relies on the model's fold being commutative, associative and
//! idempotent (a join-semilattice), which is what makes the result independent of arrival order,
//! duplicates, crashes and compaction. [`MergePatch`] (RFC 7396 with stamps) is the default model.
//!
//! Deltas reach the model as raw bytes (`DeltaView::body`), in the compact binary form written by
//! the model's encoder, never as JSON text.

pub mod binary;
pub(crate) mod json_text;
pub mod merge_patch;

pub use merge_patch::{MergePatch, PatchState};

use std::fmt;

/// The total order in which deltas of one aggregate take effect.
///
/// Ordered by `seq` (the upstream batch/sequence number), then `position` (the delta's index in
/// its batch), then `checksum` (the CRC32 of the delta's encoded bytes), which breaks ties between
/// two *different* deltas that carry the same `(seq, position)` (a conflict) deterministically and
/// independently of their arrival order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Upstream sequence number of the delta's batch.
    pub seq: u64,
    /// Index of the delta within its batch (0-based).
    pub position: u32,
    /// CRC32 of the delta's encoded bytes: the conflict tie-breaker.
    pub checksum: u32,
}

impl Stamp {
    /// A stamp from its three parts.
    pub fn new(seq: u64, position: u32, checksum: u32) -> Self {
        Stamp {
            seq,
            position,
            checksum,
        }
    }
}

/// What a delta does to its aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaKind {
    /// Merge the body (an encoded patch) into the state.
    Patch,
    /// Reset the aggregate to absent.
    Delete,
}

/// One stored delta as the model sees it: its stamp, its kind and its encoded body.
#[derive(Clone, Copy, Debug)]
pub struct DeltaView<'a> {
    /// Where the delta sits in the fold order.
    pub stamp: Stamp,
    /// Patch or delete.
    pub kind: DeltaKind,
    /// The model-specific encoded body (empty for a delete).
    pub body: &'a [u8],
}

/// A body that the model could not decode: the byte offset within the body and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelError {
    /// Offset within the delta body where decoding failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

impl ModelError {
    /// A decode failure at `offset` for `reason`.
    pub fn new(offset: usize, reason: impl Into<String>) -> Self {
        ModelError {
            offset,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at body offset {}", self.reason, self.offset)
    }
}

impl std::error::Error for ModelError {}

/// An order-independent fold over raw delta bytes.
///
/// Implementations must make `fold` a join: folding the same set of deltas in any order, with any
/// delta folded more than once, must give states with equal `output`. [`MergePatch`] is the
/// default model; a custom one is opened with [`Db::open_with`](crate::Db::open_with). This one
/// keeps the delta with the highest stamp (a last-writer-wins register; a delete wins like a
/// write and leaves the aggregate absent):
///
/// ```
/// use std::sync::Arc;
///
/// use aggrelog::{Batch, DeltaKind, DeltaView, Db, FsStorage, Model, ModelError, Options, Stamp};
///
/// struct LastWriterWins;
///
/// impl Model for LastWriterWins {
///     /// The newest delta: its stamp, and its body unless it was a delete.
///     type State = Option<(Stamp, Option<Vec<u8>>)>;
///     type Output = Vec<u8>;
///
///     fn fold(&self, state: &mut Self::State, delta: DeltaView<'_>) -> Result<(), ModelError> {
///         if state.as_ref().is_none_or(|(newest, _)| delta.stamp > *newest) {
///             let body = (delta.kind == DeltaKind::Patch).then(|| delta.body.to_vec());
///             *state = Some((delta.stamp, body));
///         }
///         Ok(())
///     }
///     fn output(&self, state: &Self::State) -> Option<Vec<u8>> {
///         state.as_ref().and_then(|(_, body)| body.clone())
///     }
///     fn encode_state(&self, state: &Self::State, out: &mut Vec<u8>) {
///         if let Some((stamp, body)) = state {
///             out.extend_from_slice(&stamp.seq.to_le_bytes());
///             out.extend_from_slice(&stamp.position.to_le_bytes());
///             out.extend_from_slice(&stamp.checksum.to_le_bytes());
///             out.push(u8::from(body.is_some()));
///             out.extend_from_slice(body.as_deref().unwrap_or_default());
///         }
///     }
///     fn join_encoded_state(&self, state: &mut Self::State, bytes: &[u8]) -> Result<(), ModelError> {
///         if bytes.is_empty() {
///             return Ok(());
///         }
///         let fixed = bytes.get(..17).ok_or_else(|| ModelError::new(0, "truncated state"))?;
///         let seq = u64::from_le_bytes(fixed[..8].try_into().expect("8 bytes"));
///         let position = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
///         let checksum = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
///         let kind = if fixed[16] == 1 { DeltaKind::Patch } else { DeltaKind::Delete };
///         let stamp = Stamp::new(seq, position, checksum);
///         self.fold(state, DeltaView { stamp, kind, body: &bytes[17..] })
///     }
///     fn forget_below(&self, _state: &mut Self::State, _seal: u64) {}
///     fn is_empty(&self, state: &Self::State) -> bool {
///         state.is_none()
///     }
/// }
///
/// # fn main() -> aggrelog::Result<()> {
/// let dir = tempfile::tempdir().expect("temp dir");
/// let db = Db::open_with(dir.path(), Options::default(), LastWriterWins, Arc::new(FsStorage))?;
/// for (seq, body) in [(2, b"second"), (1, b"first!")] {
///     db.write(Batch::new().push_raw("k", seq, DeltaKind::Patch, body)?)?;
/// }
/// assert_eq!(db.get("k")?.map(|s| s.state), Some(b"second".to_vec()));
/// db.compact()?; // folded into a state record; still the same
/// assert_eq!(db.get("k")?.map(|s| s.state), Some(b"second".to_vec()));
/// # Ok(())
/// # }
/// ```
pub trait Model: Send + Sync + 'static {
    /// The folded state of one aggregate.
    type State: Default + Send;
    /// What a reader gets back for a present aggregate.
    type Output;

    /// Folds one delta into `state`. Never panics on malformed bytes: returns a [`ModelError`].
    fn fold(&self, state: &mut Self::State, delta: DeltaView<'_>) -> Result<(), ModelError>;

    /// The aggregate's visible state, or `None` when it is absent (never patched, or deleted
    /// since its last patch).
    fn output(&self, state: &Self::State) -> Option<Self::Output>;

    /// Serializes a folded state for a compaction *state record*. The encoding must keep
    /// everything later folds need, so that deltas arriving afterwards (late ones included) and
    /// joined with the decoded state give the same output as folding every delta.
    fn encode_state(&self, state: &Self::State, out: &mut Vec<u8>);

    /// Joins a state encoded by [`Model::encode_state`] into `state`. Like `fold`, this is a
    /// join: commutative, associative and idempotent with folds and other joins. Never panics
    /// on malformed bytes.
    fn join_encoded_state(&self, state: &mut Self::State, encoded: &[u8])
        -> Result<(), ModelError>;

    /// The output of a state encoded by [`Model::encode_state`] alone: what joining it into an
    /// empty state and calling [`Model::output`] gives, which is the default. A model may read
    /// the output straight from the encoding (a point get of a compacted aggregate does this).
    fn output_encoded_state(&self, encoded: &[u8]) -> Result<Option<Self::Output>, ModelError> {
        let mut state = Self::State::default();
        self.join_encoded_state(&mut state, encoded)?;
        Ok(self.output(&state))
    }

    /// Forgets what only served to order deltas with `seq < seal` against the state
    /// (tombstones, stamps no admissible delta can compete with), once the caller guarantees no
    /// such delta will ever be folded into it. Must not change `output`, nor the output after
    /// folding any further deltas with `seq >= seal`.
    fn forget_below(&self, state: &mut Self::State, seal: u64);

    /// Whether the state holds nothing at all (never folded, or emptied by `forget_below`): the
    /// aggregate can then be dropped entirely.
    fn is_empty(&self, state: &Self::State) -> bool;
}
