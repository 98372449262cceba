//! The engines, each adapted to [`Store`](crate::measure::Store).

pub mod aggrelog_store;
pub mod fjall_store;
pub mod raft_store;
pub mod redb_store;
pub mod rocksdb_store;
pub mod sled_store;
