//! The ledger: which operations are in flight, the completions waiting to be reaped, and the
//! one place where an operation is completed, exactly once, by its worker or by its deadline.
//!
//! Every admitted operation gets an id (increasing, never reused) and a ticket in the shard of
//! the worker it goes to. Whoever removes the ticket (the worker that performed the operation,
//! the timer when its deadline passes, or the clean-up of a worker that died) produces the one
//! completion; a worker whose ticket is already gone drops its late result, which returns the
//! buffer to its pool only after the system call has let go of it.
//!
//! A worker completes an operation under its own shard's lock, which only the reaper (once per
//! reap), the timer and the submitter ever take besides it: no lock shared by all workers is
//! taken per operation. Counts the reaper waits on are atomics; the one shared lock (`control`)
//! is taken by a worker only to wake a reaper blocked in `reap`, once per batch of completions.
//!
//! A timed-out operation's buffer stays with its job until the worker lets go of it (after
//! the stuck call returns, or when it skips the job): the ledger counts such buffers as held
//! and makes the readiness fd readable as each comes back.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
}

/// One worker's operations in flight and the completions it produced, not yet reaped.
#[derive(Debug, Default)]
struct Shard {
    in_flight: BTreeMap<u64, Ticket>,
    done: Vec<Completion>,
}

/// What the reaper and the timer sleep on.
#[derive(Debug, Default)]
struct Control {
    timer_idle: bool,
    stopping: bool,
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
    /// One per worker; refused operations' completions go to the first.
    shards: Vec<Mutex<Shard>>,
    control: Mutex<Control>,
    /// The reaper waits here (with `control`) for a completion.
    completed: Condvar,
    /// The timer waits here (with `control`) for the next deadline, or for work.
    timer_wake: Condvar,
    readiness: Readiness,
    op_timeout: Duration,
    /// Every id up to this one has left `in_flight` (ids expire in order), so a worker can
    /// tell without a lock that an operation it has not started yet timed out.
    expired_through: AtomicU64,
    next_id: AtomicU64,
    in_flight_count: AtomicUsize,
    /// Completions in the shards' `done`.
    done_count: AtomicUsize,
    /// The readiness fd is signalled (set before the write, cleared before the read).
    signalled: AtomicBool,
    reaper_waiting: AtomicBool,
    /// Completions wait for a blocked reaper that was not woken for them yet.
    wake_deferred: AtomicBool,
    timed_out_count: AtomicU64,
    late_count: AtomicU64,
    /// Operations completed as timed out whose job (and buffer) a worker still has.
    held_count: AtomicUsize,
}

