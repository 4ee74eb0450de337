//! The block codec: reads, writes and flushes on a file or block device as `Read`/`Write`,
//! `ReadFixed`/`WriteFixed` and `Fsync` SQEs, or as `Nop` for measuring the engine itself.

use std::os::fd::RawFd;

use io_uring::{cqueue, opcode, squeue, types};
use rbio_core::{Errno, IoError, OpKind};

use crate::codec::{cqe_result, Codec, Outcome, Piece, PieceRequest};

/// The most bytes one read or write moves on Linux (`MAX_RW_COUNT`); longer operations
/// continue in further pieces, as `pread` callers do.
pub(crate) const RW_BYTES_MAX: usize = 0x7fff_f000;

/// How SQEs name the device file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileTarget {
    /// The file registered at index 0.
    Fixed,
    /// The plain descriptor.
    Raw(RawFd),
}

/// Encodes block operations for a 64-byte-SQE ring.
#[derive(Debug)]
pub(crate) struct BlockCodec {
    pub(crate) target: FileTarget,
    /// The ring polls for completions: `EOPNOTSUPP` means the device has no poll queues.
    pub(crate) iopoll: bool,
    /// Every operation becomes a `Nop` that reports its full length (no data moves).
    pub(crate) null_io: bool,
    /// Reads go straight to io_uring's workers (`IOSQE_ASYNC`): for files whose reads the
    /// kernel would otherwise perform inside `io_uring_enter`, blocking the engine (and its
    /// operation timeout) for as long as the device takes. See [`reads_block_submitter`].
    pub(crate) async_reads: bool,
}

/// Whether reads of `device` would block the thread that submits them: files on FUSE, whose
/// reads io_uring performs inline in the submitting call, one after another (measured: 16
/// reads that FUSE answered after 5 s each took 80 s at window 8, and no timeout could fire).
#[allow(unsafe_code)]
pub(crate) fn reads_block_submitter(device: &rbio_core::Device) -> bool {
    use std::os::fd::{AsFd, AsRawFd};
    // SAFETY: a zeroed `statfs` is a valid value of a plain C struct.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for as long as `device` lives, and `stat` is a live
    // local the kernel fills.
    let rc = unsafe { libc::fstatfs(device.as_fd().as_raw_fd(), &mut stat) };
    // FUSE_SUPER_MAGIC, in whatever integer type this platform's `f_type` has.
    rc == 0 && stat.f_type == 0x6573_5546
}

impl BlockCodec {
    fn read(&self, request: &PieceRequest, len: u32) -> squeue::Entry {
        let addr = request.addr as *mut u8;
        match (self.target, request.buf_index) {
            (FileTarget::Fixed, Some(index)) => {
                opcode::ReadFixed::new(types::Fixed(0), addr, len, index)
                    .offset(request.offset_bytes)
                    .build()
            }
            (FileTarget::Fixed, None) => opcode::Read::new(types::Fixed(0), addr, len)
                .offset(request.offset_bytes)
                .build(),
            (FileTarget::Raw(fd), Some(index)) => {
                opcode::ReadFixed::new(types::Fd(fd), addr, len, index)
                    .offset(request.offset_bytes)
                    .build()
            }
            (FileTarget::Raw(fd), None) => opcode::Read::new(types::Fd(fd), addr, len)
                .offset(request.offset_bytes)
                .build(),
        }
    }

    fn write(&self, request: &PieceRequest, len: u32) -> squeue::Entry {
        let addr = request.addr as *const u8;
        match (self.target, request.buf_index) {
            (FileTarget::Fixed, Some(index)) => {
                opcode::WriteFixed::new(types::Fixed(0), addr, len, index)
                    .offset(request.offset_bytes)
                    .build()
            }
            (FileTarget::Fixed, None) => opcode::Write::new(types::Fixed(0), addr, len)
                .offset(request.offset_bytes)
                .build(),
            (FileTarget::Raw(fd), Some(index)) => {
                opcode::WriteFixed::new(types::Fd(fd), addr, len, index)
                    .offset(request.offset_bytes)
                    .build()
            }
            (FileTarget::Raw(fd), None) => opcode::Write::new(types::Fd(fd), addr, len)
                .offset(request.offset_bytes)
                .build(),
        }
    }

