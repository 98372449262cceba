//! Produces JSON Lines deltas from stdin to a topic, keyed by their aggregate id, creating the
//! topic first: `produce BROKERS TOPIC PARTITIONS < deltas.jsonl` (one message per line).

use std::io::{self, BufRead};
use std::time::Duration;

use aggrelog_kafka::rdkafka::config::ClientConfig;
use aggrelog_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, partitions] = &args[..] else {
        return Err("usage: produce BROKERS TOPIC PARTITIONS < deltas.jsonl".into());
    };
    aggrelog_kafka::create_topic(brokers, topic, partitions.parse()?, Duration::from_secs(30))?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let mut sent = 0u64;
    for line in io::stdin().lock().lines() {
        let line = line?;
        let value: serde_json::Value = serde_json::from_str(&line)?;
        let key = value["aggregate"].as_str().unwrap_or_default().to_owned();
        let mut record = BaseRecord::to(topic).key(&key).payload(&line);
        while let Err((e, returned)) = producer.send(record) {
            record = returned;
            eprintln!("queue full ({e}), waiting");
            producer.poll(Duration::from_millis(100));
        }
        producer.poll(Duration::ZERO);
        sent += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    eprintln!("produced {sent} messages to {topic}");
    Ok(())
}
