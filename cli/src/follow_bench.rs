//! `aggrelog follow-bench`: the follower's throughput from a broker against the broker's own
//! ceiling, in one run. It produces the mfg workload to a fresh topic (one message per aggregate
//! per upstream batch, keyed by the aggregate id), then reads it back twice from the start:
//! once with a plain consumer that only counts the messages (what the broker and client can
//! deliver), once with the follower into empty databases (which is how a partition is
//! restored). Each rate runs from the moment the partitions are assigned (the plain consumer
//! assigns them itself; the follower when the group gives them) to the last message read or
//! applied, so the group join is not counted. A second topic with one partition gives the restore rate of one
//! partition.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aggrelog::workload::{generate_raw, WorkloadSpec};
use aggrelog_kafka::rdkafka::config::ClientConfig;
use aggrelog_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use aggrelog_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use aggrelog_kafka::rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use aggrelog_kafka::rdkafka::Message;
use aggrelog_kafka::{create_topic, Follower, FollowerConfig};
use clap::Args;
use serde_json::json;

use crate::output::{emit, Failure};

/// The options of `aggrelog follow-bench`.
#[derive(Args, Debug)]
pub struct FollowBenchArgs {
    /// Bootstrap brokers of a running broker, HOST:PORT.
    #[arg(long)]
    brokers: String,
    /// Deltas of the mfg workload to produce.
    #[arg(long, default_value = "400000")]
    deltas: u64,
    /// Distinct aggregates.
    #[arg(long, default_value = "20000")]
    aggregates: u64,
    /// Partitions of the main topic.
    #[arg(long, default_value = "4")]
    partitions: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// What one read of a topic took: from its first message to its last.
#[derive(Clone, Copy, Debug)]
struct Read {
    messages: u64,
    bytes: u64,
    seconds: f64,
}

impl Read {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }

    fn per_s(&self, count: u64) -> f64 {
        count as f64 / self.seconds
    }
}

/// Longest wait for any one step (producing, reading a topic to its end).
const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// `follow-bench`: produces, reads back plainly, follows, restores one partition; prints the
/// figures.
pub fn run(args: &FollowBenchArgs) -> Result<(), Failure> {
    let secs = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
        .map_or(0, |d| d.as_secs());
    let stamp = format!("{}-{secs}", std::process::id());
    let (topic, single) = (format!("bench-{stamp}"), format!("bench-one-{stamp}"));
    let messages = workload_messages(args);
    let deltas: u64 = messages.iter().map(|(_, _, n)| n).sum();
    let started = Instant::now();
    produce(&args.brokers, &topic, args.partitions, &messages)?;
    let produce_s = started.elapsed().as_secs_f64();
    produce(&args.brokers, &single, 1, &messages)?;
    let plain = plain_read(&args.brokers, &topic, args.partitions)?;
    let tmp = tempfile::tempdir()?;
    // Both topics hold the same messages.
    let all = (topic.as_str(), args.partitions);
    let follow = follow_read(&args.brokers, all, plain.bytes, &tmp.path().join("all"))?;
    let one = (single.as_str(), 1);
    let restore = follow_read(&args.brokers, one, plain.bytes, &tmp.path().join("one"))?;
    let figures = json!({
        "messages": plain.messages,
        "deltas": deltas,
        "bytes": plain.bytes,
        "partitions": args.partitions,
        "produce_s": produce_s,
        "plain_consumer_mb_s": plain.mb_per_s(),
        "plain_consumer_messages_s": plain.per_s(plain.messages),
        "follow_mb_s": follow.mb_per_s(),
        "follow_deltas_s": follow.per_s(deltas),
        "follow_over_plain": follow.mb_per_s() / plain.mb_per_s(),
        "restore_one_partition_mb_s": restore.mb_per_s(),
        "restore_one_partition_deltas_s": restore.per_s(deltas),
    });
    if args.json {
        return emit(figures);
    }
    print_table(&figures);
    Ok(())
}

fn print_table(f: &serde_json::Value) {
    let num = |key: &str| f[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "{} deltas in {} messages ({:.1} MB) over {} partitions, produced in {:.1} s",
        f["deltas"],
        f["messages"],
        num("bytes") / 1e6,
        f["partitions"],
        num("produce_s")
    );
    println!(
        "plain consumer (the broker's ceiling): {:>7.1} MB/s {:>10.0} messages/s",
        num("plain_consumer_mb_s"),
        num("plain_consumer_messages_s")
    );
    println!(
        "aggrelog follow:                        {:>7.1} MB/s {:>10.0} deltas/s   ({:.2} of the plain consumer)",
        num("follow_mb_s"),
        num("follow_deltas_s"),
        num("follow_over_plain")
    );
    println!(
        "restore of one partition:               {:>7.1} MB/s {:>10.0} deltas/s",
        num("restore_one_partition_mb_s"),
        num("restore_one_partition_deltas_s")
    );
}

