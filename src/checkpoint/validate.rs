//! Checkpoint validation (DESIGN.md, section 5a): a checkpoint is used only if it decodes and
//! every record it refers to exists in the segment files, before its position, and every
//! segment it covers still ends with its end record. Open takes the newest valid one; `check`
//! reports the others; compaction removes those its reclaimed segments made unusable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::format::{self as checkpoint, Checkpoint};
use crate::error::{Error, Result};
use crate::index::Chain;
use crate::layout::{checkpoint_dir, segment_lengths, segment_path, WAL_DIR};
use crate::retry::is_vanished_file;
use crate::storage::{ReadView, Storage};
use crate::wal::format::{RecordType, END_FRAME_BYTES, FLAG_ZSTD, FRAME_HEADER_BYTES};
use crate::wal::frame::{frame_at, frame_header_at};
use crate::wal::RecordLocation;

/// The newest checkpoint that decodes and whose references exist in the segment files, and
/// why each newer one was rejected.
pub(crate) fn newest_valid_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<(Option<Checkpoint>, Vec<String>)> {
    let found = checkpoint::list(storage, &checkpoint_dir(dir))?.checkpoints;
    let lengths = segment_lengths(storage, dir)?;
    let mut rejected = Vec::new();
    for (_, path) in found {
        let verdict = checkpoint::load(storage, &path)
            .and_then(|c| validate_against_log(storage, dir, &c, &lengths).map(|()| c));
        match verdict {
            Ok(c) => return Ok((Some(c), rejected)),
            Err(e) => {
                log::warn!("not using checkpoint {}: {e}", path.display());
                rejected.push(e.to_string());
            }
        }
    }
    Ok((None, rejected))
}

