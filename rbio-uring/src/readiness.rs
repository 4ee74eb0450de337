//! The readiness handle: an eventfd registered with the ring, so the kernel signals it as it
//! posts completions, kept readable exactly when a reap may return something.
//!
//! The eventfd is registered only once someone asks for it (`Engine::readiness`): a
//! registered eventfd costs the kernel a signal per completion batch and the engine a `read`
//! per reap, which an engine driven by blocking reaps never needs. Until the registration
//! (made on the issuing thread at the next submit or reap) the fd is signalled whenever
//! anything is pending, so a poller that asked for it first still wakes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{cqueue, squeue, IoUring};
use rbio_core::{Errno, Readiness};

use crate::codec::Codec;
use crate::flags::RingFlags;
use crate::ring::Ring;

/// The eventfd and whether the ring knows it.
#[derive(Debug)]
pub(crate) struct RingReadiness {
    eventfd: Readiness,
    /// Someone holds the fd: the ring must keep it accurate.
    wanted: AtomicBool,
    /// The current ring signals it.
    registered: bool,
}

impl RingReadiness {
    pub(crate) fn new() -> std::io::Result<RingReadiness> {
        Ok(RingReadiness {
            eventfd: Readiness::new()?,
            wanted: AtomicBool::new(false),
            registered: false,
        })
    }

    /// The eventfd, to register with a ring rebuilt on another thread, if it was registered.
    pub(crate) fn registered_fd(&self) -> Option<RawFd> {
        self.registered.then(|| self.eventfd.as_fd().as_raw_fd())
    }

    /// Registers the eventfd with `ring`.
    pub(crate) fn register<S, C>(&mut self, ring: &IoUring<S, C>) -> std::io::Result<()>
    where
        S: squeue::EntryMarker,
        C: cqueue::EntryMarker,
    {
        ring.submitter()
            .register_eventfd(self.eventfd.as_fd().as_raw_fd())?;
        self.registered = true;
        Ok(())
    }

    fn is_wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }
}

impl<C: Codec> Ring<C> {
    /// The readiness fd; from now on the engine keeps it accurate.
    pub(crate) fn readiness_fd(&self) -> BorrowedFd<'_> {
        let readiness = &self.readiness;
        if !readiness.wanted.swap(true, Ordering::Relaxed) && self.pending_count() > 0 {
            // Not registered yet: completions may already wait. Wake the caller, whose reap
            // registers the eventfd and settles its state.
            readiness.eventfd.signal();
        }
        readiness.eventfd.as_fd()
    }

    /// Registers the eventfd if it is wanted and not yet registered (on the issuing thread).
    pub(crate) fn sync_readiness(&mut self) {
        if self.readiness.registered || !self.readiness.is_wanted() || self.broken.is_some() {
            return;
        }
        if let Err(error) = self.readiness.register(&self.ring) {
            // Unregistered, the fd is signalled whenever anything is pending (see below).
            self.stats.enter_error = Some(Errno(error.raw_os_error().unwrap_or(0)));
        }
    }

    /// Signals the fd if local completions wait for the next reap.
    pub(crate) fn signal_ready(&self) {
        if self.readiness.is_wanted() && self.slots.has_ready() {
            self.readiness.eventfd.signal();
        }
    }

    /// Leaves the fd readable exactly when a reap may have something to return.
    ///
    /// The kernel signals the eventfd when it posts CQEs and, under `DEFER_TASKRUN`, when
    /// completion work is queued while none was; `TASKRUN_FLAG` shows such queued work. So
    /// clear first, then look: anything that arrives after the look signals again.
    pub(crate) fn update_readiness(&mut self) {
        if !self.readiness.is_wanted() {
            return;
        }
        let eventfd = &self.readiness.eventfd;
        if self.slots.has_ready() {
            eventfd.signal();
            return;
        }
        eventfd.clear();
        let polled =
            self.report.flags.contains(RingFlags::IOPOLL) && self.slots.in_kernel_count() > 0;
        let unregistered = !self.readiness.registered && self.pending_count() > 0;
        let work_waits = self.ring.submission().taskrun() || !self.ring.completion().is_empty();
        if polled || unregistered || work_waits {
            self.readiness.eventfd.signal();
        }
    }
}
