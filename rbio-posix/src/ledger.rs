//! The ledger: which operations are in flight, the completions waiting to be reaped, and the
//! one place where an operation is completed, exactly once, by its worker or by its deadline.
//!
//! Every admitted operation gets an id (increasing, never reused) and a ticket in `in_flight`.
//! Whoever removes the ticket (the worker that performed the operation, the timer when its
//! deadline passes, or the clean-up of a worker that died) produces the one completion; a
//! worker whose ticket is already gone drops its late result, which returns the buffer to its
//! pool only after the system call has let go of it. All of it happens under one mutex.
//!
//! A timed-out operation's buffer stays with its job until the worker lets go of it (after
//! the stuck call returns, or when it skips the job): the ledger counts such buffers as held
//! and makes the readiness fd readable as each comes back.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rbio_core::{Completion, IoError, OpInfo, Readiness, Wait};

/// The longest a finished operation waits, unannounced, while a reaper is blocked in
/// [`reap`](rbio_core::Engine::reap): workers wake the reaper once per batch of completions
/// rather than once each, and the reaper sleeps at most this long at a time while such a
/// deferred wake is possible.
pub const ANNOUNCE_LATENCY_MAX: Duration = Duration::from_millis(1);

/// What the ledger remembers of an operation between submission and completion.
#[derive(Clone, Copy, Debug)]
struct Ticket {
    info: OpInfo,
    deadline: Instant,
    worker_index: usize,
}

#[derive(Debug, Default)]
struct LedgerState {
    in_flight: BTreeMap<u64, Ticket>,
    done: Vec<Completion>,
    next_id: u64,
    signalled: bool,
    reaper_waiting: bool,
    /// Completions wait in `done` for a blocked reaper that was not woken for them yet.
    wake_deferred: bool,
    timer_idle: bool,
    stopping: bool,
    timed_out_count: u64,
    late_count: u64,
    /// Operations completed as timed out whose job (and buffer) a worker still has.
    held_count: usize,
}

/// Counts of operations the deadline decided, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeoutStats {
    /// Operations completed as [`IoError::TimedOut`] because their deadline passed.
    pub timed_out_count: u64,
    /// Results that workers produced after their operation had timed out, discarded.
    pub late_result_count: u64,
}

/// Shared by the engine, its workers and its timer thread.
#[derive(Debug)]
pub(crate) struct Ledger {
    state: Mutex<LedgerState>,
    /// The reaper waits here for `done` to become non-empty.
    completed: Condvar,
    /// The timer waits here for the next deadline, or for work when nothing is in flight.
    timer_wake: Condvar,
    readiness: Readiness,
    op_timeout: Duration,
    /// Every id up to this one has left `in_flight` (ids expire in order), so a worker can
    /// tell without the lock that an operation it has not started yet timed out.
    expired_through: AtomicU64,
}

