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
//! An embedder runs the simulation against their own model by saying how a scenario's JSON
//! patch becomes one of its delta bodies and what the model's output must be
//! ([`simulation::Simulated`]); every scenario then writes, crashes, recovers and compares:
//!
//! ```
//! use aggrelog::testing::simulation::{random_scenario, run_model, Simulated};
//! use aggrelog::{DeltaKind, DeltaView, Model, ModelError, Stamp};
//! use serde_json::Value;
//!
//! /// A last-writer-wins register: the delta with the highest stamp wins, a delete included.
//! #[derive(Clone)]
//! struct Register;
//!
//! impl Model for Register {
//!     type State = Option<(Stamp, Option<Vec<u8>>)>;
//!     type Output = Vec<u8>;
//!     fn fold(&self, state: &mut Self::State, delta: DeltaView<'_>) -> Result<(), ModelError> {
//!         if state.as_ref().is_none_or(|(newest, _)| delta.stamp > *newest) {
//!             let body = (delta.kind == DeltaKind::Patch).then(|| delta.body.to_vec());
//!             *state = Some((delta.stamp, body));
//!         }
//!         Ok(())
//!     }
//!     fn output(&self, state: &Self::State) -> Option<Vec<u8>> {
//!         state.as_ref().and_then(|(_, body)| body.clone())
//!     }
//!     fn encode_state(&self, state: &Self::State, out: &mut Vec<u8>) {
//!         if let Some((stamp, body)) = state {
//!             out.extend_from_slice(&stamp.seq.to_le_bytes());
//!             out.extend_from_slice(&stamp.position.to_le_bytes());
//!             out.extend_from_slice(&stamp.checksum.to_le_bytes());
//!             out.push(u8::from(body.is_some()));
//!             out.extend_from_slice(body.as_deref().unwrap_or_default());
//!         }
//!     }
//!     fn join_encoded_state(&self, state: &mut Self::State, bytes: &[u8]) -> Result<(), ModelError> {
//!         if bytes.is_empty() {
//!             return Ok(());
//!         }
//!         let fixed = bytes.get(..17).ok_or_else(|| ModelError::new(0, "truncated state"))?;
//!         let seq = u64::from_le_bytes(fixed[..8].try_into().expect("8 bytes"));
//!         let position = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
//!         let checksum = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
//!         let kind = if fixed[16] == 1 { DeltaKind::Patch } else { DeltaKind::Delete };
//!         let stamp = Stamp::new(seq, position, checksum);
//!         self.fold(state, DeltaView { stamp, kind, body: &bytes[17..] })
//!     }
//!     fn forget_below(&self, _state: &mut Self::State, _seal: u64) {}
//!     fn is_empty(&self, state: &Self::State) -> bool {
//!         state.is_none()
//!     }
//! }
//!
//! impl Simulated for Register {
//!     fn encode_patch(&self, patch: &Value) -> Vec<u8> {
//!         patch.to_string().into_bytes()
//!     }
//!     /// The last delta in stamp order decides.
//!     fn expected(&self, deltas: &[Option<&Value>]) -> Option<Vec<u8>> {
//!         deltas.last()?.map(|patch| patch.to_string().into_bytes())
//!     }
//! }
//!
//! for seed in 0..40 {
//!     let outcome = run_model(&random_scenario(seed, 60), Register).expect("no invariant broken");
//!     assert!(outcome.crashes >= 1);
//! }
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
    pub use crate::wal::{batch_record, format, frame, recovery};
}
