//! Counters of what an io_uring engine did, for tests and benchmarks.

use rbio_core::Errno;

/// What an engine has done since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringStats {
    /// `io_uring_enter` calls made (submissions and waits together).
    pub enter_count: u64,
    /// SQEs pushed for operations (first pieces, continuations and retries).
    pub sqe_count: u64,
    /// CQEs reaped (operations, cancels, and operations that had already timed out).
    pub cqe_count: u64,
    /// Pieces resubmitted after `EINTR`.
    pub eintr_retry_count: u64,
    /// Pieces resubmitted after `EAGAIN` or `EBUSY`.
    pub busy_retry_count: u64,
    /// Short transfers continued for the rest.
    pub continuation_count: u64,
    /// Operations completed as timed out.
    pub timed_out_count: u64,
    /// Times the ring was rebuilt because the engine moved to another thread.
    pub rehome_count: u64,
    /// Operations completed as canceled because the thread that could reap them was left.
    pub orphaned_count: u64,
    /// The error that made `io_uring_enter` unusable (the ring is then broken: every
    /// operation completes with it), or the last error registering the readiness eventfd.
    pub enter_error: Option<Errno>,
}
