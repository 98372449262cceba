//! [`PartitionStore`]: one assigned partition's database, where it stands, and the messages read
//! from it but not yet written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aggrelog::jsonl::DeltaLine;
use aggrelog::{Batch, Db, History, Options, SourceRange};

use crate::dead_letter::{DeadLetter, DeadLetterFile};
use crate::error::{Error, Result};
use crate::layout;
use crate::message;

/// A message read and not yet written: its deltas, or why it is a dead letter.
struct Pending {
    offset: u64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    deltas: Result<Vec<DeltaLine>, String>,
}

/// What one flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Deltas applied.
    pub deltas: u64,
    /// Messages whose offsets the batch passed.
    pub messages: u64,
    /// The partition's position after it.
    pub next_offset: u64,
}

/// One partition's database and pending messages.
pub(crate) struct PartitionStore {
    topic: String,
    partition: u32,
    path: PathBuf,
    db: Db,
    /// Whether the database held a position for the partition when it was opened.
    resumed: bool,
    /// Every message below it is in the database (durable).
    next_offset: u64,
    /// Dead letters below `next_offset`.
    dead_letters: u64,
    pending: Vec<Pending>,
    pending_bytes: usize,
    oldest_pending: Option<Instant>,
}

impl PartitionStore {
    /// Opens (creating if missing) the database of `partition` of `topic` in the follower
    /// directory `dir`, its compaction keeping `history` unfolded, and reads the position it
    /// stores.
    pub fn open(dir: &Path, topic: &str, partition: u32, history: History) -> Result<Self> {
        let path = layout::partition_dir(dir, topic, partition);
        let options = Options::default().history(history);
        let db = Db::open(&path, options).map_err(|e| Error::db(&path, e))?;
        let stored = (db.source_positions().into_iter())
            .find(|p| p.topic == topic && p.partition == partition);
        Ok(PartitionStore {
            topic: topic.to_owned(),
            partition,
            path,
            resumed: stored.is_some(),
            next_offset: stored.as_ref().map_or(0, |p| p.next_offset),
            dead_letters: stored.as_ref().map_or(0, |p| p.dead_letters),
            db,
            pending: Vec::new(),
            pending_bytes: 0,
            oldest_pending: None,
        })
    }

    /// Where reading must start: the stored position, or `None` (the partition's beginning)
    /// when the database holds none.
    pub fn start_offset(&self) -> Option<u64> {
        self.resumed.then_some(self.next_offset)
    }