/// What `check` finds in the checkpoint files: `(file, problem, is_damage)`. A checkpoint that
/// does not decode is damage; one that decodes but refers to records no longer in the log is
/// stale (open skips it), which a crash between deleting segments and deleting it can leave.
pub(crate) fn checkpoint_problems(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Vec<(PathBuf, String, bool)>> {
    let lengths = segment_lengths(storage, dir)?;
    let mut problems = Vec::new();
    for (_, path) in checkpoint::list(storage, &checkpoint_dir(dir))?.checkpoints {
        match checkpoint::load(storage, &path) {
            // Removed by a writer since it was listed (retention): nothing to judge.
            Err(e) if is_vanished_file(&e) => {}
            Err(e) => problems.push((path, e.to_string(), true)),
            Ok(c) => {
                if let Err(e) = validate_against_log(storage, dir, &c, &lengths) {
                    problems.push((path, e.to_string(), false));
                }
            }
        }
    }
    Ok(problems)
}

/// Removes checkpoints, other than the newest, that point into segments that no longer exist:
/// open would only reject them, and they hold disk space (an uncompacted index can be large).
pub(crate) fn drop_unusable_checkpoints(storage: &dyn Storage, db_dir: &Path) -> Result<()> {
    let dir = checkpoint_dir(db_dir);
    let lengths = segment_lengths(storage, db_dir)?;
    let mut removed = false;
    for (_, path) in checkpoint::list(storage, &dir)?.checkpoints.iter().skip(1) {
        let usable = checkpoint::load(storage, path)
            .and_then(|c| validate_against_log(storage, db_dir, &c, &lengths))
            .is_ok();
        if !usable {
            storage.remove(path).map_err(|e| Error::io(path, e))?;
            removed = true;
        }
    }
    if removed {
        storage.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// A referenced record as found in its segment file.
#[derive(Clone, Copy)]
struct FoundFrame {
    end: u64,
    length: u32,
    compressed: bool,
}

/// Reads and checks the frames a checkpoint refers to: each must lie inside its segment file
/// and end at or before the checkpoint's position in log order (a checkpoint covers only what
/// precedes its position; recovery truncates anything after it that does not verify).
struct ReferenceCheck<'a> {
    storage: &'a dyn Storage,
    dir: &'a Path,
    lengths: &'a BTreeMap<u64, u64>,
    position: RecordLocation,
    views: BTreeMap<u64, ReadView>,
    /// Frames checked so far (a checkpoint refers to each batch frame once per delta in it).
    frames: hashbrown::HashMap<(u32, u32), FoundFrame>,
}

impl ReferenceCheck<'_> {
    /// The frame at `segment`/`offset`, checked once and remembered (batch frames are referred
    /// to by each of their deltas).
    fn frame(&mut self, segment: u32, offset: u32) -> Result<FoundFrame, String> {
        if let Some(found) = self.frames.get(&(segment, offset)) {
            return Ok(*found);
        }
        let found = self.read_frame(segment, offset)?;
        self.frames.insert((segment, offset), found);
        Ok(found)
    }

    /// Reads and checks the frame header at `segment`/`offset`.
    fn read_frame(&mut self, segment: u32, offset: u32) -> Result<FoundFrame, String> {
        let id = u64::from(segment);
        let len = *self
            .lengths
            .get(&id)
            .ok_or_else(|| format!("points at missing segment {id}"))?;
        let view = match self.views.get(&id) {
            Some(view) => view.clone(),
            None => {
                let path = segment_path(&self.dir.join(WAL_DIR), id);
                let view = self
                    .storage
                    .read_view(&path, len)
                    .map_err(|e| format!("cannot read segment {id}: {e}"))?;
                self.views.insert(id, view.clone());
                view
            }
        };
        let start = offset as usize;
        if view.len() < start + FRAME_HEADER_BYTES {
            return Err(format!(
                "points past the end of segment {id} (missing segment bytes)"
            ));
        }
        let header = frame_header_at(&view, start)
            .map_err(|e| format!("segment {id} offset {offset}: {e}"))?;
        let end = u64::from(offset) + (FRAME_HEADER_BYTES as u64) + u64::from(header.length);
        if end > len {
            return Err(format!("a frame at segment {id} offset {offset} runs past the file end (missing segment bytes)"));
        }
        let covered = id < self.position.segment
            || (id == self.position.segment && end <= self.position.offset);
        if !covered {
            return Err(format!(
                "refers to segment {id} offset {offset}, after its own position"
            ));
        }
        Ok(FoundFrame {
            end,
            length: header.length,
            compressed: header.flags & FLAG_ZSTD != 0,
        })
    }

    /// Every segment up to the checkpoint's position, except the log's last, was sealed: its
    /// last 20 bytes must be a valid end record. Open does not scan those segments, so this is
    /// how a truncation there is noticed (the checkpoint is rejected and a full replay reports
    /// the damage), instead of surfacing only at some later full replay.
    fn sealed_segments_end_with_end_records(&mut self) -> Result<(), String> {
        let last = self.lengths.keys().next_back().copied();
        let sealed: Vec<(u64, u64)> = self
            .lengths
            .iter()
            .filter(|(&id, _)| id <= self.position.segment && Some(id) != last)
            .map(|(&id, &len)| (id, len))
            .collect();
        for (id, len) in sealed {
            let path = segment_path(&self.dir.join(WAL_DIR), id);
            let view = self
                .storage
                .read_view(&path, len)
                .map_err(|e| format!("cannot read segment {id}: {e}"))?;
            let at = (len as usize).checked_sub(END_FRAME_BYTES);
            let ends_sealed = at.is_some_and(|at| {
                frame_at(&view, id, at).is_ok_and(|f| f.header.record_type == RecordType::End)
            });
            if !ends_sealed {
                return Err(format!("segment {id} does not end with its end record"));
            }
            self.views.insert(id, view);
        }
        Ok(())
    }

    /// Checks every chain's base: state records, each referred to once, read in log order.
    fn bases(&mut self, chains: &[(Box<str>, Chain)]) -> Result<(), String> {
        let mut bases: Vec<(u32, u32, u32, usize)> = chains
            .iter()
            .enumerate()
            .filter_map(|(at, (_, c))| c.base.map(|b| (b.segment, b.record_offset, b.len, at)))
            .collect();
        bases.sort_unstable();
        for (segment, offset, len, at) in bases {
            let frame = self.read_frame(segment, offset)?;
            if frame.end != u64::from(offset) + u64::from(len) {
                let id = &chains[at].0;
                return Err(format!("the state of {id:?} has the wrong length"));
            }
        }
        Ok(())
    }

    /// Checks the deltas of a chain.
    fn deltas(&mut self, id: &str, chain: &Chain) -> Result<(), String> {
        for d in &chain.deltas {
            let frame = self.frame(d.segment, d.record_offset)?;
            let delta_end = u64::from(d.delta_offset) + u64::from(d.len);
            if !frame.compressed && delta_end > u64::from(frame.length) {
                return Err(format!("a delta of {id:?} lies outside its batch"));
            }
        }
        Ok(())
    }
}

/// Checks that every location a checkpoint refers to exists in the segment files, before its
/// position.
fn validate_against_log(
    storage: &dyn Storage,
    dir: &Path,
    checkpoint: &Checkpoint,
    lengths: &BTreeMap<u64, u64>,
) -> Result<()> {
    let position = checkpoint.meta.position;
    let bad = |reason: String| Error::CheckpointRejected {
        number: checkpoint.meta.number,
        reason,
    };
    match lengths.get(&position.segment) {
        Some(&len) if position.offset > len => {
            return Err(bad(format!(
                "position {position:?} is past the segment end {len}"
            )));
        }
        None if lengths.range(position.segment..).next().is_none() && !lengths.is_empty() => {
            return Err(bad(format!(
                "position {position:?} is past the end of the log"
            )));
        }
        _ => {}
    }
    let mut check = ReferenceCheck {
        storage,
        dir,
        lengths,
        position,
        views: Default::default(),
        frames: Default::default(),
    };
    check.sealed_segments_end_with_end_records().map_err(bad)?;
    check.bases(&checkpoint.chains).map_err(bad)?;
    for (id, chain) in &checkpoint.chains {
        check.deltas(id, chain).map_err(bad)?;
    }
    Ok(())
}
