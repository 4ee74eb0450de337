//! In-flight bookkeeping: one slot per admitted operation, kept in a slab. The slot's key and
//! a generation number form the SQE's user data, so a CQE finds its operation in O(1) and a
//! cancel never hits a later operation that reused the key.

use rbio_core::{Op, OpKind};

use crate::codec::PieceRequest;

/// User data of cancel SQEs: their CQEs carry nothing the engine waits for.
pub(crate) const CANCEL_USER_DATA: u64 = u64::MAX;

/// Where an admitted operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
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
pub(crate) struct Slot {
    /// The operation, owning its buffer until it completes.
    pub(crate) op: Op,
    /// The buffer's first byte (0 for a flush); stable, as the buffer lives in a pool arena.
    pub(crate) addr: usize,
    /// The registered buffer holding it, if any.
    pub(crate) buf_index: Option<u16>,
    pub(crate) generation: u32,
    pub(crate) state: SlotState,
    /// Bytes transferred by earlier pieces.
    pub(crate) done_bytes: usize,
    /// Bytes the piece in the kernel asked for.
    pub(crate) piece_bytes: usize,
    /// `EINTR` results for the current piece.
    pub(crate) eintr_count: u32,
    /// `EAGAIN`/`EBUSY` results for the current piece.
    pub(crate) busy_count: u32,
    /// Pieces that moved fewer bytes than they asked for.
    pub(crate) short_count: u32,
}

impl Slot {
    pub(crate) fn new(op: Op, addr: usize, buf_index: Option<u16>, generation: u32) -> Slot {
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
    pub(crate) fn request(&self) -> PieceRequest {
        let info = self.op.info();
        let flush = info.kind == OpKind::Flush;
        PieceRequest {
            kind: info.kind,
            offset_bytes: info.offset_bytes + self.done_bytes as u64,
            addr: if flush {
                0
            } else {
                self.addr + self.done_bytes
            },
            len_bytes: info.len_bytes - self.done_bytes,
            buf_index: self.buf_index,
        }
    }

    /// Whether nothing is left to transfer (a flush always has its one piece to do).
    pub(crate) fn is_transferred(&self) -> bool {
        let info = self.op.info();
        info.kind != OpKind::Flush && self.done_bytes == info.len_bytes
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
}
