//! The background maintenance thread: automatic checkpoints and policy compaction, at the
//! configured interval, holding only a weak reference to the engine.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crate::checkpoint::write::checkpoint_if_due;
use crate::compaction::{self, Scope};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Model;

/// The background maintenance thread: automatic checkpoints and policy compaction.
pub(crate) struct Worker {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Worker {
    /// Starts the thread; it holds only a weak reference to the engine.
    pub fn start<M: Model>(engine: &Arc<Engine<M>>) -> Result<Worker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let weak: Weak<Engine<M>> = Arc::downgrade(engine);
        let interval = engine.options().compaction.interval;
        let handle = thread::Builder::new()
            .name("aggrelog-maintenance".into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => match weak.upgrade() {
                        Some(engine) => run_once(&engine),
                        None => return,
                    },
                    _ => return,
                }
            })
            .map_err(|e| Error::io(engine.dir(), e))?;
        Ok(Worker { stop, handle })
    }

    /// Stops the thread and waits for it (an operation in progress finishes first).
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.handle.join();
    }
}

/// One round of background maintenance; errors are logged and kept for `stats`.
fn run_once<M: Model>(engine: &Engine<M>) {
    let started = Instant::now();
    let rate = Some(engine.options().compaction.rate_bytes_per_sec);
    let result = checkpoint_if_due(engine)
        .and_then(|()| compaction::compact(engine, Scope::Policy, rate).map(drop));
    if let Err(e) = result {
        log::warn!(
            "background maintenance failed after {:?}: {e}",
            started.elapsed()
        );
        engine.record_maintenance_error(e.to_string());
    }
}
