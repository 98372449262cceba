//! The background maintenance thread: automatic checkpoints and policy compaction, at the
//! configured interval, holding only a weak reference to the engine.

use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::write::checkpoint_if_due;
use crate::compaction::{self, Scope};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::periodic::Periodic;

/// The background maintenance thread: automatic checkpoints and policy compaction.
pub(crate) struct Worker(Periodic);

impl Worker {
    /// Starts the thread; it holds only a weak reference to the engine.
    pub fn start<M: Model>(engine: &Arc<Engine<M>>) -> Result<Worker> {
        let interval = engine.options().compaction.interval;
        Periodic::start("aggrelog-maintenance", interval, engine, run_once)
            .map(Worker)
            .map_err(|e| Error::io(engine.dir(), e))
    }

    /// Stops the thread and waits for it (an operation in progress finishes first).
    pub fn stop(self) {
        self.0.stop();
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
