//! The dead-letter file: one JSON line per malformed message,
//! `{"topic":T,"partition":P,"offset":O,"reason":R,"key":K,"value":V}` (`key` null when the
//! record has none; key and value as text, invalid UTF-8 replaced). A line is written and
//! synced before the batch that moves the partition's position past its offset, so a crash can
//! write one twice (its offset tells the copies apart) but never lose one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// A message that was not valid input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// Why it was rejected (`line 2: bad JSON at column 7: ...`).
    pub reason: String,
    /// The record key, if any.
    pub key: Option<Vec<u8>>,
    /// The record value (empty when the record had none).
    pub value: Vec<u8>,
}

impl DeadLetter {
    /// The dead letter as its JSON line (without the newline).
    pub fn to_json(&self) -> Value {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        json!({
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "key": self.key.as_deref().map(text),
            "value": text(&self.value),
        })
    }
}

/// The dead-letter file, opened for appending on first use.
#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    file: Option<File>,
}

impl DeadLetterFile {
    /// The dead-letter file at `path` (created when the first letter is written).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DeadLetterFile {
            path: path.into(),
            file: None,
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `letters` as JSON lines in one write and syncs the file.
    pub fn write_all(&mut self, letters: &[DeadLetter]) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for letter in letters {
            text.push_str(&letter.to_json().to_string());
            text.push('\n');
        }
        let path = self.path.clone();
        let file = self.open()?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(path, e))
    }

    fn open(&mut self) -> Result<&mut File> {
        let file = match self.file.take() {
            Some(file) => file,
            None => self.create()?,
        };
        Ok(self.file.insert(file))
    }

    /// Opens the file to append, creating it (and syncing its directory, so the new entry is
    /// durable) when missing.
    fn create(&self) -> Result<File> {
        let existed = self.path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        if !existed {
            crate::layout::sync_parent(&self.path)?;
        }
        Ok(file)
    }
}
