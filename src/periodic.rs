//! [`Periodic`]: a background thread that runs a task every interval on an object it holds only
//! weakly, until it is stopped or the object is gone. The log's interval sync and the
//! maintenance worker are the two.

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A running periodic task. Dropping it lets the thread end at its next wake-up without waiting
/// for it (so it may be dropped on its own thread); [`Periodic::stop`] waits.
pub(crate) struct Periodic {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Periodic {
    /// Starts a thread named `name` that calls `task` on `target` every `interval`.
    pub fn start<T: Send + Sync + 'static>(
        name: &str,
        interval: Duration,
        target: &Arc<T>,
        task: impl Fn(&T) + Send + 'static,
    ) -> io::Result<Periodic> {
        let (stop, stopped) = mpsc::channel::<()>();
        let weak: Weak<T> = Arc::downgrade(target);
        let handle = thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => match weak.upgrade() {
                        Some(target) => task(&target),
                        None => return,
                    },
                    _ => return,
                }
            })?;
        Ok(Periodic { stop, handle })
    }

    /// Stops the thread and waits for it (a task in progress finishes first). Never call it on
    /// the thread itself.
    pub fn stop(self) {
        debug_assert_ne!(self.handle.thread().id(), thread::current().id());
        drop(self.stop);
        let _ = self.handle.join();
    }
}
