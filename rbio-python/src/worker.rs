//! The I/O worker behind a `RawBlockDevice`: one thread owns the engine, takes batches from
//! any caller thread, keeps the engine's window full across calls, and files every completion
//! under its batch until the caller waits for it. Python-free, so it is tested in Rust.
//!
//! A batch never waits for another: the worker submits whatever has arrived the moment it
//! arrives (a doorbell eventfd beside the engine's readiness fd), so operations of several
//! batches share the device's queue. Every operation handed over completes exactly once: with
//! the engine's result, or with [`OpFailure::Stopped`] if the worker stops first.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rbio_core::{
    poll_readable, Buffer, Completion, Engine, IoError, Op, Readiness, ReadinessSet, Wait,
};

/// The longest the worker sleeps while operations are in flight before reaping again.
const DEADLINE_TICK: Duration = Duration::from_millis(10);

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpFailure {
    /// The engine completed it with this error.
    Io(IoError),
    /// The worker stopped before the engine completed it; the text says why.
    Stopped(String),
}

/// The outcome of one operation: its buffer given back (for a read, holding the bytes read).
pub type OpOutcome = Result<Option<Buffer>, OpFailure>;

/// The worker refuses new work: it was closed, or it stopped with [`IoWorker::worker_error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAccepting;

struct Batch {
    remaining_count: usize,
    /// Which operations have completed.
    done: Vec<bool>,
    /// Outcomes filed and not yet taken by a waiter, with their operation's index.
    arrived: Vec<(usize, OpOutcome)>,
}

