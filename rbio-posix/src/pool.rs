//! The POSIX engine: a pool of worker threads, created once, taking each batch as contiguous
//! ranges of operations, one range per worker.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rbio_core::{Capabilities, Completion, Device, Engine, IoError, Op, Readiness, Wait};

use crate::builder::PosixEngineBuilder;
use crate::ledger::{Ledger, TimeoutStats};
use crate::partition;
use crate::worker::{Exits, Job, TransferFn, Worker, WorkerQueue, WorkerStats};

/// How long dropping an engine waits, in all, for its threads to return. A worker still in
/// a system call after that is detached: it owns the device and its buffers, so nothing is
/// freed under the kernel, and it exits when the call returns.
pub const DROP_JOIN_TIMEOUT: Duration = Duration::from_secs(2);

/// An engine that performs operations with `pread`/`pwrite` on a bounded pool of threads.
///
/// Each [`submit`](Engine::submit) splits its batch into contiguous ranges, one per worker
/// (10 operations over 3 workers: 4, 3 and 3), the largest going to the least loaded worker;
/// each worker performs its ranges in order with [`rbio_core::transfer`], so short transfers
/// continue and `EINTR` retries, and an error stays with its own operation. Every worker has
/// its own queue, so several batches can be in flight at once and workers do not idle
/// between batches under a sliding window. Completions come back in the order they finish,
/// tagged; the readiness fd is readable while any wait to be reaped. A reaper blocked in
/// [`reap`](Engine::reap) is woken once per batch of completions rather than once each (a
/// context switch per completion costs more CPU than the `pread`), never later than
/// [`ANNOUNCE_LATENCY_MAX`](crate::ANNOUNCE_LATENCY_MAX) after a completion.
///
/// Operations in different ranges run concurrently and are not ordered with each other: a
/// flush covers the writes that completed before it started, so submit it after the
/// completions of the writes it must make durable (as with io_uring and NVMe), and do not
/// put overlapping writes in flight together.
///
/// ```
/// use std::sync::Arc;
/// use rbio_core::{Buffer, Device, Engine, Op, Wait};
/// use rbio_posix::PosixEngine;
///
/// let image = tempfile::NamedTempFile::new().unwrap();
/// std::fs::write(image.path(), vec![7u8; 1 << 16]).unwrap();
/// let device = Arc::new(Device::open(image.path()).unwrap());
/// let mut engine = PosixEngine::builder(device).workers(3).build().unwrap();
///
/// let mut batch: Vec<Op> = (0..10)
///     .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
///     .collect();
/// engine.submit(&mut batch);
/// let mut completions = Vec::new();
/// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
/// while engine.pending_count() > 0 {
///     engine.reap(&mut completions, Wait::Until(deadline));
/// }
/// assert_eq!(completions.len(), 10);
/// assert!(completions.iter().all(|c| c.data() == &[7u8; 4096][..]));
/// let ops_per_worker: Vec<u64> = engine.worker_stats().iter().map(|w| w.op_count).collect();
/// assert_eq!(ops_per_worker.iter().sum::<u64>(), 10);
/// ```
pub struct PosixEngine {
    device: Arc<Device>,
    ledger: Arc<Ledger>,
    queues: Vec<Arc<WorkerQueue>>,
    /// The workers' handles, then the timer's; `None` once joined or detached.
    threads: Vec<Option<JoinHandle<()>>>,
    exits: Arc<Exits>,
    pending_count: usize,
    cursor: usize,
}

impl PosixEngine {
    /// A builder for an engine on `device`: set the workers and the operation timeout, then
    /// [`build`](PosixEngineBuilder::build).
    pub fn builder(device: Arc<Device>) -> PosixEngineBuilder {
        PosixEngineBuilder::new(device)
    }

    pub(crate) fn start(
        device: Arc<Device>,
        worker_count: usize,
        op_timeout: Duration,
        transfer: TransferFn,
    ) -> io::Result<PosixEngine> {
        let ledger = Arc::new(Ledger::new(Readiness::new()?, op_timeout, worker_count));
        let exits = Arc::new(Exits::new(worker_count + 1));
        let mut engine = PosixEngine {
            device,
            ledger,
            queues: Vec::with_capacity(worker_count),
            threads: Vec::with_capacity(worker_count + 1),
            exits,
            pending_count: 0,
            cursor: 0,
        };
        for index in 0..worker_count {
            let queue = Arc::new(WorkerQueue::default());
            let worker = Worker {
                index,
                queue: queue.clone(),
                ledger: engine.ledger.clone(),
                device: engine.device.clone(),
                exits: engine.exits.clone(),
                transfer,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("rbio-posix-{index}"))
                .spawn(move || worker.run());
            let handle = engine.unless_failed(index, spawned)?;
            engine.queues.push(queue);
            engine.threads.push(Some(handle));
        }
        let (ledger, exits) = (engine.ledger.clone(), engine.exits.clone());
        let spawned = std::thread::Builder::new()
            .name("rbio-posix-timer".to_owned())
            .spawn(move || {
                ledger.run_timer();
                exits.note(worker_count);
            });
        let handle = engine.unless_failed(worker_count, spawned)?;
        engine.threads.push(Some(handle));
        Ok(engine)
    }

