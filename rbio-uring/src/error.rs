//! `SetupError`: why an io_uring engine could not be built, with every flag set the kernel
//! refused.

use std::fmt;
use std::io;

use crate::flags::SetupAttempt;

/// Why [`UringBuilder::build`](crate::UringBuilder::build) failed.
#[non_exhaustive]
#[derive(Debug)]
pub enum SetupError {
    /// The window is zero or larger than a ring can hold.
    Window {
        /// The window asked for.
        window: usize,
        /// The largest window this engine accepts.
        window_max: usize,
    },
    /// `io_uring_setup` refused every flag set tried.
    RingRefused {
        /// Each flag set and its errno, in the order tried.
        attempts: Vec<SetupAttempt>,
    },
    /// The buffer pool's arena could not be registered as fixed buffers.
    RegisterBuffers {
        /// The arena's size.
        arena_bytes: usize,
        /// The kernel's error.
        source: io::Error,
    },
    /// The arena needs more registered iovecs than a ring takes.
    FixedBufferCount {
        /// Iovecs needed (one per gibibyte of arena).
        iovec_count: usize,
    },
    /// The device file could not be registered.
    RegisterFile {
        /// The kernel's error.
        source: io::Error,
    },
    /// The kernel created a completion queue smaller than the window needs: one CQE per
    /// operation in flight and one per cancel.
    CqTooSmall {
        /// The CQ entries the kernel reported.
        cq_entries: u32,
        /// The CQ entries the window needs (twice the window).
        cq_entries_min: usize,
    },
    /// The readiness eventfd could not be created or registered with the ring.
    Readiness {
        /// The kernel's error.
        source: io::Error,
    },
    /// The ring could not be enabled on the thread that first used it.
    Enable {
        /// The kernel's error.
        source: io::Error,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Window { window, window_max } => {
                write!(f, "window {window} is outside 1..={window_max}")
            }
            SetupError::RingRefused { attempts } => {
                write!(f, "io_uring_setup refused every flag set")?;
                for attempt in attempts {
                    write!(f, "; {attempt}")?;
                }
                write!(
                    f,
                    " (is io_uring disabled by the sysctl kernel.io_uring_disabled or a seccomp \
                     filter?)"
                )
            }
            SetupError::RegisterBuffers {
                arena_bytes,
                source,
            } => {
                write!(
                    f,
                    "registering the {arena_bytes}-byte buffer arena failed: {source}"
                )?;
                if source.raw_os_error() == Some(libc::ENOMEM) {
                    write!(
                        f,
                        " (raise RLIMIT_MEMLOCK, `ulimit -l`, above the arena size)"
                    )?;
                }
                Ok(())
            }
            SetupError::FixedBufferCount { iovec_count } => write!(
                f,
                "the buffer arena needs {iovec_count} registered iovecs, more than {}",
                u16::MAX
            ),
            SetupError::RegisterFile { source } => {
                write!(f, "registering the device file failed: {source}")
            }
            SetupError::CqTooSmall {
                cq_entries,
                cq_entries_min,
            } => write!(
                f,
                "the kernel made a completion queue of {cq_entries} entries; the window needs \
                 {cq_entries_min}"
            ),
            SetupError::Readiness { source } => {
                write!(f, "setting up the readiness eventfd failed: {source}")
            }
            SetupError::Enable { source } => {
                write!(
                    f,
                    "enabling the ring on its issuing thread failed: {source}"
                )
            }
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::RegisterBuffers { source, .. }
            | SetupError::RegisterFile { source }
            | SetupError::Readiness { source }
            | SetupError::Enable { source } => Some(source),
            _ => None,
        }
    }
}
