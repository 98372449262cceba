//! Follow a Kafka topic of delta batches into aggrelog, exactly once.
//!
//! A [`Follower`] consumes one topic as a member of a consumer group and keeps one aggrelog
//! database per assigned partition under its directory (`DIR/<topic>.<partition>/`, see
//! [`layout`]). A record's value is one JSON Lines delta or several (one upstream batch, applied
//! atomically); its key is the aggregate id. The follower groups the messages of one partition,
//! in offset order, into one atomic [`aggrelog::Batch`] that also carries the partition's source
//! range, so the position a database stores is exactly what it holds. On start and on every
//! assignment it seeks to that stored position, never to the group's committed offset (which it
//! commits too, after each batch is durable, only so that standard tools show lag): after any
//! crash every message is applied exactly once.
//!
//! A message that is not valid input goes to the dead-letter file ([`dead_letter`]) and still
//! moves the position forward. A broker that goes away is retried; the follower resumes when it
//! returns. Setting the stop flag ([`StopHandle`]) makes [`Follower::run`] write what it has read
//! and return.
//!
//! ```no_run
//! use aggrelog_kafka::{Follower, FollowerConfig};
//!
//! # fn main() -> Result<(), aggrelog_kafka::Error> {
//! let config = FollowerConfig::new("127.0.0.1:9092", "deltas", "aircraft-state", "/var/lib/state");
//! let follower = Follower::new(config)?;
//! let stop = follower.stop_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(60));
//!     stop.stop();
//! });
//! follower.run(|status| eprintln!("{} deltas, {:.0}/s", status.deltas, status.deltas_per_s))?;
//! # Ok(())
//! # }
//! ```

// Without the `client` feature the crate is the follower directory's layout (and its errors).
#[cfg(feature = "client")]
mod admin;
#[cfg(feature = "client")]
mod config;
#[cfg(feature = "client")]
mod context;
#[cfg(feature = "client")]
pub mod dead_letter;
mod error;
#[cfg(feature = "client")]
mod follower;
pub mod layout;
#[cfg(feature = "client")]
pub mod message;
#[cfg(feature = "client")]
mod partition;
#[cfg(feature = "client")]
mod stall_watch;
#[cfg(feature = "client")]
mod status;

#[cfg(feature = "client")]
pub use admin::create_topic;
#[cfg(feature = "client")]
pub use config::FollowerConfig;
pub use error::{Error, Result};
#[cfg(feature = "client")]
pub use follower::{Follower, StopHandle};
/// The Kafka client this crate uses (librdkafka through `rdkafka`), re-exported so that an
/// embedder or a test can produce to the same brokers with the same build of it.
#[cfg(feature = "client")]
pub use rdkafka;
#[cfg(feature = "client")]
pub use status::{PartitionStatus, Status};
