//! The segmented log: appends with group commit, rotation, sync policy and read views.
//!
//! Group commit: every appender enqueues its encoded record. The first appender to find no
//! leader becomes the leader: it takes the whole queue, writes all records with one `write` per
//! segment touched and one `fdatasync`, hands each waiter its result, and repeats until the queue
//! is empty. Followers sleep until their record is durable (or failed).

use std::collections::BTreeMap;
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::format::{
    frame_crc_of, write_frame, RecordLocation, RecordType, COMMIT_FRAME_BYTES, END_FRAME_BYTES,
    FORMAT_VERSION, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use super::fragments::FragmentReader;
use super::records::{encode_seal_body, FragmentRef};
use super::recovery::{scan_log, LogRecord, LogScan, ScanPolicy};
use super::segment::create_segment;
use crate::error::{Error, Result};
use crate::layout::{next_segment_id, segment_path, WAL_DIR};
use crate::locks::{lock, read, wait, write};
use crate::options::{Options, SyncMode};
use crate::periodic::Periodic;
use crate::sources::{encode_sources_record, SourcePosition};
use crate::storage::{AppendFile, ReadView, Storage};
use crate::wal::admin_records::{
    encode_references_record, encode_retraction_record, RetractionRecord,
};

/// A record to append: its type, frame flags and stored body.
#[derive(Clone, Debug)]
pub struct NewRecord {
    /// Record type.
    pub record_type: RecordType,
    /// Frame flags (compression).
    pub flags: u8,
    /// Stored body.
    pub body: Vec<u8>,
}

impl NewRecord {
    /// A seal record for `seal` (DESIGN.md, section 3.4).
    pub fn seal(seal: u64) -> Self {
        NewRecord {
            record_type: RecordType::Seal,
            flags: 0,
            body: encode_seal_body(seal),
        }
    }

    /// A retraction record setting `record`'s register (DESIGN.md, section 3.4).
    pub fn retraction(record: &RetractionRecord) -> Self {
        NewRecord {
            record_type: RecordType::Retraction,
            flags: 0,
            body: encode_retraction_record(record),
        }
    }

    /// A references record declaring `pointers` (DESIGN.md, section 3.4).
    pub fn references(pointers: &[String]) -> Self {
        NewRecord {
            record_type: RecordType::References,
            flags: 0,
            body: encode_references_record(pointers),
        }
    }

    /// A sources record holding `positions` (DESIGN.md, section 3.4).
    pub fn sources(positions: &[SourcePosition]) -> Self {
        NewRecord {
            record_type: RecordType::Sources,
            flags: 0,
            body: encode_sources_record(positions),
        }
    }
}

/// Records waiting to be committed together, and the slot their committer fills.
struct Pending {
    records: Vec<NewRecord>,
    /// Whether the caller needs them durable on return (under `SyncMode::Always`).
    durable: bool,
    result: Mutex<Option<Result<Vec<RecordLocation>, Refusal>>>,
    done: Condvar,
}

impl Pending {
    fn complete(&self, result: Result<Vec<RecordLocation>, Refusal>) {
        *lock(&self.result) = Some(result);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<Vec<RecordLocation>> {
        let mut slot = lock(&self.result);
        loop {
            if let Some(result) = slot.take() {
                return result.map_err(|refusal| refusal.to_error());
            }
            slot = wait(&self.done, slot);
        }
    }
}

#[derive(Default)]
struct CommitQueue {
    pending: Vec<Arc<Pending>>,
    leader_active: bool,
    /// Set after a failed write or sync, or on close: no further append is accepted.
    refusal: Option<Refusal>,
}

#[derive(Clone)]
enum Refusal {
    /// A write, sync or rotation failed with this error.
    Failed(Arc<Error>),
    Closed,
    /// The log was opened read-only: it never appends.
    ReadOnly,
}

impl Refusal {
    fn to_error(&self) -> Error {
        match self {
            Refusal::Failed(cause) => Error::Poisoned(Arc::clone(cause)),
            Refusal::Closed => Error::Closed,
            Refusal::ReadOnly => Error::ReadOnly,
        }
    }
}

/// The active segment, owned by whoever commits.
pub(super) struct Appender {
    segment: u64,
    path: PathBuf,
    file: Box<dyn AppendFile>,
    len: u64,
    /// Bytes of the segment known durable: its length at the last successful `sync_data` (the
    /// header's length right after creation). Every write's commit record carries it.
    durable_len: u64,
    buffer: Vec<u8>,
}

impl Appender {
    /// An appender at the end of `len` bytes of segment `segment`, all of them durable.
    fn synced(segment: u64, path: PathBuf, file: Box<dyn AppendFile>, len: u64) -> Self {
        Appender {
            segment,
            path,
            file,
            len,
            durable_len: len,
            buffer: Vec::new(),
        }
    }

    fn unsynced(&self) -> bool {
        debug_assert!(self.durable_len <= self.len, "durable bytes past the end");
        self.durable_len < self.len
    }

    /// Syncs the segment's data; on success every byte written so far is durable.
    fn sync_data(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        self.durable_len = self.len;
        Ok(())
    }
}

pub(super) struct SegmentState {
    pub(super) path: PathBuf,
    /// Bytes readers may see: the end of the last committed frame.
    pub(super) len: u64,
    pub(super) view: Option<ReadView>,
}

/// The write-ahead log of one database.
pub struct Log {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) wal_dir: PathBuf,
    segment_size_bytes: u64,
    sync: SyncMode,
    queue: Mutex<CommitQueue>,
    /// The active segment; `None` when the log was opened read-only.
    pub(super) appender: Mutex<Option<Appender>>,
    pub(super) segments: RwLock<BTreeMap<u64, SegmentState>>,
    /// The interval sync of `SyncMode::Interval`, stopped on close.
    sync_thread: Mutex<Option<Periodic>>,
}

impl Log {
    /// Opens (or creates) the log in `db_dir`, replaying every valid record from `from` through
    /// `on_record`, truncating a torn tail, and positioning the appender after the last valid
    /// record.
    pub fn open(
        storage: Arc<dyn Storage>,
        db_dir: &Path,
        options: &Options,
        from: RecordLocation,
        on_record: &mut dyn FnMut(&LogRecord<'_>),
    ) -> Result<(Arc<Log>, LogScan)> {
        let wal_dir = db_dir.join(WAL_DIR);
        if !storage
            .exists(&wal_dir)
            .map_err(|e| Error::io(&wal_dir, e))?
        {
            storage
                .create_dir_all(&wal_dir)
                .and_then(|()| storage.sync_dir(db_dir))
                .map_err(|e| Error::io(&wal_dir, e))?;
        }
        let policy = ScanPolicy::Open(options.recovery);
        let scan = scan_log(&*storage, &wal_dir, policy, from, on_record)?;
        drop_torn_tail(&*storage, &wal_dir, &scan)?;
        // The files just listed may exist only because a directory sync failed before the last
        // crash or close: make their entries durable before appending to them.
        storage
            .sync_dir(&wal_dir)
            .map_err(|e| Error::io(&wal_dir, e))?;
        let mut segments = BTreeMap::new();
        for extent in &scan.segments {
            let len = match &scan.torn {
                Some(torn) if torn.file == extent.path => torn.offset,
                _ => extent.file_len,
            };
            let state = SegmentState {
                path: extent.path.clone(),
                len,
                view: None,
            };
            segments.insert(extent.id, state);
        }
        let sealed_last = scan.segments.last().is_some_and(|e| e.sealed);
        let appender = open_appender(&*storage, &wal_dir, &mut segments, sealed_last)?;
        let log = Arc::new(Log::assemble(
            storage,
            wal_dir,
            options,
            Some(appender),
            segments,
        ));
        // Appends go to segments of the current format only: an older last segment is sealed
        // and continued in a new one.
        let older_last = scan.segments.last();
        if older_last.is_some_and(|e| !e.sealed && e.version < FORMAT_VERSION) {
            if let Some(app) = lock(&log.appender).as_mut() {
                log.rotate(app)?;
            }
        }
        if let SyncMode::Interval(interval) = options.sync {
            // A failed sync poisons the log; the next append reports it.
            let thread = Periodic::start("aggrelog-sync", interval, &log, |log| drop(log.sync()))
                .map_err(|e| Error::io(&log.wal_dir, e))?;
            *lock(&log.sync_thread) = Some(thread);
        }
        Ok((log, scan))
    }

    /// A log over `segments`, appending through `appender` (`None`: read-only, and every
    /// append is refused).
    pub(super) fn assemble(
        storage: Arc<dyn Storage>,
        wal_dir: PathBuf,
        options: &Options,
        appender: Option<Appender>,
        segments: BTreeMap<u64, SegmentState>,
    ) -> Log {
        let mut queue = CommitQueue::default();
        if appender.is_none() {
            queue.refusal = Some(Refusal::ReadOnly);
        }
        Log {
            storage,
            wal_dir,
            segment_size_bytes: options.segment_size_bytes,
            sync: options.sync,
            queue: Mutex::new(queue),
            appender: Mutex::new(appender),
            segments: RwLock::new(segments),
            sync_thread: Mutex::new(None),
        }
    }

    /// The largest record body a segment can hold (after its header, a commit record and the
    /// room kept for its end record).
    pub fn max_record_body_bytes(&self) -> u64 {
        self.segment_size_bytes
            - (SEGMENT_HEADER_BYTES + COMMIT_FRAME_BYTES + FRAME_HEADER_BYTES + END_FRAME_BYTES)
                as u64
    }

    /// Appends one batch record and returns once it is committed under the sync mode (durable
    /// for [`SyncMode::Always`]). Concurrent callers share writes and syncs.
    pub fn append(&self, flags: u8, body: Vec<u8>) -> Result<RecordLocation> {
        let record = NewRecord {
            record_type: RecordType::Batch,
            flags,
            body,
        };
        let locations = self.append_records(vec![record], true)?;
        locations
            .first()
            .copied()
            .ok_or_else(|| Error::Internal("an append returned no location".into()))
    }

    /// Appends `records` back to back (each its own atomic frame) in one group. With `durable`
    /// false the records are written but not synced (compaction syncs before relying on them).
    pub fn append_records(
        &self,
        records: Vec<NewRecord>,
        durable: bool,
    ) -> Result<Vec<RecordLocation>> {
        self.submit(records, durable)
            .map(|(_, locations)| locations)
    }

    /// Appends one fragment of a spanning batch, unsynced, and returns where it lies with its
    /// frame CRC, which the batch commit will list (DESIGN.md, section 3.6).
    pub fn append_fragment(&self, flags: u8, body: Vec<u8>) -> Result<FragmentRef> {
        let record = NewRecord {
            record_type: RecordType::Fragment,
            flags,
            body,
        };
        let (pending, locations) = self.submit(vec![record], false)?;
        match (pending.records.first(), locations.first()) {
            (Some(record), Some(&location)) => Ok(FragmentRef {
                location,
                crc: frame_crc_of(
                    location.segment,
                    location.offset,
                    RecordType::Fragment,
                    record.flags,
                    &record.body,
                ),
            }),
            _ => Err(Error::Internal("an append returned no location".into())),
        }
    }

    /// Queues `records` for the next group commit and waits for it; returns the request (with
    /// its records) and where they landed.
    fn submit(
        &self,
        records: Vec<NewRecord>,
        durable: bool,
    ) -> Result<(Arc<Pending>, Vec<RecordLocation>)> {
        for record in &records {
            if record.body.len() as u64 > self.max_record_body_bytes() {
                return Err(Error::InvalidInput(format!(
                    "record of {} bytes does not fit in a segment of {} bytes",
                    record.body.len(),
                    self.segment_size_bytes
                )));
            }
        }
        let pending = Arc::new(Pending {
            records,
            durable,
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        {
            let mut queue = lock(&self.queue);
            if let Some(refusal) = &queue.refusal {
                return Err(refusal.to_error());
            }
            queue.pending.push(Arc::clone(&pending));
            if queue.leader_active {
                drop(queue);
                let locations = pending.wait()?;
                return Ok((pending, locations));
            }
            queue.leader_active = true;
        }
        self.lead();
        let locations = pending.wait()?;
        Ok((pending, locations))
    }

    /// Commits queued records group by group until the queue is empty.
    fn lead(&self) {
        loop {
            let (group, refusal) = {
                let mut queue = lock(&self.queue);
                if queue.pending.is_empty() {
                    queue.leader_active = false;
                    return;
                }
                (mem::take(&mut queue.pending), queue.refusal.clone())
            };
            if let Some(refusal) = refusal {
                group.iter().for_each(|p| p.complete(Err(refusal.clone())));
                continue;
            }
            match self.commit_group(&group) {
                Ok(locations) => {
                    for (pending, location) in group.iter().zip(locations) {
                        pending.complete(Ok(location));
                    }
                }
                Err(e) => {
                    let refusal = Refusal::Failed(Arc::new(e));
                    self.refuse(refusal.clone());
                    group.iter().for_each(|p| p.complete(Err(refusal.clone())));
                }
            }
        }
    }

    /// Refuses every later append, checkpoint and compaction because of `error` (something
    /// in the log is not in the index), and returns the error to report now.
    pub fn poison(&self, error: Error) -> Error {
        self.fail(error)
    }

    /// Refuses every later append because of `error`, and returns the error to report now.
    fn fail(&self, error: Error) -> Error {
        let cause = Arc::new(error);
        self.refuse(Refusal::Failed(Arc::clone(&cause)));
        Error::Poisoned(cause)
    }

    fn refuse(&self, refusal: Refusal) {
        let mut queue = lock(&self.queue);
        if !matches!(queue.refusal, Some(Refusal::Failed(_) | Refusal::ReadOnly)) {
            queue.refusal = Some(refusal);
        }
    }

    /// Writes a group of records, rotating segments as needed, then syncs once if anyone in the
    /// group needs durability.
    fn commit_group(&self, group: &[Arc<Pending>]) -> Result<Vec<Vec<RecordLocation>>> {
        let mut guard = lock(&self.appender);
        let app = guard.as_mut().ok_or(Error::ReadOnly)?;
        let mut buffer = mem::take(&mut app.buffer);
        buffer.clear();
        let mut locations = Vec::with_capacity(group.len());
        for pending in group {
            let mut placed = Vec::with_capacity(pending.records.len());
            for record in &pending.records {
                let frame_bytes = (FRAME_HEADER_BYTES + record.body.len()) as u64;
                let commit_bytes = if buffer.is_empty() {
                    COMMIT_FRAME_BYTES
                } else {
                    0
                };
                let room_needed = frame_bytes + (commit_bytes + END_FRAME_BYTES) as u64;
                if app.len + buffer.len() as u64 + room_needed > self.segment_size_bytes {
                    self.flush(app, &buffer)?;
                    buffer.clear();
                    self.rotate(app)?;
                }
                if buffer.is_empty() {
                    open_write(app, &mut buffer);
                }
                let offset = app.len + buffer.len() as u64;
                let segment = app.segment;
                let (kind, flags) = (record.record_type, record.flags);
                write_frame(&mut buffer, segment, offset, kind, flags, &record.body);
                placed.push(RecordLocation { segment, offset });
                debug_assert!(
                    app.len + buffer.len() as u64 + END_FRAME_BYTES as u64
                        <= self.segment_size_bytes,
                    "a frame must fit its segment with room for the end record"
                );
            }
            locations.push(placed);
        }
        self.flush(app, &buffer)?;
        if self.sync == SyncMode::Always && group.iter().any(|p| p.durable) {
            app.sync_data()?;
        }
        app.buffer = buffer;
        Ok(locations)
    }

    /// Writes `bytes` at the end of the active segment and publishes the new length to readers.
    fn flush(&self, app: &mut Appender, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        app.file
            .append(bytes)
            .map_err(|e| Error::io(&app.path, e))?;
        app.len += bytes.len() as u64;
        let mut segments = write(&self.segments);
        if let Some(state) = segments.get_mut(&app.segment) {
            state.len = app.len;
        }
        Ok(())
    }

    /// Seals the active segment (synced in every mode, so only the last segment can be torn)
    /// and starts the next one.
    fn rotate(&self, app: &mut Appender) -> Result<()> {
        let next = next_segment_id(app.segment)?;
        let mut end = Vec::with_capacity(END_FRAME_BYTES);
        write_frame(
            &mut end,
            app.segment,
            app.len,
            RecordType::End,
            0,
            &next.to_le_bytes(),
        );
        self.flush(app, &end)?;
        app.sync_data()?;
        let (path, file) = create_segment(&*self.storage, &self.wal_dir, next)?;
        let state = SegmentState {
            path: path.clone(),
            len: SEGMENT_HEADER_BYTES as u64,
            view: None,
        };
        write(&self.segments).insert(next, state);
        let buffer = mem::take(&mut app.buffer);
        *app = Appender::synced(next, path, file, SEGMENT_HEADER_BYTES as u64);
        app.buffer = buffer;
        Ok(())
    }

    /// Fails if the log refuses appends (after a failed write or sync, or on close). A refused
    /// log may hold records its handle never indexed, so nothing may checkpoint or compact it
    /// until a reopen rebuilds the index from the log.
    pub fn check_writable(&self) -> Result<()> {
        match &lock(&self.queue).refusal {
            Some(refusal) => Err(refusal.to_error()),
            None => Ok(()),
        }
    }

    /// Seals the active segment and starts a new one now (compaction does this so that the
    /// segments it empties do not include the one being appended to).
    pub fn rotate_now(&self) -> Result<()> {
        // After a failed write the active segment may end in a partial frame: sealing it would
        // turn that torn tail into mid-log damage. A refused log must be reopened first.
        if let Some(refusal) = &lock(&self.queue).refusal {
            return Err(refusal.to_error());
        }
        let mut guard = lock(&self.appender);
        let app = guard.as_mut().ok_or(Error::ReadOnly)?;
        if app.len == SEGMENT_HEADER_BYTES as u64 {
            return Ok(());
        }
        // A half-created next segment may exist after a failure: no append may go on until a
        // reopen.
        self.rotate(app).map_err(|e| self.fail(e))
    }

    /// The end of the log: where the next record will start (read-only: the end of what was
    /// read).
    pub fn end(&self) -> RecordLocation {
        match lock(&self.appender).as_ref() {
            Some(app) => RecordLocation {
                segment: app.segment,
                offset: app.len,
            },
            None => read(&self.segments).iter().next_back().map_or(
                RecordLocation::START,
                |(&segment, state)| RecordLocation {
                    segment,
                    offset: state.len,
                },
            ),
        }
    }

    /// Id of the segment being appended to (read-only: the last segment read).
    pub fn active_segment(&self) -> u64 {
        self.end().segment
    }

    /// Deletes a sealed segment file and makes the deletion durable. Refuses the active one.
    pub fn delete_segment(&self, segment: u64) -> Result<()> {
        if segment >= self.active_segment() {
            return Err(Error::Internal(format!(
                "refusing to delete segment {segment}: it is not sealed"
            )));
        }
        let path = self.segment_path(segment);
        write(&self.segments).remove(&segment);
        self.storage
            .remove(&path)
            .and_then(|()| self.storage.sync_dir(&self.wal_dir))
            .map_err(|e| Error::io(&path, e))
    }

    /// Syncs the active segment if it has unsynced appends.
    pub fn sync(&self) -> Result<()> {
        let mut guard = lock(&self.appender);
        let Some(app) = guard.as_mut().filter(|app| app.unsynced()) else {
            return Ok(());
        };
        app.sync_data().map_err(|e| self.fail(e))
    }

    /// Syncs and refuses further appends.
    pub fn close(&self) -> Result<()> {
        self.refuse(Refusal::Closed);
        if let Some(thread) = lock(&self.sync_thread).take() {
            thread.stop();
        }
        self.sync()
    }

    /// A view of segment `segment` covering at least its first `end` bytes for a pass over much
    /// of the log (replay, scan, materialize, compaction): the kept view if there is one, else a
    /// mapping the log does not keep, released with the pass's last use of it, so that the
    /// resident set falls back after the pass. A read-only log maps and keeps it as
    /// [`Log::view`] does (its views keep deleted segments readable).
    pub fn view_for_pass(&self, segment: u64, end: u64) -> Result<ReadView> {
        if lock(&self.appender).is_none() {
            return self.view(segment, end);
        }
        let segments = read(&self.segments);
        let state = self.segment_state(&segments, segment)?;
        self.pass_view(state, end)
    }

    /// Every segment from `first` on with a view of its committed bytes for a pass, as
    /// [`Log::view_for_pass`] maps them: `(id, path, committed bytes, view)`. A writable log maps
    /// them all under one hold of the segment table, so that none of them can be deleted between
    /// being listed and being mapped (deletion takes the table first; a mapping outlives it).
    pub fn segments_for_pass(&self, first: u64) -> Vec<(u64, PathBuf, u64, Result<ReadView>)> {
        if lock(&self.appender).is_none() {
            let listed = self
                .segments()
                .into_iter()
                .filter(|(id, _, _)| *id >= first);
            return listed
                .map(|(id, path, len)| (id, path, len, self.view(id, len)))
                .collect();
        }
        let segments = read(&self.segments);
        segments
            .range(first..)
            .map(|(&id, state)| {
                (
                    id,
                    state.path.clone(),
                    state.len,
                    self.pass_view(state, state.len),
                )
            })
            .collect()
    }

    /// The kept view of `state` if it covers `end` bytes, else a mapping the log does not keep.
    fn pass_view(&self, state: &SegmentState, end: u64) -> Result<ReadView> {
        if let Some(view) = state.view.as_ref().filter(|v| v.len() as u64 >= end) {
            return Ok(view.clone());
        }
        if state.len < end {
            return Err(Error::corruption(
                &state.path,
                end,
                format!("read past the committed end {}", state.len),
            ));
        }
        self.storage
            .read_view(&state.path, state.len)
            .map_err(|e| Error::io(&state.path, e))
    }

    /// A view of segment `segment` covering at least its first `end` bytes.
    pub fn view(&self, segment: u64, end: u64) -> Result<ReadView> {
        {
            let segments = read(&self.segments);
            let state = self.segment_state(&segments, segment)?;
            if let Some(view) = state.view.as_ref().filter(|v| v.len() as u64 >= end) {
                return Ok(view.clone());
            }
        }
        let mut segments = write(&self.segments);
        let state = segments
            .get_mut(&segment)
            .ok_or_else(|| self.missing_segment(segment))?;
        // Another reader may have mapped it meanwhile; else map it, and keep it this time.
        let view = self.pass_view(state, end)?;
        state.view = Some(view.clone());
        Ok(view)
    }

    fn segment_state<'a>(
        &self,
        segments: &'a BTreeMap<u64, SegmentState>,
        segment: u64,
    ) -> Result<&'a SegmentState> {
        segments
            .get(&segment)
            .ok_or_else(|| self.missing_segment(segment))
    }

    /// A reader of the fragments of spanning batches in this log (DESIGN.md, section 3.6).
    pub fn fragments(&self) -> FragmentReader<'_> {
        FragmentReader::new(&*self.storage, &self.wal_dir)
    }

    /// Path of segment `segment`'s file.
    pub fn segment_path(&self, segment: u64) -> PathBuf {
        segment_path(&self.wal_dir, segment)
    }

    fn missing_segment(&self, segment: u64) -> Error {
        Error::corruption(
            self.segment_path(segment),
            0,
            "segment referenced by the index is missing",
        )
    }

    /// The committed length of segment `segment`, if it exists.
    pub fn segment_len(&self, segment: u64) -> Option<u64> {
        let segments = read(&self.segments);
        segments.get(&segment).map(|s| s.len)
    }

    /// The committed extent of every segment, in id order: `(id, path, bytes)`.
    pub fn segments(&self) -> Vec<(u64, PathBuf, u64)> {
        let segments = read(&self.segments);
        segments
            .iter()
            .map(|(&id, s)| (id, s.path.clone(), s.len))
            .collect()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // Best effort: an explicit close() reports sync errors; a drop cannot.
        let _ = self.sync();
    }
}

/// The id after `id` (ids come from file names: never overflow on them).
/// Removes what the scan found unfinished: deletes a last segment whose header is incomplete,
/// and truncates the torn tail.
fn drop_torn_tail(storage: &dyn Storage, wal_dir: &Path, scan: &LogScan) -> Result<()> {
    if let Some(incomplete) = &scan.incomplete_segment {
        storage
            .remove(&incomplete.file)
            .and_then(|()| storage.sync_dir(wal_dir))
            .map_err(|e| Error::io(&incomplete.file, e))?;
    }
    if let Some(torn) = &scan.torn {
        storage
            .truncate(&torn.file, torn.offset)
            .map_err(|e| Error::io(&torn.file, e))?;
    }
    Ok(())
}

fn open_appender(
    storage: &dyn Storage,
    wal_dir: &Path,
    segments: &mut BTreeMap<u64, SegmentState>,
    sealed_last: bool,
) -> Result<Appender> {
    // The last segment's bytes may still be unsynced from a handle whose sync failed before a
    // close (its end record included): make them durable before anything (a checkpoint, an
    // acknowledgement, a next segment) relies on them.
    if let Some(state) = segments.values().next_back() {
        let mut file = storage
            .open_append(&state.path)
            .map_err(|e| Error::io(&state.path, e))?;
        file.sync_data().map_err(|e| Error::io(&state.path, e))?;
        // A last segment that ends with its end record was sealed by a rotation that did not
        // get to create the next one: continue in a new segment.
        if !sealed_last {
            let id = segments.keys().next_back().copied().unwrap_or(1);
            return Ok(Appender::synced(id, state.path.clone(), file, state.len));
        }
    }
    let next_id = match segments.keys().next_back() {
        Some(&id) => next_segment_id(id)?,
        None => 1,
    };
    let id = next_id;
    let (path, file) = create_segment(storage, wal_dir, id)?;
    let len = SEGMENT_HEADER_BYTES as u64;
    segments.insert(
        id,
        SegmentState {
            path: path.clone(),
            len,
            view: None,
        },
    );
    Ok(Appender::synced(id, path, file, len))
}

/// Opens a write to the active segment in `buffer` (empty): its commit record, which says how
/// much of the segment was durable when the write was issued (DESIGN.md, section 3.4).
fn open_write(app: &Appender, buffer: &mut Vec<u8>) {
    debug_assert!(buffer.is_empty(), "a commit record opens a write");
    let durable_through = app.durable_len.to_le_bytes();
    let (segment, offset) = (app.segment, app.len);
    write_frame(
        buffer,
        segment,
        offset,
        RecordType::Commit,
        0,
        &durable_through,
    );
}
