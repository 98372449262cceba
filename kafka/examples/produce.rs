//! Produces JSON Lines files to a topic, one message per delta keyed by its aggregate id,
//! creating the topic first: `produce BROKERS TOPIC PARTITIONS FILE...`.
//!
//! Each delta is sent with `"pos"` set to its index in its file (unless it has one), so that
//! its stamp is the one `aggrelog ingest FILE` gives it: the deltas of one upstream batch keep
//! their order however the follower groups the messages, and a file produced twice gives
//! duplicates, never conflicts.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use aggrelog_kafka::rdkafka::config::ClientConfig;
use aggrelog_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, partitions, files @ ..] = &args[..] else {
        return Err("usage: produce BROKERS TOPIC PARTITIONS FILE...".into());
    };
    aggrelog_kafka::create_topic(brokers, topic, partitions.parse()?, Duration::from_secs(30))?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let mut sent = 0u64;
    for file in files {
        let mut index = 0u64;
        for (n, line) in BufReader::new(File::open(file)?).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let mut delta: Value =
                serde_json::from_str(&line).map_err(|e| format!("{file}:{}: {e}", n + 1))?;
            let key = delta["aggregate"].as_str().unwrap_or_default().to_owned();
            if let Some(fields) = delta.as_object_mut() {
                fields.entry("pos").or_insert(index.into());
            }
            index += 1;
            let value = delta.to_string();
            let mut record = BaseRecord::to(topic).key(&key).payload(&value);
            while let Err((e, returned)) = producer.send(record) {
                record = returned;
                log_queue_full(&e);
                producer.poll(Duration::from_millis(100));
            }
            producer.poll(Duration::ZERO);
            sent += 1;
        }
    }
    producer.flush(Duration::from_secs(60))?;
    eprintln!("produced {sent} messages to {topic}");
    Ok(())
}

fn log_queue_full(e: &aggrelog_kafka::rdkafka::error::KafkaError) {
    eprintln!("producer queue full ({e}), waiting");
}
