//! The ring's state: one slot per admitted operation, kept in a slab, the queue of slots
//! waiting for the kernel, the completions made without it, and the counts that bound what
//! the kernel holds. The slot's key and a generation number form the SQE's user data, so a CQE
//! finds its operation in O(1) and a cancel never hits a later operation that reused the key.

use std::collections::VecDeque;

use rbio_core::{Completion, Errno, IoError, Op, OpInfo, OpKind, EINTR_RETRIES_MAX};
use slab::Slab;

use crate::codec::PieceRequest;

/// User data of cancel SQEs: their CQEs carry nothing the engine waits for.
pub(crate) const CANCEL_USER_DATA: u64 = u64::MAX;

/// How many times one piece is resubmitted after `EAGAIN` or `EBUSY` before the error is
/// reported.
pub const BUSY_RETRIES_MAX: u32 = 16;

/// How many short transfers one operation continues before it ends as
/// [`IoError::ShortTransfer`]. Each continuation moves at least one byte, so the serial
/// engine never needs a bound; this one keeps a misbehaving device from looping for long.
pub const SHORT_CONTINUATIONS_MAX: u32 = 1024;

/// Where an admitted operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Queued for its first or next piece; the kernel does not have it.
    Waiting,
    /// One piece is with the kernel; its CQE has not been reaped.
    InKernel,
    /// Reported to the caller as timed out while the kernel still had it; the buffer stays
    /// here until the CQE shows the kernel let go of it.
    Zombie,
}

/// One admitted operation and its progress.
#[derive(Debug)]
struct Slot {
    /// The operation, owning its buffer until it completes.
    op: Op,
    /// The buffer's first byte (0 for a flush); stable, as the buffer lives in a pool arena.
    addr: usize,
    /// The registered buffer holding it, if any.
    buf_index: Option<u16>,
    generation: u32,
    state: SlotState,
    /// Bytes transferred by earlier pieces.
    done_bytes: usize,
    /// Bytes the piece in the kernel asked for.
    piece_bytes: usize,
    /// `EINTR` results for the current piece.
    eintr_count: u32,
    /// `EAGAIN`/`EBUSY` results for the current piece.
    busy_count: u32,
    /// Pieces that moved fewer bytes than they asked for.
    short_count: u32,
}

impl Slot {
    fn new(op: Op, addr: usize, buf_index: Option<u16>, generation: u32) -> Slot {
        Slot {
            op,
            addr,
            buf_index,
            generation,
            state: SlotState::Waiting,
            done_bytes: 0,
            piece_bytes: 0,
            eintr_count: 0,
            busy_count: 0,
            short_count: 0,
        }
    }

    /// The part of the operation not yet transferred.
    fn request(&self) -> PieceRequest {
        piece_after(&self.op.info(), self.addr, self.buf_index, self.done_bytes)
    }

    /// Whether nothing is left to transfer (a flush always has its one piece to do).
    fn is_transferred(&self) -> bool {
        let info = self.op.info();
        info.kind != OpKind::Flush && self.done_bytes == info.len_bytes
    }

    /// Records that the piece in the kernel moved `moved_bytes`: the operation's result if it
    /// is over (all moved, a piece of nothing, too many short pieces), else `None`.
    fn record_moved(&mut self, moved_bytes: usize) -> Option<Result<usize, IoError>> {
        let len_bytes = self.op.info().len_bytes;
        let piece_bytes = self.piece_bytes;
        debug_assert!(
            moved_bytes <= piece_bytes,
            "moved {moved_bytes} of {piece_bytes}"
        );
        let short = |done_bytes| {
            Some(Err(IoError::ShortTransfer {
                done_bytes,
                len_bytes,
            }))
        };
        if moved_bytes == 0 && piece_bytes > 0 {
            return short(self.done_bytes);
        }
        self.done_bytes += moved_bytes.min(piece_bytes);
        if self.done_bytes >= len_bytes {
            return Some(Ok(self.done_bytes));
        }
        if moved_bytes < piece_bytes {
            self.short_count += 1;
            if self.short_count > SHORT_CONTINUATIONS_MAX {
                return short(self.done_bytes);
            }
        }
        self.eintr_count = 0;
        self.busy_count = 0;
        None
    }

