//! [`LogReader`]: a database's log opened for reading in log order only, without the index.
//!
//! Opening runs the scan a read-only open runs (DESIGN.md, section 6b: every frame verified, a
//! torn or unfinished tail not read, damage handled by `Options::recovery`), from the first
//! segment, and builds no index: a log-order reader such as `aggrelog replay` pays the scan
//! alone, not the index rebuild, which is most of an open's time (section 6a).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::open::open_log;
use crate::options::{Options, RecoveryMode};
use crate::retraction::Retractions;
use crate::retry::retrying_vanished;
use crate::storage::{FsStorage, Storage};
use crate::wal::recovery::LogRecord;
use crate::wal::replay::Replay;
use crate::wal::{Log, RecordLocation};

/// The log of a database, for reading it in log order: beside a writer or not, writing
/// nothing and taking no lock.
///
/// ```
/// use aggrelog::{Batch, Db, LogReader, Options, RecordLocation};
/// use serde_json::json;
///
/// # fn main() -> aggrelog::Result<()> {
/// let dir = tempfile::tempdir().expect("temp dir");
/// let db = Db::open(dir.path(), Options::default())?;
/// db.write(Batch::new().patch("a", 1, &json!({"x": 1}))?)?;
/// let log = LogReader::open(dir.path(), Options::default())?;
/// let deltas: Vec<_> = log.replay(RecordLocation::START).collect::<Result<_, _>>()?;
/// assert_eq!(deltas.len(), 1);
/// assert_eq!(deltas[0].aggregate, "a");
/// # Ok(())
/// # }
/// ```
pub struct LogReader {
    log: Arc<Log>,
    recovery: RecoveryMode,
    folded_aggregates: u64,
    retracted: Vec<String>,
}

impl LogReader {
    /// Opens the log of the existing database at `path`; `options.recovery` decides what
    /// damage does, as for [`Db::open`](crate::Db::open).
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        LogReader::open_with(path, options, Arc::new(FsStorage))
    }

    /// [`LogReader::open`] with a custom storage.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: Options,
        storage: Arc<dyn Storage>,
    ) -> Result<Self> {
        let dir = path.as_ref();
        // A writer's compaction may delete a segment between its listing and its reading.
        retrying_vanished(|| {
            let mut folded = HashSet::new();
            let mut retractions = Retractions::default();
            let mut note = |record: &LogRecord<'_>| match record {
                LogRecord::State { body, .. } if !folded.contains(body.aggregate) => {
                    folded.insert(body.aggregate.to_owned());
                }
                LogRecord::Retraction(record) => {
                    retractions.apply(record);
                }
                _ => {}
            };
            let log = open_log(dir, &options, Arc::clone(&storage), &mut note)?;
            Ok(LogReader {
                log,
                recovery: options.recovery,
                folded_aggregates: folded.len() as u64,
                retracted: retractions.retracted().map(str::to_owned).collect(),
            })
        })
    }

    /// Every delta from `from` on, in log order, as [`Db::replay`](crate::Db::replay) reads
    /// them.
    pub fn replay(&self, from: RecordLocation) -> Replay {
        Replay::new(&self.log, from, self.recovery)
    }

    /// The batch names retracted (`Db::retract`) by the retraction records of the log, in
    /// order. Replay reads their deltas like any other.
    pub fn retracted_batches(&self) -> &[String] {
        &self.retracted
    }

    /// Aggregates with a compaction state record in the log: the deltas folded into it are not
    /// replayed.
    pub fn folded_aggregates(&self) -> u64 {
        self.folded_aggregates
    }
}
