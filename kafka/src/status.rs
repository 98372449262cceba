//! [`Status`]: what a running follower reports each status interval.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where a running follower stands, passed to the status callback of
/// [`Follower::run`](crate::Follower::run).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    /// Deltas applied (durably written) since the follower started.
    pub deltas: u64,
    /// Deltas applied per second over the last status interval.
    pub deltas_per_s: f64,
    /// The partitions assigned now, by partition.
    pub partitions: Vec<PartitionStatus>,
}

/// One assigned partition in a [`Status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionStatus {
    /// The partition.
    pub partition: u32,
    /// The position stored in its database: every message below it is applied.
    pub next_offset: u64,
    /// The partition's end offset as last reported by the broker, if known yet.
    pub high_watermark: Option<u64>,
    /// Messages not yet applied: `high_watermark - next_offset` (0 when ahead), if known.
    pub lag: Option<u64>,
    /// Dead letters below `next_offset`.
    pub dead_letters: u64,
}

impl PartitionStatus {
    /// The status of a partition at `next_offset` whose end is `high_watermark`.
    pub fn new(
        partition: u32,
        next_offset: u64,
        high_watermark: Option<u64>,
        dead_letters: u64,
    ) -> Self {
        PartitionStatus {
            partition,
            next_offset,
            high_watermark,
            lag: high_watermark.map(|end| end.saturating_sub(next_offset)),
            dead_letters,
        }
    }
}

impl Status {
    /// The status as one JSON object: `{"deltas":N,"deltas_per_s":X,"partitions":[{"partition":P,
    /// "next_offset":O,"high_watermark":H,"lag":L,"dead_letters":D}]}` (`H` and `L` null while
    /// unknown).
    pub fn to_json(&self) -> Value {
        let partitions: Vec<Value> = (self.partitions.iter())
            .map(|p| {
                json!({
                    "partition": p.partition,
                    "next_offset": p.next_offset,
                    "high_watermark": p.high_watermark,
                    "lag": p.lag,
                    "dead_letters": p.dead_letters,
                })
            })
            .collect();
        json!({
            "deltas": self.deltas,
            "deltas_per_s": (self.deltas_per_s * 10.0).round() / 10.0,
            "partitions": partitions,
        })
    }

    /// The total lag over the partitions whose lag is known.
    pub fn total_lag(&self) -> u64 {
        self.partitions.iter().filter_map(|p| p.lag).sum()
    }
}

/// Decides when the status is due and measures the rate between two reports.
#[derive(Debug)]
pub(crate) struct Ticker {
    interval: Duration,
    last: Instant,
    deltas_at_last: u64,
}

impl Ticker {
    /// A ticker reporting every `interval`.
    pub fn new(interval: Duration) -> Self {
        Ticker {
            interval,
            last: Instant::now(),
            deltas_at_last: 0,
        }
    }

    /// Whether a report is due.
    pub fn is_due(&self) -> bool {
        self.last.elapsed() >= self.interval
    }

    /// The rate since the last report, given `deltas` applied in all, and starts a new interval.
    pub fn rate(&mut self, deltas: u64) -> f64 {
        let seconds = self.last.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 {
            deltas.saturating_sub(self.deltas_at_last) as f64 / seconds
        } else {
            0.0
        };
        self.last = Instant::now();
        self.deltas_at_last = deltas;
        rate
    }
}
