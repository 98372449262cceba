//! The consumer's context: the partitions the follower holds ([`Shared`]), the rebalance
//! callback that opens a partition's database and seeks to the position it stores, the broker's
//! high watermarks from librdkafka's statistics, and its errors sent to the log.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aggrelog::History;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use serde_json::Value;

use crate::config::FollowerConfig;
use crate::dead_letter::DeadLetterFile;
use crate::error::{Error, Result};
use crate::partition::PartitionStore;
use crate::status::PartitionStatus;

/// The partitions the follower holds and what it has applied, shared by the run loop and the
/// rebalance callback (which runs inside the consumer's poll, on the run loop's thread).
pub(crate) struct Shared {
    topic: String,
    dir: PathBuf,
    history: History,
    stores: BTreeMap<u32, PartitionStore>,
    dead: DeadLetterFile,
    /// A local failure met in the rebalance callback, for the run loop to return.
    failure: Option<Error>,
    /// Deltas applied since start.
    deltas: u64,
    /// Positions written and not yet committed to the group.
    commits: BTreeMap<u32, u64>,
}

impl Shared {
    /// Nothing held yet.
    pub fn new(config: &FollowerConfig) -> Self {
        Shared {
            topic: config.topic.clone(),
            dir: config.db_dir.clone(),
            history: config.history,
            stores: BTreeMap::new(),
            dead: DeadLetterFile::new(config.dead_letter_path()),
            failure: None,
            deltas: 0,
            commits: BTreeMap::new(),
        }
    }

    /// Takes partitions: opens each one's database (unless held already) and returns where to
    /// read it from: its stored position, or `None` for the beginning.
    fn assign(&mut self, partitions: &[u32]) -> Result<Vec<(u32, Option<u64>)>> {
        let mut starts = Vec::new();
        for &partition in partitions {
            if !self.stores.contains_key(&partition) {
                let store = PartitionStore::open(&self.dir, &self.topic, partition, self.history)?;
                self.stores.insert(partition, store);
            }
            if let Some(store) = self.stores.get(&partition) {
                log::info!(
                    "partition {partition} assigned, reading from {}",
                    store
                        .start_offset()
                        .map_or("the beginning".to_owned(), |o| format!("offset {o}"))
                );
                starts.push((partition, store.start_offset()));
            }
        }
        Ok(starts)
    }

    /// Gives partitions up: writes what was read from them and closes their databases.
    fn revoke(&mut self, partitions: &[u32]) -> Result<()> {
        for partition in partitions {
            self.flush(*partition)?;
            if let Some(store) = self.stores.remove(partition) {
                store.close()?;
                log::info!("partition {partition} revoked");
            }
        }
        Ok(())
    }

    /// Takes a message read from `partition`; returns whether it was new (not read before).
    pub fn receive(
        &mut self,
        partition: u32,
        offset: u64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> bool {
        match self.stores.get_mut(&partition) {
            Some(store) => store.receive(offset, key, value),
            None => false,
        }
    }

    /// Writes the pending messages of every partition whose batch is due (`all`: of every
    /// partition).
    pub fn flush_due(&mut self, config: &FollowerConfig, all: bool) -> Result<()> {
        let due: Vec<u32> = (self.stores.iter())
            .filter(|(_, s)| {
                s.has_pending()
                    && (all
                        || s.is_due(
                            config.max_batch_messages,
                            config.max_batch_bytes,
                            config.flush_interval,
                        ))
            })
            .map(|(p, _)| *p)
            .collect();
        for partition in due {
            self.flush(partition)?;
        }
        Ok(())
    }

    fn flush(&mut self, partition: u32) -> Result<()> {
        let Some(store) = self.stores.get_mut(&partition) else {
            return Ok(());
        };
        if !store.has_pending() {
            return Ok(());
        }
        let flushed = store.flush(&mut self.dead)?;
        self.deltas += flushed.deltas;
        self.commits.insert(partition, flushed.next_offset);
        Ok(())
    }

    /// The positions written since the last call, as a list to commit to the group.
    pub fn take_commits(&mut self) -> Option<TopicPartitionList> {
        if self.commits.is_empty() {
            return None;
        }
        let mut list = TopicPartitionList::new();
        for (partition, offset) in std::mem::take(&mut self.commits) {
            let offset = Offset::Offset(i64::try_from(offset).unwrap_or(i64::MAX));
            // Only an offset outside the i64 range fails here; the commit is for lag tools only.
            let _ = list.add_partition_offset(&self.topic, partition as i32, offset);
        }
        Some(list)
    }

    /// The failure the rebalance callback met, if any.
    pub fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    /// Deltas applied since start.
    pub fn deltas(&self) -> u64 {
        self.deltas
    }

    /// Each held partition's status, given the high watermarks known.
    pub fn partitions(&self, watermarks: &HashMap<u32, u64>) -> Vec<PartitionStatus> {
        (self.stores.iter())
            .map(|(&p, s)| {
                PartitionStatus::new(
                    p,
                    s.next_offset(),
                    watermarks.get(&p).copied(),
                    s.dead_letters(),
                )
            })
            .collect()
    }

    /// Closes every database (after the last flush).
    pub fn close_all(&mut self) -> Result<()> {
        for (_, store) in std::mem::take(&mut self.stores) {
            store.close()?;
        }
        Ok(())
    }
}

/// The consumer context of a follower.
pub(crate) struct FollowerContext {
    topic: String,
    shared: Mutex<Shared>,
    watermarks: Mutex<HashMap<u32, u64>>,
    last_error: Mutex<Option<(String, Instant)>>,
}

/// How long the same client error stays out of the log after it was logged.
const ERROR_QUIET: Duration = Duration::from_secs(30);

impl FollowerContext {
    /// The context of a follower with `config`.
    pub fn new(config: &FollowerConfig) -> Self {
        FollowerContext {
            topic: config.topic.clone(),
            shared: Mutex::new(Shared::new(config)),
            watermarks: Mutex::default(),
            last_error: Mutex::default(),
        }
    }

