//! The engine interface: submit batches of operations, reap their completions.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::completion::Completion;
use crate::op::Op;

/// How long [`Engine::reap`] may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Do not block: return what is complete now.
    Nothing,
    /// Block until at least one completion is available or `deadline` passes. An engine may
    /// hold a finished operation back briefly (at most a millisecond) to hand out several at
    /// once, since waking a caller per completion can cost more than the I/O itself.
    Until(Instant),
}

/// What an engine can do, for callers that choose buffers and windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The engine's name as the `rbio` command spells it ("serial", "posix", "uring", "nvme").
    pub name: &'static str,
    /// Offsets, lengths and buffer addresses must be multiples of this (1: anything goes).
    pub align_bytes: usize,
    /// The most operations the engine has with the device at once; more are queued.
    pub in_flight_max: usize,
    /// Whether buffers from a registered pool are transferred without per-operation mapping.
    pub fixed_buffers: bool,
    /// Whether operations go to the device as NVMe commands, bypassing the block layer.
    pub passthrough: bool,
}

/// A way of performing operations on one device.
///
/// # Contract, for implementors
///
/// - [`submit`](Engine::submit) takes every operation out of the vector. It does not block on
///   the device. An operation that cannot even be started (misaligned, out of range, the
///   engine is broken) still completes, with its error, through `reap`.
/// - Every submitted operation completes exactly once: never lost, never reported twice.
/// - At most `capabilities().in_flight_max` operations are with the device at once; the rest
///   wait in the engine, which refills its window as completions arrive.
/// - [`reap`](Engine::reap) with [`Wait::Until`] returns no later than its deadline (plus the
///   time of one device call for synchronous engines), and at once when nothing is pending.
///   Completions come in the order they finish, not the order of submission.
///   An engine with an operation timeout completes an operation the device does not answer as
///   [`IoError::TimedOut`](crate::IoError::TimedOut).
/// - While an operation is in flight its buffer belongs to the engine. A completion carries the
///   buffer back when the device is done with it, or no buffer if the device never answered;
///   the engine then frees the buffer only once the kernel has let go of it. Until then the
///   buffer counts in [`held_buffer_count`](Engine::held_buffer_count); when the kernel lets
///   go, the readiness fd becomes readable, and the next `reap` (any wait, even with nothing
///   pending) returns the buffer to its pool and clears the fd.
/// - [`readiness`](Engine::readiness) is readable whenever `reap(Wait::Nothing)` would return
///   a completion or give a held buffer back.
/// - Dropping the engine with operations pending neither hangs beyond a bounded time nor frees
///   memory the kernel may still write.
pub trait Engine: Send {
    /// What this engine can do.
    fn capabilities(&self) -> Capabilities;

    /// Takes every operation in `ops` (leaving it empty) and starts them.
    fn submit(&mut self, ops: &mut Vec<Op>);

    /// Appends completed operations to `completions` and returns how many it appended.
    fn reap(&mut self, completions: &mut Vec<Completion>, wait: Wait) -> usize;

    /// How many submitted operations have not been reaped yet.
    fn pending_count(&self) -> usize;

    /// An fd that is readable when there is something to reap, for `poll`/`epoll`/`polling`.
    fn readiness(&self) -> BorrowedFd<'_>;

    /// Buffers of operations already completed without them (timed out or canceled while the
    /// device still had them) that the engine holds until the device lets go. Each one's
    /// return is announced on the readiness fd. An engine that never keeps a buffer past its
    /// completion (the default) says 0.
    fn held_buffer_count(&self) -> usize {
        0
    }

    /// The longest an operation stays unanswered before the engine completes it as timed out,
    /// its retries included; `None` (the default) for an engine without a timeout, whose
    /// operations take as long as the device does.
    fn op_timeout(&self) -> Option<Duration> {
        None
    }
}

/// Forwards every call, so a wrapper can borrow an engine instead of owning it.
impl<E: Engine + ?Sized> Engine for &mut E {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    fn submit(&mut self, ops: &mut Vec<Op>) {
        (**self).submit(ops)
    }

    fn reap(&mut self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        (**self).reap(completions, wait)
    }

    fn pending_count(&self) -> usize {
        (**self).pending_count()
    }

    fn readiness(&self) -> BorrowedFd<'_> {
        (**self).readiness()
    }

    fn held_buffer_count(&self) -> usize {
        (**self).held_buffer_count()
    }

    fn op_timeout(&self) -> Option<Duration> {
        (**self).op_timeout()
    }
}

impl<E: Engine + ?Sized> Engine for Box<E> {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }

    fn submit(&mut self, ops: &mut Vec<Op>) {
        (**self).submit(ops)
    }

    fn reap(&mut self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        (**self).reap(completions, wait)
    }

    fn pending_count(&self) -> usize {
        (**self).pending_count()
    }

    fn readiness(&self) -> BorrowedFd<'_> {
        (**self).readiness()
    }

    fn held_buffer_count(&self) -> usize {
        (**self).held_buffer_count()
    }

    fn op_timeout(&self) -> Option<Duration> {
        (**self).op_timeout()
    }
}
