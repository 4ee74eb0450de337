//! Exit codes and error reporting: one line on stderr with the whole `source()` chain.

use std::fmt;
use std::process::ExitCode;

use crate::output::{note, OutputError};

/// Any failure of a subcommand; its exit code is 1 for a [`UsageError`], 141 when stdout's
/// reader left (an [`OutputError`]), else 2.
pub type Failure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a subcommand that ran to its end finished (the codes are in `rbio --help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Success,
    /// 2: the device did not deliver what was asked (`inspect`: a mirror); the output says
    /// what is missing and one line on stderr why.
    DeviceError,
    /// 3: bringup recovered the index, but some slot headers or a checkpoint mirror could not
    /// be read.
    Unreadable,
    /// 4: bringup ignored the checkpoint as a whole; the index starts empty.
    CheckpointIgnored,
    /// 5: the benchmark fell behind its baseline.
    Regression,
}

/// Exit code for bad arguments (clap's errors and [`UsageError`]).
pub const EXIT_USAGE: u8 = 1;
/// Exit code for a device, layout or engine error, or output stdout refused (a full disk).
pub const EXIT_FAILURE: u8 = 2;
/// Exit code when stdout's reader left before the output was all written: 128 + 13, what a
/// shell reports for a program that SIGPIPE ended.
pub const EXIT_READER_GONE: u8 = 141;

impl Exit {
    /// The process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(self.number())
    }

    /// The exit code as a number (as the JSON of several devices gives it).
    pub fn number(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::DeviceError => EXIT_FAILURE,
            Exit::Unreadable => 3,
            Exit::CheckpointIgnored => 4,
            Exit::Regression => 5,
        }
    }

    /// How bad the outcome is, for [`Exit::most_severe`]: nothing recovered (2) is worse than
    /// a whole checkpoint ignored, an empty index (4), which is worse than a partly unreadable
    /// device whose index was recovered (3), which is worse than success (0).
    fn severity(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Unreadable => 1,
            Exit::CheckpointIgnored => 2,
            Exit::Regression => 3,
            Exit::DeviceError => 4,
        }
    }

    /// The most severe of `exits` (success when there are none): the exit of a command that
    /// brought several devices up.
    pub fn most_severe(exits: impl IntoIterator<Item = Exit>) -> Exit {
        exits
            .into_iter()
            .max_by_key(|exit| exit.severity())
            .unwrap_or(Exit::Success)
    }
}

/// The command line asks for something rbio refuses (exit code 1).
#[derive(Debug)]
pub struct UsageError(String);

impl UsageError {
    /// A usage error saying `message`.
    pub fn new(message: impl Into<String>) -> UsageError {
        UsageError(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Prints `error` as `rbio: error: ...` with each cause not already said, and returns the exit
/// code for it. When stdout's reader left, nothing is printed: the command ends quietly, as a
/// Unix tool that SIGPIPE ends does.
pub fn report(error: &Failure) -> ExitCode {
    if error
        .downcast_ref::<OutputError>()
        .is_some_and(OutputError::reader_gone)
    {
        return ExitCode::from(EXIT_READER_GONE);
    }
    note!("rbio: error: {}", rbio_engines::error_line(&**error));
    let usage = error.downcast_ref::<UsageError>().is_some();
    ExitCode::from(if usage { EXIT_USAGE } else { EXIT_FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_severe_exit_wins_whatever_the_order() {
        use Exit::*;
        assert_eq!(Exit::most_severe([]), Success);
        assert_eq!(Exit::most_severe([Success, Success]), Success);
        assert_eq!(Exit::most_severe([Success, Unreadable]), Unreadable);
        assert_eq!(
            Exit::most_severe([Unreadable, CheckpointIgnored]),
            CheckpointIgnored
        );
        assert_eq!(
            Exit::most_severe([CheckpointIgnored, Unreadable]),
            CheckpointIgnored
        );
        assert_eq!(
            Exit::most_severe([DeviceError, CheckpointIgnored, Unreadable, Success]),
            DeviceError
        );
        assert_eq!(
            Exit::most_severe([Success, Unreadable, CheckpointIgnored, DeviceError]),
            DeviceError
        );
        assert_eq!(Exit::most_severe([DeviceError]).number(), 2);
    }
}
