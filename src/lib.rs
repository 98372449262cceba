//! aggrelog: an embedded, log-structured storage engine for aggregate state.
//!
//! Every delta (an RFC 7396 merge patch or a delete, stamped with an upstream `seq`) is appended
//! to a segmented, CRC-framed write-ahead log in atomic batches; an in-memory index maps each
//! aggregate id to where its deltas live; reads fold those deltas with an order-independent
//! model. The state therefore depends only on *which* deltas arrived, never on their arrival
//! order, duplicates, crashes or reopens.
//!
//! ```
//! use aggrelog::{Batch, Db, Options};
//! use serde_json::json;
//!
//! # fn main() -> aggrelog::Result<()> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let db = Db::open(dir.path(), Options::default())?;
//!
//! // Batch 2 arrives before batch 1: the order of arrival does not matter.
//! let mut late = Batch::new();
//! late.patch("aircraft-1", 2, &json!({"engine": {"serial": "ESN-2"}}))?;
//! db.write(&late)?;
//! let mut early = Batch::new();
//! early.patch("aircraft-1", 1, &json!({"engine": {"serial": "ESN-1", "cycles": 10}}))?;
//! db.write(&early)?;
//!
//! let aircraft = db.get("aircraft-1")?.expect("present");
//! assert_eq!(aircraft.seq, 2);
//! assert_eq!(aircraft.state, json!({"engine": {"serial": "ESN-2", "cycles": 10}}));
//!
//! // The state as of seq 1 is still available.
//! let then = db.get_as_of("aircraft-1", 1)?.expect("present");
//! assert_eq!(then.state, json!({"engine": {"serial": "ESN-1", "cycles": 10}}));
//! db.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! The on-disk format, the merge semantics and the recovery rules are documented in DESIGN.md.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod batch;
pub mod check;
pub mod checkpoint;
pub mod compaction;
pub mod db;
pub mod error;
pub mod fuzzing;
pub mod index;
pub(crate) mod index_builder;
pub mod jsonl;
pub(crate) mod maintenance;
pub(crate) mod materialize;
pub mod model;
pub mod options;
pub mod reader;
pub mod replay;
pub mod rng;
pub mod simulation;
pub mod stats;
pub mod storage;
pub(crate) mod text;
pub mod varint;
pub mod wal;
pub mod workload;

pub use batch::Batch;
pub use check::{check, CheckReport};
pub use checkpoint::CheckpointMeta;
pub use compaction::CompactionReport;
pub use db::{AggregateState, Db, Scan, WriteReceipt};
pub use error::{Error, Result};
pub use options::{CompactionOptions, Compression, History, Options, RecoveryMode, SyncMode};
pub use replay::{BatchDeltas, LoggedDelta, Replay, ReplayTotals, ReplayedBatch, ReplayedDelta};
pub use stats::{CheckpointStats, Stats};
pub use wal::{Damage, RecordLocation};

/// Compiles the README's examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