    /// Passes a spawned thread on; on a spawn error, marks it and every later thread as
    /// exited, so that dropping the half-built engine stops and joins the threads already
    /// started without waiting for ones that never were.
    fn unless_failed(
        &self,
        index: usize,
        spawned: io::Result<JoinHandle<()>>,
    ) -> io::Result<JoinHandle<()>> {
        spawned.inspect_err(|_| self.exits.note_from(index))
    }

    /// The number of worker threads.
    pub fn worker_count(&self) -> usize {
        self.queues.len()
    }

    /// What each worker has done so far, by worker index: ranges and operations queued to
    /// it, performed, skipped after their deadline, panicked.
    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.queues.iter().map(|queue| queue.stats()).collect()
    }

    /// How many operations timed out, and how many results arrived after their timeout.
    pub fn timeout_stats(&self) -> TimeoutStats {
        self.ledger.timeout_stats()
    }

    /// The ranges of the next batch, each with its worker: least loaded workers first. They
    /// cover the batch, unless no worker is alive: then there are none.
    fn plan(&mut self, op_count: usize) -> Vec<(usize, std::ops::Range<usize>)> {
        let loads: Vec<Option<usize>> = self
            .queues
            .iter()
            .map(|queue| (!queue.is_dead()).then(|| queue.queued_count()))
            .collect();
        let workers = partition::by_load(&loads, self.cursor);
        let ranges = partition::split(op_count, workers.len());
        self.cursor = (self.cursor + ranges.len()) % self.queues.len();
        workers.into_iter().zip(ranges).collect()
    }

    /// Completes, as canceled with their buffers, the jobs of a range worker `worker_index`
    /// would not take.
    fn cancel(&self, worker_index: usize, jobs: Vec<Job>) {
        for Job { id, op } in jobs {
            let canceled = op.complete(Err(IoError::Canceled));
            drop(self.ledger.finish(worker_index, id, canceled, false));
        }
    }
}

impl Engine for PosixEngine {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            name: "posix",
            align_bytes: self.device.align_bytes(),
            // One system call per worker is with the device at a time; further operations
            // wait in the workers' queues. A window of 2 to 4 times this keeps them busy.
            in_flight_max: self.worker_count(),
            fixed_buffers: false,
            passthrough: false,
        }
    }

    fn submit(&mut self, ops: &mut Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        self.pending_count += ops.len();
        let mut admitted = Vec::with_capacity(ops.len());
        let mut refused = Vec::new();
        for op in ops.drain(..) {
            match self.device.admit(op) {
                Ok(op) => admitted.push(op),
                Err(completion) => refused.push(completion),
            }
        }
        let plan = self.plan(admitted.len());
        // With every worker dead no range covers the batch: the uncovered operations complete
        // now, as canceled with their buffers, so each still completes exactly once.
        let covered_count: usize = plan.iter().map(|(_, range)| range.len()).sum();
        refused.extend(
            admitted
                .drain(covered_count..)
                .map(|op| op.complete(Err(IoError::Canceled))),
        );
        let tickets = plan.iter().flat_map(|(worker_index, range)| {
            admitted[range.clone()]
                .iter()
                .map(|op| (op.info(), *worker_index))
        });
        let tickets: Vec<_> = tickets.collect();
        let first_id = self.ledger.register(tickets.into_iter(), refused);
        let mut ops = admitted.into_iter().zip(first_id..);
        for (worker_index, range) in plan {
            let jobs: Vec<Job> = ops
                .by_ref()
                .take(range.len())
                .map(|(op, id)| Job { id, op })
                .collect();
            if let Err(jobs) = self.queues[worker_index].push(jobs) {
                self.cancel(worker_index, jobs);
            }
        }
    }

    fn reap(&mut self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        // With nothing pending, still clear the readiness fd that a held buffer's return set.
        let wait = if self.pending_count == 0 {
            Wait::Nothing
        } else {
            wait
        };
        let reaped_count = self.ledger.reap(completions, wait);
        assert!(
            reaped_count <= self.pending_count,
            "reaped {reaped_count} completions with {} pending",
            self.pending_count
        );
        self.pending_count -= reaped_count;
        reaped_count
    }

    fn pending_count(&self) -> usize {
        self.pending_count
    }

    fn readiness(&self) -> BorrowedFd<'_> {
        self.ledger.as_fd()
    }

    /// Timed-out operations whose worker is still in the system call, or has not reached
    /// them in its queue: their buffers come back when it lets go of them.
    fn held_buffer_count(&self) -> usize {
        self.ledger.held_count()
    }

    fn op_timeout(&self) -> Option<Duration> {
        Some(self.ledger.op_timeout())
    }
}

