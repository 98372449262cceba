//! Retrying what a file deleted under a reader made fail: a read-only open, a refresh or a
//! `check` beside a writer whose compaction or checkpoint retention removed a file between its
//! listing and its reading. Each attempt starts over; the pauses grow (1 ms doubling, at most
//! 200 ms: about 2 s over 16 attempts), as a compaction deletes many files one by one.

use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};

/// Attempts before the error is returned.
const ATTEMPTS: u32 = 16;

/// Runs `attempt` until it succeeds, fails otherwise than by a vanished file, or ran out of
/// attempts.
pub(crate) fn retrying_vanished<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 1;
    loop {
        match attempt() {
            Err(e) if tries < ATTEMPTS && is_vanished_file(&e) => {
                thread::sleep(Duration::from_millis((1u64 << tries.min(8)).min(200)));
                tries += 1;
            }
            done => return done,
        }
    }
}

/// Whether `error` is a file that disappeared under a reader.
pub(crate) fn is_vanished_file(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}
