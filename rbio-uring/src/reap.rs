//! Reaping: CQEs become completions, retries or continuations; the window is refilled at once;
//! waits loop until something completes or the deadline passes, checking the deadline on
//! every pass (a wait can end early with no completion, as every wait on a polled ring does).

use std::time::{Duration, Instant};

use io_uring::{cqueue::EntryMarker as _, types};
use rbio_core::{Completion, Errno, Wait};

use crate::codec::{Codec, Outcome};
use crate::features::RingFeatures;
use crate::flags::RingFlags;
use crate::ring::Ring;
use crate::slot::{CqeFor, Next};

impl<C: Codec> Ring<C> {
    /// Appends completions to `out`, waiting as `wait` allows; returns how many it appended.
    pub(crate) fn reap(&mut self, out: &mut Vec<Completion>, wait: Wait) -> usize {
        let start = out.len();
        self.ensure_issuer();
        let mut poked = false;
        loop {
            self.drain_completions(out);
            self.expire_overdue(out);
            self.refill();
            self.slots.take_ready(out);
            let idle = self.cqe_owed() == 0 && self.ring.submission().is_empty();
            if out.len() > start || idle || self.broken.is_some() {
                break;
            }
            if self.pending_count() == 0 {
                // Only zombies and cancels are owed: collect what the kernel has finished
                // (their buffers go back to the pool) without waiting for the rest.
                if !poked && self.needs_poke() {
                    poked = true;
                    self.poke();
                    continue;
                }
                break;
            }
            match wait {
                Wait::Nothing if poked || !self.needs_poke() => break,
                Wait::Nothing => {
                    poked = true;
                    self.poke();
                }
                Wait::Until(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let until = self.next_deadline().map_or(deadline, |d| d.min(deadline));
                    // A permanent error breaks the ring, and the next pass hands out the
                    // completions that made.
                    self.wait_for_cqe(until.saturating_duration_since(now));
                }
            }
        }
        self.submit_pushed();
        self.update_readiness();
        out.len() - start
    }

    /// Whether completions may be waiting for an enter: polled rings, and task-run modes
    /// whose completion work the kernel flags.
    fn needs_poke(&mut self) -> bool {
        self.report.flags.contains(RingFlags::IOPOLL)
            || self.ring.submission().taskrun()
            || !self.ring.submission().is_empty()
    }

    /// One enter that submits what is pushed and runs completion work, without waiting.
    fn poke(&mut self) {
        self.stats.enter_count += 1;
        if let Err(error) = self.ring.submit_and_wait(0) {
            self.note_enter_error(&error);
        }
    }

    /// Submits what is pushed and waits for one CQE, at most `timeout`; `false` if the
    /// kernel refused with a permanent error, which broke the ring (see `note_enter_error`).
    ///
    /// A ring whose enter polls (IOPOLL) does not wait: the kernel would ignore the timeout
    /// and could poll a stuck command far past it. It polls once, without spinning, and
    /// returns; every caller loops and checks its own deadline on each pass (`reap`,
    /// `cancel_and_drain`), so its waits end on time there too, at the cost of spinning in
    /// user space instead of in the kernel, as polling does anyway.
    pub(crate) fn wait_for_cqe(&mut self, timeout: Duration) -> bool {
        self.stats.enter_count += 1;
        let entered = if self.report.flags.polls_in_enter() {
            self.ring.submit_and_wait(0)
        } else if self.report.features.contains(RingFeatures::EXT_ARG) {
            let timespec = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&timespec);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.arm_timer(timeout);
            self.ring.submit_and_wait(1)
        };
        match entered {
            Ok(_) => true,
            Err(error) => !self.note_enter_error(&error),
        }
    }

    /// Processes every CQE in the ring.
    fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        if self.broken.is_some() {
            return;
        }
        let mut cqes = std::mem::take(&mut self.scratch);
        cqes.extend(self.ring.completion());
        let in_flight_before = self.slots.in_kernel_count();
        let out_before = out.len();
        for cqe in cqes.drain(..) {
            self.stats.cqe_count += 1;
            if self.timers.on_cqe(cqe.user_data()) {
                continue;
            }
            if let CqeFor::Op { key, piece_bytes } = self.slots.on_cqe(cqe.user_data()) {
                self.on_op_cqe(key, piece_bytes, &cqe, out);
            }
        }
        self.scratch = cqes;
        debug_assert!(
            out.len() - out_before <= in_flight_before,
            "{} completions with {in_flight_before} in flight",
            out.len() - out_before
        );
    }

    /// Decides what follows the CQE of slot `key`'s piece: completion, continuation or retry.
    fn on_op_cqe(
        &mut self,
        key: usize,
        piece_bytes: usize,
        cqe: &C::Cqe,
        out: &mut Vec<Completion>,
    ) {
        let next = match self.codec.outcome(cqe, piece_bytes) {
            Outcome::Moved(moved_bytes) => self.slots.moved(key, moved_bytes),
            Outcome::Errno(errno) => self.slots.failed(key, errno),
            Outcome::Failed(error) => Next::Done(self.slots.finish(key, Err(error))),
        };
        match next {
            Next::Done(completion) => out.push(completion),
            Next::Continues { short } => self.stats.continuation_count += u64::from(short),
            Next::Retried(errno) if errno == Errno::EINTR => self.stats.eintr_retry_count += 1,
            Next::Retried(_) => self.stats.busy_retry_count += 1,
        }
    }
}
