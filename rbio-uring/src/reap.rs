//! Reaping: CQEs become completions, retries or continuations; the window is refilled at once;
//! waits loop until something completes or the deadline passes, checking the deadline on
//! every pass (a wait can end early with no completion, as every wait on a polled ring does).

use std::time::{Duration, Instant};

use io_uring::{cqueue::EntryMarker as _, types};
use rbio_core::{Completion, Errno, IoError, Wait, EINTR_RETRIES_MAX};

use crate::codec::{Codec, Outcome};
use crate::flags::RingFlags;
use crate::ring::Ring;
use crate::slot::{slot_of, SlotState, CANCEL_USER_DATA};

/// How many times one piece is resubmitted after `EAGAIN` or `EBUSY` before the error is
/// reported.
pub const BUSY_RETRIES_MAX: u32 = 16;

/// How many short transfers one operation continues before it ends as
/// [`IoError::ShortTransfer`]. Each continuation moves at least one byte, so the serial
/// engine never needs a bound; this one keeps a misbehaving device from looping for long.
pub const SHORT_CONTINUATIONS_MAX: u32 = 1024;

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
            out.append(&mut self.ready);
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
        } else {
            let timespec = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&timespec);
            self.ring.submitter().submit_with_args(1, &args)
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
        let (in_flight_before, out_before) = (self.in_kernel_count - self.zombie_count, out.len());
        let mut op_cqe_count = 0;
        for cqe in cqes.drain(..) {
            self.stats.cqe_count += 1;
            let user_data = cqe.user_data();
            if user_data == CANCEL_USER_DATA {
                self.cancel_count -= 1;
                continue;
            }
            if self.on_op_cqe(user_data, &cqe, out) {
                op_cqe_count += 1;
            }
        }
        self.scratch = cqes;
        debug_assert!(
            out.len() - out_before <= op_cqe_count && op_cqe_count <= in_flight_before,
            "{op_cqe_count} op CQEs gave {} completions with {in_flight_before} in flight",
            out.len() - out_before
        );
    }

    /// Handles the CQE of one piece; `false` if it was a zombie's (already reported).
    fn on_op_cqe(&mut self, user_data: u64, cqe: &C::Cqe, out: &mut Vec<Completion>) -> bool {
        let (key, generation) = slot_of(user_data);
        let slot = self
            .slots
            .get_mut(key)
            .filter(|slot| slot.generation == generation)
            .unwrap_or_else(|| panic!("CQE for unknown slot {key} generation {generation}"));
        assert!(
            slot.state != SlotState::Waiting,
            "CQE for slot {key} that is not in the kernel"
        );
        self.in_kernel_count -= 1;
        if slot.state == SlotState::Zombie {
            // The kernel is done with the buffer: it returns to its pool here.
            self.zombie_count -= 1;
            self.slots.remove(key);
            return false;
        }
        slot.state = SlotState::Waiting;
        match self.codec.outcome(cqe, slot.piece_bytes) {
            Outcome::Moved(moved_bytes) => self.on_moved(key, moved_bytes, out),
            Outcome::Errno(errno) => self.on_errno(key, errno, out),
            Outcome::Failed(error) => self.finish(key, Err(error), out),
        }
        true
    }

    /// A piece moved `moved_bytes`: finish, or continue with the rest, as `rbio_core::transfer`.
    fn on_moved(&mut self, key: usize, moved_bytes: usize, out: &mut Vec<Completion>) {
        let slot = &mut self.slots[key];
        let len_bytes = slot.op.info().len_bytes;
        let piece_bytes = slot.piece_bytes;
        debug_assert!(
            moved_bytes <= piece_bytes,
            "moved {moved_bytes} of {piece_bytes}"
        );
        if moved_bytes == 0 && piece_bytes > 0 {
            let done_bytes = slot.done_bytes;
            return self.finish(
                key,
                Err(IoError::ShortTransfer {
                    done_bytes,
                    len_bytes,
                }),
                out,
            );
        }
        slot.done_bytes += moved_bytes.min(piece_bytes);
        if slot.done_bytes >= len_bytes {
            let done_bytes = slot.done_bytes;
            return self.finish(key, Ok(done_bytes), out);
        }
        if moved_bytes < piece_bytes {
            slot.short_count += 1;
            self.stats.continuation_count += 1;
            if slot.short_count > SHORT_CONTINUATIONS_MAX {
                let done_bytes = slot.done_bytes;
                let short = IoError::ShortTransfer {
                    done_bytes,
                    len_bytes,
                };
                return self.finish(key, Err(short), out);
            }
        }
        slot.eintr_count = 0;
        slot.busy_count = 0;
        let generation = slot.generation;
        self.waiting.push_front((key, generation));
    }

    /// A piece failed with `errno`: retry transient errors within their bounds, else finish.
    fn on_errno(&mut self, key: usize, errno: Errno, out: &mut Vec<Completion>) {
        let slot = &mut self.slots[key];
        let retry = if errno == Errno::EINTR {
            slot.eintr_count += 1;
            self.stats.eintr_retry_count += 1;
            slot.eintr_count <= EINTR_RETRIES_MAX
        } else if errno == Errno::EAGAIN || errno == Errno::EBUSY {
            slot.busy_count += 1;
            self.stats.busy_retry_count += 1;
            slot.busy_count <= BUSY_RETRIES_MAX
        } else {
            false
        };
        if retry {
            // Resubmitted by the refill that follows this reap's drain of the CQ.
            let generation = slot.generation;
            self.waiting.push_front((key, generation));
        } else if errno == Errno::ECANCELED {
            self.finish(key, Err(IoError::Canceled), out);
        } else {
            self.finish(key, Err(IoError::Os(errno)), out);
        }
    }

    /// Completes slot `key` with `result`, handing its buffer back.
    fn finish(&mut self, key: usize, result: Result<usize, IoError>, out: &mut Vec<Completion>) {
        let slot = self.slots.remove(key);
        out.push(slot.op.complete(result));
    }
}
