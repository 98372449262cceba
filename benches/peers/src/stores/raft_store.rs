//! raft-engine: each aggregate is a raft group (id = aggregate number + 1) whose entries are its
//! records, appended in arrival order with consecutive indexes; an entry's `term` holds the
//! record's seq and its `data` the JSON. One `LogBatch` per batch written with `sync = true`.
//! Default config (batches over 8 KiB are LZ4-compressed). Reading an aggregate fetches all its
//! entries and sorts them by seq (stable, so records of one batch keep their position order):
//! late batches were appended after later ones.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

use anyhow::{Context, Result};
use raft_engine::{Config, Engine, LogBatch, MessageExt};
use raft_proto::eraftpb::Entry;

use crate::measure::Store;
use crate::records::{aggregate_number, Record};

/// Tells raft-engine how to read an entry's index.
#[derive(Clone)]
struct Entries;

impl MessageExt for Entries {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

/// A raft-engine instance.
pub struct RaftStore {
    engine: Engine,
}

/// The raft group of an aggregate (group ids start at 1).
fn group(aggregate: &str) -> Result<u64> {
    Ok(aggregate_number(aggregate)? + 1)
}

impl Store for RaftStore {
    type Batch = LogBatch;

    fn open(dir: &Path) -> Result<Self> {
        let config = Config {
            dir: dir.to_string_lossy().into_owned(),
            ..Config::default()
        };
        let engine = Engine::open(config).with_context(|| format!("opening {}", dir.display()))?;
        Ok(RaftStore { engine })
    }

    /// Groups the records by raft group and numbers them after each group's last index.
    fn prepare(&self, records: &[Record]) -> Result<LogBatch> {
        let mut groups: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        for record in records {
            let id = group(&record.aggregate)?;
            let entries = groups.entry(id).or_default();
            let last = entries
                .last()
                .map(|e| e.index)
                .or_else(|| self.engine.last_index(id))
                .unwrap_or(0);
            entries.push(Entry {
                index: last + 1,
                term: record.seq,
                data: record.json.as_bytes().to_vec().into(),
                ..Entry::default()
            });
        }
        let mut batch = LogBatch::with_capacity(groups.len());
        for (id, entries) in &groups {
            batch.add_entries::<Entries>(*id, entries)?;
        }
        Ok(batch)
    }

    fn commit(&mut self, mut batch: LogBatch) -> Result<()> {
        self.engine.write(&mut batch, true)?;
        Ok(())
    }

    /// Every entry of the aggregate's group, sorted by seq.
    fn read_aggregate(&self, aggregate: &str) -> Result<Option<u64>> {
        let id = group(aggregate)?;
        let (Some(first), Some(last)) = (self.engine.first_index(id), self.engine.last_index(id))
        else {
            return Ok(Some(0));
        };
        let mut entries = Vec::with_capacity((last + 1 - first) as usize);
        self.engine
            .fetch_entries_to::<Entries>(id, first, last + 1, None, &mut entries)?;
        entries.sort_by_key(|e| e.term);
        black_box(&entries);
        Ok(Some(entries.len() as u64))
    }

    fn close(self) -> Result<()> {
        self.engine.sync()?;
        Ok(())
    }
}