/// The workload as messages: per upstream batch, one message per aggregate holding its deltas
/// in batch order (`(key, value, deltas)`), so a delta's position in its message keeps their
/// order within the seq.
fn workload_messages(args: &FollowBenchArgs) -> Vec<(String, String, u64)> {
    let spec = WorkloadSpec {
        aggregates: args.aggregates,
        deltas: args.deltas,
        batch_size: 1000,
        seed: 42,
    };
    let mut messages = Vec::new();
    for batch in generate_raw(&spec) {
        let mut by_aggregate: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for (id, _, line) in batch {
            let (value, count) = by_aggregate.entry(id).or_default();
            if !value.is_empty() {
                value.push('\n');
            }
            value.push_str(&line);
            *count += 1;
        }
        messages.extend(by_aggregate.into_iter().map(|(k, (v, n))| (k, v, n)));
    }
    messages
}

fn produce(
    brokers: &str,
    topic: &str,
    partitions: u32,
    messages: &[(String, String, u64)],
) -> Result<(), Failure> {
    create_topic(brokers, topic, partitions, Duration::from_secs(30))?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create()
        .map_err(|e| Failure::new(format!("producer: {e}")))?;
    for (key, value, _) in messages {
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        while let Err((e, returned)) = producer.send(record) {
            if !matches!(
                e.rdkafka_error_code(),
                Some(aggrelog_kafka::rdkafka::types::RDKafkaErrorCode::QueueFull)
            ) {
                return Err(Failure::new(format!("producing to {topic}: {e}")));
            }
            record = returned;
            producer.poll(Duration::from_millis(10));
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(STEP_TIMEOUT)
        .map_err(|e| Failure::new(format!("producing to {topic}: {e}")))
}

/// Reads every partition of `topic` from offset 0 to its end with a plain consumer.
fn plain_read(brokers: &str, topic: &str, partitions: u32) -> Result<Read, Failure> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-plain"))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| Failure::new(format!("consumer: {e}")))?;
    let ends = end_offsets(&consumer, topic, partitions)?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p as i32, Offset::Offset(0))
            .map_err(|e| Failure::new(e.to_string()))?;
    }
    let assigned = Instant::now();
    consumer
        .assign(&list)
        .map_err(|e| Failure::new(e.to_string()))?;
    let mut next = vec![0i64; partitions as usize];
    let (mut messages, mut bytes) = (0u64, 0u64);
    let deadline = Instant::now() + STEP_TIMEOUT;
    while next.iter().zip(&ends).any(|(n, e)| n < e) {
        if Instant::now() > deadline {
            return Err(Failure::new(format!("reading {topic} timed out")));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.map_err(|e| Failure::new(format!("reading {topic}: {e}")))?;
        messages += 1;
        bytes += message.payload_len() as u64;
        next[message.partition() as usize] = message.offset() + 1;
    }
    Ok(Read {
        messages,
        bytes,
        seconds: assigned.elapsed().as_secs_f64(),
    })
}

fn end_offsets(consumer: &BaseConsumer, topic: &str, partitions: u32) -> Result<Vec<i64>, Failure> {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p as i32, Duration::from_secs(30))
                .map(|(_, high)| high)
                .map_err(|e| Failure::new(format!("end offset of {topic}/{p}: {e}")))
        })
        .collect()
}

/// Follows `topic` (whose values hold `bytes`) into empty databases under `dir` until every
/// partition's stored position is its end offset.
fn follow_read(
    brokers: &str,
    (topic, partitions): (&str, u32),
    bytes: u64,
    dir: &Path,
) -> Result<Read, Failure> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| Failure::new(format!("consumer: {e}")))?;
    let ends = end_offsets(&probe, topic, partitions)?;
    let mut config = FollowerConfig::new(brokers, topic, format!("{topic}-follow"), dir);
    config.status_interval = Duration::from_millis(20);
    let follower = Follower::new(config)?;
    let stop = follower.stop_handle();
    let (mut assigned, mut done) = (None, None);
    let deadline = Instant::now() + STEP_TIMEOUT;
    follower.run(|status| {
        if status.partitions.len() == partitions as usize {
            assigned.get_or_insert_with(Instant::now);
        }
        let caught_up = (0..partitions).all(|p| {
            (status.partitions.iter())
                .any(|s| s.partition == p && s.next_offset as i64 >= ends[p as usize])
        });
        if caught_up || Instant::now() > deadline {
            done.get_or_insert_with(Instant::now);
            stop.stop();
        }
    })?;
    let (Some(assigned), Some(done)) = (assigned, done) else {
        return Err(Failure::new(format!("following {topic}: no assignment")));
    };
    if Instant::now() > deadline {
        return Err(Failure::new(format!("following {topic} timed out")));
    }
    Ok(Read {
        messages: ends.iter().sum::<i64>() as u64,
        bytes,
        seconds: done.duration_since(assigned).as_secs_f64(),
    })
}
