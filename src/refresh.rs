//! [`Db::refresh`](crate::Db::refresh): a read-only handle catches up with what the writer
//! appended since it opened or last refreshed (DESIGN.md, section 6b). The records are applied
//! to the index by the rules of recovery, in log order: batches inserted, state records
//! installed (superseding what they fold), seals raised.

use std::collections::BTreeSet;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index_builder::{delta_refs, state_ref};
use crate::model::Model;
use crate::open::{is_vanished_file, retry_pause, READ_ONLY_ATTEMPTS};
use crate::wal::recovery::LogRecord;

/// What a refresh read.
#[derive(Default)]
struct Read {
    top_seq: u64,
    seal: u64,
}

impl<M: Model> Engine<M> {
    /// Reads and indexes what was appended since the last open or refresh; returns the batch
    /// records read.
    pub(crate) fn refresh(&self) -> Result<u64> {
        if !self.is_read_only() {
            return Err(Error::InvalidInput(
                "refresh is for a read-only handle; a writer sees every write already".into(),
            ));
        }
        // One refresh at a time.
        let _gate = self.gate_exclusive();
        let mut attempt = 1;
        let (scan, read) = loop {
            let mut read = Read::default();
            let mut apply = |record: &LogRecord<'_>| self.apply(record, &mut read);
            match self.log().refresh(self.options().recovery, &mut apply) {
                Ok(scan) => break (scan, read),
                // A repeated attempt re-reads records already applied, which the index
                // recognises by their place and does not count twice.
                Err(e) if attempt < READ_ONLY_ATTEMPTS && is_vanished_file(&e) => {
                    std::thread::sleep(retry_pause(attempt));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        self.count_refresh(scan.batches, read.top_seq, read.seal);
        self.forget_deleted_segments()?;
        Ok(scan.batches)
    }

    /// Applies one record read by a refresh.
    fn apply(&self, record: &LogRecord<'_>, read: &mut Read) {
        match record {
            LogRecord::Batch(batch) => {
                self.index_write().insert_all(delta_refs(batch));
                let top = batch.deltas.iter().map(|d| d.seq).max().unwrap_or(0);
                read.top_seq = read.top_seq.max(top);
            }
            LogRecord::State {
                location,
                frame_bytes,
                body,
            } => {
                let state = state_ref(*location, *frame_bytes, body);
                self.index_write().install_state(body.aggregate, state);
                read.top_seq = read.top_seq.max(body.max_seq);
            }
            LogRecord::Seal { seal } => read.seal = read.seal.max(*seal),
        }
    }

    /// Unmaps segments the writer deleted and the index no longer points into, waiting for the
    /// reads in progress (they hold the deletion lock shared).
    fn forget_deleted_segments(&self) -> Result<()> {
        let on_disk = self.log().segments_on_disk()?;
        let live: BTreeSet<u64> = (self.index_read().live_bytes().keys())
            .map(|&id| u64::from(id))
            .collect();
        let _no_readers = self.deleting();
        self.log().forget_deleted(&on_disk, &live);
        Ok(())
    }
}
