//! Keeping a thread-bound ring (`SINGLE_ISSUER`, with `DEFER_TASKRUN`) on its thread.
//!
//! The kernel lets only the ring's issuer submit, reap (run deferred completion work) and
//! register; any other thread gets `EEXIST`. An [`Engine`](rbio_core::Engine) is `Send`, so
//! it may be built on one thread and used on another, or move between uses. The choice here:
//!
//! - The ring is created disabled (`R_DISABLED`) and enabled by the first thread that submits
//!   or reaps, which becomes its issuer: building on one thread and using on another is free.
//! - If a later call comes from another thread and the kernel owes no CQE, the ring is
//!   rebuilt on that thread with the same flags and registrations ("rehome"): correct, at
//!   the price of one set-up.
//! - If the kernel still owes CQEs, no thread but the old issuer can ever collect them. The
//!   engine completes those operations as [`IoError::Canceled`] without their buffers, leaks
//!   the old ring and the buffers (the kernel may still write into them), and rebuilds. Do
//!   not move an engine between threads with operations in flight if that matters; or build
//!   it with a flag ladder without `SINGLE_ISSUER`.
//!
//! `Canceled` there means "no answer", not "not done": the kernel still performs what it
//! holds, so an orphaned write may or may not have reached the device, and an orphaned read's
//! data is lost with its buffer. [`IoError::is_device_answer`] is `false` for it, as for a
//! timeout; treat the written range as unknown until it is written again or read back.

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};

use rbio_core::{Errno, IoError};

use crate::codec::Codec;
use crate::error::SetupError;
use crate::flags::RingFlags;
use crate::ring::Ring;
use crate::setup::{self, Registrations};

static NEXT_THREAD_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD_TOKEN: Cell<u64> = const { Cell::new(0) };
}

/// A number naming the calling thread, distinct from every other thread's.
pub(crate) fn current_thread() -> u64 {
    THREAD_TOKEN.with(|token| {
        if token.get() == 0 {
            token.set(NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed));
        }
        token.get()
    })
}

/// Which thread may use the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Issuer {
    /// Any thread (the ring is not thread-bound).
    Any,
    /// Nobody yet: the ring is disabled until its first use.
    Disabled,
    /// Only this thread.
    Bound(u64),
}

impl Issuer {
    pub(crate) fn for_flags(flags: RingFlags) -> Issuer {
        if flags.is_thread_bound() {
            Issuer::Disabled
        } else {
            Issuer::Any
        }
    }

    /// Whether the calling thread may enter the ring.
    pub(crate) fn is_current(self) -> bool {
        match self {
            Issuer::Any => true,
            Issuer::Disabled => false,
            Issuer::Bound(thread) => thread == current_thread(),
        }
    }
}

impl<C: Codec> Ring<C> {
    /// Makes the calling thread the ring's issuer, enabling or rebuilding the ring if needed.
    pub(crate) fn ensure_issuer(&mut self) {
        match self.issuer {
            Issuer::Any => {}
            Issuer::Bound(thread) if thread == current_thread() => {}
            Issuer::Disabled => self.enable_here(),
            Issuer::Bound(_) => self.rehome(),
        }
        self.sync_readiness();
    }

    fn enable_here(&mut self) {
        match self.ring.submitter().register_enable_rings() {
            Ok(()) => self.issuer = Issuer::Bound(current_thread()),
            Err(error) => self.break_with(&SetupError::Enable { source: error }),
        }
    }

    /// Rebuilds the ring on the calling thread, orphaning what the old one still holds.
    fn rehome(&mut self) {
        if self.broken.is_some() {
            return;
        }
        let abandoned = self.cqe_owed() > 0;
        self.stats.orphaned_count += self.abandon_in_kernel(&IoError::Canceled);
        let registrations = Registrations {
            fixed: self.fixed.as_ref(),
            file: self
                .register_file
                .then(|| std::os::fd::AsRawFd::as_raw_fd(self.device.file())),
            eventfd: self.readiness.registered_fd(),
        };
        let mut plan = self.plan.clone();
        plan.ladder = vec![self.report.flags];
        let created = match setup::create::<C::Sqe, C::Cqe>(&plan, registrations) {
            Ok(created) if created.buffers_refused.is_some() => {
                // The arena was registered with the first ring; the rebuilt one refuses it.
                // Waiting operations name registered buffers, so the engine cannot go on.
                self.leak_ring |= abandoned;
                let errno = created
                    .buffers_refused
                    .map_or(libc::ENOMEM, |errno| errno.0);
                return self.break_ring(IoError::Os(Errno(errno)));
            }
            Ok(created) => created,
            Err(error) => {
                self.leak_ring |= abandoned;
                return self.break_with(&error);
            }
        };
        let old = std::mem::replace(&mut self.ring, ManuallyDrop::new(created.ring));
        if !abandoned {
            drop(ManuallyDrop::into_inner(old));
        }
        self.stats.rehome_count += 1;
        self.issuer = Issuer::Disabled;
        self.enable_here();
    }

    /// Marks the ring unusable: every operation from now on fails with the setup's errno.
    fn break_with(&mut self, error: &SetupError) {
        let source = std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<std::io::Error>())
            .and_then(std::io::Error::raw_os_error);
        self.break_ring(IoError::Os(Errno(source.unwrap_or(libc::EIO))));
    }
}