impl Drop for PosixEngine {
    /// Stops the threads and joins those that return within [`DROP_JOIN_TIMEOUT`]; the rest
    /// (workers in a system call that does not return) are detached. Queued operations are
    /// dropped unperformed, their buffers going back to their pools.
    fn drop(&mut self) {
        self.ledger.stop();
        for queue in &self.queues {
            queue.stop();
        }
        let exited = self.exits.wait_all(Instant::now() + DROP_JOIN_TIMEOUT);
        for (handle, exited) in self.threads.iter_mut().zip(exited) {
            match handle.take() {
                // It has noted its exit, so it is returning: the join is immediate. A worker
                // that died of a panic has already completed its operations as canceled.
                Some(handle) if exited => drop(handle.join()),
                // Detached: the thread keeps its own references and ends on its own.
                Some(handle) => drop(handle),
                None => {}
            }
        }
    }
}

impl std::fmt::Debug for PosixEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PosixEngine")
            .field("device", &self.device.path())
            .field("worker_count", &self.worker_count())
            .field("pending_count", &self.pending_count)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbio_core::{Buffer, OpInfo};

    fn image(len_bytes: usize) -> (tempfile::NamedTempFile, Arc<Device>) {
        let file = tempfile::NamedTempFile::new().unwrap();
        let bytes: Vec<u8> = (0..len_bytes).map(|i| (i / 4096) as u8).collect();
        std::fs::write(file.path(), bytes).unwrap();
        let device = Arc::new(Device::open(file.path()).unwrap());
        (file, device)
    }

    fn reads(count: u64) -> Vec<Op> {
        (0..count)
            .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
            .collect()
    }

    fn reap_all(engine: &mut PosixEngine) -> Vec<Completion> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut completions = Vec::new();
        while engine.pending_count() > 0 && Instant::now() < deadline {
            engine.reap(&mut completions, Wait::Until(deadline));
        }
        assert_eq!(engine.pending_count(), 0, "engine did not complete in time");
        completions.sort_by_key(|c| c.tag());
        completions
    }

    /// Panics on the operation at offset 3 × 4096, like a bug inside the transfer would.
    fn panicking_transfer(
        device: &Device,
        info: &OpInfo,
        buffer: Option<&mut Buffer>,
    ) -> Result<usize, IoError> {
        assert_ne!(info.offset_bytes, 3 * 4096, "injected transfer panic");
        rbio_core::transfer(device, info, buffer)
    }

    #[test]
    fn a_panicking_operation_fails_alone_and_its_worker_goes_on() {
        let (_file, device) = image(8 * 4096);
        let mut engine = PosixEngine::builder(device)
            .workers(2)
            .transfer(panicking_transfer)
            .build()
            .unwrap();
        engine.submit(&mut reads(8));
        let completions = reap_all(&mut engine);
        for completion in &completions {
            match completion.tag() {
                3 => assert_eq!(completion.result(), &Err(IoError::Canceled)),
                tag => assert_eq!(completion.data(), &[tag as u8; 4096][..], "tag {tag}"),
            }
        }
        let stats = engine.worker_stats();
        assert_eq!(stats.iter().map(|w| w.panicked_count).sum::<u64>(), 1);
        assert!(stats.iter().all(|w| w.alive));

        engine.submit(&mut reads(4));
        assert_eq!(reap_all(&mut engine).len(), 4, "workers survive the panic");
    }

    /// Opened by the test below: the transfer of offset 0 blocks until then, like a read the
    /// device does not answer.
    static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
        (std::sync::Mutex::new(false), std::sync::Condvar::new());

    fn gated_transfer(
        device: &Device,
        info: &OpInfo,
        buffer: Option<&mut Buffer>,
    ) -> Result<usize, IoError> {
        if info.offset_bytes == 0 {
            let (open, opened) = &GATE;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
        }
        rbio_core::transfer(device, info, buffer)
    }

    #[test]
    fn a_timed_out_buffer_is_held_until_the_worker_lets_go_and_its_return_is_announced() {
        let (_file, device) = image(4 * 4096);
        let mut engine = PosixEngine::builder(device)
            .workers(1)
            .op_timeout(Duration::from_millis(30))
            .transfer(gated_transfer)
            .build()
            .unwrap();
        assert_eq!(engine.op_timeout(), Some(Duration::from_millis(30)));
        let pool = rbio_core::BufferPool::new(4096, 2, 4096).unwrap();
        // The second read waits in the stuck worker's queue and times out there too.
        let mut batch: Vec<Op> = (0..2)
            .map(|i| Op::read(i, i * 4096, pool.take().unwrap()))
            .collect();
        engine.submit(&mut batch);
        let completions = reap_all(&mut engine);
        assert!(completions
            .iter()
            .all(|c| matches!(c.result(), Err(IoError::TimedOut { .. })) && c.buffer().is_none()));
        assert_eq!(engine.held_buffer_count(), 2);
        assert_eq!(pool.taken_count(), 2);
        assert!(!rbio_core::poll_readable(engine.readiness(), 0));

        let (open, opened) = &GATE;
        *open.lock().unwrap() = true;
        opened.notify_all();
        let deadline = Instant::now() + Duration::from_secs(30);
        while engine.held_buffer_count() > 0 {
            let left_ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as i32;
            assert!(
                rbio_core::poll_readable(engine.readiness(), left_ms.max(1)),
                "a held buffer's return was not announced"
            );
            assert_eq!(engine.reap(&mut Vec::new(), Wait::Nothing), 0);
        }
        assert_eq!(pool.taken_count(), 0);
        // The last return may have been announced after the loop's last reap.
        assert_eq!(engine.reap(&mut Vec::new(), Wait::Nothing), 0);
        assert!(
            !rbio_core::poll_readable(engine.readiness(), 0),
            "a reap with nothing pending clears the fd"
        );
        assert_eq!(engine.timeout_stats().timed_out_count, 2);
    }

    #[test]
    fn refused_operations_complete_without_reaching_a_worker() {
        let (_file, device) = image(4096);
        let mut engine = PosixEngine::builder(device).workers(2).build().unwrap();
        let mut batch = vec![Op::read(9, 4096, Buffer::new_aligned(4096, 4096).unwrap())];
        engine.submit(&mut batch);
        assert!(batch.is_empty());
        let completions = reap_all(&mut engine);
        assert_eq!(
            completions[0].result(),
            &Err(IoError::OutOfRange { size_bytes: 4096 })
        );
        assert!(completions[0].buffer().is_some());
        assert!(engine.worker_stats().iter().all(|w| w.op_count == 0));
    }

    #[test]
    fn reap_with_nothing_pending_returns_at_once() {
        let (_file, device) = image(4096);
        let mut engine = PosixEngine::builder(device).workers(1).build().unwrap();
        let mut completions = Vec::new();
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(engine.reap(&mut completions, Wait::Until(far)), 0);
        assert_eq!(engine.capabilities().name, "posix");
        assert_eq!(engine.capabilities().in_flight_max, 1);
    }

    /// Review finding (MEDIUM, pool.rs): with every worker dead, `plan()` gave no ranges and
    /// the admitted operations were dropped, never completing while `pending_count` stayed
    /// raised. Each must complete exactly once, as canceled with its buffer.
    #[test]
    fn with_every_worker_dead_a_batch_completes_as_canceled() {
        let (_file, device) = image(4 * 4096);
        let mut engine = PosixEngine::builder(device).workers(2).build().unwrap();
        for queue in &engine.queues {
            assert!(queue.kill().is_empty());
        }
        let mut batch = reads(3);
        batch.push(Op::read(
            3,
            4 * 4096,
            Buffer::new_aligned(4096, 4096).unwrap(),
        ));
        engine.submit(&mut batch);
        assert_eq!(engine.pending_count(), 4);
        let completions = reap_all(&mut engine);
        let results: Vec<_> = completions.iter().map(|c| c.result().clone()).collect();
        let canceled = Err(IoError::Canceled);
        let out_of_range = Err(IoError::OutOfRange {
            size_bytes: 4 * 4096,
        });
        assert_eq!(
            results,
            [canceled.clone(), canceled.clone(), canceled, out_of_range]
        );
        assert!(completions.iter().all(|c| c.buffer().is_some()));
        assert!(engine.worker_stats().iter().all(|w| w.op_count == 0));
    }
}
