//! sled: default tree; one `Batch` per batch applied atomically, then `flush` (fsync); reads are
//! prefix scans.

use std::hint::black_box;
use std::path::Path;

use anyhow::{Context, Result};

use crate::measure::Store;
use crate::records::{aggregate_prefix, Record};

/// A sled database.
pub struct SledStore {
    db: sled::Db,
}

impl Store for SledStore {
    type Batch = sled::Batch;

    fn open(dir: &Path) -> Result<Self> {
        let db = sled::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        Ok(SledStore { db })
    }

    fn prepare(&self, records: &[Record]) -> Result<sled::Batch> {
        let mut batch = sled::Batch::default();
        for record in records {
            batch.insert(record.key.as_slice(), record.json.as_bytes());
        }
        Ok(batch)
    }

    fn commit(&mut self, batch: sled::Batch) -> Result<()> {
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn read_aggregate(&self, aggregate: &str) -> Result<Option<u64>> {
        let mut records = 0;
        for item in self.db.scan_prefix(aggregate_prefix(aggregate)) {
            let (_key, value) = item?;
            black_box(value);
            records += 1;
        }
        Ok(Some(records))
    }

    fn close(self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