    /// Every message below it is durable in the database.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Dead letters below [`PartitionStore::next_offset`].
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters
    }

    /// The offset the next message must have at least: messages below it were read already
    /// (a redelivery after a seek) and are skipped.
    fn expected_offset(&self) -> u64 {
        self.pending
            .last()
            .map_or(self.next_offset, |p| p.offset + 1)
    }

    /// Takes the message at `offset` unless it was read already; returns whether it was taken.
    pub fn receive(&mut self, offset: u64, key: Option<&[u8]>, value: Option<&[u8]>) -> bool {
        if offset < self.expected_offset() {
            return false;
        }
        let deltas = message::decode(key, value);
        let value = value.unwrap_or_default().to_vec();
        self.pending_bytes += value.len();
        self.oldest_pending.get_or_insert_with(Instant::now);
        self.pending.push(Pending {
            offset,
            key: key.map(<[u8]>::to_vec),
            value,
            deltas,
        });
        true
    }

    /// Whether the pending messages are to be written now: the batch is full, or its first
    /// message has waited `max_wait`.
    pub fn is_due(
        &self,
        max_messages: usize,
        max_bytes: usize,
        max_wait: std::time::Duration,
    ) -> bool {
        self.pending.len() >= max_messages
            || self.pending_bytes >= max_bytes
            || self.oldest_pending.is_some_and(|t| t.elapsed() >= max_wait)
    }

    /// Whether messages wait to be written.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the pending messages as one atomic batch carrying their source range: first their
    /// dead letters to `dead` (synced), then the batch (durable on return). A message with a
    /// delta below the database's seal (the write refuses the whole batch) becomes a dead letter,
    /// and the batch is written without it.
    pub fn flush(&mut self, dead: &mut DeadLetterFile) -> Result<Flushed> {
        let (Some(first), Some(last)) = (self.pending.first(), self.pending.last()) else {
            return Ok(Flushed {
                next_offset: self.next_offset,
                ..Flushed::default()
            });
        };
        let (first_offset, next_offset) = (first.offset, last.offset + 1);
        let mut letters_written = BTreeSet::new();
        loop {
            let mut batch = self.build();
            let letters = self.dead_letters_pending();
            let fresh: Vec<DeadLetter> = (letters.iter())
                .filter(|l| !letters_written.contains(&l.offset))
                .cloned()
                .collect();
            dead.write_all(&fresh)?;
            letters_written.extend(fresh.iter().map(|l| l.offset));
            let dead_letters = self.dead_letters + letters.len() as u64;
            let range = SourceRange {
                topic: self.topic.clone(),
                partition: self.partition,
                first_offset,
                next_offset,
                dead_letters,
            };
            batch
                .set_source(range)
                .map_err(|e| Error::db(&self.path, e))?;
            match self.db.write(&batch) {
                Ok(_) => return Ok(self.written(batch.len(), next_offset, dead_letters)),
                Err(error @ aggrelog::Error::Sealed { position, seal, .. }) => {
                    let reason = format!("a delta below the database's seal {seal}: {error}");
                    let message = self.message_of_delta(position as usize);
                    self.pending[message].deltas = Err(reason);
                }
                Err(e) => return Err(Error::db(&self.path, e)),
            }
        }
    }

    /// Forgets the pending messages a batch of `deltas` just wrote, up to `next_offset`.
    fn written(&mut self, deltas: usize, next_offset: u64, dead_letters: u64) -> Flushed {
        let flushed = Flushed {
            deltas: deltas as u64,
            messages: self.pending.len() as u64,
            next_offset,
        };
        self.next_offset = next_offset;
        self.dead_letters = dead_letters;
        self.pending.clear();
        self.pending_bytes = 0;
        self.oldest_pending = None;
        flushed
    }

    /// The index in `pending` of the message whose deltas hold the batch's delta `index`.
    fn message_of_delta(&self, index: usize) -> usize {
        let mut before = 0;
        for (at, message) in self.pending.iter().enumerate() {
            let count = message.deltas.as_ref().map_or(0, Vec::len);
            if index < before + count {
                return at;
            }
            before += count;
        }
        debug_assert!(false, "delta {index} is in no pending message");
        self.pending.len().saturating_sub(1)
    }

    /// The batch of every pending message's deltas. A message the engine refuses (its deltas
    /// passed the parser, so this is rare) becomes a dead letter and the batch is built again
    /// without it, so that no message is ever partly in a batch.
    fn build(&mut self) -> Batch {
        loop {
            match try_build(&self.topic, self.partition, &self.pending) {
                Ok(batch) => return batch,
                Err((index, reason)) => self.pending[index].deltas = Err(reason),
            }
        }
    }

    fn dead_letters_pending(&self) -> Vec<DeadLetter> {
        let letter = |p: &Pending, reason: &String| DeadLetter {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: p.offset,
            reason: reason.clone(),
            key: p.key.clone(),
            value: p.value.clone(),
        };
        (self.pending.iter())
            .filter_map(|p| p.deltas.as_ref().err().map(|reason| letter(p, reason)))
            .collect()
    }

    /// Closes the database; pending messages are dropped (they are read again from the stored
    /// position by whoever holds the partition next).
    pub fn close(self) -> Result<()> {
        self.db.close().map_err(|e| Error::db(&self.path, e))
    }
}

/// The batch of `pending`'s deltas, each message's named `topic/partition/offset`, or the index
/// of the first message the engine refuses and why.
fn try_build(topic: &str, partition: u32, pending: &[Pending]) -> Result<Batch, (usize, String)> {
    let mut batch = Batch::new();
    for (index, message) in pending.iter().enumerate() {
        let Ok(deltas) = &message.deltas else {
            continue;
        };
        let name = format!("{topic}/{partition}/{}", message.offset);
        (batch.name(&name)).map_err(|e| (index, format!("its name: {e}")))?;
        for (n, delta) in deltas.iter().enumerate() {
            // The position defaults to the delta's index in its message, whatever the batch.
            (delta.push_to(&mut batch, n as u32))
                .map_err(|e| (index, format!("delta {}: {e}", n + 1)))?;
        }
    }
    Ok(batch)
}
