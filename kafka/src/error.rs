//! The follower's errors.

use std::path::PathBuf;

/// What can stop a [`Follower`](crate::Follower): local failures only. A broker that is away is
/// retried, never reported as an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (an empty topic, a zero batch size...).
    #[error("bad follower configuration: {0}")]
    Config(String),
    /// The Kafka client could not be created or refused a request outright.
    #[cfg(feature = "client")]
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A partition's database failed.
    #[error("{path}: {source}")]
    Db {
        /// The partition database's directory.
        path: PathBuf,
        /// What the engine reported.
        source: aggrelog::Error,
    },
    /// A file of the follower (its marker, the dead-letter file) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The directory belongs to a follower of another topic, or its marker is not readable.
    #[error("{path}: {reason}")]
    Directory {
        /// The follower directory.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
}

/// The result of follower operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An engine error of the database in `path`.
    #[cfg(feature = "client")]
    pub(crate) fn db(path: impl Into<PathBuf>, source: aggrelog::Error) -> Self {
        Error::Db {
            path: path.into(),
            source,
        }
    }
}
