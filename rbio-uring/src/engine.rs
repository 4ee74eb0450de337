//! `UringEngine`, the io_uring block engine, and its builder.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use rbio_core::{BufferPool, Capabilities, Completion, Device, Engine, Op, Wait};

use crate::block::{BlockCodec, FileTarget};
use crate::error::SetupError;
use crate::fixed::FixedBuffers;
use crate::flags::{RingFlags, SetupReport};
use crate::ring::{CoreConfig, Ring};
use crate::setup::{RingPlan, SQ_ENTRIES_MAX};
use crate::stats::UringStats;

/// The window when the builder is not told otherwise.
pub const WINDOW_DEFAULT: usize = 64;

/// The largest window: the most SQEs a ring holds.
pub const WINDOW_MAX: usize = SQ_ENTRIES_MAX as usize;

/// How long an operation may take before it completes as timed out, unless the builder is
/// told otherwise. Shorter than the streaming driver's stall timeout, so a stuck device
/// shows up as timed-out operations rather than a stalled stream.
pub const OP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Reads, writes and flushes on a file or block device through one io_uring.
///
/// Operations become SQEs in bulk, up to the window, and reach the kernel with one
/// `io_uring_enter` per batch or refill; completions are reaped as they arrive and the window
/// refilled at once. Operations beyond the window wait inside the engine. `EINTR`, `EAGAIN`,
/// `EBUSY` and short transfers are handled inside; results match [`rbio_core::transfer`]
/// (the serial engine) error for error.
///
/// Buffers from the pool given to [`UringBuilder::fixed_buffers`] use `ReadFixed` and
/// `WriteFixed`; others use `Read` and `Write`. While an operation is in flight the engine
/// owns its buffer. Dropping the engine cancels what is in flight and waits at most
/// [`DROP_DRAIN_TIMEOUT`](crate::DROP_DRAIN_TIMEOUT) for the kernel; whatever it does not
/// give back is leaked, never freed.
///
/// If `io_uring_enter` fails with an error that is not transient (the ring cannot be entered
/// again), the engine is broken: every pending operation, and every one submitted later,
/// completes with [`IoError::Os`](rbio_core::IoError::Os) and that errno, at once. Those the
/// kernel held come back without their buffers, which are leaked with the ring; the errno is
/// the ring's, not theirs, and such a write may or may not have reached the device.
///
/// With the fastest flags (`SINGLE_ISSUER|DEFER_TASKRUN`) the ring belongs to the first thread
/// that submits or reaps; moving the engine to another thread later rebuilds the ring there,
/// and operations still in flight at that moment complete as
/// [`IoError::Canceled`](rbio_core::IoError::Canceled): no answer, as for a timeout, since
/// the kernel still performs them and such a write may or may not reach the device. Keep an
/// engine on one thread while it has work in flight.
pub struct UringEngine {
    core: Ring<BlockCodec>,
}

impl UringEngine {
    /// A builder for an engine on `device`.
    pub fn builder(device: Arc<Device>) -> UringBuilder {
        UringBuilder {
            device,
            window: WINDOW_DEFAULT,
            pool: None,
            register_file: true,
            sqpoll: false,
            iopoll: false,
            op_timeout: Some(OP_TIMEOUT_DEFAULT),
            ladder: RingFlags::LADDER.to_vec(),
            null_io: false,
            sqes_per_enter_max: usize::MAX,
        }
    }

    /// How the ring was set up: flag sets tried and refused, sizes, registrations.
    pub fn setup_report(&self) -> &SetupReport {
        &self.core.report
    }

    /// The flags the ring runs with.
    pub fn flags(&self) -> RingFlags {
        self.core.report.flags
    }

    /// What the engine has done so far.
    pub fn stats(&self) -> UringStats {
        self.core.stats
    }
}

impl Engine for UringEngine {
    fn capabilities(&self) -> Capabilities {
        self.core.capabilities()
    }

    fn submit(&mut self, ops: &mut Vec<Op>) {
        self.core.submit(ops);
    }

    fn reap(&mut self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        self.core.reap(completions, wait)
    }

    fn pending_count(&self) -> usize {
        self.core.pending_count()
    }

    fn readiness(&self) -> BorrowedFd<'_> {
        self.core.readiness_fd()
    }
}

impl std::fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringEngine")
            .field("device", &self.core.device.path())
            .field("setup", &self.core.report.to_string())
            .field("pending_count", &self.core.pending_count())
            .finish()
    }
}

/// Configures a [`UringEngine`]; [`UringEngine::builder`] makes one.
#[derive(Debug)]
pub struct UringBuilder {
    device: Arc<Device>,
    window: usize,
    pool: Option<BufferPool>,
    register_file: bool,
    sqpoll: bool,
    iopoll: bool,
    op_timeout: Option<Duration>,
    ladder: Vec<RingFlags>,
    null_io: bool,
    sqes_per_enter_max: usize,
}