    /// Records that the piece in the kernel failed with `errno`: `true` if it is retried
    /// (a transient error within its bound).
    fn record_errno(&mut self, errno: Errno) -> bool {
        if errno == Errno::EINTR {
            self.eintr_count += 1;
            self.eintr_count <= EINTR_RETRIES_MAX
        } else if errno == Errno::EAGAIN || errno == Errno::EBUSY {
            self.busy_count += 1;
            self.busy_count <= BUSY_RETRIES_MAX
        } else {
            false
        }
    }
}

/// The piece of operation `info` (buffer at `addr`, in registered buffer `buf_index`) that
/// starts after its first `done_bytes`.
fn piece_after(
    info: &OpInfo,
    addr: usize,
    buf_index: Option<u16>,
    done_bytes: usize,
) -> PieceRequest {
    let flush = info.kind == OpKind::Flush;
    PieceRequest {
        kind: info.kind,
        offset_bytes: info.offset_bytes + done_bytes as u64,
        addr: if flush { 0 } else { addr + done_bytes },
        len_bytes: info.len_bytes - done_bytes,
        buf_index,
        placement_id: info.placement_id,
    }
}

/// What a CQE was for, once the table has accounted for it.
#[derive(Debug)]
pub(crate) enum CqeFor {
    /// A cancel SQE's CQE: nothing waits for it.
    Cancel,
    /// The piece of an operation already reported as timed out: its buffer went back to the
    /// pool just now.
    Zombie,
    /// The piece of slot `key`, which asked for `piece_bytes`; the slot waits again until
    /// [`Slots::moved`], [`Slots::failed`] or [`Slots::finish`] says what follows.
    Op {
        /// The slot.
        key: usize,
        /// Bytes the piece asked for.
        piece_bytes: usize,
    },
}

/// What follows a piece's CQE for its operation.
#[derive(Debug)]
pub(crate) enum Next {
    /// The operation completed; its completion is in the caller's list.
    Done,
    /// The rest goes to the kernel next; `short` if the piece moved fewer bytes than it asked.
    Continues {
        /// The piece was short.
        short: bool,
    },
    /// The piece goes to the kernel again after this transient error.
    Retried(Errno),
}

/// Every operation a ring owns, from admission to completion, and the counts that bound what
/// the kernel holds. Only this type changes them, so its invariants hold everywhere else:
///
/// - **Slot and generation.** An admitted operation lives in one slab slot until it completes.
///   Each admission gets the next generation (wrapping); the SQE's user data is the key and
///   the generation (`user_data`), so a CQE, a cancel, a waiting-queue entry or a deadline
///   names exactly one admission, and any of them naming a slot whose generation differs is
///   stale (the key was reused).
/// - **States.** A slot is `Waiting` (queued, the kernel does not have it), `InKernel` (one
///   piece in the kernel, its CQE not reaped) or `Zombie` (already reported as timed out,
///   its piece still in the kernel). Only `Waiting` slots are in the waiting queue as live
///   entries.
/// - **In flight.** `in_kernel_count` counts `InKernel` and `Zombie` slots: the SQEs whose
///   CQE is owed. It never exceeds the window, and with `cancel_count` (cancel SQEs whose
///   CQE is owed) it never exceeds the CQ: the CQ holds every CQE owed.
/// - **Buffers.** A slot's buffer returns to its pool only with its completion while the slot
///   is `Waiting` (the kernel has let go of it), or when a zombie's CQE arrives; a slot the
///   kernel may still write into is leaked, never freed ([`Slots::abandon_in_kernel`],
///   [`Slots::leak_all`]).
/// - **Pending.** An operation is pending from admission until `reap` hands out its
///   completion: live slots (not zombies) plus completions made without the kernel (`ready`).
#[derive(Debug)]
pub(crate) struct Slots {
    slab: Slab<Slot>,
    /// Slots waiting for a piece to be submitted, by (key, generation); stale entries skipped.
    waiting: VecDeque<(usize, u32)>,
    /// Completions made without the kernel (refusals, encoding errors), for the next reap.
    ready: Vec<Completion>,
    window: usize,
    /// Slots `InKernel` or `Zombie`.
    in_kernel_count: usize,
    zombie_count: usize,
    /// Cancel SQEs whose CQE has not been reaped.
    cancel_count: usize,
    next_generation: u32,
}