impl Ledger {
    pub(crate) fn new(readiness: Readiness, op_timeout: Duration) -> Ledger {
        Ledger {
            state: Mutex::new(LedgerState {
                next_id: 1,
                ..LedgerState::default()
            }),
            completed: Condvar::new(),
            timer_wake: Condvar::new(),
            readiness,
            op_timeout,
            expired_through: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        // Every update of the state is complete before anything that can panic, so the state
        // is consistent even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the admitted operations (each with the worker it goes to) and the refused
    /// ones' completions; returns the first id, the rest following consecutively.
    pub(crate) fn register(
        &self,
        admitted: impl ExactSizeIterator<Item = (OpInfo, usize)>,
        refused: Vec<Completion>,
    ) -> u64 {
        let deadline = Instant::now() + self.op_timeout;
        let mut state = self.lock();
        let first_id = state.next_id;
        let was_idle = state.in_flight.is_empty();
        debug_assert!(state
            .in_flight
            .last_key_value()
            .is_none_or(|(_, last)| last.deadline <= deadline));
        for (info, worker_index) in admitted {
            let id = state.next_id;
            state.next_id += 1;
            let ticket = Ticket {
                info,
                deadline,
                worker_index,
            };
            state.in_flight.insert(id, ticket);
        }
        let mut wake_reaper = false;
        for completion in refused {
            wake_reaper |= self.push_done(&mut state, completion);
        }
        let wake_timer = was_idle && !state.in_flight.is_empty() && state.timer_idle;
        drop(state);
        if wake_reaper {
            self.completed.notify_one();
        }
        if wake_timer {
            self.timer_wake.notify_one();
        }
        first_id
    }

    /// Whether the operation `id` may still be performed: it has not timed out.
    ///
    /// Lock-free; an operation that times out right after this check is performed anyway and
    /// its result discarded, as for any operation the device answers late.
    pub(crate) fn is_live(&self, id: u64) -> bool {
        id > self.expired_through.load(Ordering::Acquire)
    }

    /// Completes the operation `id` with `completion`, unless its deadline or the clean-up of
    /// its worker already did. Returns the completion when it came too late, for the caller
    /// to drop outside the lock.
    ///
    /// A reaper blocked in `reap` is woken once per batch of completions, not once for each:
    /// while the finishing worker has more operations queued (so it is not about to idle)
    /// and fewer than half of the outstanding operations are done, the wake is deferred.
    /// Each wake costs both threads a context switch, which on a busy machine is more CPU
    /// than the `pread` itself; the deferral is bounded by the worker's next completion, by
    /// the half-way mark, by any worker running out of work, and by the reaper's own naps
    /// ([`ANNOUNCE_LATENCY_MAX`]), so a completion never waits behind a stuck operation.
    pub(crate) fn finish(
        &self,
        id: u64,
        completion: Completion,
        more_queued: bool,
    ) -> Option<Completion> {
        let mut state = self.lock();
        if state.in_flight.remove(&id).is_none() {
            state.late_count += 1;
            return Some(completion);
        }
        let mut wake_reaper = self.push_done(&mut state, completion);
        let done_count = state.done.len();
        let outstanding_count = done_count + state.in_flight.len();
        if wake_reaper && more_queued && 2 * done_count < outstanding_count {
            state.wake_deferred = true;
            wake_reaper = false;
        }
        drop(state);
        if wake_reaper {
            self.completed.notify_one();
        }
        None
    }

    /// Completes every operation still assigned to a worker that died, with
    /// [`IoError::Canceled`] and no buffer (its buffers were dropped as the thread unwound).
    pub(crate) fn abandon_worker(&self, worker_index: usize) {
        let mut state = self.lock();
        let orphans: Vec<(u64, Ticket)> = state
            .in_flight
            .iter()
            .filter(|(_, ticket)| ticket.worker_index == worker_index)
            .map(|(id, ticket)| (*id, *ticket))
            .collect();
        let mut wake_reaper = false;
        for (id, ticket) in orphans {
            state.in_flight.remove(&id);
            let canceled = Completion::new(ticket.info, Err(IoError::Canceled), None);
            wake_reaper |= self.push_done(&mut state, canceled);
        }
        drop(state);
        if wake_reaper {
            self.completed.notify_one();
        }
    }

    /// Appends every completion waiting to `completions`, blocking until one arrives or the
    /// deadline of `wait` passes. The caller knows that something is pending.
    pub(crate) fn reap(&self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        let mut state = self.lock();
        if let Wait::Until(deadline) = wait {
            while state.done.is_empty() || state.wake_deferred {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                // A worker defers a wake only while fewer than half of the outstanding
                // operations are done, so only with two or more in flight; with fewer, and no
                // wake already deferred, the reaper can sleep until its deadline.
                let deferral_possible = state.wake_deferred || state.in_flight.len() >= 2;
                let nap = if deferral_possible {
                    (deadline - now).min(ANNOUNCE_LATENCY_MAX)
                } else {
                    deadline - now
                };
                state.reaper_waiting = true;
                let (woken, nap_result) = self
                    .completed
                    .wait_timeout(state, nap)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                state = woken;
                state.reaper_waiting = false;
                if nap_result.timed_out() && !state.done.is_empty() {
                    break;
                }
            }
            state.wake_deferred = false;
        }
        let reaped_count = state.done.len();
        completions.append(&mut state.done);
        if state.signalled {
            state.signalled = false;
            self.readiness.clear();
        }
        reaped_count
    }

    /// What the deadlines decided so far.
    pub(crate) fn timeout_stats(&self) -> TimeoutStats {
        let state = self.lock();
        TimeoutStats {
            timed_out_count: state.timed_out_count,
            late_result_count: state.late_count,
        }
    }

    /// Buffers of timed-out operations that workers have not let go of yet.
    pub(crate) fn held_count(&self) -> usize {
        self.lock().held_count
    }

    /// The timeout every operation gets from its submission.
    pub(crate) fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// Records that a worker dropped the job of a timed-out operation, its buffer back in its
    /// pool, and makes the readiness fd readable so that a caller waiting for a buffer wakes.
    pub(crate) fn release_held(&self) {
        let mut state = self.lock();
        state.held_count = state.held_count.saturating_sub(1);
        if !state.signalled {
            state.signalled = true;
            self.readiness.signal();
        }
    }

    /// Tells the timer thread to return.
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.stopping = true;
        self.timer_wake.notify_all();
    }

    /// The timer thread's body: completes operations as timed out when their deadline
    /// passes, sleeping until the earliest deadline (or until work arrives) in between.
    pub(crate) fn run_timer(&self) {
        let mut state = self.lock();
        while !state.stopping {
            let now = Instant::now();
            if self.expire(&mut state, now) {
                // Rare (a deadline passed): waking under the lock costs nothing that matters.
                self.completed.notify_one();
            }
            let earliest = state.in_flight.first_key_value().map(|(_, t)| t.deadline);
            state = match earliest {
                None => {
                    state.timer_idle = true;
                    let mut state = self
                        .timer_wake
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    state.timer_idle = false;
                    state
                }
                Some(deadline) => {
                    self.timer_wake
                        .wait_timeout(state, deadline.saturating_duration_since(now))
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
            };
        }
    }

    /// Completes as timed out every operation whose deadline is at or before `now`.
    ///
    /// All tickets share one timeout and ids grow with submission time, so the overdue ones
    /// are exactly a prefix of `in_flight`. Returns whether the reaper must be woken.
    fn expire(&self, state: &mut LedgerState, now: Instant) -> bool {
        let mut wake_reaper = false;
        while let Some(entry) = state.in_flight.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let (id, ticket) = entry.remove_entry();
            self.expired_through.store(id, Ordering::Release);
            state.timed_out_count += 1;
            state.held_count += 1;
            let timeout = self.op_timeout;
            let timed_out = Completion::new(ticket.info, Err(IoError::TimedOut { timeout }), None);
            wake_reaper |= self.push_done(state, timed_out);
        }
        wake_reaper
    }

    /// Queues a completion for the reaper: returns whether to wake it (it waits in `reap`),
    /// else makes the readiness fd readable. The caller wakes the reaper after unlocking, so
    /// that it does not wake only to block on the lock still held.
    ///
    /// A waiting reaper takes everything in `done` as soon as it wakes, whatever its
    /// deadline, and holds the engine meanwhile (`reap` takes `&mut self`), so nobody else
    /// could reap what a poller would be told about: skipping the eventfd then saves two
    /// system calls per wake-up. Otherwise the eventfd is written under the lock, so that it
    /// is readable exactly while `signalled` is set: never readable with nothing to reap
    /// for long, never unreadable with something to reap.
    fn push_done(&self, state: &mut LedgerState, completion: Completion) -> bool {
        state.done.push(completion);
        if state.reaper_waiting {
            state.wake_deferred = false;
            return true;
        }
        if !state.signalled {
            state.signalled = true;
            self.readiness.signal();
        }
        false
    }
}

impl AsFd for Ledger {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.readiness.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbio_core::{Buffer, Op};

