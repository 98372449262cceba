//! [`Scan`]: every live aggregate with its state, in id order, a partition at a time.

use std::collections::VecDeque;

use crate::engine::{AggregateState, Engine};
use crate::error::Result;
use crate::fold::{take_partition, FoldBuffers, FoldSet};
use crate::model::Model;
use crate::wal::reader::{DeltaReader, PassViews};

/// Iterator over live aggregates returned by [`Db::scan`](crate::Db::scan).
///
/// It folds the aggregates a *partition* at a time (the next ids in order, up to
/// `fold::PARTITION_BYTES` of unfolded deltas), reading each partition's deltas in log
/// order, so a compressed batch is decompressed once per partition; it then yields them one by
/// one.
///
/// Its partitions read through one set of segment views (`PassViews`): each segment is mapped
/// once for the whole scan, and stays mapped until the scan is dropped, as an iterator over
/// LSM files pins them. A segment that compaction deletes meanwhile keeps its disk space until
/// then.
pub struct Scan<'db, M: Model> {
    engine: &'db Engine<M>,
    views: PassViews,
    buffers: FoldBuffers,
    after: Option<String>,
    ready: VecDeque<(String, AggregateState<M::Output>)>,
    done: bool,
}

impl<M: Model> Scan<'_, M> {
    /// Folds the next partition into `ready`; false when no aggregate is left.
    fn fold_next_partition(&mut self) -> Result<bool> {
        let _reading = self.engine.reading();
        let members = {
            let index = self.engine.index_read();
            let chains = index.iter_after(self.after.as_deref());
            take_partition(chains, &self.engine.retractions())
        };
        let Some((last, _)) = members.last() else {
            return Ok(false);
        };
        self.after = Some(last.clone());
        let mut set = FoldSet::<M>::new(members);
        let mut reader = DeltaReader::in_pass(self.engine.log(), &self.views);
        set.fold(self.engine, |_| true, &mut reader, &mut self.buffers)?;
        self.ready.extend(set.outputs(self.engine.model()));
        Ok(true)
    }
}

impl<M: Model> Iterator for Scan<'_, M> {
    type Item = Result<(String, AggregateState<M::Output>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.fold_next_partition() {
                Ok(true) => continue,
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<'db, M: Model> Scan<'db, M> {
    /// A scan from the first aggregate.
    pub(crate) fn new(engine: &'db Engine<M>) -> Self {
        Scan {
            engine,
            views: PassViews::default(),
            buffers: FoldBuffers::default(),
            after: None,
            ready: VecDeque::new(),
            done: false,
        }
    }
}
