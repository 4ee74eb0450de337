//! Submission: waiting operations become SQEs in bulk, up to the window, and reach the kernel
//! with one `io_uring_enter`.
#![allow(unsafe_code)]

use io_uring::{opcode, squeue::EntryMarker, SubmissionQueue};
use rbio_core::{Errno, IoError, Op};

use crate::codec::{Codec, PieceRequest};
use crate::ring::Ring;
use crate::slot::{user_data, Slots, CANCEL_USER_DATA};
use crate::stats::UringStats;

/// How many times one submission is restarted after `EINTR`.
const SUBMIT_EINTR_MAX: u32 = 16;

impl<C: Codec> Ring<C> {
    /// Admits `ops` (refusing what the device cannot do), fills the window and submits.
    ///
    /// While nothing waits before them and the window and SQ have room, operations go straight
    /// to the SQ; the rest join the waiting queue for `refill`.
    pub(crate) fn submit(&mut self, ops: &mut Vec<Op>) {
        self.ensure_issuer();
        let deadline = self.deadlines.deadline_for_now();
        let at_once_allowed = self.broken.is_none() && self.sqes_per_enter_max == usize::MAX;
        let Ring {
            ring,
            codec,
            device,
            fixed,
            slots,
            deadlines,
            stats,
            ..
        } = self;
        let mut sq = ring.submission();
        for op in ops.drain(..) {
            let mut op = match device.admit(op) {
                Ok(op) => op,
                Err(refused) => {
                    slots.push_ready(refused);
                    continue;
                }
            };
            let info = op.info();
            let addr = op
                .buffer_mut()
                .map_or(0, |buffer| buffer.as_mut_ptr() as usize);
            let buf_index = match (fixed.as_ref(), op.buffer()) {
                (Some(fixed), Some(buffer)) => fixed.index_of(buffer),
                _ => None,
            };
            let (key, generation) =
                if at_once_allowed && slots.can_send_at_once(&info) && !sq.is_full() {
                    let piece = slots.admit_to_send(op, addr, buf_index);
                    let (key, generation, _) = piece;
                    push_piece(codec, slots, stats, &mut sq, piece);
                    (key, generation)
                } else {
                    slots.admit(op, addr, buf_index)
                };
            if let Some(deadline) = deadline {
                deadlines.push(deadline, key, generation);
            }
        }
        drop(sq);
        self.refill();
        self.submit_unless_busy();
        self.signal_ready();
    }

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
        let Ring {
            ring,
            codec,
            slots,
            stats,
            ..
        } = self;
        let mut sq = ring.submission();
        while slots.has_room() && !sq.is_full() {
            if pushed_count == limit {
                return true;
            }
            let Some(piece) = slots.next_waiting() else {
                break;
            };
            pushed_count += usize::from(push_piece(codec, slots, stats, &mut sq, piece));
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

/// Encodes `piece` of waiting slot `key` and pushes its SQE into `sq`, which has room;
/// `false` if the codec could not encode it (the operation then completed into the ready
/// list).
#[inline(always)]
fn push_piece<C: Codec>(
    codec: &C,
    slots: &mut Slots,
    stats: &mut UringStats,
    sq: &mut SubmissionQueue<'_, C::Sqe>,
    (key, generation, request): (usize, u32, PieceRequest),
) -> bool {
    let piece = match codec.prepare(&request) {
        Ok(piece) => piece,
        Err(error) => {
            slots.refuse(key, error);
            return false;
        }
    };
    let mut sqe = piece.sqe;
    sqe.set_user_data(user_data(key, generation));
    // SAFETY: the SQE points at `request.len_bytes` bytes of the slot's buffer, which lives in
    // a pool arena (a stable address) and is owned by the slot `key`. `sent` below keeps the
    // slot in the table, in the kernel or a zombie, until the CQE with this user data is
    // reaped or it is leaked with the ring (see `Slots`), so the memory is neither reused nor
    // freed while the kernel may access it.
    let pushed = unsafe { sq.push(&sqe) };
    pushed.expect("the SQ had room: checked by the caller");
    slots.sent(key, piece.len_bytes);
    stats.sqe_count += 1;
    true
}
