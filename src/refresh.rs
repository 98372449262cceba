//! [`Db::refresh`](crate::Db::refresh): a read-only handle catches up with what the writer
//! appended since it opened or last refreshed (DESIGN.md, section 6b). The records are applied
//! to the index by the rules of recovery, in log order: batches inserted, state records
//! installed (superseding what they fold), seals raised.

use std::collections::BTreeSet;
use std::sync::RwLockWriteGuard;

use crate::engine::{Counters, Engine};
use crate::error::{Error, Result};
use crate::index::{DeltaRef, Index, StateRef};
use crate::index_builder::{apply_record, IndexSink};
use crate::model::Model;
use crate::retry::retrying_vanished;
use crate::wal::recovery::LogRecord;
use crate::wal::BatchRecord;

/// The live index of a reader, locked per record so that its own reads go on, and for the
/// whole of a spanning batch so that they see all of it or none.
struct LiveIndex<'e, M: Model> {
    engine: &'e Engine<M>,
    /// Held from the first fragment of a spanning batch to its last.
    spanning: Option<RwLockWriteGuard<'e, Index>>,
}

impl<M: Model> IndexSink for LiveIndex<'_, M> {
    fn named_batch(&mut self, batch: &BatchRecord<'_>) {
        self.engine.note_named_batch(batch);
    }

    fn deltas<'a>(&mut self, deltas: impl Iterator<Item = (&'a str, DeltaRef)>) {
        match &mut self.spanning {
            Some(index) => index.insert_all(deltas),
            None => self.engine.index_write().insert_all(deltas),
        }
    }

    fn state(&mut self, aggregate: &str, state: StateRef) {
        self.engine.index_write().install_state(aggregate, state);
    }

    fn begin_spanning(&mut self) {
        self.spanning = Some(self.engine.index_write());
    }

    fn end_spanning(&mut self) {
        self.spanning = None;
    }
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
        // A repeated attempt re-reads records already applied, which the index recognises by
        // their place and does not count twice.
        let sources = self.sources();
        let retractions = self.retractions().clone();
        let copied_at = retractions.epoch();
        let references = self.declared_references();
        let fresh = || Counters {
            sources: sources.clone(),
            retractions: retractions.clone(),
            references: references.clone(),
            ..Counters::default()
        };
        // Each attempt starts from the handle's state (`fresh`), the first one included.
        let mut read = Counters::default();
        let scan = retrying_vanished(|| {
            read = fresh();
            let mut live = LiveIndex {
                engine: self,
                spanning: None,
            };
            let mut apply = |record: &LogRecord<'_>| apply_record(record, &mut live, &mut read);
            self.log().refresh(self.options().recovery, &mut apply)
        })?;
        self.note_records(scan.batches, read.max_seq, read.seal);
        self.set_sources(read.sources);
        // Names the tail turned retracted are placed in the copy before it is installed, so a
        // reader sees such a batch whole or not at all, never partly left out.
        let mut retractions = read.retractions;
        self.place_unplaced_in(&mut retractions)?;
        self.retractions_mut().replace_with(retractions, copied_at);
        self.declare_references(&Vec::from_iter(read.references));
        self.forget_deleted_segments()?;
        Ok(scan.batches)
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
