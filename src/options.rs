//! Tuning knobs for [`Db::open`](crate::Db::open).

use std::time::Duration;

/// When an appended batch is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `write` returns only after the batch is on stable storage (`fdatasync`). Concurrent
    /// writers share one write and one sync (group commit).
    Always,
    /// `write` returns after the batch reaches the OS; a background thread syncs at this
    /// interval. A crash may lose up to one interval of acknowledged batches (never part of one).
    Interval(Duration),
    /// Never sync except on segment rotation and close. A crash may lose any unsynced batch
    /// (never part of one).
    Never,
}

/// What open does when it finds damage that is not a torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Refuse to open, naming the segment file and byte offset of the damage.
    Strict,
    /// Skip damaged records up to the next valid one, open, and report what was skipped in
    /// [`Stats::skipped`](crate::Stats::skipped).
    SkipCorrupt,
}

/// zstd compression of batch records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// zstd level (1 = fastest).
    pub level: i32,
    /// Batches whose encoded body is smaller than this are stored uncompressed.
    pub min_batch_bytes: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            level: 1,
            min_batch_bytes: 4096,
        }
    }
}

/// Options for opening a database. `Options::default()` is a durable, strict configuration.
#[derive(Clone, Debug)]
pub struct Options {
    /// Maximum size of one segment file, header included (default 64 MiB). A batch record larger
    /// than a segment can hold is rejected.
    pub segment_size_bytes: u64,
    /// Durability of `write` (default [`SyncMode::Always`]).
    pub sync: SyncMode,
    /// Handling of mid-log damage on open (default [`RecoveryMode::Strict`]).
    pub recovery: RecoveryMode,
    /// Compression of batch bodies (default: off).
    pub compression: Option<Compression>,
    /// Create the directory when it does not exist (default true).
    pub create_if_missing: bool,
}

/// Smallest accepted segment size: room for a header and a few records.
pub const MIN_SEGMENT_SIZE_BYTES: u64 = 4096;
/// Largest accepted segment size (record offsets are stored as u32).
pub const MAX_SEGMENT_SIZE_BYTES: u64 = u32::MAX as u64;

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size_bytes: 64 << 20,
            sync: SyncMode::Always,
            recovery: RecoveryMode::Strict,
            compression: None,
            create_if_missing: true,
        }
    }
}

impl Options {
    /// Sets the segment size in bytes.
    pub fn segment_size_bytes(mut self, bytes: u64) -> Self {
        self.segment_size_bytes = bytes;
        self
    }

    /// Sets the sync mode.
    pub fn sync(mut self, sync: SyncMode) -> Self {
        self.sync = sync;
        self
    }

    /// Sets the recovery mode.
    pub fn recovery(mut self, recovery: RecoveryMode) -> Self {
        self.recovery = recovery;
        self
    }

    /// Enables (`Some`) or disables (`None`) compression.
    pub fn compression(mut self, compression: Option<Compression>) -> Self {
        self.compression = compression;
        self
    }

    /// Sets whether a missing directory is created.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }
}