impl Slots {
    /// An empty table for at most `window` operations in the kernel.
    pub(crate) fn new(window: usize) -> Slots {
        Slots {
            slab: Slab::with_capacity(window),
            waiting: VecDeque::with_capacity(window),
            ready: Vec::new(),
            window,
            in_kernel_count: 0,
            zombie_count: 0,
            cancel_count: 0,
            next_generation: 0,
        }
    }

    /// Admits `op`, whose buffer starts at `addr` (in registered buffer `buf_index`), at the
    /// back of the waiting queue; returns its key and generation.
    pub(crate) fn admit(&mut self, op: Op, addr: usize, buf_index: Option<u16>) -> (usize, u32) {
        let (key, generation) = self.insert(op, addr, buf_index);
        self.waiting.push_back((key, generation));
        (key, generation)
    }

    /// Admits `op` as [`Slots::admit`] does, but for its first piece to go to the SQ at once
    /// (the caller checked [`Slots::can_send_at_once`] and calls [`Slots::sent`] or
    /// [`Slots::refuse`] next): the slot is `Waiting` without a queue entry, and its piece is
    /// returned with the key and generation.
    pub(crate) fn admit_to_send(
        &mut self,
        op: Op,
        addr: usize,
        buf_index: Option<u16>,
    ) -> (usize, u32, PieceRequest) {
        let request = piece_after(&op.info(), addr, buf_index, 0);
        let (key, generation) = self.insert(op, addr, buf_index);
        (key, generation, request)
    }

    /// Whether operation `info`, admitted now, may skip the waiting queue: nothing waits
    /// before it, the window has room, and it has a piece to send (an empty read or write
    /// completes without the kernel, from the queue).
    pub(crate) fn can_send_at_once(&self, info: &OpInfo) -> bool {
        self.waiting.is_empty()
            && self.has_room()
            && (info.kind == OpKind::Flush || info.len_bytes > 0)
    }

    #[inline]
    fn insert(&mut self, op: Op, addr: usize, buf_index: Option<u16>) -> (usize, u32) {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let key = self.slab.insert(Slot::new(op, addr, buf_index, generation));
        (key, generation)
    }

    /// Keeps a completion made without the kernel for the next reap.
    pub(crate) fn push_ready(&mut self, completion: Completion) {
        self.ready.push(completion);
    }

    /// Whether completions made without the kernel wait for the next reap.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Hands the completions made without the kernel to `out`.
    pub(crate) fn take_ready(&mut self, out: &mut Vec<Completion>) {
        out.append(&mut self.ready);
    }

    /// Whether the window has room for another piece in the kernel.
    pub(crate) fn has_room(&self) -> bool {
        self.in_kernel_count < self.window
    }

    /// The next waiting slot with something to transfer, and its piece: stale queue entries
    /// are skipped and operations already transferred complete into `ready`.
    pub(crate) fn next_waiting(&mut self) -> Option<(usize, u32, PieceRequest)> {
        while let Some((key, generation)) = self.waiting.pop_front() {
            match self.slab.get(key) {
                Some(slot) if slot.generation == generation && slot.state == SlotState::Waiting => {
                    if slot.is_transferred() {
                        let slot = self.slab.remove(key);
                        let done_bytes = slot.done_bytes;
                        self.ready.push(slot.op.complete(Ok(done_bytes)));
                        continue;
                    }
                    return Some((key, generation, slot.request()));
                }
                _ => continue,
            }
        }
        None
    }

    /// Records that the piece of waiting slot `key` asking for `piece_bytes` is in the SQ.
    pub(crate) fn sent(&mut self, key: usize, piece_bytes: usize) {
        let slot = &mut self.slab[key];
        assert_eq!(slot.state, SlotState::Waiting, "slot {key} sent twice");
        slot.state = SlotState::InKernel;
        slot.piece_bytes = piece_bytes;
        self.in_kernel_count += 1;
        debug_assert!(
            self.in_kernel_count <= self.window,
            "{} in the kernel, window {}",
            self.in_kernel_count,
            self.window
        );
    }

    /// Records that a cancel SQE is in the SQ.
    pub(crate) fn cancel_sent(&mut self) {
        self.cancel_count += 1;
    }