/// Locks `mutex`. Every update under these locks is complete before anything that can panic,
/// so the state is consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Ledger {
    /// A ledger for `worker_count` workers (at least one shard).
    pub(crate) fn new(readiness: Readiness, op_timeout: Duration, worker_count: usize) -> Ledger {
        Ledger {
            shards: (0..worker_count.max(1)).map(|_| Mutex::default()).collect(),
            control: Mutex::default(),
            completed: Condvar::new(),
            timer_wake: Condvar::new(),
            readiness,
            op_timeout,
            expired_through: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            in_flight_count: AtomicUsize::new(0),
            done_count: AtomicUsize::new(0),
            signalled: AtomicBool::new(false),
            reaper_waiting: AtomicBool::new(false),
            wake_deferred: AtomicBool::new(false),
            timed_out_count: AtomicU64::new(0),
            late_count: AtomicU64::new(0),
            held_count: AtomicUsize::new(0),
        }
    }

    /// Records the admitted operations (each with the worker it goes to) and the refused
    /// ones' completions; returns the first id, the rest following consecutively.
    pub(crate) fn register(
        &self,
        admitted: impl ExactSizeIterator<Item = (OpInfo, usize)>,
        refused: Vec<Completion>,
    ) -> u64 {
        let deadline = Instant::now() + self.op_timeout;
        let admitted_count = admitted.len();
        let first_id = self
            .next_id
            .fetch_add(admitted_count as u64, Ordering::Relaxed);
        self.in_flight_count
            .fetch_add(admitted_count, Ordering::SeqCst);
        // Operations come grouped by worker: each shard is locked once per run of them.
        let mut current: Option<(usize, MutexGuard<'_, Shard>)> = None;
        for ((info, worker_index), id) in admitted.zip(first_id..) {
            if current
                .as_ref()
                .is_none_or(|(index, _)| *index != worker_index)
            {
                current = Some((worker_index, lock(&self.shards[worker_index])));
            }
            let (_, shard) = current.as_mut().expect("locked above");
            shard.in_flight.insert(id, Ticket { info, deadline });
        }
        drop(current);
        let mut wake_reaper = false;
        if !refused.is_empty() {
            let mut shard = lock(&self.shards[0]);
            for completion in refused {
                wake_reaper |= self.push_done(&mut shard, completion);
            }
        }
        if wake_reaper {
            self.wake_reaper();
        }
        if admitted_count > 0 {
            // Once per batch, after the tickets are in: a timer that went idle before it
            // could see them is asleep by now, and waits for this.
            let control = lock(&self.control);
            if control.timer_idle {
                self.timer_wake.notify_one();
            }
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

    /// Completes the operation `id` of worker `worker_index` with `completion`, unless its
    /// deadline or the clean-up of its worker already did. Returns the completion when it
    /// came too late, for the caller to drop outside the lock.
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
        worker_index: usize,
        id: u64,
        completion: Completion,
        more_queued: bool,
    ) -> Option<Completion> {
        let mut shard = lock(&self.shards[worker_index]);
        if shard.in_flight.remove(&id).is_none() {
            drop(shard);
            self.late_count.fetch_add(1, Ordering::Relaxed);
            return Some(completion);
        }
        self.in_flight_count.fetch_sub(1, Ordering::SeqCst);
        let mut wake_reaper = self.push_done(&mut shard, completion);
        drop(shard);
        let done_count = self.done_count.load(Ordering::SeqCst);
        let outstanding_count = done_count + self.in_flight_count.load(Ordering::SeqCst);
        if wake_reaper && more_queued && 2 * done_count < outstanding_count {
            self.wake_deferred.store(true, Ordering::SeqCst);
            wake_reaper = false;
        }
        if wake_reaper {
            self.wake_reaper();
        }
        None
    }

    /// Completes every operation still assigned to a worker that died, with
    /// [`IoError::Canceled`] and no buffer (its buffers were dropped as the thread unwound).
    pub(crate) fn abandon_worker(&self, worker_index: usize) {
        let mut shard = lock(&self.shards[worker_index]);
        let orphans = std::mem::take(&mut shard.in_flight);
        self.in_flight_count
            .fetch_sub(orphans.len(), Ordering::SeqCst);
        let mut wake_reaper = false;
        for ticket in orphans.into_values() {
            let canceled = Completion::new(ticket.info, Err(IoError::Canceled), None);
            wake_reaper |= self.push_done(&mut shard, canceled);
        }
        drop(shard);
        if wake_reaper {
            self.wake_reaper();
        }
    }

    /// Appends every completion waiting to `completions`, blocking until one arrives or the
    /// deadline of `wait` passes. The caller knows that something is pending.
    pub(crate) fn reap(&self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        if let Wait::Until(deadline) = wait {
            self.wait_for_done(deadline);
        }
        let mut reaped_count = 0;
        for shard in &self.shards {
            let mut shard = lock(shard);
            reaped_count += shard.done.len();
            completions.append(&mut shard.done);
        }
        self.done_count.fetch_sub(reaped_count, Ordering::SeqCst);
        if self.signalled.swap(false, Ordering::SeqCst) {
            self.readiness.clear();
            // An announcement made between the swap and the clear set the mark again and
            // lost its signal: unset the mark, so the next announcement signals, and signal
            // again here for completions still waiting. A lost "held buffer back" needs no
            // signal: the caller reaping now looks at its pool before it waits again.
            self.signalled.store(false, Ordering::SeqCst);
            if self.done_count.load(Ordering::SeqCst) > 0 {
                self.signalled.store(true, Ordering::SeqCst);
                self.readiness.signal();
            }
        }
        reaped_count
    }

    /// Blocks until a completion waits (and no wake is deferred) or `deadline` passes.
    fn wait_for_done(&self, deadline: Instant) {
        let ready = || {
            self.done_count.load(Ordering::SeqCst) > 0 && !self.wake_deferred.load(Ordering::SeqCst)
        };
        let mut control = lock(&self.control);
        loop {
            let now = Instant::now();
            if ready() || now >= deadline {
                break;
            }
            // A worker defers a wake only while fewer than half of the outstanding
            // operations are done, so only with two or more in flight; with fewer, and no
            // wake already deferred, the reaper can sleep until its deadline.
            let deferral_possible = self.wake_deferred.load(Ordering::SeqCst)
                || self.in_flight_count.load(Ordering::SeqCst) >= 2;
            let nap = if deferral_possible {
                (deadline - now).min(ANNOUNCE_LATENCY_MAX)
            } else {
                deadline - now
            };
            // Set before the last look: a worker that finishes after it sees the flag and
            // takes `control` to wake us, which it can only do once we wait.
            self.reaper_waiting.store(true, Ordering::SeqCst);
            if ready() {
                self.reaper_waiting.store(false, Ordering::SeqCst);
                break;
            }
            let (woken, nap_result) = self
                .completed
                .wait_timeout(control, nap)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            control = woken;
            self.reaper_waiting.store(false, Ordering::SeqCst);
            if nap_result.timed_out() && self.done_count.load(Ordering::SeqCst) > 0 {
                break;
            }
        }
        self.wake_deferred.store(false, Ordering::SeqCst);
    }

    /// What the deadlines decided so far.
    pub(crate) fn timeout_stats(&self) -> TimeoutStats {
        TimeoutStats {
            timed_out_count: self.timed_out_count.load(Ordering::Relaxed),
            late_result_count: self.late_count.load(Ordering::Relaxed),
        }
    }

    /// Buffers of timed-out operations that workers have not let go of yet.
    pub(crate) fn held_count(&self) -> usize {
        self.held_count.load(Ordering::SeqCst)
    }

    /// The timeout every operation gets from its submission.
    pub(crate) fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// Records that a worker dropped the job of a timed-out operation, its buffer back in its
    /// pool, and makes the readiness fd readable so that a caller waiting for a buffer wakes.
    pub(crate) fn release_held(&self) {
        // Never below zero: a job skipped after its timeout was counted when it expired.
        let _ = self
            .held_count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                held.checked_sub(1)
            });
        self.announce();
    }

    /// Tells the timer thread to return.
    pub(crate) fn stop(&self) {
        let mut control = lock(&self.control);
        control.stopping = true;
        self.timer_wake.notify_all();
    }

    /// The timer thread's body: completes operations as timed out when their deadline
    /// passes, sleeping until the earliest deadline (or until work arrives) in between.
    pub(crate) fn run_timer(&self) {
        let mut control = lock(&self.control);
        while !control.stopping {
            let now = Instant::now();
            if self.expire(now) {
                // Rare (a deadline passed): waking under the lock costs nothing that matters.
                self.completed.notify_one();
            }
            control = match self.earliest_deadline() {
                None => {
                    control.timer_idle = true;
                    let mut control = self
                        .timer_wake
                        .wait(control)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    control.timer_idle = false;
                    control
                }
                Some(deadline) => {
                    self.timer_wake
                        .wait_timeout(control, deadline.saturating_duration_since(now))
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
            };
        }
    }

    /// The earliest deadline of an operation in flight.
    fn earliest_deadline(&self) -> Option<Instant> {
        self.shards
            .iter()
            .filter_map(|shard| {
                let shard = lock(shard);
                shard.in_flight.first_key_value().map(|(_, t)| t.deadline)
            })
            .min()
    }

    /// Completes as timed out every operation whose deadline is at or before `now`.
    ///
    /// All tickets share one timeout and ids grow with submission time, so the overdue ones
    /// are a prefix of each shard's `in_flight`. `expired_through` moves before each timed-out
    /// completion is announced, so a worker never performs an operation whose timeout was
    /// reaped; an id below it still in another shard is overdue too and leaves in this pass.
    /// Returns whether the reaper must be woken.
    fn expire(&self, now: Instant) -> bool {
        let mut wake_reaper = false;
        for shard in &self.shards {
            let mut shard = lock(shard);
            while let Some(entry) = shard.in_flight.first_entry() {
                if entry.get().deadline > now {
                    break;
                }
                let (id, ticket) = entry.remove_entry();
                self.expired_through.fetch_max(id, Ordering::Release);
                self.in_flight_count.fetch_sub(1, Ordering::SeqCst);
                self.timed_out_count.fetch_add(1, Ordering::Relaxed);
                self.held_count.fetch_add(1, Ordering::SeqCst);
                let timeout = self.op_timeout;
                let timed_out =
                    Completion::new(ticket.info, Err(IoError::TimedOut { timeout }), None);
                wake_reaper |= self.push_done(&mut shard, timed_out);
            }
        }
        wake_reaper
    }

    /// Queues a completion for the reaper: returns whether to wake it (it waits in `reap`),
    /// else makes the readiness fd readable. The caller wakes the reaper after unlocking the
    /// shard (`wake_reaper`).
    ///
    /// A waiting reaper takes everything waiting as soon as it wakes, whatever its deadline,
    /// and holds the engine meanwhile (`reap` takes `&mut self`), so nobody else could reap
    /// what a poller would be told about: skipping the eventfd then saves two system calls
    /// per wake-up. Otherwise the eventfd is written once per batch: `signalled` is set
    /// while it is readable, and `reap` clears both before looking again.
    fn push_done(&self, shard: &mut Shard, completion: Completion) -> bool {
        shard.done.push(completion);
        self.done_count.fetch_add(1, Ordering::SeqCst);
        if self.reaper_waiting.load(Ordering::SeqCst) {
            self.wake_deferred.store(false, Ordering::SeqCst);
            return true;
        }
        self.announce();
        false
    }

    /// Makes the readiness fd readable, unless it already is.
    fn announce(&self) {
        if !self.signalled.swap(true, Ordering::SeqCst) {
            self.readiness.signal();
        }
    }

    /// Wakes a reaper blocked in `reap` (taking `control`, so it cannot be between its last
    /// look and its wait).
    fn wake_reaper(&self) {
        let _control = lock(&self.control);
        self.completed.notify_one();
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
        let ledger = Ledger::new(Readiness::new().unwrap(), Duration::ZERO, 1);
        let id = ledger.register([(read_info(7), 0)].into_iter(), Vec::new());
        ledger.expire(Instant::now());
        assert!(!ledger.is_live(id));

        let late = Completion::new(read_info(7), Ok(512), None);
        assert!(
            ledger.finish(0, id, late, false).is_some(),
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
        let ledger = Ledger::new(Readiness::new().unwrap(), Duration::from_secs(60), 1);
        let id = ledger.register([(read_info(1), 0)].into_iter(), Vec::new());
        assert!(!rbio_core::poll_readable(ledger.as_fd(), 0));
        assert!(ledger
            .finish(0, id, Completion::new(read_info(1), Ok(512), None), false)
            .is_none());
        assert!(rbio_core::poll_readable(ledger.as_fd(), 0));
        let mut completions = Vec::new();
        assert_eq!(ledger.reap(&mut completions, Wait::Nothing), 1);
        assert!(!rbio_core::poll_readable(ledger.as_fd(), 0));
    }

    #[test]
    fn abandoning_a_worker_cancels_only_its_operations() {
        let ledger = Ledger::new(Readiness::new().unwrap(), Duration::from_secs(60), 2);
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
                1,
                first + 1,
                Completion::new(read_info(1), Ok(512), None),
                false
            )
            .is_none());
    }

    /// Issue 16: the completion path takes no lock shared by all workers. With the shared
    /// `control` lock and another worker's shard held by this thread, a worker still
    /// completes its operation (the reaper is not blocked, so nobody needs waking).
    #[test]
    fn a_worker_finishes_while_the_shared_lock_and_other_shards_are_held() {
        let ledger = std::sync::Arc::new(Ledger::new(
            Readiness::new().unwrap(),
            Duration::from_secs(60),
            2,
        ));
        let first = ledger.register(
            [(read_info(0), 0), (read_info(1), 1)].into_iter(),
            Vec::new(),
        );
        let control = lock(&ledger.control);
        let other_shard = lock(&ledger.shards[0]);
        let (sender, receiver) = std::sync::mpsc::channel();
        let worker_ledger = ledger.clone();
        let worker = std::thread::spawn(move || {
            let completion = Completion::new(read_info(1), Ok(512), None);
            let late = worker_ledger.finish(1, first + 1, completion, false);
            sender.send(late.is_none()).unwrap();
        });
        let finished = receiver.recv_timeout(Duration::from_secs(10));
        drop((other_shard, control));
        worker.join().unwrap();
        assert_eq!(finished, Ok(true), "finish waited for a shared lock");
        assert!(rbio_core::poll_readable(ledger.as_fd(), 0));
        let mut completions = Vec::new();
        assert_eq!(ledger.reap(&mut completions, Wait::Nothing), 1);
        assert_eq!(completions[0].tag(), 1);
    }
}
