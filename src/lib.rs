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

// The public API is the `pub use` list below plus the `jsonl`, `model` and `storage` modules;
// every other module is private. DESIGN.md, section 1, maps them.
mod backup;
mod batch;
mod check;
mod checkpoint;
mod compaction;
mod db;
mod decode;
mod engine;
mod error;
mod export;
mod fold;
mod history;
mod index;
mod index_builder;
pub mod jsonl;
mod large_batch;
mod layout;
mod locks;
mod log_reader;
mod materialize;
pub mod model;
mod open;
mod options;
mod periodic;
mod references;
mod refresh;
mod retract;
mod retraction;
mod retry;
#[cfg(feature = "workload")]
mod rng;
mod scan;
mod sources;
mod stats;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
mod text;
mod varint;
mod wal;
mod worker;
#[cfg(feature = "workload")]
pub mod workload;
mod write;

pub use backup::BackupReport;
pub use batch::Batch;
pub use check::{check, CheckReport};
pub use checkpoint::CheckpointMeta;
pub use compaction::CompactionReport;
pub use db::Db;
pub use engine::AggregateState;
pub use error::{Error, Result};
pub use export::TransferReport;
pub use history::{DeltaHistory, HistoryEntry};
pub use large_batch::{LargeBatch, FRAGMENT_PAYLOAD_BYTES};
pub use log_reader::LogReader;
pub use model::{DeltaKind, DeltaView, MergePatch, Model, ModelError, Stamp};
pub use options::{
    CompactionOptions, Compression, History, Options, RecoveryMode, SyncMode,
    MAX_SEGMENT_SIZE_BYTES, MIN_SEGMENT_SIZE_BYTES,
};
pub use references::{Reference, References};
pub use retract::Retraction;
pub use scan::Scan;
pub use sources::{SourcePosition, SourceRange, MAX_TOPIC_BYTES};
pub use stats::{CheckpointStats, Stats, CHAIN_BUCKETS};
pub use storage::{AppendFile, DirLock, FsStorage, ReadView, Storage};
pub use wal::replay::{
    BatchDeltas, LoggedDelta, Replay, ReplayTotals, ReplayedBatch, ReplayedDelta,
};
pub use wal::trailer::NameSpan;
pub use wal::{Damage, RecordLocation, MAX_AGGREGATE_ID_BYTES};
pub use write::WriteReceipt;

/// Compiles the README's examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
