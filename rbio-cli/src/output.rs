//! Where the command's words go, without panicking: results to stdout, where a failed write
//! becomes an [`OutputError`] that ends the command, and notes to stderr, where a failed write
//! is dropped as there is nowhere left to say it.
//!
//! `println!` and `eprintln!` panic when the write fails, as it does when the reader of a pipe
//! left early (`rbio bringup IMG --entries | head -1`); [`outln!`], [`out!`] and [`note!`]
//! take their place.

use std::fmt;
use std::io::{self, Write};

/// Writing the command's output to stdout failed.
#[derive(Debug)]
#[non_exhaustive]
pub struct OutputError {
    source: io::Error,
}

impl OutputError {
    /// Whether the reader closed its end of the pipe (`EPIPE`): the command then ends quietly
    /// with exit 141, as a Unix tool that SIGPIPE ends does.
    pub fn reader_gone(&self) -> bool {
        self.source.kind() == io::ErrorKind::BrokenPipe
    }
}

impl From<io::Error> for OutputError {
    fn from(source: io::Error) -> OutputError {
        OutputError { source }
    }
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot write the output to stdout")
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Writes `text` to stdout and flushes it, so that a failure is this call's and not lost at
/// exit. Use [`out!`] and [`outln!`].
pub fn stdout(text: fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut stdout = io::stdout().lock();
    stdout.write_fmt(text)?;
    stdout.flush()?;
    Ok(())
}

/// Writes `text` to stderr; a failure (stderr closed) is dropped, as there is nowhere left to
/// report it. Use [`note!`].
pub fn stderr(text: fmt::Arguments<'_>) {
    let _ = io::stderr().write_fmt(text);
}

/// `print!` to stdout that returns `Result<(), OutputError>` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))
    };
}

/// `println!` to stdout that returns `Result<(), OutputError>` instead of panicking.
macro_rules! outln {
    () => {
        $crate::output::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics: a line on stderr, dropped if stderr is closed.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {note, out, outln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_pipe_is_the_reader_gone() {
        let gone = OutputError::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(gone.reader_gone());
        let full = OutputError::from(io::Error::from_raw_os_error(28)); // ENOSPC
        assert!(!full.reader_gone());
        let line = rbio_engines::error_line(&full);
        assert!(
            line.starts_with("cannot write the output to stdout: No space left on device"),
            "{line}"
        );
    }
}