    /// Accounts for a CQE with `user_data`: a cancel's, a zombie's (freeing its buffer), or an
    /// operation's piece (the slot waits again).
    ///
    /// # Panics
    /// If the CQE names no slot in the kernel: the kernel answered for an SQE never sent.
    #[inline]
    pub(crate) fn on_cqe(&mut self, user_data: u64) -> CqeFor {
        if user_data == CANCEL_USER_DATA {
            self.cancel_count -= 1;
            return CqeFor::Cancel;
        }
        let (key, generation) = slot_of(user_data);
        let slot = self
            .slab
            .get_mut(key)
            .filter(|slot| slot.generation == generation)
            .unwrap_or_else(|| panic!("CQE for unknown slot {key} generation {generation}"));
        assert!(
            slot.state != SlotState::Waiting,
            "CQE for slot {key} that is not in the kernel"
        );
        self.in_kernel_count -= 1;
        if slot.state == SlotState::Zombie {
            // The kernel is done with the buffer: it returns to its pool here.
            self.zombie_count -= 1;
            self.slab.remove(key);
            return CqeFor::Zombie;
        }
        slot.state = SlotState::Waiting;
        CqeFor::Op {
            key,
            piece_bytes: slot.piece_bytes,
        }
    }

    /// The piece of slot `key` (back from the kernel) moved `moved_bytes`: the operation
    /// completes into `out`, or its rest goes to the front of the waiting queue.
    #[inline]
    pub(crate) fn moved(
        &mut self,
        key: usize,
        moved_bytes: usize,
        out: &mut Vec<Completion>,
    ) -> Next {
        let slot = &mut self.slab[key];
        let short = moved_bytes < slot.piece_bytes;
        match slot.record_moved(moved_bytes) {
            Some(result) => {
                out.push(self.finish(key, result));
                Next::Done
            }
            None => {
                self.waiting.push_front((key, slot.generation));
                Next::Continues { short }
            }
        }
    }

    /// The piece of slot `key` (back from the kernel) failed with `errno`: a transient error
    /// within its bound sends it again first, anything else completes the operation into
    /// `out`.
    pub(crate) fn failed(&mut self, key: usize, errno: Errno, out: &mut Vec<Completion>) -> Next {
        let slot = &mut self.slab[key];
        if slot.record_errno(errno) {
            self.waiting.push_front((key, slot.generation));
            return Next::Retried(errno);
        }
        let error = if errno == Errno::ECANCELED {
            IoError::Canceled
        } else {
            IoError::Os(errno)
        };
        out.push(self.finish(key, Err(error)));
        Next::Done
    }

    /// Completes waiting slot `key` with `result`, handing its buffer back.
    #[inline]
    pub(crate) fn finish(&mut self, key: usize, result: Result<usize, IoError>) -> Completion {
        assert_eq!(self.slab[key].state, SlotState::Waiting, "slot {key}");
        self.slab.remove(key).op.complete(result)
    }

    /// Completes waiting slot `key` with `error` into `ready` (its piece could not be encoded).
    pub(crate) fn refuse(&mut self, key: usize, error: IoError) {
        let completion = self.finish(key, Err(error));
        self.ready.push(completion);
    }

    /// Whether a deadline for (`key`, `generation`) still concerns a pending operation.
    pub(crate) fn is_pending(&self, key: usize, generation: u32) -> bool {
        self.slab
            .get(key)
            .is_some_and(|slot| slot.generation == generation && slot.state != SlotState::Zombie)
    }

    /// Completes pending slot `key` with `error`: a waiting one with its buffer, and `None`;
    /// one in the kernel without it, as a zombie holding the buffer until its CQE, and the user
    /// data of its SQE to cancel.
    pub(crate) fn expire(&mut self, key: usize, error: IoError) -> (Completion, Option<u64>) {
        let slot = &mut self.slab[key];
        match slot.state {
            SlotState::Waiting => (self.finish(key, Err(error)), None),
            SlotState::InKernel => {
                slot.state = SlotState::Zombie;
                self.zombie_count += 1;
                let target = user_data(key, slot.generation);
                (
                    Completion::new(slot.op.info(), Err(error), None),
                    Some(target),
                )
            }
            SlotState::Zombie => panic!("slot {key} expired twice"),
        }
    }

    /// The user data of every piece in the kernel that is not a zombie (to cancel).
    pub(crate) fn in_kernel_user_data(&self) -> Vec<u64> {
        self.slab
            .iter()
            .filter(|(_, slot)| slot.state == SlotState::InKernel)
            .map(|(key, slot)| user_data(key, slot.generation))
            .collect()
    }

