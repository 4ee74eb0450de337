//! Reaping: CQEs become completions, retries or continuations; the window is refilled at once;
//! waits loop until something completes or the deadline passes, checking the deadline on
//! every pass (a wait can end early with no completion, as every wait on a polled ring does).
//!
//! One `io_uring_enter` per refill cycle: SQEs pushed while the kernel still has earlier
//! pieces in flight wait in the SQ for the next wait, which submits them and waits in the same
//! call, for several completions (a quarter of what is in flight) where the kernel can bound
//! such a wait in time (`MIN_TIMEOUT`, else a short `EXT_ARG` timeout), else for one. When
//! nothing else is in flight, or someone polls the readiness fd, they are submitted at once so
//! the device never idles behind the SQ.

use std::time::{Duration, Instant};

use io_uring::{cqueue::EntryMarker as _, types};
use rbio_core::{Completion, Errno, Wait};

use crate::codec::{Codec, Outcome};
use crate::features::RingFeatures;
use crate::flags::RingFlags;
use crate::ring::Ring;
use crate::slot::{CqeFor, Next};

/// A wait asks for the pieces in the kernel divided by this.
const WAIT_FRACTION: usize = 4;

/// How long a wait for several completions holds out for all of them.
pub(crate) const BATCH_WAIT: Duration = Duration::from_micros(50);

impl<C: Codec> Ring<C> {
    /// Appends completions to `out`, waiting as `wait` allows; returns how many it appended.
    pub(crate) fn reap(&mut self, out: &mut Vec<Completion>, wait: Wait) -> usize {
        let start = out.len();
        self.ensure_issuer();
        let mut poked = false;
        let mut batched = false;
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
                    let timeout = until.saturating_duration_since(now);
                    self.wait_for_cqes(self.wait_count(batched), timeout);
                    batched = true;
                }
            }
        }
        self.submit_unless_busy();
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

    /// How many CQEs a wait asks for: a quarter of the pieces in the kernel where the wait
    /// can be bounded in time, at its first pass (`batched` false) or at every pass with
    /// `MIN_TIMEOUT`; else one.
    fn wait_count(&self, batched: bool) -> usize {
        let features = self.report.features;
        let bounded = features.contains(RingFeatures::MIN_TIMEOUT)
            || (features.contains(RingFeatures::EXT_ARG) && !batched);
        if bounded {
            (self.slots.in_kernel_count() / WAIT_FRACTION).max(1)
        } else {
            1
        }
    }

    /// Submits what is pushed and waits for `want` CQEs, at most `timeout`; `false` if the
    /// kernel refused with a permanent error, which broke the ring (see `note_enter_error`).
    ///
    /// A wait for several returns with fewer once [`BATCH_WAIT`] has passed: with
    /// `MIN_TIMEOUT` as soon as one has arrived, else (`EXT_ARG` only) when that short timeout
    /// ends, after which the caller waits for one. Without `EXT_ARG` a timeout SQE bounds the
    /// wait (see `timer.rs`).
    ///
    /// A ring whose enter polls (IOPOLL) does not wait: the kernel would ignore the timeout
    /// and could poll a stuck command far past it. It polls once, without spinning, and
    /// returns; every caller loops and checks its own deadline on each pass (`reap`,
    /// `cancel_and_drain`), so its waits end on time there too, at the cost of spinning in
    /// user space instead of in the kernel, as polling does anyway.
    pub(crate) fn wait_for_cqes(&mut self, want: usize, timeout: Duration) -> bool {
        self.stats.enter_count += 1;
        let features = self.report.features;
        let entered = if self.report.flags.polls_in_enter() {
            self.ring.submit_and_wait(0)
        } else if features.contains(RingFeatures::MIN_TIMEOUT) {
            let timespec = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new()
                .timespec(&timespec)
                .min_wait_usec(BATCH_WAIT.as_micros() as u32);
            self.ring.submitter().submit_with_args(want, &args)
        } else if features.contains(RingFeatures::EXT_ARG) {
            let timeout = if want > 1 {
                timeout.min(BATCH_WAIT)
            } else {
                timeout
            };
            let timespec = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&timespec);
            self.ring.submitter().submit_with_args(want, &args)
        } else {
            self.arm_timer(timeout);
            self.ring.submit_and_wait(1)
        };
        match entered {
            Ok(_) => true,
            Err(error) => !self.note_enter_error(&error),
        }
    }

    /// Submits pushed SQEs now unless earlier pieces keep the kernel busy meanwhile (then the
    /// next wait submits them with its own enter). They go at once anyway where the readiness
    /// fd is in use (its poller may not reap before they complete), with SQPOLL (an enter then
    /// only wakes the kernel thread), and where SQEs are handed over a few per enter
    /// (`sqes_per_enter`, chosen for early dispatch).
    pub(crate) fn submit_unless_busy(&mut self) {
        let unsubmitted_count = self.ring.submission().len();
        let busy = self.slots.in_kernel_count() > unsubmitted_count;
        let at_once = self.readiness_wanted()
            || self.report.flags.contains(RingFlags::SQPOLL)
            || self.sqes_per_enter_max != usize::MAX;
        if !busy || at_once {
            self.submit_pushed();
        }
    }

    /// Processes every CQE in the ring, straight from the CQ.
    fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        if self.broken.is_some() {
            return;
        }
        let in_flight_before = self.slots.in_kernel_count();
        let out_before = out.len();
        let Ring {
            ring,
            codec,
            slots,
            timers,
            stats,
            ..
        } = self;
        for cqe in ring.completion() {
            stats.cqe_count += 1;
            let user_data = cqe.user_data();
            if timers.on_cqe(user_data) {
                continue;
            }
            let CqeFor::Op { key, piece_bytes } = slots.on_cqe(user_data) else {
                continue;
            };
            let next = match codec.outcome(&cqe, piece_bytes) {
                Outcome::Moved(moved_bytes) => slots.moved(key, moved_bytes, out),
                Outcome::Errno(errno) => slots.failed(key, errno, out),
                Outcome::Failed(error) => {
                    out.push(slots.finish(key, Err(error)));
                    Next::Done
                }
            };
            match next {
                Next::Done => {}
                Next::Continues { short } => stats.continuation_count += u64::from(short),
                Next::Retried(errno) if errno == Errno::EINTR => stats.eintr_retry_count += 1,
                Next::Retried(_) => stats.busy_retry_count += 1,
            }
        }
        debug_assert!(
            out.len() - out_before <= in_flight_before,
            "{} completions with {in_flight_before} in flight",
            out.len() - out_before
        );
    }
}
