//! The log opened read-only, beside a writer in another process (DESIGN.md, section 6b): it
//! scans like recovery but changes nothing (a torn or unfinished tail is only not read), maps
//! every segment it read so that a segment the writer's compaction deletes stays readable, and
//! [`Log::refresh`] reads what was appended since.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use super::format::RecordLocation;
use super::log::{Log, SegmentState};
use super::recovery::{scan_log, scan_log_after, LogRecord, LogScan, ScanPolicy};
use crate::error::{Error, Result};
use crate::layout::WAL_DIR;
use crate::locks::{read, write};
use crate::options::{Options, RecoveryMode};
use crate::storage::Storage;

impl Log {
    /// Opens the log in `db_dir` read-only: replays every valid record from `from` through
    /// `on_record` and maps every segment, writing nothing.
    pub fn open_read_only(
        storage: Arc<dyn Storage>,
        db_dir: &Path,
        options: &Options,
        from: RecordLocation,
        on_record: &mut dyn FnMut(&LogRecord<'_>),
    ) -> Result<(Arc<Log>, LogScan)> {
        let wal_dir = db_dir.join(WAL_DIR);
        let policy = ScanPolicy::Open(options.recovery);
        let scan = scan_log(&*storage, &wal_dir, policy, from, on_record)?;
        let log = Arc::new(Log::assemble(
            storage,
            wal_dir,
            options,
            None,
            BTreeMap::new(),
        ));
        log.adopt(&scan)?;
        Ok((log, scan))
    }

    /// Reads what was appended since the last open or refresh, through `on_record`, and maps
    /// the segments it finds. Segments that disappeared meanwhile (the writer's compaction
    /// deleted them) stay mapped until [`Log::forget_deleted`].
    pub fn refresh(
        &self,
        recovery: RecoveryMode,
        on_record: &mut dyn FnMut(&LogRecord<'_>),
    ) -> Result<LogScan> {
        debug_assert!(lock_is_read_only(self), "refresh is for read-only logs");
        let from = self.end();
        let policy = ScanPolicy::Open(recovery);
        let scan = scan_log_after(&*self.storage, &self.wal_dir, policy, from, on_record)?;
        self.adopt(&scan)?;
        Ok(scan)
    }

    /// Unmaps the segments that are gone from the directory and that the index no longer
    /// points into (`live` holds the ids it does).
    pub fn forget_deleted(&self, on_disk: &BTreeSet<u64>, live: &BTreeSet<u64>) {
        let last = self.end().segment;
        let keep = |id: &u64| *id >= last || on_disk.contains(id) || live.contains(id);
        write(&self.segments).retain(|id, _| keep(id));
    }

    /// Takes the extents a scan found: the valid length of each segment (a torn or unfinished
    /// tail is not part of it), each mapped.
    fn adopt(&self, scan: &LogScan) -> Result<()> {
        for extent in &scan.segments {
            let len = match &scan.torn {
                Some(torn) if torn.file == extent.path => torn.offset,
                _ => extent.file_len,
            };
            let known = read(&self.segments).get(&extent.id).map(|s| s.len);
            if known.is_some_and(|known| known >= len) {
                continue;
            }
            let view = self
                .storage
                .read_view(&extent.path, len)
                .map_err(|e| Error::io(&extent.path, e))?;
            let state = SegmentState {
                path: extent.path.clone(),
                len,
                view: Some(view),
            };
            write(&self.segments).insert(extent.id, state);
        }
        Ok(())
    }

    /// Ids of the segment files on disk now.
    pub fn segments_on_disk(&self) -> Result<BTreeSet<u64>> {
        Ok(crate::layout::list_segments(&*self.storage, &self.wal_dir)?
            .into_iter()
            .collect())
    }
}

fn lock_is_read_only(log: &Log) -> bool {
    crate::locks::lock(&log.appender).is_none()
}