impl Batch {
    fn new(op_count: usize) -> Batch {
        Batch {
            remaining_count: op_count,
            done: vec![false; op_count],
            arrived: Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    batches: HashMap<u64, Batch>,
    worker_error: Option<String>,
    accepting: bool,
}

struct Shared {
    state: Mutex<State>,
    batch_done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the table consistent (each step is one insert
        // or one store), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Files `outcome` as operation `op_index` of `batch_id`; wakes waiters when the batch is
    /// complete (the worker wakes them once per reap for outcomes that arrive before that).
    fn complete(&self, state: &mut State, batch_id: u64, op_index: usize, outcome: OpOutcome) {
        let Some(batch) = state.batches.get_mut(&batch_id) else {
            return; // Forgotten by close: nobody can wait for it any more.
        };
        assert!(
            !std::mem::replace(&mut batch.done[op_index], true),
            "operation {op_index} of batch {batch_id} completed twice"
        );
        batch.arrived.push((op_index, outcome));
        batch.remaining_count -= 1;
        if batch.remaining_count == 0 {
            self.batch_done.notify_all();
        }
    }
}

struct Request {
    batch_id: u64,
    ops: Vec<Op>,
}

/// Settings of the worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerOptions {
    /// How long the engine may hold operations without completing any before the worker
    /// gives up on it; `None`: the streaming driver's rule for the engine
    /// ([`rbio_core::stall_timeout_for`] its operation timeout), long enough that a silent
    /// device first turns into per-operation `TimedOut` errors.
    pub stall_timeout: Option<Duration>,
}

/// A thread that runs batches of operations through one engine.
pub struct IoWorker {
    shared: Arc<Shared>,
    requests: Mutex<Option<Sender<Request>>>,
    doorbell: Arc<Readiness>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl IoWorker {
    /// Starts a worker thread that owns `engine`.
    ///
    /// # Errors
    /// The system calls that make its doorbell and wait set, or spawning the thread.
    pub fn start(engine: Box<dyn Engine>, options: WorkerOptions) -> std::io::Result<IoWorker> {
        let stall_timeout = options
            .stall_timeout
            .unwrap_or_else(|| rbio_core::stall_timeout_for(engine.op_timeout()));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                accepting: true,
                ..State::default()
            }),
            batch_done: Condvar::new(),
        });
        let doorbell = Arc::new(Readiness::new()?);
        let wake_set = ReadinessSet::new()?;
        wake_set.add(engine.readiness())?;
        wake_set.add(doorbell.as_fd())?;
        let (sender, receiver) = mpsc::channel();
        let run = Run {
            engine,
            receiver,
            doorbell: doorbell.clone(),
            wake_set,
            shared: shared.clone(),
            in_flight: HashMap::new(),
            next_tag: 0,
            stall_timeout,
        };
        let thread = std::thread::Builder::new()
            .name("rbio-python-io".into())
            .spawn(move || run.run())?;
        Ok(IoWorker {
            shared,
            requests: Mutex::new(Some(sender)),
            doorbell,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands `ops` to the engine as batch `batch_id`; operation `i` of `ops` is index `i` of
    /// the batch's outcomes. An empty batch is complete at once.
    ///
    /// # Errors
    /// [`NotAccepting`] after [`close`](IoWorker::close) or once the worker has stopped.
    pub fn submit(&self, batch_id: u64, ops: Vec<Op>) -> Result<(), NotAccepting> {
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let sender = requests.as_ref().ok_or(NotAccepting)?;
        {
            let mut state = self.shared.lock();
            if !state.accepting {
                return Err(NotAccepting);
            }
            assert!(
                state
                    .batches
                    .insert(batch_id, Batch::new(ops.len()))
                    .is_none(),
                "batch id {batch_id} used twice"
            );
        }
        if ops.is_empty() {
            return Ok(());
        }
        let ops_count = ops.len();
        if sender.send(Request { batch_id, ops }).is_err() {
            // The worker thread is gone; its exit already failed every batch it knew of.
            let mut state = self.shared.lock();
            let why = "the I/O worker has exited";
            for op_index in 0..ops_count {
                let failure = Err(OpFailure::Stopped(why.to_owned()));
                self.shared
                    .complete(&mut state, batch_id, op_index, failure);
            }
            return Err(NotAccepting);
        }
        self.doorbell.signal();
        Ok(())
    }

    /// Waits until every operation of `batch_id` has completed and takes its outcomes, in
    /// submission order; `None` for an id never submitted or already taken.
    pub fn wait(&self, batch_id: u64) -> Option<Vec<OpOutcome>> {
        let mut outcomes: Vec<Option<OpOutcome>> = Vec::new();
        self.wait_each(batch_id, |op_index, outcome| {
            if outcomes.len() <= op_index {
                outcomes.resize_with(op_index + 1, || None);
            }
            outcomes[op_index] = Some(outcome);
        })?;
        Some(
            outcomes
                .into_iter()
                .map(|outcome| outcome.expect("a complete batch has every outcome"))
                .collect(),
        )
    }

    /// Waits until every operation of `batch_id` has completed, handing each outcome to
    /// `each` (with its index in the batch) as soon as it arrives, outside the worker's lock,
    /// so the caller's work on one outcome overlaps the device's on the others. `None` for an
    /// id never submitted or already taken (or forgotten by a concurrent close, which may
    /// leave some outcomes undelivered).
    pub fn wait_each(&self, batch_id: u64, mut each: impl FnMut(usize, OpOutcome)) -> Option<()> {
        let mut arrived = Vec::new();
        let mut state = self.shared.lock();
        loop {
            let batch = state.batches.get_mut(&batch_id)?;
            std::mem::swap(&mut arrived, &mut batch.arrived);
            let finished = batch.remaining_count == 0;
            if finished {
                state.batches.remove(&batch_id);
            }
            if arrived.is_empty() && !finished {
                state = self
                    .shared
                    .batch_done
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            drop(state);
            for (op_index, outcome) in arrived.drain(..) {
                each(op_index, outcome);
            }
            if finished {
                return Some(());
            }
            state = self.shared.lock();
        }
    }

    /// Why the worker stopped on its own, if it did: the engine held operations past the
    /// stall timeout without completing any.
    pub fn worker_error(&self) -> Option<String> {
        self.shared.lock().worker_error.clone()
    }

    /// Whether the worker takes new work.
    pub fn is_accepting(&self) -> bool {
        self.shared.lock().accepting
    }

    /// Stops taking work, lets the engine complete everything already handed over (bounded
    /// by the engine's operation timeout and the stall timeout), then stops the thread and
    /// drops the engine. Batches not waited for are forgotten. Idempotent.
    pub fn close(&self) {
        self.shared.lock().accepting = false;
        // Dropping the sender tells the thread no more requests come.
        drop(
            self.requests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        self.doorbell.signal();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            // A panic in the thread already failed its batches (see `Run::drop`).
            let _ = thread.join();
        }
        self.shared.lock().batches.clear();
    }
}

impl Drop for IoWorker {
    fn drop(&mut self) {
        self.close();
    }
}

/// The worker thread's state.
struct Run {
    engine: Box<dyn Engine>,
    receiver: Receiver<Request>,
    doorbell: Arc<Readiness>,
    wake_set: ReadinessSet,
    shared: Arc<Shared>,
    /// Engine tag -> (batch id, index in the batch).
    in_flight: HashMap<u64, (u64, usize)>,
    next_tag: u64,
    stall_timeout: Duration,
}

impl Run {
    fn run(mut self) {
        let mut completions = Vec::new();
        let mut last_progress = Instant::now();
        let mut closing = false;
        loop {
            self.doorbell.clear();
            closing |= self.take_requests();
            if self.engine.reap(&mut completions, Wait::Nothing) > 0 {
                last_progress = Instant::now();
                self.file(&mut completions);
            }
            if self.in_flight.is_empty() {
                if closing {
                    return;
                }
                last_progress = Instant::now();
                poll_readable(self.wake_set.as_fd(), -1);
                continue;
            }
            let stalled_for = last_progress.elapsed();
            if stalled_for >= self.stall_timeout {
                self.stop(format!(
                    "the engine completed none of {} operations in {:?}",
                    self.in_flight.len(),
                    stalled_for
                ));
                return;
            }
            // Engines expire their own operation deadlines inside `reap` without making their
            // fd readable, so the wait is capped: a timeout is noticed within a tick.
            let left = (self.stall_timeout - stalled_for).min(DEADLINE_TICK);
            let left_ms = left.as_millis().max(1) as i32;
            poll_readable(self.wake_set.as_fd(), left_ms);
        }
    }

    /// Submits every request that has arrived; `true` once no more can come.
    fn take_requests(&mut self) -> bool {
        let mut ops = Vec::new();
        let closed = loop {
            match self.receiver.try_recv() {
                Ok(request) => {
                    for (op_index, op) in request.ops.into_iter().enumerate() {
                        let tag = self.next_tag;
                        self.next_tag += 1;
                        self.in_flight.insert(tag, (request.batch_id, op_index));
                        ops.push(op.with_tag(tag));
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if !ops.is_empty() {
            self.engine.submit(&mut ops);
        }
        closed
    }

    /// Files reaped completions under their batches.
    fn file(&mut self, completions: &mut Vec<Completion>) {
        let mut state = self.shared.lock();
        for completion in completions.drain(..) {
            let (batch_id, op_index) = self
                .in_flight
                .remove(&completion.tag())
                .unwrap_or_else(|| panic!("completion for unknown tag {}", completion.tag()));
            let outcome = outcome_of(completion);
            self.shared
                .complete(&mut state, batch_id, op_index, outcome);
        }
        // Waiters take outcomes as they arrive, not only whole batches.
        self.shared.batch_done.notify_all();
    }

    /// Gives up on the engine: records `why`, refuses new work and fails everything pending.
    fn stop(&mut self, why: String) {
        let mut state = self.shared.lock();
        state.accepting = false;
        state.worker_error = Some(why);
    }
}

impl Drop for Run {
    /// Whatever way the thread ends (closing, stopping, a panic), every operation it still
    /// holds completes, so no waiter hangs.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.accepting = false;
        let why = match &state.worker_error {
            Some(error) => format!("io_uring worker stopped: {error}"),
            None => "io_uring worker shutting down".to_owned(),
        };
        let pending: Vec<(u64, usize)> = self.in_flight.drain().map(|(_, at)| at).collect();
        for (batch_id, op_index) in pending {
            let failure = Err(OpFailure::Stopped(why.clone()));
            self.shared
                .complete(&mut state, batch_id, op_index, failure);
        }
        while let Ok(request) = self.receiver.try_recv() {
            for op_index in 0..request.ops.len() {
                let failure = Err(OpFailure::Stopped(why.clone()));
                self.shared
                    .complete(&mut state, request.batch_id, op_index, failure);
            }
        }
    }
}

fn outcome_of(completion: Completion) -> OpOutcome {
    match completion.result() {
        Ok(_) => Ok(completion.into_buffer()),
        Err(error) => Err(OpFailure::Io(error.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbio_core::{Device, Fault, FaultPlan, FaultTarget, FaultyEngine, SerialEngine};
    use std::io::Write;

    fn image(bytes: &[u8]) -> (tempfile::NamedTempFile, Arc<Device>) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        let device = Device::options().write(true).open(file.path()).unwrap();
        (file, Arc::new(device))
    }

    fn read(offset_bytes: u64, len_bytes: usize) -> Op {
        Op::read(
            0,
            offset_bytes,
            Buffer::new_aligned(len_bytes, 4096).unwrap(),
        )
    }

    #[test]
    fn batches_complete_in_submission_order_with_their_bytes() {
        let bytes: Vec<u8> = (0..16384u32).map(|i| (i / 4096) as u8 + 1).collect();
        let (_file, device) = image(&bytes);
        let engine = SerialEngine::new(device).unwrap();
        let worker = IoWorker::start(Box::new(engine), WorkerOptions::default()).unwrap();
        worker
            .submit(1, vec![read(8192, 4096), read(0, 4096)])
            .unwrap();
        worker.submit(2, vec![read(12288, 4096)]).unwrap();
        let second = worker.wait(2).unwrap();
        assert_eq!(
            second[0].as_ref().unwrap().as_ref().unwrap().as_slice()[0],
            4
        );
        let first = worker.wait(1).unwrap();
        let first_bytes: Vec<u8> = first
            .iter()
            .map(|outcome| outcome.as_ref().unwrap().as_ref().unwrap().as_slice()[4095])
            .collect();
        assert_eq!(first_bytes, vec![3, 1]);
        assert!(worker.wait(1).is_none(), "a batch is taken once");
        worker.submit(3, Vec::new()).unwrap();
        assert_eq!(worker.wait(3).unwrap().len(), 0);
    }

    #[test]
    fn one_failing_operation_fails_only_itself() {
        let (_file, device) = image(&[7u8; 8192]);
        let plan = FaultPlan::new(1).with(
            FaultTarget::Offset(4096),
            Fault::Fail(IoError::Os(rbio_core::Errno::EIO)),
        );
        let engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
        let worker = IoWorker::start(Box::new(engine), WorkerOptions::default()).unwrap();
        worker
            .submit(9, vec![read(0, 4096), read(4096, 4096)])
            .unwrap();
        let outcomes = worker.wait(9).unwrap();
        assert!(outcomes[0].is_ok());
        assert_eq!(
            outcomes[1].as_ref().unwrap_err(),
            &OpFailure::Io(IoError::Os(rbio_core::Errno::EIO))
        );
    }

    #[test]
    fn a_silent_device_becomes_per_operation_timeouts_not_a_hang() {
        let (_file, device) = image(&[7u8; 8192]);
        let plan = FaultPlan::new(1)
            .with(FaultTarget::Offset(0), Fault::Stall)
            .stall_timeout(Duration::from_millis(20));
        let engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
        let worker = IoWorker::start(Box::new(engine), WorkerOptions::default()).unwrap();
        worker
            .submit(1, vec![read(0, 4096), read(4096, 4096)])
            .unwrap();
        let outcomes = worker.wait(1).unwrap();
        assert!(
            matches!(outcomes[0], Err(OpFailure::Io(IoError::TimedOut { .. }))),
            "{:?}",
            outcomes[0]
        );
        assert!(outcomes[1].is_ok());
        assert_eq!(worker.worker_error(), None);
    }

    #[test]
    fn wait_each_hands_over_outcomes_as_they_arrive() {
        let (_file, device) = image(&[7u8; 8192]);
        let plan = FaultPlan::new(1)
            .with(FaultTarget::Offset(0), Fault::Stall)
            .stall_timeout(Duration::from_millis(200));
        let engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
        let worker = IoWorker::start(Box::new(engine), WorkerOptions::default()).unwrap();
        worker
            .submit(1, vec![read(0, 4096), read(4096, 4096)])
            .unwrap();
        let mut order = Vec::new();
        worker
            .wait_each(1, |op_index, outcome| {
                order.push((op_index, outcome.is_ok()));
            })
            .unwrap();
        // Operation 0 is held until its deadline: operation 1 was handed over before it.
        assert_eq!(order, vec![(1, true), (0, false)]);
        assert!(worker.wait_each(1, |_, _| ()).is_none(), "taken once");
    }

    #[test]
    fn writes_give_their_buffers_back() {
        let (_file, device) = image(&[0u8; 4096]);
        let engine = SerialEngine::new(device).unwrap();
        let worker = IoWorker::start(Box::new(engine), WorkerOptions::default()).unwrap();
        let buffer = Buffer::new_aligned(4096, 4096).unwrap();
        worker.submit(1, vec![Op::write(0, 0, buffer)]).unwrap();
        let outcome = worker.wait(1).unwrap().pop().unwrap();
        assert_eq!(outcome.unwrap().unwrap().len_bytes(), 4096);
    }

    #[test]
    fn a_later_batch_does_not_wait_behind_an_earlier_one() {
        let (_file, device) = image(&[7u8; 8192]);
        let plan = FaultPlan::new(1)
            .with(FaultTarget::Offset(0), Fault::Stall)
            .stall_timeout(Duration::from_secs(20));
        let engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
        let worker = IoWorker::start(Box::new(engine), WorkerOptions::default()).unwrap();
        worker.submit(1, vec![read(0, 4096)]).unwrap();
        worker.submit(2, vec![read(4096, 4096)]).unwrap();
        let started = Instant::now();
        assert!(worker.wait(2).unwrap()[0].is_ok());
        // Batch 1 is still held by the engine (its stall lasts 20 s): batch 2 went past it.
        assert!(started.elapsed() < Duration::from_secs(20));
        let state = worker.shared.lock();
        assert_eq!(state.batches[&1].remaining_count, 1);
    }

    /// An engine that takes operations and never completes them: a broken engine.
    struct BlackHole {
        readiness: Readiness,
        held: Vec<Op>,
    }

    impl Engine for BlackHole {
        fn capabilities(&self) -> rbio_core::Capabilities {
            rbio_core::Capabilities {
                name: "black hole",
                align_bytes: 1,
                in_flight_max: 1024,
                fixed_buffers: false,
                passthrough: false,
            }
        }
        fn submit(&mut self, ops: &mut Vec<Op>) {
            self.held.append(ops);
        }
        fn reap(&mut self, _: &mut Vec<Completion>, _: Wait) -> usize {
            0
        }
        fn pending_count(&self) -> usize {
            self.held.len()
        }
        fn readiness(&self) -> std::os::fd::BorrowedFd<'_> {
            self.readiness.as_fd()
        }
    }

    #[test]
    fn an_engine_that_stops_answering_stops_the_worker_with_an_error() {
        let engine = BlackHole {
            readiness: Readiness::new().unwrap(),
            held: Vec::new(),
        };
        let options = WorkerOptions {
            stall_timeout: Some(Duration::from_millis(30)),
        };
        let worker = IoWorker::start(Box::new(engine), options).unwrap();
        worker.submit(1, vec![read(0, 4096)]).unwrap();
        let outcomes = worker.wait(1).unwrap();
        let Err(OpFailure::Stopped(why)) = &outcomes[0] else {
            panic!("{:?}", outcomes[0]);
        };
        assert!(why.starts_with("io_uring worker stopped: the engine completed none of 1"));
        assert!(worker.worker_error().is_some());
        assert_eq!(worker.submit(2, vec![read(0, 4096)]), Err(NotAccepting));
        worker.close();
    }

    #[test]
    fn close_completes_what_was_queued_before_it() {
        let (_file, device) = image(&[0u8; 4096 * 64]);
        let engine = SerialEngine::new(device.clone()).unwrap();
        let worker = IoWorker::start(Box::new(engine), WorkerOptions::default()).unwrap();
        for batch_id in 0..64u64 {
            let mut buffer = Buffer::new_aligned(4096, 4096).unwrap();
            buffer.as_mut_slice().fill(batch_id as u8 + 1);
            worker
                .submit(batch_id, vec![Op::write(0, batch_id * 4096, buffer)])
                .unwrap();
        }
        worker.close();
        assert_eq!(worker.submit(99, Vec::new()), Err(NotAccepting));
        let written = std::fs::read(device.path()).unwrap();
        for batch_id in 0..64usize {
            assert_eq!(
                written[batch_id * 4096],
                batch_id as u8 + 1,
                "write {batch_id}"
            );
        }
    }
}
