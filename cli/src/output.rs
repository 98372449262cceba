//! How the CLI reports: results on stdout, one sentence per failure on stderr, progress bars
//! only on a terminal, and a closed pipe ends a command quietly (like other Unix tools).

use std::any::Any;
use std::fmt::Display;
use std::io::{self, BufWriter, IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// Exit status for failures (usage, bad input, damage, I/O).
pub const EXIT_FAILURE: i32 = 2;
/// Exit status of `get` when the aggregate is absent.
pub const EXIT_ABSENT: i32 = 1;

/// Longest stretch of user input echoed in a message, in characters.
const ECHO_CHARS: usize = 200;

/// A failure to report: the sentence for stderr and the exit status. A closed stdout is a
/// failure with no sentence and status 0: the reader has what it wanted.
pub struct Failure {
    pub message: String,
    pub status: i32,
}

impl Failure {
    /// A failure with `message` and the usual status.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            status: EXIT_FAILURE,
        }
    }

    /// Whether it is the quiet end of a closed pipe.
    pub fn is_closed_pipe(&self) -> bool {
        self.status == 0 && self.message.is_empty()
    }
}

impl<E: Display + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        let closed_pipe = (&e as &dyn Any)
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe);
        if closed_pipe {
            return Failure {
                message: String::new(),
                status: 0,
            };
        }
        Failure::new(e.to_string())
    }
}

/// Writes one line to stdout (a closed pipe becomes a quiet [`Failure`]).
pub fn emit(line: impl Display) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Writes each of `lines` to stdout, one per line, buffered (a closed pipe becomes a quiet
/// [`Failure`]).
pub fn emit_lines<T: Display>(lines: impl IntoIterator<Item = T>) -> Result<(), Failure> {
    try_emit_lines(lines.into_iter().map(Ok::<T, Failure>))
}

/// [`emit_lines`] of lines that may fail to be made: stops at the first error, after the lines
/// before it are written.
pub fn try_emit_lines<T: Display, E: Into<Failure>>(
    lines: impl IntoIterator<Item = Result<T, E>>,
) -> Result<(), Failure> {
    let mut out = BufWriter::new(io::stdout().lock());
    for line in lines {
        let written = match line {
            Ok(line) => writeln!(out, "{line}"),
            Err(error) => {
                out.flush()?;
                return Err(error.into());
            }
        };
        written?;
    }
    out.flush()?;
    Ok(())
}

/// `text` cut to about [`ECHO_CHARS`] characters, for echoing input in a message.
pub fn cut(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

/// A progress bar on stderr when stderr is a terminal, hidden otherwise (scripts and pipes see
/// only results and errors). `len` 0 makes a spinner.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = if len == 0 {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::new(len)
    };
    let template = if len == 0 {
        "{spinner} {msg} {elapsed}"
    } else {
        "{msg} [{bar:30}] {pos}/{len} {elapsed} eta {eta}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_quiet_and_other_errors_speak() {
        let closed = Failure::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(closed.is_closed_pipe());
        let other = Failure::from(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(other.status, EXIT_FAILURE);
        assert!(!other.message.is_empty());
    }

    #[test]
    fn long_echoes_are_cut_on_a_character_boundary() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(300);
        let cut = cut(&long);
        assert!(
            cut.starts_with(&"é".repeat(200)) && cut.ends_with("(600 bytes)"),
            "{cut}"
        );
    }
}
