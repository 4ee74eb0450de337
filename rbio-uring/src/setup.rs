//! Ring set-up: the flag ladder (fast flags first, each refusal remembered), sizing, and the
//! registrations (buffer arena, device file, and the readiness eventfd when it is in use).
//!
//! A ring bound to one thread (`SINGLE_ISSUER` without SQPOLL) is created disabled
//! (`IORING_SETUP_R_DISABLED`): registrations happen here, on the building thread, which the
//! kernel allows before the ring is enabled, and the first thread that submits or reaps
//! enables it and becomes its issuer (see `issuer.rs`).

use std::os::fd::RawFd;

use io_uring::{cqueue, squeue, IoUring};
use rbio_core::Errno;

use crate::error::SetupError;
use crate::fixed::FixedBuffers;
use crate::flags::{RingFlags, SetupAttempt};

/// How long an idle SQPOLL thread spins before it sleeps.
const SQPOLL_IDLE_MS: u32 = 50;

/// The largest SQ the kernel creates (`IORING_MAX_ENTRIES`); the window is bounded by it.
pub(crate) const SQ_ENTRIES_MAX: u32 = 32768;

/// What ring to create.
#[derive(Clone, Debug)]
pub(crate) struct RingPlan {
    /// Submission queue entries (a power of two, at least the window).
    pub(crate) sq_entries: u32,
    /// Completion queue entries (twice the SQ: one CQE per op plus one per cancel).
    pub(crate) cq_entries: u32,
    /// Flags added to every set tried: SQPOLL, IOPOLL, SUBMIT_ALL.
    pub(crate) extra: RingFlags,
    /// The task-run flag sets to try, in order.
    pub(crate) ladder: Vec<RingFlags>,
}

impl RingPlan {
    /// A plan for `window` operations in flight.
    pub(crate) fn for_window(window: usize, extra: RingFlags, ladder: Vec<RingFlags>) -> Self {
        let sq_entries = (window.max(2) as u32).next_power_of_two();
        RingPlan {
            sq_entries,
            cq_entries: 2 * sq_entries,
            extra: extra.union(RingFlags::SUBMIT_ALL),
            ladder,
        }
    }
}

/// What gets registered with every ring of an engine (including a ring rebuilt later).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Registrations<'a> {
    pub(crate) fixed: Option<&'a FixedBuffers>,
    /// The device descriptor to register as `Fixed(0)`, if any.
    pub(crate) file: Option<RawFd>,
    /// The readiness eventfd, if it is in use.
    pub(crate) eventfd: Option<RawFd>,
}

/// A created, registered ring.
pub(crate) struct Created<S: squeue::EntryMarker, C: cqueue::EntryMarker> {
    pub(crate) ring: IoUring<S, C>,
    pub(crate) attempts: Vec<SetupAttempt>,
    /// The flags it runs with (without `R_DISABLED`).
    pub(crate) flags: RingFlags,
}

/// Creates a ring with the first flag set of the plan's ladder the kernel accepts and makes
/// the registrations. A thread-bound ring comes back disabled.
pub(crate) fn create<S, C>(
    plan: &RingPlan,
    registrations: Registrations<'_>,
) -> Result<Created<S, C>, SetupError>
where
    S: squeue::EntryMarker,
    C: cqueue::EntryMarker,
{
    let mut attempts = Vec::with_capacity(plan.ladder.len());
    for set in &plan.ladder {
        let flags = set.normalized().union(plan.extra);
        match build::<S, C>(plan, flags) {
            Ok(ring) => {
                attempts.push(SetupAttempt {
                    flags,
                    refused: None,
                });
                register(&ring, registrations)?;
                return Ok(Created {
                    ring,
                    attempts,
                    flags,
                });
            }
            Err(error) => attempts.push(SetupAttempt {
                flags,
                refused: Some(Errno(error.raw_os_error().unwrap_or(0))),
            }),
        }
    }
    Err(SetupError::RingRefused { attempts })
}

fn build<S, C>(plan: &RingPlan, flags: RingFlags) -> std::io::Result<IoUring<S, C>>
where
    S: squeue::EntryMarker,
    C: cqueue::EntryMarker,
{
    let mut builder = IoUring::<S, C>::builder();
    builder.setup_cqsize(plan.cq_entries);
    if flags.contains(RingFlags::IOPOLL) {
        builder.setup_iopoll();
    }
    if flags.contains(RingFlags::SQPOLL) {
        builder.setup_sqpoll(SQPOLL_IDLE_MS);
    }
    if flags.contains(RingFlags::SUBMIT_ALL) {
        builder.setup_submit_all();
    }
    if flags.contains(RingFlags::COOP_TASKRUN) {
        builder.setup_coop_taskrun();
    }
    if flags.contains(RingFlags::TASKRUN_FLAG) {
        builder.setup_taskrun_flag();
    }
    if flags.contains(RingFlags::SINGLE_ISSUER) {
        builder.setup_single_issuer();
    }
    if flags.contains(RingFlags::DEFER_TASKRUN) {
        builder.setup_defer_taskrun();
    }
    if flags.is_thread_bound() {
        builder.setup_r_disabled();
    }
    builder.build(plan.sq_entries)
}

fn register<S, C>(ring: &IoUring<S, C>, registrations: Registrations<'_>) -> Result<(), SetupError>
where
    S: squeue::EntryMarker,
    C: cqueue::EntryMarker,
{
    if let Some(fixed) = registrations.fixed {
        fixed.register(ring)?;
    }
    if let Some(fd) = registrations.file {
        ring.submitter()
            .register_files(&[fd])
            .map_err(|source| SetupError::RegisterFile { source })?;
    }
    if let Some(eventfd) = registrations.eventfd {
        ring.submitter()
            .register_eventfd(eventfd)
            .map_err(|source| SetupError::Readiness { source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_hold_the_window_and_twice_as_many_completions() {
        let plan = RingPlan::for_window(100, RingFlags::NONE, vec![RingFlags::NONE]);
        assert_eq!(plan.sq_entries, 128);
        assert_eq!(plan.cq_entries, 256);
        assert!(plan.extra.contains(RingFlags::SUBMIT_ALL));
        assert_eq!(
            RingPlan::for_window(1, RingFlags::NONE, vec![]).sq_entries,
            2
        );
    }
}
