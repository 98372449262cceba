//! fjall: one keyspace; one `WriteBatch` per batch committed with `PersistMode::SyncData`
//! (fdatasync of the journal); reads are prefix iterations. Default options (LZ4 blocks).

use std::hint::black_box;
use std::path::Path;

use anyhow::{Context, Result};
use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as WriteBatch, PersistMode,
};

use crate::measure::Store;
use crate::records::{aggregate_prefix, Record};

/// A fjall database with one keyspace.
pub struct FjallStore {
    db: Database,
    records: Keyspace,
}

impl Store for FjallStore {
    type Batch = WriteBatch;

    fn open(dir: &Path) -> Result<Self> {
        let db = Database::builder(dir)
            .open()
            .with_context(|| format!("opening {}", dir.display()))?;
        let records = db.keyspace("records", KeyspaceCreateOptions::default)?;
        Ok(FjallStore { db, records })
    }

    fn prepare(&self, records: &[Record]) -> Result<WriteBatch> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for record in records {
            batch.insert(&self.records, record.key.as_slice(), record.json.as_bytes());
        }
        Ok(batch)
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<()> {
        Ok(batch.commit()?)
    }

    /// A prefix iteration over the aggregate's keys.
    fn read_aggregate(&self, aggregate: &str) -> Result<Option<u64>> {
        let mut records = 0;
        for item in self.records.prefix(aggregate_prefix(aggregate)) {
            black_box(item.into_inner()?);
            records += 1;
        }
        Ok(Some(records))
    }

    fn close(self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }
}
