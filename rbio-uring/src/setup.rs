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
use crate::features::RingFeatures;
use crate::fixed::FixedBuffers;
use crate::flags::{RingFlags, SetupAttempt};
use crate::timer::TIMERS_MAX;

/// How long an idle SQPOLL thread spins before it sleeps.
const SQPOLL_IDLE_MS: u32 = 50;

/// The largest SQ the kernel creates (`IORING_MAX_ENTRIES`); the window is bounded by it.
pub(crate) const SQ_ENTRIES_MAX: u32 = 32768;

/// What ring to create.
#[derive(Clone, Debug)]
pub(crate) struct RingPlan {
    /// Submission queue entries (a power of two, at least the window).
    pub(crate) sq_entries: u32,
    /// Completion queue entries (twice the SQ: one CQE per op plus one per cancel; and
    /// room for the timeout SQEs' CQEs where waits need them).
    pub(crate) cq_entries: u32,
    /// Flags added to every set tried: SQPOLL, IOPOLL, and SUBMIT_ALL where usable.
    pub(crate) extra: RingFlags,
    /// The task-run flag sets to try, in order: those whose features are usable.
    pub(crate) ladder: Vec<RingFlags>,
    /// The features the ring may use.
    pub(crate) usable: RingFeatures,
}

impl RingPlan {
    /// A plan for `window` operations in flight, using only `usable` features: the flag sets
    /// of `ladder` that need others are left out (the plain ring stays if none is left).
    pub(crate) fn for_window(
        window: usize,
        extra: RingFlags,
        ladder: Vec<RingFlags>,
        usable: RingFeatures,
    ) -> Self {
        let sq_entries = (window.max(2) as u32).next_power_of_two();
        let timer_cqes = if usable.contains(RingFeatures::EXT_ARG) {
            0
        } else {
            TIMERS_MAX as u32
        };
        let extra = if usable.contains(RingFeatures::SUBMIT_ALL) {
            extra.union(RingFlags::SUBMIT_ALL)
        } else {
            extra
        };
        let mut ladder: Vec<RingFlags> = ladder
            .into_iter()
            .filter(|set| usable.allow_flags(*set))
            .collect();
        if ladder.is_empty() {
            ladder.push(RingFlags::NONE);
        }
        RingPlan {
            sq_entries,
            cq_entries: 2 * sq_entries + timer_cqes,
            extra,
            ladder,
            usable,
        }
    }

    /// CQEs owed at most besides the window's: one per timeout SQE where waits use them.
    pub(crate) fn timer_cqe_max(&self) -> usize {
        if self.usable.contains(RingFeatures::EXT_ARG) {
            0
        } else {
            TIMERS_MAX
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
    /// Why the buffer arena is not registered though it was asked for: the kernel refused
    /// it for lack of locked memory.
    pub(crate) buffers_refused: Option<Errno>,
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
                let buffers_refused = register(&ring, registrations)?;
                return Ok(Created {
                    ring,
                    attempts,
                    flags,
                    buffers_refused,
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

/// Makes the registrations; returns the errno if the buffer arena was refused for lack of
/// locked memory (`ENOMEM`, or `EPERM` where the limit is zero), which the engine survives by
/// doing without fixed buffers. Any other refusal is an error.
fn register<S, C>(
    ring: &IoUring<S, C>,
    registrations: Registrations<'_>,
) -> Result<Option<Errno>, SetupError>
where
    S: squeue::EntryMarker,
    C: cqueue::EntryMarker,
{
    let mut buffers_refused = None;
    if let Some(fixed) = registrations.fixed {
        match fixed.register(ring) {
            Ok(()) => {}
            Err(SetupError::RegisterBuffers { source, .. })
                if matches!(source.raw_os_error(), Some(libc::ENOMEM | libc::EPERM)) =>
            {
                buffers_refused = Some(Errno(source.raw_os_error().unwrap_or(0)));
            }
            Err(error) => return Err(error),
        }
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
    Ok(buffers_refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_hold_the_window_and_twice_as_many_completions() {
        let all = RingFeatures::ALL;
        let plan = RingPlan::for_window(100, RingFlags::NONE, vec![RingFlags::NONE], all);
        assert_eq!(plan.sq_entries, 128);
        assert_eq!(plan.cq_entries, 256);
        assert!(plan.extra.contains(RingFlags::SUBMIT_ALL));
        assert_eq!(
            RingPlan::for_window(1, RingFlags::NONE, vec![], all).sq_entries,
            2
        );
    }

    /// Issue 12: on a kernel before 5.18 every set of the ladder carried SUBMIT_ALL, so no
    /// ring could be created; flags and waits now follow what the kernel offers.
    #[test]
    fn features_missing_leave_their_flags_out_and_make_room_for_timer_cqes() {
        let usable = RingFeatures::ALL
            .without(RingFeatures::SUBMIT_ALL)
            .without(RingFeatures::DEFER_TASKRUN)
            .without(RingFeatures::EXT_ARG);
        let plan = RingPlan::for_window(64, RingFlags::NONE, RingFlags::LADDER.to_vec(), usable);
        assert!(!plan.extra.contains(RingFlags::SUBMIT_ALL));
        assert_eq!(plan.ladder, RingFlags::LADDER[1..].to_vec());
        assert_eq!(plan.cq_entries, 128 + TIMERS_MAX as u32);
        assert_eq!(plan.timer_cqe_max(), TIMERS_MAX);
        let bare = RingPlan::for_window(
            64,
            RingFlags::NONE,
            vec![RingFlags::LADDER[0]],
            RingFeatures::NONE,
        );
        assert_eq!(bare.ladder, vec![RingFlags::NONE], "the plain ring remains");
    }
}
