//! Drop with work in flight: cancel everything, drain CQEs for a bounded time, and leak
//! rather than free anything the kernel may still write into.
#![allow(unsafe_code)]

use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use io_uring::cqueue::EntryMarker as _;

use crate::codec::Codec;
use crate::ring::Ring;

/// The longest a dropped engine waits for the kernel to give its buffers back.
pub const DROP_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

impl<C: Codec> Drop for Ring<C> {
    fn drop(&mut self) {
        let drained = self.cqe_owed() == 0
            || (self.broken.is_none()
                && self.issuer.is_current()
                && self.cancel_and_drain(DROP_DRAIN_TIMEOUT));
        if drained && !self.leak_ring {
            // SAFETY: the kernel owes no CQE, so it holds no buffer of ours; the ring is
            // dropped once, here, before `self.fixed` (the registered arena's pool handle).
            unsafe { ManuallyDrop::drop(&mut self.ring) };
        } else {
            self.leak_in_kernel();
        }
    }
}

impl<C: Codec> Ring<C> {
    /// Cancels every operation in the kernel and reaps CQEs until none is owed or `timeout`
    /// passes; `true` if none is owed. The time is checked on every pass, since a wait can
    /// end early (on a polled ring every wait is one poll; see `wait_for_cqes`).
    fn cancel_and_drain(&mut self, timeout: Duration) -> bool {
        for target in self.slots.in_kernel_user_data() {
            self.push_cancel_now(target);
        }
        self.submit_pushed();
        let deadline = Instant::now() + timeout;
        while self.cqe_owed() > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if self.slots.cqe_owed() == 0 {
                // Only timers are owed, some armed by these very waits: cancel them too.
                for target in self.timers.take_uncanceled() {
                    self.push_cancel_now(target);
                }
            }
            if !self.wait_for_cqes(1, deadline - now) {
                return false;
            }
            self.drain_for_drop();
        }
        true
    }

    /// Reaps CQEs, freeing each operation's buffer: the kernel is done with it.
    fn drain_for_drop(&mut self) {
        let Ring {
            ring,
            slots,
            timers,
            ..
        } = self;
        for cqe in ring.completion() {
            if !timers.on_cqe(cqe.user_data()) {
                slots.release(cqe.user_data());
            }
        }
    }

    /// Leaks the ring, the arena's pool handle and every buffer the kernel may hold.
    fn leak_in_kernel(&mut self) {
        self.slots.leak_all();
        self.timers.leak_all();
        std::mem::forget(self.fixed.take());
        // `self.ring` is a `ManuallyDrop` that is not dropped: its mapping and fd leak.
    }
}
