//! [`Follower`]: the run loop. It polls the consumer, hands each message to its partition's
//! store, writes the batches that are due, commits the written positions to the group (for lag
//! tools only), reports its status, and on stop writes what it has read and returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::Message;

use crate::config::FollowerConfig;
use crate::context::FollowerContext;
use crate::error::Result;
use crate::layout;
use crate::stall_watch::StallWatch;
use crate::status::{Status, Ticker};

/// Sets a follower's stop flag from anywhere (a signal handler, another thread): the run loop
/// then writes what it has read and returns.
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the follower to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for APIs that set an `Arc<AtomicBool>` (such as signal-hook's).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

/// Follows a topic into one aggrelog database per assigned partition (see the crate docs).
pub struct Follower {
    config: FollowerConfig,
    consumer: BaseConsumer<FollowerContext>,
    stop: StopHandle,
}

/// Longest pause between polls after the client reported an error.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Follower {
    /// Prepares the follower directory (writes its marker) and subscribes to the topic. No
    /// broker needs to be up yet.
    pub fn new(config: FollowerConfig) -> Result<Self> {
        config.validate()?;
        layout::prepare(&config.db_dir, &config.topic, &config.group)?;
        let consumer: BaseConsumer<FollowerContext> =
            client_config(&config).create_with_context(FollowerContext::new(&config))?;
        consumer.subscribe(&[&config.topic])?;
        Ok(Follower {
            config,
            consumer,
            stop: StopHandle::default(),
        })
    }

    /// The handle that stops [`Follower::run`].
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Follows until the stop flag is set, then writes what it has read, closes the databases
    /// and returns the last status. `on_status` is called every status interval. Broker
    /// outages are waited out; only a local failure (a database or the dead-letter file)
    /// returns an error, after which no message is lost either: the next run reads again from
    /// the stored positions.
    pub fn run(self, mut on_status: impl FnMut(&Status)) -> Result<Status> {
        let mut ticker = Ticker::new(self.config.status_interval);
        let mut stall_watch = StallWatch::new(self.config.stall_check_interval);
        let mut backoff = Duration::ZERO;
        while !self.stop.is_stopped() {
            backoff = self.poll_once(backoff);
            self.write_due(false)?;
            if ticker.is_due() {
                on_status(&self.status(&mut ticker));
            }
            let watching = !self.config.stall_check_interval.is_zero();
            if watching && stall_watch.finds_stall(&self.consumer, &self.config.topic) {
                self.rejoin()?;
            }
        }
        self.write_due(true)?;
        let status = self.status(&mut ticker);
        on_status(&status);
        self.context().shared().close_all()?;
        self.consumer.unsubscribe();
        Ok(status)
    }

    /// Polls one message and takes it; returns the pause to make before the next poll after
    /// an error (doubling up to [`MAX_BACKOFF`]), zero after success.
    fn poll_once(&self, backoff: Duration) -> Duration {
        match self.consumer.poll(self.config.poll_interval) {
            Some(Ok(message)) => {
                if let (Ok(partition), Ok(offset)) = (
                    u32::try_from(message.partition()),
                    u64::try_from(message.offset()),
                ) {
                    (self.context().shared()).receive(
                        partition,
                        offset,
                        message.key(),
                        message.payload(),
                    );
                }
                Duration::ZERO
            }
            Some(Err(e)) => {
                self.context().warn_throttled(format!("kafka: {e}"));
                let pause = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                thread::sleep(pause);
                pause
            }
            None => backoff,
        }
    }

    /// Writes the due batches (`all`: every pending message) and commits their positions to
    /// the group; returns a failure the rebalance callback met.
    fn write_due(&self, all: bool) -> Result<()> {
        let mut shared = self.context().shared();
        if let Some(failure) = shared.take_failure() {
            return Err(failure);
        }
        shared.flush_due(&self.config, all)?;
        if let Some(commits) = shared.take_commits() {
            let mode = if all {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            if let Err(e) = self.consumer.commit(&commits, mode) {
                log::debug!("committing the group offsets failed: {e}");
            }
        }
        Ok(())
    }

    /// Leaves the group and joins it again (the revocation writes what was read), so that the
    /// coordinator forms a new generation.
    fn rejoin(&self) -> Result<()> {
        self.consumer.unsubscribe();
        self.consumer.subscribe(&[&self.config.topic])?;
        Ok(())
    }

    fn status(&self, ticker: &mut Ticker) -> Status {
        let watermarks = self.context().watermarks();
        let shared = self.context().shared();
        let deltas = shared.deltas();
        Status {
            deltas,
            deltas_per_s: ticker.rate(deltas),
            partitions: shared.partitions(&watermarks),
        }
    }

    fn context(&self) -> &FollowerContext {
        self.consumer.context()
    }
}

/// The consumer's configuration: no automatic commits or offset store (the positions live in
/// the databases), the beginning when no position is known, quick reconnects, statistics for
/// the high watermarks, then the user's properties.
fn client_config(config: &FollowerConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    let stats_ms = config
        .status_interval
        .as_millis()
        .clamp(100, 60_000)
        .to_string();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("statistics.interval.ms", &stats_ms);
    for (key, value) in &config.client_properties {
        client.set(key, value);
    }
    client
}