    /// Completes every waiting operation with `error`, with its buffer, into `ready`.
    pub(crate) fn fail_waiting(&mut self, error: &IoError) {
        while let Some((key, generation)) = self.waiting.pop_front() {
            let live = self.slab.get(key).is_some_and(|slot| {
                slot.generation == generation && slot.state == SlotState::Waiting
            });
            if live {
                let completion = self.finish(key, Err(error.clone()));
                self.ready.push(completion);
            }
        }
    }

    /// Completes every operation the kernel holds with `error` and no buffer, into `ready`,
    /// and drops the zombies: the kernel may still write into their buffers, so they are
    /// leaked, never returned to their pools. Afterwards no CQE is owed; the caller leaks the
    /// ring that held them. Returns how many operations it completed.
    pub(crate) fn abandon_in_kernel(&mut self, error: &IoError) -> u64 {
        let held: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, slot)| slot.state != SlotState::Waiting)
            .map(|(key, _)| key)
            .collect();
        let mut completed_count = 0;
        for key in held {
            let slot = self.slab.remove(key);
            if slot.state == SlotState::InKernel {
                let info = slot.op.info();
                self.ready
                    .push(Completion::new(info, Err(error.clone()), None));
                completed_count += 1;
            }
            std::mem::forget(slot.op);
        }
        self.in_kernel_count = 0;
        self.zombie_count = 0;
        self.cancel_count = 0;
        completed_count
    }

    /// Accounts for a CQE reaped while the engine is dropped: the kernel is done with that
    /// piece, so its operation (answered or not) is dropped and its buffer freed.
    pub(crate) fn release(&mut self, user_data: u64) {
        if let CqeFor::Op { key, .. } = self.on_cqe(user_data) {
            self.slab.remove(key);
        }
    }

    /// Leaks every buffer the kernel may hold and drops the rest (the ring is being leaked).
    pub(crate) fn leak_all(&mut self) {
        for slot in self.slab.drain() {
            if slot.state != SlotState::Waiting {
                std::mem::forget(slot.op);
            }
        }
        self.in_kernel_count = 0;
        self.zombie_count = 0;
        self.cancel_count = 0;
    }

    /// CQEs the kernel still owes: one per piece in the kernel and one per cancel.
    pub(crate) fn cqe_owed(&self) -> usize {
        self.in_kernel_count + self.cancel_count
    }

    /// At most this many pieces in the kernel at once.
    pub(crate) fn window(&self) -> usize {
        self.window
    }

    /// Pieces in the kernel, zombies included.
    pub(crate) fn in_kernel_count(&self) -> usize {
        self.in_kernel_count
    }

    /// Operations reported as timed out whose buffers the kernel still holds.
    pub(crate) fn zombie_count(&self) -> usize {
        self.zombie_count
    }

    /// Admitted operations not yet completed (zombies excluded).
    pub(crate) fn live_count(&self) -> usize {
        self.slab.len() - self.zombie_count
    }

    /// Operations submitted and not yet handed out by `reap`.
    pub(crate) fn pending_count(&self) -> usize {
        self.live_count() + self.ready.len()
    }
}

/// The user data of the SQE for slot `key` in generation `generation`.
pub(crate) fn user_data(key: usize, generation: u32) -> u64 {
    debug_assert!(
        key < u32::MAX as usize,
        "slot key {key} does not fit 32 bits"
    );
    (u64::from(generation) << 32) | key as u64
}

