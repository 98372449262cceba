//! RocksDB: default options plus LZ4 block compression (what a default build with snappy would
//! do, with the codec compiled here); one `WriteBatch` per batch written with `sync = true`
//! (fdatasync of the WAL); reads are a raw iterator seeking to the aggregate's prefix.

use std::hint::black_box;
use std::path::Path;

use anyhow::{Context, Result};
use rocksdb::{DBCompressionType, Options, WriteBatch, WriteOptions, DB};

use crate::measure::Store;
use crate::records::{aggregate_prefix, Record};

/// A RocksDB database (default column family).
pub struct RocksStore {
    db: DB,
}

impl Store for RocksStore {
    type Batch = WriteBatch;

    fn open(dir: &Path) -> Result<Self> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(DBCompressionType::Lz4);
        let db = DB::open(&options, dir).with_context(|| format!("opening {}", dir.display()))?;
        Ok(RocksStore { db })
    }

    fn prepare(&self, records: &[Record]) -> Result<WriteBatch> {
        let mut batch = WriteBatch::default();
        for record in records {
            batch.put(&record.key, record.json.as_bytes());
        }
        Ok(batch)
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.write_opt(batch, &options)?)
    }

    /// Seek to the aggregate's prefix, then step while keys carry it.
    fn read_aggregate(&self, aggregate: &str) -> Result<Option<u64>> {
        let prefix = aggregate_prefix(aggregate);
        let mut it = self.db.raw_iterator();
        it.seek(&prefix);
        let mut records = 0;
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if !key.starts_with(&prefix) {
                break;
            }
            black_box(value);
            records += 1;
            it.next();
        }
        it.status()?;
        Ok(Some(records))
    }

    fn close(self) -> Result<()> {
        drop(self.db);
        Ok(())
    }
}
