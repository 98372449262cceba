//! The maintenance commands: `checkpoint`, `compact` and `seal`.

use std::path::Path;

use serde_json::json;

use crate::open::{open_existing, open_reader, DbArgs};
use crate::output::{emit, progress, Failure};

/// `checkpoint`: writes one now.
pub fn checkpoint(args: &DbArgs) -> Result<(), Failure> {
    let db = open_existing(args)?;
    let meta = db.checkpoint()?;
    emit(json!({
        "checkpoint": meta.number,
        "segment": meta.position.segment,
        "offset": meta.position.offset,
        "aggregates": db.stats().aggregates,
    }))?;
    db.close()?;
    Ok(())
}

/// `compact`: folds everything and reclaims the segments this empties.
pub fn compact(args: &DbArgs) -> Result<(), Failure> {
    let db = open_existing(args)?;
    let before = db.stats().log_bytes;
    let spinner = progress(0, "compacting");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = db.compact();
    spinner.finish_and_clear();
    let report = report?;
    let after = db.stats().log_bytes;
    emit(json!({
        "aggregates_folded": report.aggregates_folded,
        "deltas_folded": report.deltas_folded,
        "bytes_written": report.bytes_written,
        "segments_deleted": report.segments_deleted,
        "log_bytes_before": before,
        "log_bytes_after": after,
        "duration_ms": report.duration_ms,
    }))?;
    db.close()?;
    Ok(())
}

/// `seal`: no delta with a lower seq is accepted any more. A seal never moves back: a lower
/// one is reported on stderr and changes nothing.
pub fn seal(args: &DbArgs, seq: u64) -> Result<(), Failure> {
    let db = open_existing(args)?;
    let current = db.stats().seal;
    if seq < current {
        eprintln!(
            "seal {seq} is below the current seal {current}, which stays (a seal never moves back)"
        );
    }
    db.seal(seq)?;
    emit(json!({"seal": db.stats().seal}))?;
    db.close()?;
    Ok(())
}

/// `backup`: a point-in-time copy into a new directory, read beside a writer if one runs.
pub fn backup(args: &DbArgs, dest: &Path) -> Result<(), Failure> {
    let db = open_reader(args)?;
    let spinner = progress(0, "backing up");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = db.backup(dest);
    spinner.finish_and_clear();
    let report = report?;
    emit(json!({
        "backup": dest.display().to_string(),
        "bytes": report.bytes,
        "linked_bytes": report.linked_bytes,
    }))?;
    db.close()?;
    Ok(())
}
