//! Exit codes and error reporting: one line on stderr with the whole `source()` chain.

use std::fmt;
use std::process::ExitCode;

/// Any failure of a subcommand; its exit code is 1 for a [`UsageError`], else 2.
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
/// Exit code for a device, layout or engine error.
pub const EXIT_FAILURE: u8 = 2;

impl Exit {
    /// The process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Exit::Success => 0,
            Exit::DeviceError => EXIT_FAILURE,
            Exit::Unreadable => 3,
            Exit::CheckpointIgnored => 4,
            Exit::Regression => 5,
        })
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
/// code for it.
pub fn report(error: &Failure) -> ExitCode {
    eprintln!("rbio: error: {}", chain(&**error));
    let usage = error.downcast_ref::<UsageError>().is_some();
    ExitCode::from(if usage { EXIT_USAGE } else { EXIT_FAILURE })
}

/// The error and its `source()` chain on one line (shared with the Python package).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    rbio_engines::error_line(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading the mirror")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chain_joins_causes_once() {
        let outer = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(chain(&outer), "reading the mirror: disk on fire");
        let said = std::io::Error::other("disk on fire");
        assert_eq!(chain(&said), "disk on fire");
    }
}
