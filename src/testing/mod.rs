//! Crash testing for embedders (feature `testing`; not for production builds).
//!
//! aggrelog's own crash tests are built from three parts, offered here so that an embedder can
//! run them against their deployment of the engine:
//!
//! - [`SimStorage`]: a [`Storage`](crate::Storage) that lives in memory and, at a simulated
//!   power loss ([`SimStorage::crash`]), keeps only what was synced and tears the rest the way
//!   real disks do (prefixes, zero fill, sectors persisted out of order); it also injects short
//!   writes, a full disk, failing `fsync` and failing reads ([`FaultConfig`]);
//! - [`simulation`]: seeded scenarios of writes (duplicated, out of order), reads, checkpoints,
//!   compactions, seals, faults and crashes, each checked after every recovery against an
//!   oracle (every acknowledged batch present, none partly present, every state equal to
//!   json-patch applied in seq order);
//! - [`fuzzing`]: the bodies of the fuzz targets in `fuzz/`, as plain functions.
//!
//! An embedder's own model runs over the simulated disk like this: write, crash, reopen, and
//! compare with what the model says the state must be.
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//!
//! use aggrelog::testing::SimStorage;
//! use aggrelog::{Batch, DeltaKind, DeltaView, Db, Model, ModelError, Options, Stamp};
//!
//! /// A counter of distinct deltas: order-independent, idempotent.
//! #[derive(Clone, Copy)]
//! struct Distinct;
//!
//! impl Model for Distinct {
//!     type State = std::collections::BTreeSet<Stamp>;
//!     type Output = usize;
//!     fn fold(&self, state: &mut Self::State, delta: DeltaView<'_>) -> Result<(), ModelError> {
//!         state.insert(delta.stamp);
//!         Ok(())
//!     }
//!     fn output(&self, state: &Self::State) -> Option<usize> {
//!         Some(state.len())
//!     }
//!     fn encode_state(&self, state: &Self::State, out: &mut Vec<u8>) {
//!         for stamp in state {
//!             out.extend_from_slice(&stamp.seq.to_le_bytes());
//!             out.extend_from_slice(&stamp.position.to_le_bytes());
//!             out.extend_from_slice(&stamp.checksum.to_le_bytes());
//!         }
//!     }
//!     fn join_encoded_state(&self, state: &mut Self::State, bytes: &[u8]) -> Result<(), ModelError> {
//!         if bytes.len() % 16 != 0 {
//!             return Err(ModelError::new(0, "state of a wrong length"));
//!         }
//!         for part in bytes.chunks_exact(16) {
//!             let seq = u64::from_le_bytes(part[..8].try_into().unwrap());
//!             let position = u32::from_le_bytes(part[8..12].try_into().unwrap());
//!             let checksum = u32::from_le_bytes(part[12..].try_into().unwrap());
//!             state.insert(Stamp::new(seq, position, checksum));
//!         }
//!         Ok(())
//!     }
//!     fn forget_below(&self, _state: &mut Self::State, _seal: u64) {}
//!     fn is_empty(&self, state: &Self::State) -> bool {
//!         state.is_empty()
//!     }
//! }
//!
//! # fn main() -> aggrelog::Result<()> {
//! let dir = Path::new("/db");
//! for seed in 0..20 {
//!     let disk = SimStorage::new(seed);
//!     let open = || Db::open_with(dir, Options::default(), Distinct, Arc::new(disk.clone()));
//!     let db = open()?;
//!     for seq in 1..=5 {
//!         let mut batch = Batch::new();
//!         batch.push_raw("counter", seq, DeltaKind::Patch, &[seq as u8])?;
//!         db.write(&batch)?; // durable on return: it must survive the power loss
//!     }
//!     db.compact()?;
//!     disk.crash(); // a power loss: unsynced bytes torn, the process and its handles gone
//!     drop(db);
//!     let db = open()?;
//!     assert_eq!(db.get("counter")?.map(|s| s.state), Some(5), "seed {seed}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Nothing here is needed to use aggrelog, and none of it is compiled without the feature.

pub mod fuzzing;
mod sim_storage;
pub mod simulation;

pub use crate::rng::Rng;
pub use sim_storage::{FaultConfig, SimStats, SimStorage};

/// The engine's internals, for aggrelog's own tests, benches and fuzz targets. Not a stable
/// API: anything here may change in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::decode::DecodeError;
    pub use crate::index::{DeltaRef, Index};
    pub use crate::model::merge_patch::encode_patch;
    pub use crate::wal::{format, frame, recovery};
}
