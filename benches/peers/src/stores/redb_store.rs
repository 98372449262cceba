//! redb: one table of byte keys and values; one write transaction per batch with the default
//! `Durability::Immediate` (fsync on commit); each read opens a read transaction and iterates
//! the aggregate's key range.

use std::hint::black_box;
use std::path::Path;

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::measure::Store;
use crate::records::{aggregate_prefix, Record};

/// The one table.
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");

/// A redb database file inside the engine's directory.
pub struct RedbStore {
    db: Database,
}

impl Store for RedbStore {
    /// redb has no batch object: the records are inserted inside the (timed) transaction.
    type Batch = Vec<(Vec<u8>, Vec<u8>)>;

    fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("records.redb");
        let db = Database::create(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(RedbStore { db })
    }

    fn prepare(&self, records: &[Record]) -> Result<Self::Batch> {
        Ok(records
            .iter()
            .map(|r| (r.key.clone(), r.json.as_bytes().to_vec()))
            .collect())
    }

    fn commit(&mut self, batch: Self::Batch) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(RECORDS)?;
            for (key, value) in &batch {
                table.insert(key.as_slice(), value.as_slice())?;
            }
        }
        Ok(txn.commit()?)
    }

    /// A read transaction and a range over [prefix, prefix + 0xFF...).
    fn read_aggregate(&self, aggregate: &str) -> Result<Option<u64>> {
        let start = aggregate_prefix(aggregate);
        let mut end = start.clone();
        end.extend_from_slice(&[0xFF; 12]);
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECORDS)?;
        let mut records = 0;
        for item in table.range(start.as_slice()..=end.as_slice())? {
            let (_key, value) = item?;
            black_box(value.value());
            records += 1;
        }
        Ok(Some(records))
    }

    fn close(self) -> Result<()> {
        drop(self.db);
        Ok(())
    }
}
