//! The options every ring engine's builder shares (window, fixed buffers, registered file,
//! IOPOLL, operation timeout, flag ladder), their defaults and their setters, and the `Engine`
//! impl every ring engine forwards to its core.
//!
//! [`UringBuilder`](crate::UringBuilder) and [`NvmeBuilder`](crate::NvmeBuilder) each hold a
//! [`RingOptions`] and expand [`ring_option_setters!`] into their own `impl`, so the setters
//! are written once and callers need no trait in scope.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use rbio_core::{BufferPool, Device};

use crate::block::FileTarget;
use crate::error::SetupError;
use crate::features::{kernel_features, RingFeatures};
use crate::fixed::FixedBuffers;
use crate::flags::RingFlags;
use crate::ring::CoreConfig;
use crate::setup::{RingPlan, SQ_ENTRIES_MAX};

/// The window when the builder is not told otherwise.
pub const WINDOW_DEFAULT: usize = 64;

/// The largest window: the most SQEs a ring holds.
pub const WINDOW_MAX: usize = SQ_ENTRIES_MAX as usize;

/// How long an operation may take before it completes as timed out, unless the builder is
/// told otherwise. Shorter than the streaming driver's stall timeout, so a stuck device
/// shows up as timed-out operations rather than a stalled stream.
pub const OP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// What every ring engine's builder configures, with the defaults.
#[derive(Debug)]
pub(crate) struct RingOptions {
    pub(crate) window: usize,
    pub(crate) pool: Option<BufferPool>,
    pub(crate) register_file: bool,
    pub(crate) iopoll: bool,
    pub(crate) op_timeout: Option<Duration>,
    pub(crate) ladder: Vec<RingFlags>,
    /// Features not to use even where the kernel offers them.
    pub(crate) masked: RingFeatures,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            window: WINDOW_DEFAULT,
            pool: None,
            register_file: true,
            iopoll: false,
            op_timeout: Some(OP_TIMEOUT_DEFAULT),
            ladder: RingFlags::LADDER.to_vec(),
            masked: RingFeatures::NONE,
        }
    }
}

impl RingOptions {
    /// Refuses a window of zero or larger than a ring holds, before anything is opened.
    pub(crate) fn check_window(&self) -> Result<(), SetupError> {
        if (1..=WINDOW_MAX).contains(&self.window) {
            Ok(())
        } else {
            Err(SetupError::Window {
                window: self.window,
                window_max: WINDOW_MAX,
            })
        }
    }

    /// The features the engine may use: what the kernel offers, less what is masked.
    pub(crate) fn usable(&self) -> RingFeatures {
        kernel_features().without(self.masked)
    }

    /// Whether the device file gets registered: asked for and usable.
    fn registers_file(&self) -> bool {
        self.register_file && self.usable().contains(RingFeatures::FIXED_FILE)
    }

    /// The pool to register as fixed buffers: the one given, unless fixed buffers are masked.
    pub(crate) fn fixed_pool(&self) -> Option<&BufferPool> {
        let usable = self.usable().contains(RingFeatures::FIXED_BUFFERS);
        self.pool.as_ref().filter(|_| usable)
    }

    /// How SQEs name `device`: the registered file, or its descriptor.
    pub(crate) fn file_target(&self, device: &Device) -> FileTarget {
        if self.registers_file() {
            FileTarget::Fixed
        } else {
            FileTarget::Raw(device.file().as_raw_fd())
        }
    }

    /// The core's configuration for `device`: the ring gets `extra` flags, and IOPOLL when
    /// asked for.
    pub(crate) fn core_config(
        self,
        device: Arc<Device>,
        fixed: Option<FixedBuffers>,
        extra: RingFlags,
    ) -> CoreConfig {
        let extra = if self.iopoll {
            extra.union(RingFlags::IOPOLL)
        } else {
            extra
        };
        let register_file = self.registers_file();
        let usable = self.usable();
        CoreConfig {
            plan: RingPlan::for_window(self.window, extra, self.ladder, usable),
            device,
            window: self.window,
            fixed,
            register_file,
            op_timeout: self.op_timeout,
        }
    }
}

