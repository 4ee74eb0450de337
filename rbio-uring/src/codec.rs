//! The seam between the engine-neutral ring core and one kind of I/O: how a piece of an
//! operation becomes an SQE, and what a CQE says about it.
//!
//! The block engine ([`BlockCodec`](crate::block::BlockCodec): read, write, fsync on a file or
//! block device, 64-byte SQEs) is one codec; NVMe passthrough (`URING_CMD` on 128-byte SQEs and
//! 32-byte CQEs, `nvme/codec.rs`) is another. Everything else — window, retries, continuation of
//! short transfers, deadlines, readiness, fixed buffers, drop — lives in the core and is shared.

use io_uring::{cqueue, squeue};
use rbio_core::{Device, Errno, IoError, OpKind};

/// One piece of an operation to turn into an SQE: the part not yet transferred.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PieceRequest {
    /// What the operation does.
    pub(crate) kind: OpKind,
    /// Device offset of the piece's first byte.
    pub(crate) offset_bytes: u64,
    /// Address of the piece's first byte in the operation's buffer (0 for a flush).
    pub(crate) addr: usize,
    /// Bytes still to transfer (0 for a flush).
    pub(crate) len_bytes: usize,
    /// The registered buffer holding `addr`, if the buffer is in the registered arena.
    pub(crate) buf_index: Option<u16>,
    /// The write's FDP placement identifier ([`OpInfo::placement_id`](rbio_core::OpInfo));
    /// only the NVMe codec sends it.
    pub(crate) placement_id: Option<u16>,
}

/// An SQE for a piece, and how many bytes it asks for (possibly fewer than requested, when a
/// codec splits by a transfer limit: the core then continues with the rest).
pub(crate) struct Piece<S> {
    /// The SQE, without user data (the core sets it).
    pub(crate) sqe: S,
    /// Bytes this SQE transfers if it succeeds.
    pub(crate) len_bytes: usize,
}

/// What one CQE says about its piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// This many bytes moved (the core continues a short piece and ends on zero).
    Moved(usize),
    /// The kernel returned this errno (the core retries `EINTR`, `EAGAIN`, `EBUSY`).
    Errno(Errno),
    /// A final error the codec decoded itself (an NVMe status, an unsupported mode).
    Failed(IoError),
}

/// One kind of I/O over a ring: SQE and CQE types, encoding and decoding.
pub(crate) trait Codec: Send {
    /// The submission entry (64 or 128 bytes).
    type Sqe: squeue::EntryMarker;
    /// The completion entry (16 or 32 bytes).
    type Cqe: cqueue::EntryMarker;

    /// The engine's name in [`Capabilities`](rbio_core::Capabilities).
    const NAME: &'static str;
    /// Whether operations bypass the block layer as device commands.
    const PASSTHROUGH: bool;

    /// Encodes `request`, or says why it cannot be encoded (that fails only its operation).
    fn prepare(&self, request: &PieceRequest) -> Result<Piece<Self::Sqe>, IoError>;

    /// Decodes the CQE of a piece that asked for `piece_bytes`.
    fn outcome(&self, cqe: &Self::Cqe, piece_bytes: usize) -> Outcome;

    /// The alignment operations on `device` need, for
    /// [`Capabilities::align_bytes`](rbio_core::Capabilities::align_bytes): the device's own
    /// unless the codec knows better.
    fn align_bytes(&self, device: &Device) -> usize {
        device.align_bytes()
    }
}

/// The `res` field of any CQE.
pub(crate) fn cqe_result<E: cqueue::EntryMarker>(cqe: &E) -> i32 {
    let entry: cqueue::Entry = cqe.clone().into();
    entry.result()
}
