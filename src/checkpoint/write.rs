//! Writing a checkpoint (DESIGN.md, section 5a): under the exclusive commit gate, take the log
//! end P and encode the index (every record before P is indexed then); release the gate; sync
//! the log (everything before P is durable); write the file atomically; drop checkpoints beyond
//! the retention. A crash at any step leaves the previous checkpoints and the log intact.

use super::format::{self as checkpoint, CheckpointMeta};
use crate::engine::{Engine, Maintenance};
use crate::error::Result;
use crate::layout::checkpoint_dir;
use crate::model::Model;

/// Writes a checkpoint now.
pub(crate) fn write_checkpoint<M: Model>(engine: &Engine<M>) -> Result<CheckpointMeta> {
    write_checkpoint_locked(engine, &mut engine.maintenance())
}

/// Writes a checkpoint; the caller holds the maintenance lock.
pub(crate) fn write_checkpoint_locked<M: Model>(
    engine: &Engine<M>,
    maintenance: &mut Maintenance,
) -> Result<CheckpointMeta> {
    engine.log().check_writable()?;
    let number = maintenance.next_checkpoint;
    let (meta, bytes) = {
        let _gate = engine.gate_exclusive();
        // Checked again under the gate: no write can fail between the check and the capture.
        engine.log().check_writable()?;
        let index = engine.index_read();
        let meta = engine.checkpoint_meta(number, &index);
        debug_assert!(
            meta.position <= engine.log().end(),
            "a checkpoint covers only the log"
        );
        debug_assert!(
            (index.live_bytes().keys())
                .all(|&segment| engine.log().segment_len(u64::from(segment)).is_some()),
            "every segment the index points into exists"
        );
        let count = index.aggregates() as usize;
        let facts = engine.facts();
        let bytes = checkpoint::encode(&meta, count, index.iter(), &facts);
        engine.checkpoint_taken();
        (meta, bytes)
    };
    engine.log().sync()?;
    let dir = checkpoint_dir(engine.dir());
    let storage = engine.storage();
    checkpoint::write(storage, &dir, number, &bytes)?;
    checkpoint::retain(storage, &dir, engine.options().checkpoints_kept)?;
    maintenance.next_checkpoint = number.saturating_add(1);
    engine.maintenance_stats().last_checkpoint = Some(meta);
    Ok(meta)
}

/// Writes a checkpoint if enough log was written since the last one. Never waits for other
/// maintenance: if a checkpoint or compaction is running, the next call will do it.
pub(crate) fn checkpoint_if_due<M: Model>(engine: &Engine<M>) -> Result<()> {
    if !engine.checkpoint_due() {
        return Ok(());
    }
    match engine.try_maintenance() {
        Some(mut maintenance) => write_checkpoint_locked(engine, &mut maintenance).map(drop),
        None => Ok(()),
    }
}

/// [`checkpoint_if_due`] after a committed write, on a handle without a background worker: a
/// failure is a maintenance error (logged, kept for `stats`), not the write's.
pub(crate) fn checkpoint_after_write<M: Model>(engine: &Engine<M>) {
    if let Err(e) = checkpoint_if_due(engine) {
        log::warn!("automatic checkpoint failed: {e}");
        engine.record_maintenance_error(e.to_string());
    }
}
