//! Workers: one thread each, with its own queue of ranges, performing every operation of a
//! range in order with the shared `pread`/`pwrite` routine and completing it in the ledger.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rbio_core::{Buffer, Device, IoError, Op, OpInfo};

use crate::ledger::Ledger;

/// The routine a worker performs each operation with: [`rbio_core::transfer`], except in unit
/// tests that need a transfer that panics.
pub(crate) type TransferFn = fn(&Device, &OpInfo, Option<&mut Buffer>) -> Result<usize, IoError>;

/// One operation on its way to a worker, under its ledger id.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) op: Op,
}

/// What one worker has done, for tests that check how batches were split.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Ranges (contiguous runs of one batch) queued to this worker.
    pub range_count: u64,
    /// Operations queued to this worker.
    pub op_count: u64,
    /// Operations it performed (the system call was made).
    pub performed_count: u64,
    /// Operations it skipped because their deadline had passed before it reached them.
    pub skipped_count: u64,
    /// Operations whose transfer panicked; each completed as [`IoError::Canceled`].
    pub panicked_count: u64,
    /// Operations queued to it and not yet performed or skipped.
    pub queued_count: usize,
    /// Whether the thread is still running (false after it died of a panic).
    pub alive: bool,
}

#[derive(Debug, Default)]
struct QueueState {
    ranges: VecDeque<Vec<Job>>,
    idle: bool,
    stopping: bool,
    dead: bool,
}

/// A worker's queue of ranges and its counters, shared by the engine and the thread.
#[derive(Debug, Default)]
pub(crate) struct WorkerQueue {
    state: Mutex<QueueState>,
    available: Condvar,
    stopping: AtomicBool,
    dead: AtomicBool,
    queued_count: AtomicUsize,
    range_count: AtomicU64,
    op_count: AtomicU64,
    performed_count: AtomicU64,
    skipped_count: AtomicU64,
    panicked_count: AtomicU64,
}

impl WorkerQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Each update is one push or pop, complete before anything that can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a range. Hands it back if the worker is stopping or dead.
    pub(crate) fn push(&self, range: Vec<Job>) -> Result<(), Vec<Job>> {
        let mut state = self.lock();
        if state.stopping || state.dead {
            return Err(range);
        }
        self.queued_count.fetch_add(range.len(), Ordering::Relaxed);
        self.range_count.fetch_add(1, Ordering::Relaxed);
        self.op_count
            .fetch_add(range.len() as u64, Ordering::Relaxed);
        state.ranges.push_back(range);
        let wake = state.idle;
        drop(state);
        // Woken after unlocking, the worker finds the lock free.
        if wake {
            self.available.notify_one();
        }
        Ok(())
    }

    /// The next range, blocking while there is none; `None` once the worker must stop.
    fn pop(&self) -> Option<Vec<Job>> {
        let mut state = self.lock();
        loop {
            if state.stopping {
                return None;
            }
            if let Some(range) = state.ranges.pop_front() {
                return Some(range);
            }
            state.idle = true;
            state = self
                .available
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.idle = false;
        }
    }

    /// Asks the worker to return after its current operation; queued ranges are dropped.
    pub(crate) fn stop(&self) {
        let dropped = {
            let mut state = self.lock();
            state.stopping = true;
            self.stopping.store(true, Ordering::Release);
            self.available.notify_one();
            std::mem::take(&mut state.ranges)
        };
        drop(dropped);
    }

    /// Operations queued and not yet performed or skipped: the load the engine balances.
    pub(crate) fn queued_count(&self) -> usize {
        self.queued_count.load(Ordering::Relaxed)
    }

    /// Whether the thread died of a panic outside an operation.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> WorkerStats {
        WorkerStats {
            range_count: self.range_count.load(Ordering::Relaxed),
            op_count: self.op_count.load(Ordering::Relaxed),
            performed_count: self.performed_count.load(Ordering::Relaxed),
            skipped_count: self.skipped_count.load(Ordering::Relaxed),
            panicked_count: self.panicked_count.load(Ordering::Relaxed),
            queued_count: self.queued_count(),
            alive: !self.is_dead(),
        }
    }

    /// Marks the worker dead and takes its queued ranges, so that nothing waits on it.
    pub(crate) fn kill(&self) -> VecDeque<Vec<Job>> {
        let mut state = self.lock();
        state.dead = true;
        self.dead.store(true, Ordering::Release);
        std::mem::take(&mut state.ranges)
    }
}

