//! Reading a spanning batch (DESIGN.md, section 3.6): the fragments its batch commit lists,
//! found by location, all verified before any is handed on, then handed on in order as batch
//! records, so that a spanning batch is applied whole or not at all.
//!
//! One segment is mapped at a time (fragments come in segment order), so reading a batch of
//! any size keeps one segment's pages mapped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::batch_record::{batch_payload, decode_fragment, BatchRecord};
use super::format::{RecordLocation, RecordType, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use super::frame::{frame_at, frame_header_at, Frame};
use super::records::{decode_batch_commit_body, BatchCommitBody, FragmentRef};
use crate::decode::DecodeError;
use crate::error::Error;
use crate::layout::segment_path;
use crate::storage::{ReadView, Storage};

/// What decoding a fragment found: the stamp position of its first delta (`None`: it has a
/// positions table) and its number of deltas.
pub type FragmentShape = (Option<u32>, u32);

/// Reads fragments by location from the segment files of one log.
pub struct FragmentReader<'s> {
    storage: &'s dyn Storage,
    wal_dir: PathBuf,
    /// Views to use instead of the files (a replay's segments, mapped when it started).
    pinned: Option<&'s BTreeMap<u64, ReadView>>,
    /// The segment mapped last; `None` in the view when its file no longer exists.
    mapped: Option<(u64, Option<ReadView>)>,
}

/// What a verified spanning batch holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Fragments present (the others were reclaimed by compaction).
    pub fragments: u64,
    /// Deltas in the present fragments.
    pub deltas: u64,
}

impl<'s> FragmentReader<'s> {
    /// A reader of the segments in `wal_dir`.
    pub fn new(storage: &'s dyn Storage, wal_dir: &Path) -> Self {
        FragmentReader {
            storage,
            wal_dir: wal_dir.to_path_buf(),
            pinned: None,
            mapped: None,
        }
    }

    /// Reads the segments in `views` through them rather than their files.
    pub fn with_views(mut self, views: &'s BTreeMap<u64, ReadView>) -> Self {
        self.pinned = Some(views);
        self
    }

    /// Verifies every fragment `commit` lists (DESIGN.md, section 3.6): frame, type, listed CRC,
    /// every delta decoded, positions consecutive (between fragments without positions tables),
    /// counts adding up. A fragment for which `verified` gives its `(first_position, count)`
    /// (no first position: a positions table) was decoded already (by the scan that met
    /// it): only its frame and CRC are checked. Fragments whose segment no longer exists were
    /// reclaimed and are not counted.
    pub fn verify(
        &mut self,
        commit: &BatchCommitBody,
        verified: &dyn Fn(&FragmentRef) -> Option<FragmentShape>,
    ) -> Result<Verified, FragmentError> {
        let mut found = Verified::default();
        let mut next_position: Option<u32> = None;
        for (n, fragment) in commit.fragments.iter().enumerate() {
            let known = verified(fragment);
            let Some(frame) = self
                .frame(fragment)
                .map_err(|e| at_fragment(n, fragment, e))?
            else {
                next_position = None;
                continue;
            };
            let (first, count) = if let Some(positions) = known {
                positions
            } else {
                let payload = batch_payload(&frame).map_err(|e| at_fragment(n, fragment, e))?;
                let decoded = decode_fragment(&payload, frame.header.flags)
                    .map_err(|e| at_fragment(n, fragment, e))?;
                (decoded.first_position, decoded.deltas.len() as u32)
            };
            // Fragments with positions tables hold positions of their own: no continuity.
            if let (Some(expected), Some(first)) = (next_position, first) {
                if expected != first {
                    let reason = format!(
                        "fragment {n} starts at position {first}, not where the previous one ended"
                    );
                    return Err(DecodeError::new(0, reason).into());
                }
            }
            next_position = first.and_then(|first| first.checked_add(count));
            found.fragments += 1;
            found.deltas += u64::from(count);
        }
        let all_present = found.fragments == commit.fragments.len() as u64;
        if found.deltas > commit.deltas || (all_present && found.deltas != commit.deltas) {
            let reason = format!(
                "the fragments hold {} deltas, the batch commit says {}",
                found.deltas, commit.deltas
            );
            return Err(DecodeError::new(0, reason).into());
        }
        Ok(found)
    }

