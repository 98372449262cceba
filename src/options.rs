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

/// How far back [`Db::get_as_of`](crate::Db::get_as_of) can look once compaction has folded
/// deltas into state records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum History {
    /// Keep no history beyond what folding needs (default): compaction folds every delta, so
    /// `get_as_of` below a folded seq is refused.
    #[default]
    None,
    /// Keep every delta: compaction never folds (and so reclaims nothing).
    All,
    /// Fold only deltas whose seq is at least this far below the highest seq seen; `get_as_of`
    /// within the window always works.
    Window(u64),
}

/// When and how compaction runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionOptions {
    /// Run compaction and automatic checkpoints on a background thread (default true). When
    /// false, call [`Db::compact`](crate::Db::compact) yourself; automatic checkpoints then run
    /// inline in the write that crosses the threshold.
    pub background: bool,
    /// Fold an aggregate once it has more unfolded deltas than this (default 16).
    pub max_unfolded_deltas: usize,
    /// ... or more unfolded delta bytes than this (default 8 KiB).
    pub max_unfolded_bytes: u64,
    /// Reclaim a sealed segment once its live bytes fall below this fraction (default 0.5).
    pub min_live_ratio: f64,
    /// Background compaction reads and writes at most this many bytes per second (default
    /// 64 MiB/s). Manual compaction is not limited.
    pub rate_bytes_per_sec: u64,
    /// How often the background thread looks for work (default 1 s).
    pub interval: Duration,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            background: true,
            max_unfolded_deltas: 16,
            max_unfolded_bytes: 8 << 10,
            min_live_ratio: 0.5,
            rate_bytes_per_sec: 64 << 20,
            interval: Duration::from_secs(1),
        }
    }
}

/// Options for opening a database. `Options::default()` is a durable, strict configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
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
    /// How far back `get_as_of` can look after compaction (default [`History::None`]).
    pub history: History,
    /// Write a checkpoint after this many bytes of log (default 256 MiB; 0 = only on demand).
    pub checkpoint_every_bytes: u64,
    /// Checkpoint files kept (default 2, at least 1).
    pub checkpoints_kept: usize,
    /// Compaction policy.
    pub compaction: CompactionOptions,
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
            history: History::None,
            checkpoint_every_bytes: 256 << 20,
            checkpoints_kept: 2,
            compaction: CompactionOptions::default(),
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

    /// Sets the history kept for `get_as_of`.
    pub fn history(mut self, history: History) -> Self {
        self.history = history;
        self
    }

    /// Sets the automatic checkpoint interval in log bytes (0 = only on demand).
    pub fn checkpoint_every_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_every_bytes = bytes;
        self
    }

    /// Sets the compaction policy.
    pub fn compaction(mut self, compaction: CompactionOptions) -> Self {
        self.compaction = compaction;
        self
    }

    /// Turns background compaction and checkpoints on or off.
    pub fn background_compaction(mut self, on: bool) -> Self {
        self.compaction.background = on;
        self
    }
}
