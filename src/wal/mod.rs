//! The segmented write-ahead log: format, batch codec, scanning, recovery and the appender.
//!
//! Dependencies point one way: `log` uses `recovery`, which uses `scan`, `segment`, `batch` and
//! `format`; nothing here knows about the index or the model.

pub mod batch;
pub mod format;
pub mod log;
pub mod records;
pub mod recovery;
pub mod scan;
pub mod segment;

pub use self::log::{Log, RecordLocation};
pub use batch::MAX_AGGREGATE_ID_BYTES;
pub use recovery::{BatchRecord, Damage, ScanPolicy};
