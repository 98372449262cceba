//! [`StallWatch`]: notices a partition that no member of the group follows.
//!
//! A broker's group coordinator hands the partitions of a member that died on to the others
//! once its session times out. tansu 0.6 was seen not to: when the next request that notices the
//! dead member is a heartbeat, it drops the member but keeps the generation and its assignment,
//! so the dead member's partitions stay assigned to no one until another member joins or
//! leaves. A follower in a 24/7 pipeline must not stall on that. So every check interval, the
//! follower looks at the partitions it does not hold: one with messages beyond the group's
//! committed offset, whose committed offset has not moved for two intervals, is followed by no
//! one (a live follower commits after every batch). The follower then leaves the group and joins
//! it again, which makes the coordinator form a new generation. That costs one rebalance, and
//! never correctness: every follower seeks to the positions its databases store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Longest wait for one metadata or offset request of a check.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the last checks saw of the partitions this follower does not hold.
pub(crate) struct StallWatch {
    interval: Duration,
    last_check: Instant,
    /// Per partition: the group's committed offset and since when it has not moved.
    committed: HashMap<u32, (i64, Instant)>,
}

impl StallWatch {
    /// A watch that checks every `interval`.
    pub fn new(interval: Duration) -> Self {
        StallWatch {
            interval,
            last_check: Instant::now(),
            committed: HashMap::new(),
        }
    }

    /// Whether a partition the follower does not hold has lag and a committed offset that has
    /// not moved for two intervals; checks at most once per interval. A request that fails
    /// (the broker is away) counts as no finding.
    pub fn finds_stall<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        topic: &str,
    ) -> bool {
        if self.last_check.elapsed() < self.interval {
            return false;
        }
        self.last_check = Instant::now();
        let Some(unheld) = unheld_partitions(consumer, topic) else {
            return false;
        };
        let Some(committed) = committed_offsets(consumer, topic, &unheld) else {
            return false;
        };
        let now = Instant::now();
        self.committed.retain(|p, _| unheld.contains(p));
        let mut stalled = false;
        for (partition, offset) in committed {
            let since = match self.committed.get(&partition) {
                Some(&(seen, since)) if seen == offset => since,
                _ => now,
            };
            self.committed.insert(partition, (offset, since));
            let still = now.duration_since(since) >= 2 * self.interval;
            if still && has_lag(consumer, topic, partition, offset) {
                log::warn!(
                    "partition {partition} has messages beyond the group's offset {offset}, which \
                     has not moved for {:.0} s: no member follows it; joining the group again",
                    now.duration_since(since).as_secs_f64()
                );
                stalled = true;
            }
        }
        if stalled {
            self.committed.clear();
        }
        stalled
    }
}

/// The topic's partitions that this consumer is not assigned.
fn unheld_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Option<Vec<u32>> {
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT).ok()?;
    let held = consumer.assignment().ok()?;
    let held: Vec<i32> = (held.elements_for_topic(topic).iter())
        .map(|e| e.partition())
        .collect();
    let all = metadata.topics().iter().find(|t| t.name() == topic)?;
    let unheld = (all.partitions().iter())
        .map(|p| p.id())
        .filter(|id| !held.contains(id))
        .filter_map(|id| u32::try_from(id).ok())
        .collect();
    Some(unheld)
}

/// The group's committed offsets of `partitions` (0 where none was committed).
fn committed_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[u32],
) -> Option<Vec<(u32, i64)>> {
    if partitions.is_empty() {
        return Some(Vec::new());
    }
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        list.add_partition(topic, p as i32);
    }
    let committed = consumer.committed_offsets(list, REQUEST_TIMEOUT).ok()?;
    let offsets = (committed.elements_for_topic(topic).iter())
        .filter_map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            Some((u32::try_from(e.partition()).ok()?, offset))
        })
        .collect();
    Some(offsets)
}

/// Whether the partition holds messages at or beyond `committed`.
fn has_lag<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: u32,
    committed: i64,
) -> bool {
    consumer
        .fetch_watermarks(topic, partition as i32, REQUEST_TIMEOUT)
        .is_ok_and(|(_, high)| high > committed)
}
