//! Configuring a [`PosixEngine`]: how many workers, how long an operation may take.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rbio_core::{Device, DeviceKind};

use crate::pool::PosixEngine;
use crate::worker::TransferFn;

/// The most workers an engine may have: a bound on threads, not a recommendation.
pub const WORKERS_MAX: usize = 256;

/// How long an operation may take, from submission, before it completes as timed out, unless
/// [`PosixEngineBuilder::op_timeout`] says otherwise. Thirty seconds is the Linux block
/// layer's own default command timeout (SCSI and NVMe), so a device that answers at all
/// answers first, and it is shorter than the streaming driver's stall timeout, so a stuck
/// operation surfaces as [`IoError::TimedOut`](rbio_core::IoError::TimedOut) rather than as a
/// stalled stream.
pub const OP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The longest operation timeout: longer ones are shortened to it, so that a deadline
/// (submission time plus timeout) can always be represented.
pub const OP_TIMEOUT_MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// How many workers an engine gets when the builder is not told.
///
/// - O_DIRECT, or a block device: `min(4 × cores, 16)`. Each worker keeps one request at the
///   device and sleeps while it is there, so workers beyond the core count cost little CPU
///   and keep the device's queue fuller; past 16 a single hardware queue (virtio, SATA) is
///   saturated, and deeper queues are the io_uring engine's job.
/// - A buffered regular file: `min(2 × cores, 16)`. Page-cache hits are memory copies bound
///   by the cores; twice as many workers still overlaps the misses that do reach the disk.
///
/// `cores` is [`std::thread::available_parallelism`] (1 if unknown).
pub fn default_worker_count(device: &Device) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let waits_on_device = device.is_direct() || device.kind() != DeviceKind::File;
    let per_core = if waits_on_device { 4 } else { 2 };
    (cores * per_core).clamp(1, 16)
}

/// Builds a [`PosixEngine`]; see [`PosixEngine::builder`].
#[derive(Debug)]
pub struct PosixEngineBuilder {
    device: Arc<Device>,
    worker_count: Option<usize>,
    op_timeout: Duration,
    transfer: TransferFn,
}

impl PosixEngineBuilder {
    pub(crate) fn new(device: Arc<Device>) -> PosixEngineBuilder {
        PosixEngineBuilder {
            device,
            worker_count: None,
            op_timeout: OP_TIMEOUT_DEFAULT,
            transfer: rbio_core::transfer,
        }
    }

    /// Uses `worker_count` worker threads (1 to [`WORKERS_MAX`]) instead of
    /// [`default_worker_count`].
    pub fn workers(mut self, worker_count: usize) -> PosixEngineBuilder {
        self.worker_count = Some(worker_count);
        self
    }

    /// Completes an operation as [`IoError::TimedOut`](rbio_core::IoError::TimedOut) when it
    /// has not completed `op_timeout` after its submission (default [`OP_TIMEOUT_DEFAULT`]).
    ///
    /// The time counts from submission, so it covers time spent queued behind other
    /// operations of the same worker: that is what bounds the wait for every operation
    /// queued to a worker that is stuck in a system call. An operation whose deadline passes
    /// before its worker reaches it is never performed. Timeouts above [`OP_TIMEOUT_MAX`]
    /// are shortened to it.
    pub fn op_timeout(mut self, op_timeout: Duration) -> PosixEngineBuilder {
        self.op_timeout = op_timeout.min(OP_TIMEOUT_MAX);
        self
    }

    /// Replaces the transfer routine, for unit tests of panics.
    #[cfg(test)]
    pub(crate) fn transfer(mut self, transfer: TransferFn) -> PosixEngineBuilder {
        self.transfer = transfer;
        self
    }

    /// Starts the worker threads and the timer thread.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] for a worker count of 0 or above [`WORKERS_MAX`]; the
    /// error of creating the readiness eventfd or of spawning a thread.
    pub fn build(self) -> io::Result<PosixEngine> {
        let worker_count = self
            .worker_count
            .unwrap_or_else(|| default_worker_count(&self.device));
        if !(1..=WORKERS_MAX).contains(&worker_count) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("posix engine: {worker_count} workers asked, 1 to {WORKERS_MAX} allowed"),
            ));
        }
        PosixEngine::start(self.device, worker_count, self.op_timeout, self.transfer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_rule() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(1 << 20).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let buffered = Device::open(file.path()).unwrap();
        assert_eq!(default_worker_count(&buffered), (2 * cores).min(16));
        let direct = Device::options().direct(true).open(file.path()).unwrap();
        assert_eq!(default_worker_count(&direct), (4 * cores).min(16));
    }

    #[test]
    fn an_endless_timeout_is_shortened_to_the_maximum() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let device = Arc::new(Device::open(file.path()).unwrap());
        let builder = PosixEngineBuilder::new(device).op_timeout(Duration::MAX);
        assert_eq!(builder.op_timeout, OP_TIMEOUT_MAX);
        let mut engine = builder.workers(1).build().unwrap();
        let buffer = rbio_core::Buffer::new_aligned(512, 512).unwrap();
        rbio_core::Engine::submit(&mut engine, &mut vec![rbio_core::Op::read(0, 0, buffer)]);
    }

    #[test]
    fn worker_count_out_of_bounds_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let device = Arc::new(Device::open(file.path()).unwrap());
        for worker_count in [0, WORKERS_MAX + 1] {
            let error = PosixEngineBuilder::new(device.clone())
                .workers(worker_count)
                .build()
                .unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert!(error.to_string().contains(&worker_count.to_string()));
        }
    }
}
