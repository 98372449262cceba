//! Offline verification of every record: what `aggrelog check` runs.

use std::path::Path;

use crate::error::Result;
use crate::layout::{prepare_dir, require_database, segment_path, WAL_DIR};
use crate::model::{binary, DeltaKind};
use crate::options::Options;
use crate::retry::retrying_vanished;
use crate::storage::FsStorage;
use crate::wal::recovery::{scan_log, LogRecord};
use crate::wal::{Damage, RecordLocation, ScanPolicy};

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CheckReport {
    /// Segment files read.
    pub segments: u64,
    /// Bytes in segment files.
    pub bytes: u64,
    /// Valid batch records.
    pub batches: u64,
    /// Deltas in valid batch records.
    pub deltas: u64,
    /// A torn tail: an unfinished last append, which the next open truncates. Not damage.
    pub torn: Option<Damage>,
    /// Damaged ranges: corruption that open would refuse (Strict) or skip (SkipCorrupt), patch
    /// bodies that are not valid encoded objects, and checkpoint files that do not decode.
    pub damage: Vec<Damage>,
    /// Checkpoints that decode but refer to records no longer in the log (open skips them;
    /// not damage).
    pub stale_checkpoints: Vec<String>,
}

impl CheckReport {
    /// True when no damage was found (a torn tail is not damage).
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Verifies every segment header, frame CRC, batch layout, delta CRC and patch body of the
/// database in `path`, without changing anything. It takes no lock: it runs beside a writer
/// (an append in progress at the log's end is reported as a torn tail, not damage, and a file
/// the writer deletes meanwhile makes it start again).
pub fn check(path: impl AsRef<Path>) -> Result<CheckReport> {
    let dir = path.as_ref();
    retrying_vanished(|| check_once(dir))
}

fn check_once(dir: &Path) -> Result<CheckReport> {
    let storage = FsStorage;
    let existing_only = Options::default().create_if_missing(false);
    prepare_dir(&storage, dir, &existing_only)?;
    require_database(&storage, dir, &existing_only)?;
    let wal_dir = dir.join(WAL_DIR);
    let mut bad_bodies = Vec::new();
    let from = RecordLocation::START;
    let scan = scan_log(&storage, &wal_dir, ScanPolicy::Check, from, &mut |record| {
        let LogRecord::Batch(record) = record else {
            return;
        };
        for delta in record.deltas {
            if delta.kind != DeltaKind::Patch {
                continue;
            }
            if let Err(e) = binary::validate_object(delta.body) {
                bad_bodies.push((record.segment, record.offset, delta.offset, e));
            }
        }
    })?;
    let mut damage = scan.damage;
    for (segment, offset, delta_offset, e) in bad_bodies {
        damage.push(Damage {
            file: segment_path(&wal_dir, segment),
            offset,
            bytes: 0,
            reason: format!("patch body of the delta at payload offset {delta_offset}: {e}"),
        });
    }
    let mut stale_checkpoints = Vec::new();
    for (file, problem, is_damage) in
        crate::checkpoint::validate::checkpoint_problems(&storage, dir)?
    {
        if is_damage {
            damage.push(Damage {
                file,
                offset: 0,
                bytes: 0,
                reason: problem,
            });
        } else {
            stale_checkpoints.push(format!("{}: {problem}", file.display()));
        }
    }
    Ok(CheckReport {
        stale_checkpoints,
        segments: scan.segments.len() as u64,
        bytes: scan.segments.iter().map(|s| s.file_len).sum(),
        batches: scan.batches,
        deltas: scan.deltas,
        torn: scan.torn.or(scan.incomplete_segment),
        damage,
    })
}
