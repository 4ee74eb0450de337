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
use crate::slot::{user_data, SlotState};

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

    pub(crate) fn is_enabled(&self) -> bool {
        self.timeout.is_some()
    }

    /// Records the deadline of an operation admitted at `now`.
    pub(crate) fn push(&mut self, now: Instant, key: usize, generation: u32) {
        if let Some(timeout) = self.timeout {
            self.entries.push_back((now + timeout, key, generation));
        }
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
        self.zombie_count
    }

    fn deadline_is_live(&self, key: usize, generation: u32) -> bool {
        self.slots
            .get(key)
            .is_some_and(|slot| slot.generation == generation && slot.state != SlotState::Zombie)
    }

    /// The earliest deadline of an operation still pending, dropping stale entries before it.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, key, generation)) = self.deadlines.entries.front() {
            if self.deadline_is_live(key, generation) {
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
        self.compact_deadlines();
        let Some(first) = self.next_deadline() else {
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
            if self.deadline_is_live(key, generation) {
                self.expire(key, timeout, out);
            }
        }
    }

    fn expire(&mut self, key: usize, timeout: Duration, out: &mut Vec<Completion>) {
        self.stats.timed_out_count += 1;
        let timed_out = Err(IoError::TimedOut { timeout });
        let slot = &mut self.slots[key];
        if slot.state == SlotState::Waiting {
            // Not in the kernel: the buffer comes back. Its `waiting` entry is now stale.
            let slot = self.slots.remove(key);
            out.push(slot.op.complete(timed_out));
            return;
        }
        slot.state = SlotState::Zombie;
        let target = user_data(key, slot.generation);
        out.push(Completion::new(slot.op.info(), timed_out, None));
        self.zombie_count += 1;
        if !self.push_cancel(target) {
            self.submit_pushed();
            // Still full (an SQPOLL thread lagging): the zombie waits for its own CQE.
            let _ = self.push_cancel(target);
        }
    }

    /// Drops stale entries once they outnumber live operations, so the queue stays within
    /// twice the pending operations however long one operation takes.
    fn compact_deadlines(&mut self) {
        let live_count = self.slots.len() - self.zombie_count;
        if self.deadlines.entries.len() <= 2 * live_count + 64 {
            return;
        }
        let mut entries = std::mem::take(&mut self.deadlines.entries);
        entries.retain(|&(_, key, generation)| self.deadline_is_live(key, generation));
        self.deadlines.entries = entries;
    }
}