    /// The shared partition state (never held across a poll of the consumer).
    pub fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The high watermarks last reported, by partition.
    pub fn watermarks(&self) -> HashMap<u32, u64> {
        self.watermarks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Logs a client error at warn level, but the same one at most every [`ERROR_QUIET`].
    pub fn warn_throttled(&self, text: String) {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let repeated = last
            .as_ref()
            .is_some_and(|(t, at)| *t == text && at.elapsed() < ERROR_QUIET);
        if repeated {
            log::debug!("{text}");
        } else {
            log::warn!("{text} (retrying)");
            *last = Some((text, Instant::now()));
        }
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, offered: &TopicPartitionList) {
        let partitions = self.partitions_of(offered);
        let starts = match self.shared().assign(&partitions) {
            Ok(starts) => starts,
            Err(e) => return self.fail(e),
        };
        let mut list = TopicPartitionList::new();
        for (partition, start) in starts {
            // Offset 0, not Offset::Beginning: tansu was seen never to start fetching an empty
            // partition assigned at the beginning. Past retention, offset 0 is out of range and
            // auto.offset.reset=earliest takes the first offset kept.
            let offset = Offset::Offset(start.unwrap_or(0) as i64);
            if let Err(e) = list.add_partition_offset(&self.topic, partition as i32, offset) {
                return self.fail(e.into());
            }
        }
        let assigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(&list),
            _ => consumer.assign(&list),
        };
        if let Err(e) = assigned {
            self.fail(e.into());
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, revoked: &TopicPartitionList) {
        let partitions = self.partitions_of(revoked);
        let mut shared = self.shared();
        if let Err(e) = shared.revoke(&partitions) {
            shared.failure = Some(e);
        }
        if let Some(commits) = shared.take_commits() {
            if let Err(e) = consumer.commit(&commits, CommitMode::Async) {
                log::debug!("committing the group offsets failed: {e}");
            }
        }
        drop(shared);
        let unassigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(revoked),
            _ => consumer.unassign(),
        };
        if let Err(e) = unassigned {
            log::warn!("giving partitions up failed: {e}");
        }
    }

    fn partitions_of(&self, list: &TopicPartitionList) -> Vec<u32> {
        (list.elements_for_topic(&self.topic).iter())
            .filter_map(|e| u32::try_from(e.partition()).ok())
            .collect()
    }

    fn fail(&self, error: Error) {
        log::error!("{error}");
        self.shared().failure = Some(error);
    }
}

impl ClientContext for FollowerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log::debug!("librdkafka {level:?} {facility}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.warn_throttled(format!("kafka: {error}: {reason}"));
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(statistics) else {
            return;
        };
        let Some(partitions) = value.pointer(&format!("/topics/{}/partitions", self.topic)) else {
            return;
        };
        let Some(partitions) = partitions.as_object() else {
            return;
        };
        let mut watermarks = self
            .watermarks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (partition, fields) in partitions {
            let high = fields.get("hi_offset").and_then(Value::as_i64);
            if let (Ok(partition), Some(Ok(high))) =
                (partition.parse::<u32>(), high.map(u64::try_from))
            {
                watermarks.insert(partition, high);
            }
        }
    }
}

impl ConsumerContext for FollowerContext {
    /// Opens an assigned partition's database and assigns it at the position the database
    /// stores (never at the group's committed offset); writes and closes a revoked one first.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, list),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer, list),
            other => {
                log::warn!("rebalance failed: {other:?}; giving every partition up");
                self.on_revoke(consumer, list);
            }
        }
    }
}
