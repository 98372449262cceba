//! The one error type of the crate.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in aggrelog. Messages are one sentence and name the file and byte
/// offset whenever the cause is on disk. New variants may be added in any release.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Another handle (in this or another process) holds the database directory.
    #[error("database {path} is locked by another process or handle; close it first")]
    Locked {
        /// The database directory.
        path: PathBuf,
    },

    /// Bytes on disk failed validation (CRC, bounds, header) at a known place.
    #[error("corruption in {file} at byte offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset within the file of the damaged record or field.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// The database directory does not exist and creating it was not asked for.
    #[error("database directory {path} does not exist")]
    NotFound {
        /// The missing directory.
        path: PathBuf,
    },

    /// The directory exists but holds no database, and creating one was not asked for.
    #[error("{path} is not an aggrelog database (it has no wal/ directory)")]
    NotADatabase {
        /// The directory.
        path: PathBuf,
    },

    /// A caller-supplied value was rejected (bad id, oversized batch, bad options, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A checkpoint file decodes but cannot be trusted against the log (it refers to records
    /// the log no longer holds, or past its end). Open falls back to an older checkpoint or a
    /// full replay; `check` lists it as stale.
    #[error("checkpoint {number}: {reason}")]
    CheckpointRejected {
        /// The checkpoint's number.
        number: u64,
        /// What does not match the log.
        reason: String,
    },

    /// A previous write, sync or rotation failed (the cause is kept), so durability of later
    /// writes cannot be promised. Reopen the database to recover from the log.
    #[error("database refuses writes after an earlier failure ({0}); reopen it to recover")]
    Poisoned(#[source] Arc<Error>),

    /// A limit of the format was reached (the last segment id was used).
    #[error("the database reached a limit of its format: {0}")]
    Exhausted(String),

    /// Compressing a batch failed.
    #[error("compressing a batch failed: {0}")]
    Compression(#[source] io::Error),

    /// An internal invariant did not hold: a bug in aggrelog, never caused by input or disk
    /// contents. The operation was refused; nothing was written.
    #[error("internal error (a bug in aggrelog, please report it): {0}")]
    Internal(String),

    /// A new delta's seq is below the seal: such deltas are no longer accepted (a delta the
    /// database already holds unfolded is accepted again as a duplicate).
    #[error("delta for {aggregate:?} has seq {seq}, below the seal at {seal}; it is rejected")]
    Sealed {
        /// The aggregate of the rejected delta.
        aggregate: String,
        /// Its index in its batch (0 for the batch's first delta, whatever its stamp position).
        position: u32,
        /// Its seq.
        seq: u64,
        /// The seal in force.
        seal: u64,
    },

    /// `get_as_of` asked for a seq older than the history compaction kept.
    #[error("history of {aggregate:?} before seq {oldest} was compacted; cannot show it as of seq {requested}")]
    HistoryUnavailable {
        /// The aggregate.
        aggregate: String,
        /// The seq asked for.
        requested: u64,
        /// The oldest seq that can be shown.
        oldest: u64,
    },

    /// The handle was opened read-only ([`Db::open_read_only`](crate::Db::open_read_only)):
    /// it never writes.
    #[error("database is open read-only")]
    ReadOnly,

    /// The database has been closed.
    #[error("database is closed")]
    Closed,
}

impl Error {
    /// Wraps an `io::Error` with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption error at `file`:`offset`.
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
