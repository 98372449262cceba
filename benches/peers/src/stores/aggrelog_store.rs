//! aggrelog: one `Db::write` per batch (`SyncMode::Always`), background compaction and
//! automatic checkpoints off (as `aggrelog bench`), so every read folds every delta and the first
//! open replays the whole log.

use std::hint::black_box;
use std::path::Path;

use aggrelog::jsonl::parse_line;
use aggrelog::{Batch, Db, Options, RecordLocation, SyncMode};
use anyhow::{anyhow, Context, Result};

use crate::measure::Store;
use crate::records::Record;

/// An aggrelog database.
pub struct AggrelogStore {
    db: Db,
}

impl Store for AggrelogStore {
    type Batch = Batch;

    fn open(dir: &Path) -> Result<Self> {
        let options = Options::default()
            .sync(SyncMode::Always)
            .background_compaction(false)
            .checkpoint_every_bytes(0);
        let db = Db::open(dir, options).with_context(|| format!("opening {}", dir.display()))?;
        Ok(AggrelogStore { db })
    }

    /// Parses each JSON line back into a patch or delete (the engine stores its binary form).
    fn prepare(&self, records: &[Record]) -> Result<Batch> {
        let mut batch = Batch::new();
        for record in records {
            let delta = parse_line(&record.json).map_err(|e| anyhow!("{e}: {}", record.json))?;
            match &delta.patch {
                Some(patch) => batch.patch(&delta.aggregate, delta.seq, patch)?,
                None => batch.delete(&delta.aggregate, delta.seq)?,
            };
        }
        Ok(batch)
    }

    fn commit(&mut self, batch: Batch) -> Result<()> {
        self.db.write(&batch)?;
        Ok(())
    }

    /// `db.get`: the aggregate's state folded from all its deltas.
    fn read_aggregate(&self, aggregate: &str) -> Result<Option<u64>> {
        black_box(self.db.get(aggregate)?);
        Ok(None)
    }

    /// `db.replay` from the start, batch by batch (deltas borrowed from the log): every delta
    /// in log order, every frame CRC checked.
    fn log_scan(&self) -> Result<Option<u64>> {
        let mut records = 0;
        let mut replay = self.db.replay(RecordLocation::START);
        while let Some(batch) = replay.next_batch() {
            for delta in batch?.deltas() {
                black_box(delta?);
                records += 1;
            }
        }
        Ok(Some(records))
    }

    fn close(self) -> Result<()> {
        Ok(self.db.close()?)
    }
}