    fn read_info(tag: u64) -> OpInfo {
        Op::read(tag, 0, Buffer::new_aligned(512, 512).unwrap()).info()
    }

    #[test]
    fn a_result_after_the_deadline_is_discarded_and_reported_once() {
        let ledger = Ledger::new(Readiness::new().unwrap(), Duration::ZERO);
        let id = ledger.register([(read_info(7), 0)].into_iter(), Vec::new());
        let mut state = ledger.lock();
        ledger.expire(&mut state, Instant::now());
        drop(state);
        assert!(!ledger.is_live(id));

        let late = Completion::new(read_info(7), Ok(512), None);
        assert!(
            ledger.finish(id, late, false).is_some(),
            "late result must be handed back"
        );
        let mut completions = Vec::new();
        assert_eq!(ledger.reap(&mut completions, Wait::Nothing), 1);
        assert!(matches!(
            completions[0].result(),
            Err(IoError::TimedOut { .. })
        ));
        assert_eq!(ledger.reap(&mut completions, Wait::Nothing), 0);
        assert_eq!(
            ledger.timeout_stats(),
            TimeoutStats {
                timed_out_count: 1,
                late_result_count: 1
            }
        );
    }

    #[test]
    fn readiness_is_set_while_completions_wait() {
        let ledger = Ledger::new(Readiness::new().unwrap(), Duration::from_secs(60));
        let id = ledger.register([(read_info(1), 0)].into_iter(), Vec::new());
        assert!(!rbio_core::poll_readable(ledger.as_fd(), 0));
        assert!(ledger
            .finish(id, Completion::new(read_info(1), Ok(512), None), false)
            .is_none());
        assert!(rbio_core::poll_readable(ledger.as_fd(), 0));
        let mut completions = Vec::new();
        assert_eq!(ledger.reap(&mut completions, Wait::Nothing), 1);
        assert!(!rbio_core::poll_readable(ledger.as_fd(), 0));
    }

    #[test]
    fn abandoning_a_worker_cancels_only_its_operations() {
        let ledger = Ledger::new(Readiness::new().unwrap(), Duration::from_secs(60));
        let first = ledger.register(
            [(read_info(0), 0), (read_info(1), 1), (read_info(2), 0)].into_iter(),
            Vec::new(),
        );
        ledger.abandon_worker(0);
        let mut completions = Vec::new();
        assert_eq!(ledger.reap(&mut completions, Wait::Nothing), 2);
        let tags: Vec<u64> = completions.iter().map(|c| c.tag()).collect();
        assert_eq!(tags, [0, 2]);
        assert!(ledger
            .finish(
                first + 1,
                Completion::new(read_info(1), Ok(512), None),
                false
            )
            .is_none());
    }
}
