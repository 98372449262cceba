//! Creating the topic to follow, for tests, demos and scripts.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::Result;

/// Creates `topic` with `partitions` partitions (replication factor 1) on `brokers`, waiting up
/// to `timeout`; a topic that exists already is fine.
pub fn create_topic(brokers: &str, topic: &str, partitions: u32, timeout: Duration) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let count = i32::try_from(partitions).unwrap_or(i32::MAX);
    let new_topic = NewTopic::new(topic, count, TopicReplication::Fixed(1));
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = futures_executor::block_on(admin.create_topics(&[new_topic], &options))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code).into()),
        }
    }
    Ok(())
}
