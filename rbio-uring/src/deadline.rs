//! Per-operation deadlines: an operation not completed within the timeout of its admission
//! completes as [`IoError::TimedOut`].
//!
//! Deadlines are kept in user space and enforced by bounding each wait (`io_uring_enter`
//! with a timeout), not with linked timeout SQEs: that costs no extra SQE and CQE per
//! operation (the whole CQ stays available to the window), works for operations still
//! queued behind the window, and does not depend on the kernel being able to abort a request
//! already in a device, which it cannot for block I/O. An operation in the kernel when its
//! deadline passes is reported at once without its buffer and canceled (`AsyncCancel`); its
//! slot becomes a zombie that holds the buffer until the kernel's CQE shows it let go.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rbio_core::{Completion, IoError};

use crate::codec::Codec;
use crate::ring::Ring;

/// Deadlines in admission order; all share one timeout, so the front is the earliest.
#[derive(Debug)]
pub(crate) struct Deadlines {
    timeout: Option<Duration>,
    /// (deadline, slot key, generation). Entries of finished operations are stale and are
    /// dropped when they reach the front or by compaction.
    entries: VecDeque<(Instant, usize, u32)>,
}

impl Deadlines {
    pub(crate) fn new(timeout: Option<Duration>) -> Deadlines {
        Deadlines {
            timeout,
            entries: VecDeque::new(),
        }
    }

    /// The deadline of operations admitted now, if operations have one.
    pub(crate) fn deadline_for_now(&self) -> Option<Instant> {
        self.timeout.map(|timeout| Instant::now() + timeout)
    }

    /// Records `deadline` (from [`Deadlines::deadline_for_now`]) for slot `key`'s admission
    /// `generation`.
    pub(crate) fn push(&mut self, deadline: Instant, key: usize, generation: u32) {
        self.entries.push_back((deadline, key, generation));
    }
}

impl<C: Codec> Ring<C> {
    /// The timeout each operation gets from its admission, if any.
    pub(crate) fn op_timeout(&self) -> Option<Duration> {
        self.deadlines.timeout
    }

    /// Buffers of operations reported as timed out that the kernel still holds (zombies);
    /// each comes back when its CQE arrives, which signals the readiness eventfd.
    pub(crate) fn held_buffer_count(&self) -> usize {
        self.slots.zombie_count()
    }

    /// The earliest deadline of an operation still pending, dropping stale entries before it.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, key, generation)) = self.deadlines.entries.front() {
            if self.slots.is_pending(key, generation) {
                return Some(deadline);
            }
            self.deadlines.entries.pop_front();
        }
        None
    }

    /// Completes every operation past its deadline as timed out.
    pub(crate) fn expire_overdue(&mut self, out: &mut Vec<Completion>) {
        let Some(timeout) = self.deadlines.timeout else {
            return;
        };
        // Operations mostly finish in admission order: dropping the stale front first
        // usually leaves nothing to compact.
        let first = self.next_deadline();
        self.compact_deadlines();
        let Some(first) = first else {
            return;
        };
        let now = Instant::now();
        if first > now {
            return;
        }
        while let Some(&(deadline, key, generation)) = self.deadlines.entries.front() {
            if deadline > now {
                break;
            }
            self.deadlines.entries.pop_front();
            if self.slots.is_pending(key, generation) {
                self.expire(key, timeout, out);
            }
        }
    }

    /// Completes slot `key` as timed out; one in the kernel is canceled and stays a zombie
    /// until its CQE (see `Slots::expire`).
    fn expire(&mut self, key: usize, timeout: Duration, out: &mut Vec<Completion>) {
        self.stats.timed_out_count += 1;
        let (completion, cancel) = self.slots.expire(key, IoError::TimedOut { timeout });
        out.push(completion);
        let Some(target) = cancel else {
            return;
        };
        self.push_cancel_now(target);
    }

    /// Drops stale entries once they outnumber live operations, so the queue stays within
    /// twice the pending operations however long one operation takes.
    fn compact_deadlines(&mut self) {
        if self.deadlines.entries.len() <= 2 * self.slots.live_count() + 64 {
            return;
        }
        let mut entries = std::mem::take(&mut self.deadlines.entries);
        entries.retain(|&(_, key, generation)| self.slots.is_pending(key, generation));
        self.deadlines.entries = entries;
    }
}