/// How the engine's drop learns which workers have returned, with a bounded wait.
#[derive(Debug)]
pub(crate) struct Exits {
    exited: Mutex<Vec<bool>>,
    changed: Condvar,
}

impl Exits {
    pub(crate) fn new(thread_count: usize) -> Exits {
        Exits {
            exited: Mutex::new(vec![false; thread_count]),
            changed: Condvar::new(),
        }
    }

    /// Records that thread `index` is about to return.
    pub(crate) fn note(&self, index: usize) {
        let mut exited = self
            .exited
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        exited[index] = true;
        self.changed.notify_all();
    }

    /// Records threads `first_index..` as returned: they were never started.
    pub(crate) fn note_from(&self, first_index: usize) {
        let mut exited = self
            .exited
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        exited[first_index..].fill(true);
        self.changed.notify_all();
    }

    /// Waits until every thread has returned or `deadline` passes; returns which returned.
    pub(crate) fn wait_all(&self, deadline: std::time::Instant) -> Vec<bool> {
        let mut exited = self
            .exited
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            let now = std::time::Instant::now();
            if exited.iter().all(|&done| done) || now >= deadline {
                return exited.clone();
            }
            exited = self
                .changed
                .wait_timeout(exited, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// Everything a worker thread owns or shares. Holding the device here is what lets a worker
/// stuck in a system call outlive its engine without anything being freed under the kernel.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) queue: Arc<WorkerQueue>,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) device: Arc<Device>,
    pub(crate) exits: Arc<Exits>,
    pub(crate) transfer: TransferFn,
}

impl Worker {
    /// The thread's body: ranges in queue order, operations in range order, until stopped.
    pub(crate) fn run(self) {
        let _exit = ExitGuard { worker: &self };
        while let Some(range) = self.queue.pop() {
            let mut jobs = range.into_iter();
            for job in jobs.by_ref() {
                if self.queue.stopping.load(Ordering::Acquire) {
                    break;
                }
                self.perform(job);
            }
            // Operations left when stopping are dropped here, with their buffers.
            drop(jobs);
        }
    }

    /// Performs one operation and completes it, unless its deadline passed first.
    fn perform(&self, job: Job) {
        let Job { id, mut op } = job;
        if !self.ledger.is_live(id) {
            self.queue.skipped_count.fetch_add(1, Ordering::Relaxed);
            self.queue.queued_count.fetch_sub(1, Ordering::Relaxed);
            // The operation timed out while queued: its buffer goes back now.
            drop(op);
            self.ledger.release_held();
            return;
        }
        let info = op.info();
        let transfer = self.transfer;
        let device = &*self.device;
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            transfer(device, &info, op.buffer_mut())
        }));
        let result = outcome.unwrap_or_else(|_| {
            self.queue.panicked_count.fetch_add(1, Ordering::Relaxed);
            Err(IoError::Canceled)
        });
        self.queue.performed_count.fetch_add(1, Ordering::Relaxed);
        self.queue.queued_count.fetch_sub(1, Ordering::Relaxed);
        let more_queued = self.queue.queued_count() > 0;
        // A late completion is dropped here, outside the ledger's lock: only now, with the
        // system call returned, does its buffer go back to the pool.
        let late = self
            .ledger
            .finish(self.index, id, op.complete(result), more_queued);
        if let Some(late) = late {
            drop(late);
            self.ledger.release_held();
        }
    }
}

/// Runs when a worker thread returns or unwinds. If it unwinds (a panic outside the per-op
/// guard), the worker's remaining operations complete as canceled rather than never.
struct ExitGuard<'a> {
    worker: &'a Worker,
}

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let worker = self.worker;
        if std::thread::panicking() {
            drop(worker.queue.kill());
            worker.ledger.abandon_worker(worker.index);
        }
        worker.exits.note(worker.index);
    }
}
