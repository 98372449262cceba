//! The segmented write-ahead log: the format ([`format`]: segment header, frames, record
//! types; [`batch`], [`trailer`], [`records`] and [`admin_records`]: record bodies), walking frames ([`frame`]), recovery on open
//! ([`recovery`]), the appender ([`log`]: group commit, rotation, sync), and reading back
//! ([`reader`]: one delta by location; [`replay`]: every delta in log order).
//!
//! Dependencies point one way: `log` uses `recovery`, which uses `frame`, `segment`, `batch`,
//! `records`, `admin_records` and `format`; the readers use `frame`, `batch` and `records`. Nothing here knows
//! the model's fold or the engine.

pub mod admin_records;
pub mod batch;
pub mod batch_record;
pub mod follow;
pub mod format;
pub mod fragments;
pub mod frame;
pub mod log;
pub mod reader;
pub mod records;
pub mod recovery;
pub mod replay;
pub mod segment;
pub mod trailer;

pub use self::log::Log;
pub use batch::MAX_AGGREGATE_ID_BYTES;
pub use batch_record::BatchRecord;
pub use format::RecordLocation;
pub use recovery::{Damage, ScanPolicy};
