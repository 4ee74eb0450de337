//! Submission: waiting operations become SQEs in bulk, up to the window, and reach the kernel
//! with one `io_uring_enter`.
#![allow(unsafe_code)]

use io_uring::{opcode, squeue::EntryMarker};
use rbio_core::{Errno, IoError};

use crate::codec::Codec;
use crate::ring::Ring;
use crate::slot::{user_data, CANCEL_USER_DATA};

/// How many times one submission is restarted after `EINTR`.
const SUBMIT_EINTR_MAX: u32 = 16;

impl<C: Codec> Ring<C> {
    /// Pushes SQEs for waiting operations until the window or the SQ is full, handing them to
    /// the kernel every `sqes_per_enter_max` SQEs (the rest wait for the caller's next enter).
    /// Operations that cannot be encoded, or need no kernel call, complete into `ready`.
    pub(crate) fn refill(&mut self) {
        if let Some(error) = self.broken.clone() {
            self.slots.fail_waiting(&error);
            return;
        }
        while self.push_waiting(self.sqes_per_enter_max) {
            self.submit_pushed();
            if self.broken.is_some() {
                return;
            }
        }
    }

    /// Pushes at most `limit` SQEs; `true` if it stopped at the limit.
    fn push_waiting(&mut self, limit: usize) -> bool {
        let mut pushed_count = 0;
        let mut sq = self.ring.submission();
        while self.slots.has_room() && !sq.is_full() {
            if pushed_count == limit {
                return true;
            }
            let Some((key, generation, request)) = self.slots.next_waiting() else {
                break;
            };
            let piece = match self.codec.prepare(&request) {
                Ok(piece) => piece,
                Err(error) => {
                    self.slots.refuse(key, error);
                    continue;
                }
            };
            let mut sqe = piece.sqe;
            sqe.set_user_data(user_data(key, generation));
            // SAFETY: the SQE points at `request.len_bytes` bytes of the slot's buffer, which
            // lives in a pool arena (a stable address) and is owned by the slot `key`. `sent`
            // below keeps the slot in the table, in the kernel or a zombie, until the CQE with
            // this user data is reaped or it is leaked with the ring (see `Slots`), so the
            // memory is neither reused nor freed while the kernel may access it.
            let pushed = unsafe { sq.push(&sqe) };
            pushed.expect("the SQ had room: checked by the loop condition");
            self.slots.sent(key, piece.len_bytes);
            self.stats.sqe_count += 1;
            pushed_count += 1;
        }
        false
    }

    /// Pushes a cancel for the SQE with `target` user data; `false` if the SQ is full or the
    /// ring is broken (nothing of it is in the kernel's hands any more).
    pub(crate) fn push_cancel(&mut self, target: u64) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let mut sqe = C::Sqe::from(opcode::AsyncCancel::new(target).build());
        sqe.set_user_data(CANCEL_USER_DATA);
        let mut sq = self.ring.submission();
        if sq.is_full() {
            return false;
        }
        // SAFETY: a cancel SQE refers to no memory, only to the user data of another request.
        let pushed = unsafe { sq.push(&sqe) };
        pushed.expect("the SQ had room: checked above");
        self.slots.cancel_sent();
        true
    }

    /// Pushes a cancel for `target`, handing the SQ to the kernel first if it is full.
    pub(crate) fn push_cancel_now(&mut self, target: u64) {
        if !self.push_cancel(target) {
            self.submit_pushed();
            // Still full (an SQPOLL thread lagging): the target completes by itself.
            let _ = self.push_cancel(target);
        }
    }

    /// Hands pushed SQEs to the kernel (one `io_uring_enter`, restarted after `EINTR`).
    /// `EAGAIN`/`EBUSY` leave them in the SQ for the next enter, after a reap.
    pub(crate) fn submit_pushed(&mut self) {
        if self.broken.is_some() || self.ring.submission().is_empty() {
            return;
        }
        for _ in 0..SUBMIT_EINTR_MAX {
            self.stats.enter_count += 1;
            match self.ring.submit() {
                Err(error) if error.raw_os_error() == Some(libc::EINTR) => continue,
                Err(error) => {
                    self.note_enter_error(&error);
                    return;
                }
                Ok(_) => return,
            }
        }
    }

    /// Handles an `io_uring_enter` error; `true` if it was permanent and broke the ring.
    ///
    /// `EINTR`, `EAGAIN`, `EBUSY`, `ETIME` and `ENOMEM` pass: the next enter tries again.
    /// Any other error says the ring cannot be entered at all (a closed or foreign ring fd,
    /// a dead SQPOLL thread, an argument the kernel refuses), and would say so again on every
    /// later enter, so waiting on would only turn into a stall: the errno is recorded in
    /// `UringStats::enter_error` and the ring is broken, completing every operation with it.
    pub(crate) fn note_enter_error(&mut self, error: &std::io::Error) -> bool {
        let errno = Errno(error.raw_os_error().unwrap_or(0));
        let transient = [
            libc::EINTR,
            libc::EAGAIN,
            libc::EBUSY,
            libc::ETIME,
            libc::ENOMEM,
        ];
        if transient.contains(&errno.0) {
            return false;
        }
        self.stats.enter_error = Some(errno);
        self.break_ring(IoError::Os(errno));
        true
    }
}