    /// Hands every present fragment of `commit`, verified by [`FragmentReader::verify`], to
    /// `on_batch` in order.
    pub fn apply(
        &mut self,
        commit: &BatchCommitBody,
        on_batch: &mut dyn FnMut(&BatchRecord<'_>),
    ) -> Result<(), FragmentError> {
        for (n, fragment) in commit.fragments.iter().enumerate() {
            let Some(frame) = self
                .frame(fragment)
                .map_err(|e| at_fragment(n, fragment, e))?
            else {
                continue;
            };
            let payload = batch_payload(&frame).map_err(|e| at_fragment(n, fragment, e))?;
            let decoded = decode_fragment(&payload, frame.header.flags)
                .map_err(|e| at_fragment(n, fragment, e))?;
            on_batch(&BatchRecord {
                segment: fragment.location.segment,
                offset: fragment.location.offset,
                deltas: &decoded.deltas,
                sources: &[],
                names: &decoded.names,
            });
        }
        Ok(())
    }

    /// The verified frame of `fragment`, `None` when its segment no longer exists.
    pub fn frame(&mut self, fragment: &FragmentRef) -> Result<Option<Frame<'_>>, FragmentError> {
        let RecordLocation { segment, offset } = fragment.location;
        let Some(view) = self.view(segment)? else {
            return Ok(None);
        };
        let frame = frame_at(view, segment, offset as usize)?;
        if frame.header.record_type != RecordType::Fragment {
            let reason = format!(
                "a {:?} record where a fragment was listed",
                frame.header.record_type
            );
            return Err(DecodeError::new(offset as usize, reason).into());
        }
        if frame.header.crc != fragment.crc {
            let reason = format!(
                "the fragment's CRC {:#010x} is not the listed {:#010x}",
                frame.header.crc, fragment.crc
            );
            return Err(DecodeError::new(offset as usize, reason).into());
        }
        Ok(Some(frame))
    }

    /// The bytes of segment `id`, mapping it if it is not the one mapped last.
    fn view(&mut self, id: u64) -> Result<Option<&[u8]>, FragmentError> {
        if self.mapped.as_ref().is_none_or(|(mapped, _)| *mapped != id) {
            self.mapped = None;
            let view = match self.pinned.and_then(|views| views.get(&id)) {
                Some(view) => Some(view.clone()),
                None => self.map(id)?,
            };
            self.mapped = Some((id, view));
        }
        Ok(self.mapped.as_ref().and_then(|(_, view)| view.as_deref()))
    }

    fn map(&self, id: u64) -> Result<Option<ReadView>, FragmentError> {
        let path = segment_path(&self.wal_dir, id);
        let unreadable = |e: std::io::Error| FragmentError::Io(Error::io(&path, e));
        if !self.storage.exists(&path).map_err(unreadable)? {
            return Ok(None);
        }
        let len = self.storage.file_len(&path).map_err(unreadable)?;
        self.storage
            .read_view(&path, len)
            .map(Some)
            .map_err(unreadable)
    }
}

/// Why a spanning batch could not be read.
#[derive(Debug)]
pub enum FragmentError {
    /// A fragment or the batch commit's list is damaged: the batch is corrupt.
    Damaged(DecodeError),
    /// A segment file could not be read.
    Io(Error),
}

impl From<DecodeError> for FragmentError {
    fn from(error: DecodeError) -> Self {
        FragmentError::Damaged(error)
    }
}

/// `error` met reading fragment `n` (`fragment`), named with where the fragment lies: the
/// damage is reported at the batch commit, in another place of the log.
fn at_fragment(n: usize, fragment: &FragmentRef, error: impl Into<FragmentError>) -> FragmentError {
    match error.into() {
        FragmentError::Damaged(e) => {
            let RecordLocation { segment, offset } = fragment.location;
            let reason = format!(
                "fragment {n} (segment {segment}, offset {offset}): {}",
                e.reason
            );
            DecodeError::new(0, reason).into()
        }
        io => io,
    }
}

/// The segments holding fragments listed by the batch commits in `segment` (segment `id`,
/// header included), `None` when the segment cannot be walked to its end (damage might hide a
/// batch commit). Only frame headers are read, and the bodies of batch commits: a segment of
/// large fragments costs a page per fragment, not a pass over its bytes.
pub fn fragment_segments_listed(segment: &[u8], id: u64) -> Option<BTreeSet<u64>> {
    let mut listed = BTreeSet::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at < segment.len() {
        let header = frame_header_at(segment, at).ok()?;
        let end = at
            .checked_add(FRAME_HEADER_BYTES)?
            .checked_add(header.length as usize)?;
        if end > segment.len() {
            return None;
        }
        if header.record_type == RecordType::BatchCommit {
            let frame = frame_at(segment, id, at).ok()?;
            let location = RecordLocation {
                segment: id,
                offset: at as u64,
            };
            let commit = decode_batch_commit_body(frame.body, location).ok()?;
            listed.extend(commit.fragments.iter().map(|f| f.location.segment));
        }
        at = end;
    }
    Some(listed)
}
