//! [`FollowerConfig`]: what a follower consumes, where it stores it, and how it groups messages.

use std::path::PathBuf;
use std::time::Duration;

use aggrelog::History;

use crate::error::{Error, Result};

/// The configuration of a [`Follower`](crate::Follower). Build it with [`FollowerConfig::new`]
/// and change the public fields as needed.
#[derive(Clone, Debug)]
pub struct FollowerConfig {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT...]`.
    pub brokers: String,
    /// The topic to follow.
    pub topic: String,
    /// The consumer group; the partitions of the topic are split between its members.
    pub group: String,
    /// The follower directory: one aggrelog database per partition in `DIR/<topic>.<partition>/`.
    pub db_dir: PathBuf,
    /// The dead-letter file (JSON Lines, appended); `None` means `DIR/dead-letters.jsonl`.
    pub dead_letter: Option<PathBuf>,
    /// A partition's pending messages are written as one batch when they reach this many.
    pub max_batch_messages: usize,
    /// ... or when their values reach this many bytes.
    pub max_batch_bytes: usize,
    /// Longest wait for the next message in one poll of the consumer.
    pub poll_interval: Duration,
    /// ... and pending messages older than this are written even if the batch is not full.
    pub flush_interval: Duration,
    /// How often the status callback of [`Follower::run`](crate::Follower::run) is called.
    pub status_interval: Duration,
    /// How often the follower checks that every partition it does not hold is followed by
    /// another member (`stall_watch`): a partition with lag whose group offset has not moved for
    /// two intervals makes it join the group again. Zero turns the check off.
    pub stall_check_interval: Duration,
    /// Extra librdkafka consumer properties (`("session.timeout.ms", "6000")`...), set after the
    /// follower's own; `group.id`, `enable.auto.commit` and `bootstrap.servers` are the
    /// follower's and must not be overridden.
    pub client_properties: Vec<(String, String)>,
    /// What compaction of the partition databases keeps unfolded: a batch (one message, named
    /// `topic/partition/offset`) can be retracted while its deltas are (`aggrelog retract`).
    pub history: History,
}

impl FollowerConfig {
    /// A configuration with the defaults: batches of at most 10 000 messages or 4 MiB of values,
    /// written at least every 200 ms, a poll wait of 100 ms, status every second, a stall check
    /// every 10 seconds.
    pub fn new(
        brokers: impl Into<String>,
        topic: impl Into<String>,
        group: impl Into<String>,
        db_dir: impl Into<PathBuf>,
    ) -> Self {
        FollowerConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            group: group.into(),
            db_dir: db_dir.into(),
            dead_letter: None,
            max_batch_messages: 10_000,
            max_batch_bytes: 4 << 20,
            poll_interval: Duration::from_millis(100),
            flush_interval: Duration::from_millis(200),
            status_interval: Duration::from_secs(1),
            stall_check_interval: Duration::from_secs(10),
            client_properties: Vec::new(),
            history: History::None,
        }
    }

    /// The dead-letter file in force.
    pub fn dead_letter_path(&self) -> PathBuf {
        (self.dead_letter.clone()).unwrap_or_else(|| self.db_dir.join("dead-letters.jsonl"))
    }

    /// Checks what cannot work.
    pub(crate) fn validate(&self) -> Result<()> {
        let problem = if self.brokers.trim().is_empty() {
            Some("no brokers given")
        } else if self.topic.is_empty() || self.topic.len() > 249 {
            Some("a topic takes 1 to 249 bytes")
        } else if self.group.is_empty() {
            Some("the group must not be empty")
        } else if self.max_batch_messages == 0 || self.max_batch_bytes == 0 {
            Some("a batch must hold at least one message and one byte")
        } else if self.poll_interval.is_zero() || self.status_interval.is_zero() {
            Some("the poll and status intervals must be above zero")
        } else {
            None
        };
        match problem {
            Some(reason) => Err(Error::Config(reason.into())),
            None => Ok(()),
        }
    }
}
