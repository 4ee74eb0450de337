//! The engine-neutral ring core: one io_uring, a window of operations in it, and the
//! operations waiting for room. Generic over the [`Codec`] that encodes SQEs and decodes CQEs.
//!
//! Its work is split by job: `submit.rs` fills the window, `reap.rs` processes CQEs and waits,
//! `deadline.rs` times operations out, `issuer.rs` keeps a thread-bound ring on its thread,
//! `shutdown.rs` cancels and drains on drop.
//!
//! **Invariant:** `in_kernel_count <= window` and `in_kernel_count + cancel_count <=
//! cq_entries`: every SQE in the kernel owes one CQE and the CQ holds them all.
//! **Invariant:** a slot's buffer leaves the slab only with its completion, once the kernel
//! has let go of it, or is leaked; never freed while the kernel may write into it.

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::IoUring;
use rbio_core::{Capabilities, Completion, Device, IoError, Op};
use slab::Slab;

use crate::codec::Codec;
use crate::deadline::Deadlines;
use crate::error::SetupError;
use crate::fixed::FixedBuffers;
use crate::flags::SetupReport;
use crate::issuer::Issuer;
use crate::readiness::RingReadiness;
use crate::setup::{self, Registrations, RingPlan};
use crate::slot::Slot;
use crate::stats::UringStats;

/// How a core is configured, beyond its codec.
pub(crate) struct CoreConfig {
    pub(crate) device: Arc<Device>,
    pub(crate) window: usize,
    pub(crate) plan: RingPlan,
    pub(crate) fixed: Option<FixedBuffers>,
    pub(crate) register_file: bool,
    pub(crate) op_timeout: Option<Duration>,
}

/// One ring and the operations it owns.
pub(crate) struct Ring<C: Codec> {
    /// Dropped explicitly in `Drop` (before `fixed`), or leaked if the kernel may still hold
    /// buffers.
    pub(crate) ring: ManuallyDrop<IoUring<C::Sqe, C::Cqe>>,
    pub(crate) codec: C,
    pub(crate) device: Arc<Device>,
    pub(crate) fixed: Option<FixedBuffers>,
    pub(crate) readiness: RingReadiness,
    pub(crate) plan: RingPlan,
    pub(crate) register_file: bool,
    pub(crate) report: SetupReport,
    /// Every admitted, uncompleted operation, plus zombies.
    pub(crate) slots: Slab<Slot>,
    /// Slots waiting for a piece to be submitted, by (key, generation); stale entries skipped.
    pub(crate) waiting: VecDeque<(usize, u32)>,
    /// Completions made without the kernel (refusals, encoding errors), for the next reap.
    pub(crate) ready: Vec<Completion>,
    pub(crate) deadlines: Deadlines,
    /// Reused buffer of CQEs copied out of the ring.
    pub(crate) scratch: Vec<C::Cqe>,
    pub(crate) window: usize,
    /// Slots `InKernel` or `Zombie`.
    pub(crate) in_kernel_count: usize,
    pub(crate) zombie_count: usize,
    /// Cancel SQEs whose CQE has not been reaped.
    pub(crate) cancel_count: usize,
    pub(crate) next_generation: u32,
    pub(crate) issuer: Issuer,
    /// Set when the ring became unusable; every operation then fails with this error.
    pub(crate) broken: Option<IoError>,
    /// The ring must be leaked on drop: it was abandoned with work in the kernel.
    pub(crate) leak_ring: bool,
    pub(crate) stats: UringStats,
}

impl<C: Codec> Ring<C> {
    /// Creates the ring (trying the plan's flag ladder) and registers buffers and file.
    pub(crate) fn new(codec: C, config: CoreConfig) -> Result<Ring<C>, SetupError> {
        let readiness = RingReadiness::new().map_err(|source| SetupError::Readiness { source })?;
        let registrations = Registrations {
            fixed: config.fixed.as_ref(),
            file: config
                .register_file
                .then(|| config.device.file().as_raw_fd()),
            eventfd: None,
        };
        let created = setup::create::<C::Sqe, C::Cqe>(&config.plan, registrations)?;
        let report = SetupReport {
            attempts: created.attempts,
            flags: created.flags,
            sq_entries: created.ring.params().sq_entries(),
            cq_entries: created.ring.params().cq_entries(),
            fixed_buffer_count: config.fixed.as_ref().map_or(0, FixedBuffers::iovec_count),
            fixed_file: config.register_file,
        };
        assert!(
            report.cq_entries as usize >= 2 * config.window,
            "CQ of {} entries cannot hold {} ops and their cancels",
            report.cq_entries,
            config.window
        );
        Ok(Ring {
            issuer: Issuer::for_flags(created.flags),
            ring: ManuallyDrop::new(created.ring),
            codec,
            device: config.device,
            fixed: config.fixed,
            readiness,
            plan: config.plan,
            register_file: config.register_file,
            slots: Slab::with_capacity(config.window),
            waiting: VecDeque::with_capacity(config.window),
            ready: Vec::new(),
            deadlines: Deadlines::new(config.op_timeout),
            scratch: Vec::with_capacity(report.cq_entries as usize),
            window: config.window,
            in_kernel_count: 0,
            zombie_count: 0,
            cancel_count: 0,
            next_generation: 0,
            broken: None,
            leak_ring: false,
            stats: UringStats::default(),
            report,
        })
    }

    /// CQEs the kernel still owes: one per piece in the kernel and one per cancel.
    pub(crate) fn cqe_owed(&self) -> usize {
        self.in_kernel_count + self.cancel_count
    }

    /// Admits `ops` (refusing what the device cannot do), fills the window and submits.
    pub(crate) fn submit(&mut self, ops: &mut Vec<Op>) {
        self.ensure_issuer();
        let now = self.deadlines.is_enabled().then(Instant::now);
        for op in ops.drain(..) {
            match self.device.admit(op) {
                Ok(op) => self.admit(op, now),
                Err(refused) => self.ready.push(refused),
            }
        }
        self.refill();
        self.submit_pushed();
        self.signal_ready();
    }

    fn admit(&mut self, mut op: Op, now: Option<Instant>) {
        let addr = op
            .buffer_mut()
            .map_or(0, |buffer| buffer.as_mut_ptr() as usize);
        let buf_index = match (&self.fixed, op.buffer()) {
            (Some(fixed), Some(buffer)) => fixed.index_of(buffer),
            _ => None,
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let key = self
            .slots
            .insert(Slot::new(op, addr, buf_index, generation));
        self.waiting.push_back((key, generation));
        if let Some(now) = now {
            self.deadlines.push(now, key, generation);
        }
    }

    /// Operations submitted and not yet handed out by `reap`.
    pub(crate) fn pending_count(&self) -> usize {
        self.slots.len() - self.zombie_count + self.ready.len()
    }

    pub(crate) fn capabilities(&self) -> Capabilities {
        Capabilities {
            name: C::NAME,
            align_bytes: self.device.align_bytes(),
            in_flight_max: self.window,
            fixed_buffers: self.fixed.is_some(),
            passthrough: C::PASSTHROUGH,
        }
    }
}
