//! `UringEngine`, the io_uring block engine, and its builder.

use std::sync::Arc;

use rbio_core::Device;

use crate::block::BlockCodec;
use crate::error::SetupError;
use crate::fixed::FixedBuffers;
use crate::flags::RingFlags;
use crate::options::{ring_engine_by_core, ring_option_setters, RingOptions};
use crate::ring::Ring;

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
            options: RingOptions::default(),
            sqpoll: false,
            null_io: false,
            sqes_per_enter_max: usize::MAX,
        }
    }
}

ring_engine_by_core!(UringEngine);

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
    options: RingOptions,
    sqpoll: bool,
    null_io: bool,
    sqes_per_enter_max: usize,
}

impl UringBuilder {
    ring_option_setters!();

    /// A kernel thread polls the submission queue (default off). The kernel refuses the
    /// task-run flags with it, so the ring runs plain; the set-up report shows why.
    pub fn sqpoll(mut self, sqpoll: bool) -> Self {
        self.sqpoll = sqpoll;
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
        self.options.check_window()?;
        let fixed = self
            .options
            .fixed_pool()
            .map(FixedBuffers::new)
            .transpose()?;
        let codec = BlockCodec {
            target: self.options.file_target(&self.device),
            iopoll: self.options.iopoll,
            null_io: self.null_io,
        };
        let extra = if self.sqpoll {
            RingFlags::SQPOLL
        } else {
            RingFlags::NONE
        };
        let config = self.options.core_config(self.device, fixed, extra);
        let mut core = Ring::new(codec, config)?;
        core.sqes_per_enter_max = self.sqes_per_enter_max;
        Ok(UringEngine { core })
    }
}