/// The setters of the shared [`RingOptions`], for the `impl` of a builder with a field
/// `options: RingOptions`.
macro_rules! ring_option_setters {
    () => {
        /// At most `window` operations in the kernel at once (default
        /// [`WINDOW_DEFAULT`](crate::WINDOW_DEFAULT)); an operation split into several
        /// commands has one of them in the kernel at a time.
        pub fn window(mut self, window: usize) -> Self {
            self.options.window = window;
            self
        }

        /// Registers `pool`'s arena: its buffers are passed as fixed buffers (`ReadFixed` and
        /// `WriteFixed`, or `IORING_URING_CMD_FIXED` for NVMe passthrough), which the kernel
        /// does not map per operation. The engine keeps a handle to the pool, so the arena
        /// outlives the registration.
        pub fn fixed_buffers(mut self, pool: &rbio_core::BufferPool) -> Self {
            self.options.pool = Some(pool.clone());
            self
        }

        /// As [`Self::fixed_buffers`], taking the handle.
        pub fn pool(mut self, pool: rbio_core::BufferPool) -> Self {
            self.options.pool = Some(pool);
            self
        }

        /// Registers the device file with the ring (default on).
        pub fn register_file(mut self, register_file: bool) -> Self {
            self.options.register_file = register_file;
            self
        }

        /// Completions are polled for (default off). Needs a device with poll queues (for
        /// NVMe, Linux's `nvme.poll_queues`), and O_DIRECT for a file or block device;
        /// elsewhere every read and write fails with
        /// [`IoError::Unsupported`](rbio_core::IoError::Unsupported). Waits then spin, each
        /// pass polling once, until a completion or their deadline.
        pub fn iopoll(mut self, iopoll: bool) -> Self {
            self.options.iopoll = iopoll;
            self
        }

        /// An operation not completed `op_timeout` after its submission completes as
        /// [`IoError::TimedOut`](rbio_core::IoError::TimedOut) (default
        /// [`OP_TIMEOUT_DEFAULT`](crate::OP_TIMEOUT_DEFAULT)).
        pub fn op_timeout(mut self, op_timeout: std::time::Duration) -> Self {
            self.options.op_timeout = Some(op_timeout);
            self
        }

        /// Operations never time out; only each reap's own deadline bounds the caller's wait.
        pub fn no_op_timeout(mut self) -> Self {
            self.options.op_timeout = None;
            self
        }

        /// The task-run flag sets to try, in order (default
        /// [`RingFlags::LADDER`](crate::RingFlags::LADDER)). Sets with `COOP_TASKRUN` or
        /// `DEFER_TASKRUN` get `TASKRUN_FLAG` added.
        pub fn flag_ladder(mut self, ladder: Vec<crate::RingFlags>) -> Self {
            self.options.ladder = ladder;
            self
        }

        /// Does without `features` even where the kernel offers them, as on an older kernel
        /// (default: use everything offered, [`kernel_features`](crate::kernel_features)):
        /// flag sets needing them are left out of the ladder, waits without
        /// [`RingFeatures::EXT_ARG`](crate::RingFeatures::EXT_ARG) are bounded by timeout
        /// SQEs, and nothing is registered whose feature is masked. Meant for testing the
        /// fallbacks on a recent kernel.
        pub fn without_features(mut self, features: crate::RingFeatures) -> Self {
            self.options.masked = self.options.masked.union(features);
            self
        }
    };
}
pub(crate) use ring_option_setters;

/// `Engine` for a ring engine with a field `core: Ring<_>`, and the accessors every ring engine
/// has: each forwards to the core.
macro_rules! ring_engine_by_core {
    ($engine:ty) => {
        impl $engine {
            /// How the ring was set up: flag sets tried and refused, sizes, registrations.
            pub fn setup_report(&self) -> &crate::SetupReport {
                &self.core.report
            }

            /// The flags the ring runs with.
            pub fn flags(&self) -> crate::RingFlags {
                self.core.report.flags
            }

            /// The io_uring features the engine runs with: those the kernel offers, less those
            /// masked or refused (see [`SetupReport::warnings`](crate::SetupReport::warnings)).
            pub fn features(&self) -> crate::RingFeatures {
                self.core.report.features
            }

            /// What the engine has done so far (one SQE per command: an operation sent as
            /// several commands counts each).
            pub fn stats(&self) -> crate::UringStats {
                self.core.stats
            }
        }

        impl rbio_core::Engine for $engine {
            fn capabilities(&self) -> rbio_core::Capabilities {
                self.core.capabilities()
            }

            fn submit(&mut self, ops: &mut Vec<rbio_core::Op>) {
                self.core.submit(ops);
            }

            fn reap(
                &mut self,
                completions: &mut Vec<rbio_core::Completion>,
                wait: rbio_core::Wait,
            ) -> usize {
                self.core.reap(completions, wait)
            }

            fn pending_count(&self) -> usize {
                self.core.pending_count()
            }

            fn readiness(&self) -> std::os::fd::BorrowedFd<'_> {
                self.core.readiness_fd()
            }
        }
    };
}
pub(crate) use ring_engine_by_core;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_outside_the_ring_is_refused() {
        for window in [0, WINDOW_MAX + 1] {
            let options = RingOptions {
                window,
                ..RingOptions::default()
            };
            assert!(
                matches!(options.check_window(), Err(SetupError::Window { window_max, .. }) if window_max == WINDOW_MAX),
                "window {window}"
            );
        }
        assert!(RingOptions::default().check_window().is_ok());
    }
}