/// The slot key and generation in a CQE's user data.
pub(crate) fn slot_of(user_data: u64) -> (usize, u32) {
    ((user_data & 0xffff_ffff) as usize, (user_data >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbio_core::Buffer;

    #[test]
    fn user_data_round_trips_and_never_equals_the_cancel_marker() {
        let data = user_data(4095, 0xffff_fffe);
        assert_eq!(slot_of(data), (4095, 0xffff_fffe));
        assert_ne!(user_data(32767, u32::MAX), CANCEL_USER_DATA);
    }

    #[test]
    fn request_covers_what_is_left() {
        let op = Op::read(1, 8192, Buffer::new_aligned(4096, 4096).unwrap());
        let mut slot = Slot::new(op, 0x10000, Some(0), 7);
        slot.done_bytes = 1000;
        let request = slot.request();
        assert_eq!(
            (request.offset_bytes, request.addr, request.len_bytes),
            (9192, 0x10000 + 1000, 3096)
        );
        assert!(!slot.is_transferred());
        slot.done_bytes = 4096;
        assert!(slot.is_transferred());
        assert!(!Slot::new(Op::flush(2), 0, None, 0).is_transferred());
    }

    fn read(tag: u64) -> Op {
        Op::read(tag, 0, Buffer::new_aligned(4096, 4096).unwrap())
    }

    #[test]
    fn counts_follow_a_piece_through_the_kernel_and_back() {
        let mut slots = Slots::new(1);
        let (key, generation) = slots.admit(read(1), 0x1000, None);
        slots.admit(read(2), 0x2000, None);
        assert_eq!((slots.pending_count(), slots.cqe_owed()), (2, 0));
        let (sent_key, _, request) = slots.next_waiting().unwrap();
        assert_eq!((sent_key, request.len_bytes), (key, 4096));
        slots.sent(key, 4096);
        assert!(!slots.has_room(), "a window of 1 is full");
        let CqeFor::Op {
            key: back,
            piece_bytes,
        } = slots.on_cqe(user_data(key, generation))
        else {
            panic!("an operation's CQE");
        };
        assert_eq!((back, piece_bytes, slots.cqe_owed()), (key, 4096, 0));
        let mut out = Vec::new();
        assert!(
            matches!(slots.moved(key, 4096, &mut out), Next::Done),
            "a full piece completes the read"
        );
        let completion = out.pop().unwrap();
        assert_eq!((completion.tag(), completion.result()), (1, &Ok(4096)));
        assert!(completion.buffer().is_some());
        assert_eq!(slots.pending_count(), 1);
    }

    #[test]
    fn an_expired_piece_in_the_kernel_keeps_its_buffer_until_its_cqe() {
        let mut slots = Slots::new(4);
        let (key, generation) = slots.admit(read(1), 0x1000, None);
        slots.next_waiting().unwrap();
        slots.sent(key, 4096);
        let (completion, cancel) = slots.expire(key, IoError::Canceled);
        assert!(completion.buffer().is_none(), "the kernel may still write");
        assert_eq!(cancel, Some(user_data(key, generation)));
        assert!(!slots.is_pending(key, generation));
        assert_eq!((slots.pending_count(), slots.cqe_owed()), (0, 1));
        slots.cancel_sent();
        assert_eq!(slots.cqe_owed(), 2);
        assert!(matches!(slots.on_cqe(CANCEL_USER_DATA), CqeFor::Cancel));
        assert!(matches!(
            slots.on_cqe(user_data(key, generation)),
            CqeFor::Zombie
        ));
        assert_eq!((slots.cqe_owed(), slots.live_count()), (0, 0));
    }

    #[test]
    fn a_stale_queue_entry_is_skipped_and_transient_errors_retry_within_bounds() {
        let mut slots = Slots::new(4);
        let (key, generation) = slots.admit(read(1), 0x1000, None);
        let (completion, cancel) = slots.expire(key, IoError::Canceled);
        assert_eq!((completion.tag(), cancel), (1, None));
        let (key, _) = slots.admit(read(2), 0x1000, None);
        assert_ne!(generation, slots.slab[key].generation, "a reused key");
        let (next_key, _, _) = slots.next_waiting().unwrap();
        assert_eq!(slots.slab[next_key].op.info().tag, 2);
        slots.sent(next_key, 4096);
        for _ in 0..BUSY_RETRIES_MAX {
            let gen = slots.slab[next_key].generation;
            slots.on_cqe(user_data(next_key, gen));
            assert!(matches!(
                slots.failed(next_key, Errno::EAGAIN, &mut Vec::new()),
                Next::Retried(_)
            ));
            slots.next_waiting().unwrap();
            slots.sent(next_key, 4096);
        }
        let gen = slots.slab[next_key].generation;
        slots.on_cqe(user_data(next_key, gen));
        let mut out = Vec::new();
        assert!(
            matches!(slots.failed(next_key, Errno::EAGAIN, &mut out), Next::Done),
            "past its bound the error is reported"
        );
        let completion = out.pop().unwrap();
        assert_eq!(completion.result(), &Err(IoError::Os(Errno::EAGAIN)));
    }
}