    fn flush(&self) -> squeue::Entry {
        let flags = types::FsyncFlags::DATASYNC;
        match self.target {
            FileTarget::Fixed => opcode::Fsync::new(types::Fixed(0)).flags(flags).build(),
            FileTarget::Raw(fd) => opcode::Fsync::new(types::Fd(fd)).flags(flags).build(),
        }
    }
}

impl Codec for BlockCodec {
    type Sqe = squeue::Entry;
    type Cqe = cqueue::Entry;

    const NAME: &'static str = "uring";
    const PASSTHROUGH: bool = false;

    #[inline]
    fn prepare(&self, request: &PieceRequest) -> Result<Piece<squeue::Entry>, IoError> {
        let len_bytes = request.len_bytes.min(RW_BYTES_MAX);
        let sqe = if self.null_io {
            opcode::Nop::new().build()
        } else {
            match request.kind {
                OpKind::Read if self.async_reads => self
                    .read(request, len_bytes as u32)
                    .flags(squeue::Flags::ASYNC),
                OpKind::Read => self.read(request, len_bytes as u32),
                OpKind::Write => self.write(request, len_bytes as u32),
                OpKind::Flush => self.flush(),
            }
        };
        Ok(Piece { sqe, len_bytes })
    }

    #[inline]
    fn outcome(&self, cqe: &cqueue::Entry, piece_bytes: usize) -> Outcome {
        let res = cqe_result(cqe);
        if self.null_io && res == 0 {
            return Outcome::Moved(piece_bytes);
        }
        match res {
            0.. => Outcome::Moved(res as usize),
            _ if self.iopoll && -res == libc::EOPNOTSUPP => Outcome::Failed(IoError::Unsupported {
                what: "polled I/O (IOPOLL) on a file or device without poll queues",
            }),
            _ => Outcome::Errno(Errno(-res)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: OpKind, len_bytes: usize, buf_index: Option<u16>) -> PieceRequest {
        PieceRequest {
            kind,
            offset_bytes: 8192,
            addr: 0x1000,
            len_bytes,
            buf_index,
            placement_id: None,
        }
    }

    #[test]
    fn opcode_follows_kind_and_registration() {
        let codec = BlockCodec {
            target: FileTarget::Fixed,
            iopoll: false,
            null_io: false,
            async_reads: false,
        };
        let opcode_of = |request| codec.prepare(&request).unwrap().sqe.get_opcode();
        assert_eq!(
            opcode_of(request(OpKind::Read, 4096, None)),
            u32::from(opcode::Read::CODE)
        );
        assert_eq!(
            opcode_of(request(OpKind::Read, 4096, Some(0))),
            u32::from(opcode::ReadFixed::CODE)
        );
        assert_eq!(
            opcode_of(request(OpKind::Write, 4096, Some(1))),
            u32::from(opcode::WriteFixed::CODE)
        );
        assert_eq!(
            opcode_of(request(OpKind::Flush, 0, None)),
            u32::from(opcode::Fsync::CODE)
        );
    }

    #[test]
    fn an_ordinary_file_does_not_block_the_submitter() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(4096).unwrap();
        let device = rbio_core::Device::open(file.path()).unwrap();
        assert!(!reads_block_submitter(&device));
    }

    #[test]
    fn long_transfers_are_cut_at_the_kernel_limit() {
        let codec = BlockCodec {
            target: FileTarget::Raw(0),
            iopoll: false,
            null_io: false,
            async_reads: false,
        };
        let piece = codec
            .prepare(&request(OpKind::Read, usize::MAX / 2, None))
            .unwrap();
        assert_eq!(piece.len_bytes, RW_BYTES_MAX);
    }
}
