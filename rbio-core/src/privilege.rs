//! Tests that need more than an ordinary user has (feature `testing`).
//!
//! A test that needs root (loop devices, userfaultfd) or more locked memory than
//! `RLIMIT_MEMLOCK` allows (fixed buffers) starts with one line:
//!
//! ```no_run
//! # fn a_test() {
//! rbio_core::skip_without!(rbio_core::privilege::Need::Root("loop devices"));
//! # }
//! ```
//!
//! Without the privilege the test prints one line to standard error, outside the test
//! harness's capture, such as `my_test: skipped: needs root (loop devices)`, and returns. With
//! `RBIO_REQUIRE_PRIVILEGED_TESTS=1` in the environment (CI sets it) it fails instead, so a
//! privileged run never passes by skipping.

use std::io::Write;

/// Returns from the calling test, with one line on standard error saying why, unless the
/// process has the [`Need`](crate::privilege::Need) given; fails it instead when
/// `RBIO_REQUIRE_PRIVILEGED_TESTS=1` (see [`available`](crate::privilege::available)).
#[macro_export]
macro_rules! skip_without {
    ($need:expr) => {
        if !$crate::privilege::available($need) {
            return;
        }
    };
}

/// The environment variable that turns skips into failures when set to `1`.
pub const REQUIRE_ENV: &str = "RBIO_REQUIRE_PRIVILEGED_TESTS";

/// What a test needs beyond an ordinary user; the `&str` says what for, in the skip line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Need {
    /// An effective user id of 0.
    Root(&'static str),
    /// At least this many bytes of lockable memory (root is not limited by
    /// `RLIMIT_MEMLOCK`).
    LockedMemory {
        /// Bytes the test locks at once.
        bytes: u64,
        /// What locks them.
        what: &'static str,
    },
}

impl Need {
    /// Why the test cannot run without it, for the skip line.
    fn reason(&self) -> String {
        match self {
            Need::Root(what) => format!("needs root ({what})"),
            Need::LockedMemory { bytes, what } => format!(
                "needs {} MiB of locked memory ({what}; RLIMIT_MEMLOCK allows {}; raise `ulimit -l` or run as root)",
                bytes.div_ceil(1 << 20),
                match memlock_limit_bytes() {
                    Some(limit) => format!("{} KiB", limit >> 10),
                    None => "no limit".to_owned(),
                }
            ),
        }
    }

    /// Whether this process has it.
    fn is_met(&self) -> bool {
        match self {
            Need::Root(_) => is_root(),
            Need::LockedMemory { bytes, .. } => {
                // Strictly more: locking exactly the limit fails (the kernel rounds up and
                // counts other pages too).
                is_root() || memlock_limit_bytes().is_none_or(|limit| limit > *bytes)
            }
        }
    }
}

/// Whether the calling test may go on: `true` when the process has `need`. Otherwise prints
/// `TEST: skipped: REASON` on standard error (uncaptured) and returns `false`.
///
/// # Panics
/// Without `need` when [`REQUIRE_ENV`] is `1`, saying what is missing.
#[track_caller] // a failure under RBIO_REQUIRE_PRIVILEGED_TESTS=1 names the test's line
pub fn available(need: Need) -> bool {
    if need.is_met() {
        return true;
    }
    let reason = need.reason();
    if std::env::var(REQUIRE_ENV).is_ok_and(|value| value == "1") {
        panic!("{reason}, and {REQUIRE_ENV}=1 forbids skipping");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // Straight to the stream, not eprintln!: the harness captures that and shows it only
    // for failures, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {reason}");
    false
}

/// Whether the effective user id is 0, from `/proc/self/status` (`Uid:` real, effective, ...).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0")
}

/// The soft `RLIMIT_MEMLOCK` in bytes, `None` when unlimited, from `/proc/self/limits`.
fn memlock_limit_bytes() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    parse_memlock_limit(&limits)
}

fn parse_memlock_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max locked memory"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
        Max processes             95712                95712                processes \n\
        Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn the_memlock_soft_limit_is_read_from_proc_limits() {
        assert_eq!(parse_memlock_limit(LIMITS), Some(8 << 20));
        let unlimited = LIMITS.replace("8388608              8388608", "unlimited unlimited");
        assert_eq!(parse_memlock_limit(&unlimited), None);
    }

    #[test]
    fn root_needs_no_locked_memory_limit_and_others_are_held_to_it() {
        let need = Need::LockedMemory {
            bytes: u64::MAX,
            what: "a test",
        };
        // Only root, or a process without a limit, can lock everything.
        assert_eq!(need.is_met(), is_root() || memlock_limit_bytes().is_none());
        let small = Need::LockedMemory {
            bytes: 0,
            what: "a test",
        };
        assert!(small.is_met());
    }

    #[test]
    fn the_reason_names_what_is_missing() {
        assert_eq!(
            Need::Root("loop devices").reason(),
            "needs root (loop devices)"
        );
        let reason = Need::LockedMemory {
            bytes: 64 << 20,
            what: "fixed buffers",
        }
        .reason();
        assert!(
            reason.starts_with("needs 64 MiB of locked memory (fixed buffers;"),
            "{reason}"
        );
    }
}
