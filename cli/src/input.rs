//! The input FILEs of the writing commands (`ingest`, `import`): checking that every one opens
//! before anything is committed, opening one (`-` is stdin), and naming the `FILE:LINE` of a
//! delta a batch was rejected for.

use std::fs::File;
use std::io::{self, BufReader, Read};

use aggrelog::Error;

use crate::output::Failure;

/// Checks that every FILE can be opened before anything is committed; returns their bytes.
pub fn preflight(files: &[String]) -> Result<u64, Failure> {
    let mut bytes = 0;
    for name in files.iter().filter(|name| *name != "-") {
        let file = File::open(name).map_err(|e| format!("{name}: cannot open: {e}"))?;
        bytes += file.metadata().map_or(0, |m| m.len());
    }
    Ok(bytes)
}

/// The line of each delta of a file by its position, in memory that grows only with the blank
/// lines: a run of consecutive lines is one entry.
#[derive(Default)]
pub struct LineMap {
    /// `(position, line)` where a run of consecutive lines starts, positions increasing.
    runs: Vec<(u64, u64)>,
}

impl LineMap {
    /// Records that the delta at `position` (the next one) is on line `line`.
    pub fn push(&mut self, position: u64, line: u64) {
        let continues = self
            .runs
            .last()
            .is_some_and(|&(p, l)| l + (position - p) == line);
        if !continues {
            self.runs.push((position, line));
        }
    }

    /// The line of the delta at `position` (0 when unknown).
    pub fn line_of(&self, position: u32) -> u64 {
        let position = u64::from(position);
        let run = self.runs.partition_point(|&(p, _)| p <= position);
        run.checked_sub(1)
            .map_or(0, |i| self.runs[i].1 + (position - self.runs[i].0))
    }
}

/// FILE ("-": stdin), buffered.
pub fn open_input(name: &str) -> Result<BufReader<Box<dyn Read + Send>>, Failure> {
    let source: Box<dyn Read + Send> = if name == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(name).map_err(|e| format!("{name}: cannot open: {e}"))?)
    };
    Ok(BufReader::with_capacity(1 << 20, source))
}

/// A rejected batch of FILE as a failure: `FILE:LINE` when a delta is to blame (`line_of(i)` is
/// the line of the batch's delta `i`), `FILE` otherwise.
pub fn rejection(name: &str, line_of: impl Fn(u32) -> u64, error: Error) -> Failure {
    match &error {
        Error::Sealed { position, .. } => {
            let line = line_of(*position);
            Failure::new(format!("{name}:{line}: {error}"))
        }
        _ => Failure::new(format!("{name}: {error}")),
    }
}