impl UringBuilder {
    /// At most `window` operations in the kernel at once (default [`WINDOW_DEFAULT`]).
    pub fn window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// Registers `pool`'s arena: its buffers are read and written with fixed-buffer opcodes.
    /// The engine keeps a handle to the pool, so the arena outlives the registration.
    pub fn fixed_buffers(mut self, pool: &BufferPool) -> Self {
        self.pool = Some(pool.clone());
        self
    }

    /// As [`UringBuilder::fixed_buffers`], taking the handle.
    pub fn pool(mut self, pool: BufferPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Registers the device file with the ring (default on).
    pub fn register_file(mut self, register_file: bool) -> Self {
        self.register_file = register_file;
        self
    }

    /// A kernel thread polls the submission queue (default off). The kernel refuses the
    /// task-run flags with it, so the ring runs plain; the set-up report shows why.
    pub fn sqpoll(mut self, sqpoll: bool) -> Self {
        self.sqpoll = sqpoll;
        self
    }

    /// Completions are polled for (default off). Needs O_DIRECT and a device with poll
    /// queues; elsewhere every read and write fails with
    /// [`IoError::Unsupported`](rbio_core::IoError::Unsupported).
    pub fn iopoll(mut self, iopoll: bool) -> Self {
        self.iopoll = iopoll;
        self
    }

    /// An operation not completed `op_timeout` after its submission completes as
    /// [`IoError::TimedOut`](rbio_core::IoError::TimedOut) (default [`OP_TIMEOUT_DEFAULT`]).
    pub fn op_timeout(mut self, op_timeout: Duration) -> Self {
        self.op_timeout = Some(op_timeout);
        self
    }

    /// Operations never time out; only each reap's own deadline bounds the caller's wait.
    pub fn no_op_timeout(mut self) -> Self {
        self.op_timeout = None;
        self
    }

    /// The task-run flag sets to try, in order (default [`RingFlags::LADDER`]). Sets with
    /// `COOP_TASKRUN` or `DEFER_TASKRUN` get `TASKRUN_FLAG` added.
    pub fn flag_ladder(mut self, ladder: Vec<RingFlags>) -> Self {
        self.ladder = ladder;
        self
    }

    /// Hands SQEs to the kernel at most `sqes_per_enter_max` per `io_uring_enter` (at least 1;
    /// default: no limit, one enter per batch or refill).
    ///
    /// The kernel plugs a multi-SQE submission: no request of it reaches the device before the
    /// last one is prepared. Where preparing a request is slow (about 3.5 µs per O_DIRECT read
    /// on a virtualized disk) that holds the first requests back; smaller submissions trade
    /// system calls for earlier dispatch. Leave the default on real NVMe.
    pub fn sqes_per_enter(mut self, sqes_per_enter_max: usize) -> Self {
        self.sqes_per_enter_max = sqes_per_enter_max.max(1);
        self
    }

    /// Performs every operation as `IORING_OP_NOP`, reporting its full length and moving no
    /// data, like fio's null engine: measures the engine's own cost per operation. Never use
    /// it for real I/O.
    pub fn null_io(mut self, null_io: bool) -> Self {
        self.null_io = null_io;
        self
    }

    /// Creates the ring and makes the registrations.
    ///
    /// # Errors
    /// A [`SetupError`]: a window out of range, every flag set refused (each with its errno),
    /// or a registration the kernel refused.
    pub fn build(self) -> Result<UringEngine, SetupError> {
        if !(1..=WINDOW_MAX).contains(&self.window) {
            return Err(SetupError::Window {
                window: self.window,
                window_max: WINDOW_MAX,
            });
        }
        let fixed = self.pool.as_ref().map(FixedBuffers::new).transpose()?;
        let mut extra = RingFlags::NONE;
        if self.sqpoll {
            extra = extra.union(RingFlags::SQPOLL);
        }
        if self.iopoll {
            extra = extra.union(RingFlags::IOPOLL);
        }
        let codec = BlockCodec {
            target: if self.register_file {
                FileTarget::Fixed
            } else {
                FileTarget::Raw(self.device.file().as_raw_fd())
            },
            iopoll: self.iopoll,
            null_io: self.null_io,
        };
        let config = CoreConfig {
            plan: RingPlan::for_window(self.window, extra, self.ladder),
            device: self.device,
            window: self.window,
            fixed,
            register_file: self.register_file,
            op_timeout: self.op_timeout,
        };
        let mut core = Ring::new(codec, config)?;
        core.sqes_per_enter_max = self.sqes_per_enter_max;
        Ok(UringEngine { core })
    }
}
