//! The NVMe passthrough codec: reads, writes and flushes of an NVMe namespace as
//! `IORING_OP_URING_CMD` SQEs (128 bytes) carrying `NVME_URING_CMD_IO` commands, and the
//! meaning of their 32-byte CQEs.
//!
//! The second [`Codec`] of the ring core, beside the block codec: the window, retries,
//! continuation, deadlines, readiness, fixed buffers and drop are the core's. What is NVMe's
//! lives here: byte ranges become logical blocks (offsets and lengths must be LBA multiples),
//! a transfer longer than one command may move is cut at the limit for the piece's buffer
//! address (the core continues with the rest), and `cqe.res` is 0 for success, an NVMe status
//! when positive, `-errno` when negative.
//!
//! Fixed buffers (`IORING_URING_CMD_FIXED`) have one more limit on Linux 6.1: the kernel
//! counts the pages from the transfer's first page to the end of its registered iovec, not to
//! the end of the transfer, and refuses (`EINVAL`) more than the queue's `max_segments`. So
//! the engine registers its arena in iovecs of at most the transfer limit (see
//! [`registered_chunk_bytes_max`]), and a piece that still starts too far from its iovec's end
//! (in a pool buffer larger than that) goes unfixed: the kernel maps its pages instead.

use io_uring::{cqueue, opcode, squeue, types};
use rbio_core::{Device, Errno, IoError, OpKind};

use super::abi::{NVME_CMD_BYTES, NVME_URING_CMD_IO};
use super::cmd::{LbaError, LbaFormat, NvmeIo, NvmeIoOpcode};
use super::identify::NvmeNamespaceInfo;
use super::status::nvme_res_to_result;
use crate::block::FileTarget;
use crate::codec::{cqe_result, Codec, Outcome, Piece, PieceRequest};
use crate::fixed::ChunkLayout;

/// Bytes of a 128-byte SQE's command area (`sqe->cmd`), which holds the 72-byte
/// `struct nvme_uring_cmd` at its start.
pub(crate) const URING_CMD_AREA_BYTES: usize = 80;
const _: () = assert!(NVME_CMD_BYTES <= URING_CMD_AREA_BYTES);

/// The buffer address alignment the engine requires: NVMe's DMA alignment of one dword, the
/// `dma_alignment` Linux's NVMe driver declares. The kernel would copy a less aligned buffer
/// through a bounce buffer; refusing it keeps every transfer zero-copy and matches what the
/// namespace's block device accepts under O_DIRECT. Pages are not required: the kernel builds
/// PRPs from the pages it maps, and only the transfer limit shrinks (see
/// [`NvmeNamespaceInfo::max_transfer_bytes_at`]).
pub(crate) const BUFFER_ALIGN_BYTES: usize = 4;

/// The page the kernel maps registered buffers in, and counts segments by.
const PAGE_BYTES: usize = 4096;

/// The largest registered iovec for a namespace with `max_transfer_bytes` (at most the
/// queue's segments in pages) whose arena starts at `base_addr`: as many whole pages as one
/// command may move, one fewer when the arena does not start on a page.
pub(crate) fn registered_chunk_bytes_max(max_transfer_bytes: u32, base_addr: usize) -> usize {
    let pages = (max_transfer_bytes as usize / PAGE_BYTES).max(1);
    let pages = if base_addr % PAGE_BYTES == 0 {
        pages
    } else {
        pages.saturating_sub(1).max(1)
    };
    pages * PAGE_BYTES
}

/// Encodes NVMe I/O for a 128-byte-SQE, 32-byte-CQE ring.
#[derive(Debug)]
pub(crate) struct NvmeCodec {
    /// How SQEs name the namespace's generic char device.
    pub(crate) target: FileTarget,
    /// Namespace id, LBA format and transfer limit.
    pub(crate) namespace: NvmeNamespaceInfo,
    /// The ring polls for completions: `EOPNOTSUPP` means the controller has no poll queues.
    pub(crate) iopoll: bool,
    /// The registered iovecs, when the engine has fixed buffers.
    pub(crate) fixed_layout: Option<ChunkLayout>,
}

impl NvmeCodec {
    fn format(&self) -> LbaFormat {
        self.namespace.lba_format()
    }

    fn misaligned(&self) -> IoError {
        IoError::Misaligned {
            align_bytes: self.format().lba_bytes() as usize,
        }
    }

    /// The command for the first piece of `request`: at most the transfer limit for its
    /// buffer address, in whole blocks.
    fn io(&self, request: &PieceRequest) -> Result<NvmeIo, IoError> {
        let opcode = match request.kind {
            OpKind::Read => NvmeIoOpcode::Read,
            OpKind::Write => NvmeIoOpcode::Write,
            OpKind::Flush => return Ok(NvmeIo::flush(self.namespace.nsid())),
        };
        if request.addr % BUFFER_ALIGN_BYTES != 0 {
            return Err(self.misaligned());
        }
        let limit_bytes = self.namespace.max_transfer_bytes_at(request.addr);
        let mut split = self
            .format()
            .split(request.offset_bytes, request.len_bytes as u64, limit_bytes)
            .map_err(|error| self.split_error(error))?;
        let piece = split
            .next()
            .expect("the core asks only for pieces with bytes left");
        Ok(NvmeIo {
            opcode,
            nsid: self.namespace.nsid(),
            start_lba: piece.start_lba,
            block_count: piece.block_count,
            addr: request.addr as u64,
            data_len_bytes: piece.block_count * self.format().lba_bytes(),
            placement_id: request
                .placement_id
                .filter(|_| opcode == NvmeIoOpcode::Write),
        })
    }

    fn split_error(&self, error: LbaError) -> IoError {
        match error {
            LbaError::RangeOverflow { .. } => IoError::OutOfRange {
                size_bytes: self.namespace.size_bytes(),
            },
            LbaError::TransferTooSmall { .. } => IoError::Unsupported {
                what: "a transfer limit below one logical block",
            },
            _ => self.misaligned(),
        }
    }

    /// Whether `io`'s buffer may be passed as fixed: it has one, and the pages from its first
    /// page to the end of its registered iovec are no more than one command may span.
    fn fixed_fits(&self, io: &NvmeIo) -> bool {
        let Some(layout) = self.fixed_layout else {
            return false;
        };
        if io.opcode == NvmeIoOpcode::Flush {
            return false;
        }
        let addr = io.addr as usize;
        let first_page_addr = addr - addr % PAGE_BYTES;
        let pages_to_chunk_end =
            (layout.chunk_end_addr(addr) - first_page_addr).div_ceil(PAGE_BYTES);
        let pages_max = (self.namespace.max_transfer_bytes() as usize / PAGE_BYTES).max(1);
        pages_to_chunk_end <= pages_max
    }

    /// The SQE carrying `io`, with `buf_index` naming its registered buffer, if any.
    fn sqe(&self, io: &NvmeIo, buf_index: Option<u16>) -> Result<squeue::Entry128, IoError> {
        let command = io.encode(self.format()).map_err(|error| {
            // Every piece comes from `LbaFormat::split`, which yields only encodable ranges;
            // the one way to fail is a range past 2^64 blocks, which is out of range.
            debug_assert!(
                matches!(error, super::cmd::NvmeEncodeError::LbaOverflow { .. }),
                "{io:?} does not encode: {error}"
            );
            IoError::OutOfRange {
                size_bytes: self.namespace.size_bytes(),
            }
        })?;
        let mut cmd = [0u8; URING_CMD_AREA_BYTES];
        cmd[..NVME_CMD_BYTES].copy_from_slice(&command.to_bytes());
        let buf_index = buf_index.filter(|_| self.fixed_fits(io));
        let sqe = match self.target {
            FileTarget::Fixed => opcode::UringCmd80::new(types::Fixed(0), NVME_URING_CMD_IO)
                .cmd(cmd)
                .buf_index(buf_index)
                .build(),
            FileTarget::Raw(fd) => opcode::UringCmd80::new(types::Fd(fd), NVME_URING_CMD_IO)
                .cmd(cmd)
                .buf_index(buf_index)
                .build(),
        };
        Ok(sqe)
    }
}

impl Codec for NvmeCodec {
    type Sqe = squeue::Entry128;
    type Cqe = cqueue::Entry32;

    const NAME: &'static str = "nvme";
    const PASSTHROUGH: bool = true;

    fn prepare(&self, request: &PieceRequest) -> Result<Piece<squeue::Entry128>, IoError> {
        let io = self.io(request)?;
        let sqe = self.sqe(&io, request.buf_index)?;
        Ok(Piece {
            sqe,
            len_bytes: io.data_len_bytes as usize,
        })
    }

    fn outcome(&self, cqe: &cqueue::Entry32, piece_bytes: usize) -> Outcome {
        outcome_of(cqe_result(cqe), piece_bytes, self.iopoll)
    }

    /// The LBA size: offsets and lengths must be whole blocks, whatever the device says.
    fn align_bytes(&self, _device: &Device) -> usize {
        self.namespace.lba_format().lba_bytes() as usize
    }
}

/// What a passthrough CQE's `res` says about a piece of `piece_bytes`: 0 is success, with
/// every byte moved (the command moves all its blocks or fails); positive an NVMe status;
/// negative `-errno`, which the core retries when transient.
pub(crate) fn outcome_of(res: i32, piece_bytes: usize, iopoll: bool) -> Outcome {
    match nvme_res_to_result(res) {
        Ok(()) => Outcome::Moved(piece_bytes),
        Err(IoError::Os(errno)) if iopoll && errno == Errno::EOPNOTSUPP => {
            Outcome::Failed(IoError::Unsupported {
                what: "polled passthrough (IOPOLL) on a controller without poll queues",
            })
        }
        Err(IoError::Os(errno)) => Outcome::Errno(errno),
        Err(error) => Outcome::Failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::FixedBuffers;
    use crate::nvme::identify::IdentifyNamespace;
    use rbio_core::{BufferPool, NvmeStatus};

    /// The 512-byte-LBA namespace QEMU gives the rig: 508 KiB per command from a page.
    fn namespace(lba_bytes: u32) -> NvmeNamespaceInfo {
        let identify = IdentifyNamespace {
            block_count: (64 << 20) / u64::from(lba_bytes),
            lba_format_count: 1,
            format_index: 0,
            metadata_bytes: 0,
            lba_format: LbaFormat::new(lba_bytes).unwrap(),
            relative_performance: 0,
        };
        NvmeNamespaceInfo::from_identify(3, &identify, 127 * 4096)
    }

    fn codec(lba_bytes: u32, target: FileTarget) -> NvmeCodec {
        NvmeCodec {
            target,
            namespace: namespace(lba_bytes),
            iopoll: false,
            fixed_layout: None,
        }
    }

    /// A codec with `pool` registered as the engine registers it, and the pool's arena base.
    fn fixed_codec(lba_bytes: u32, pool: &BufferPool) -> (NvmeCodec, usize) {
        let base_addr = pool.arena_region().0 as usize;
        let chunk_bytes_max = registered_chunk_bytes_max(127 * 4096, base_addr);
        let fixed = FixedBuffers::with_chunk_bytes_max(pool, chunk_bytes_max).unwrap();
        let codec = NvmeCodec {
            fixed_layout: Some(fixed.layout()),
            ..codec(lba_bytes, FileTarget::Fixed)
        };
        (codec, base_addr)
    }

    fn request(kind: OpKind, offset_bytes: u64, len_bytes: usize) -> PieceRequest {
        PieceRequest {
            kind,
            offset_bytes,
            addr: 0x7f00_1234_0000,
            len_bytes,
            buf_index: None,
            placement_id: None,
        }
    }

    /// The 128 bytes the kernel reads for `sqe`.
    #[allow(unsafe_code)]
    fn sqe_bytes(sqe: &squeue::Entry128) -> [u8; 128] {
        // SAFETY: `Entry128` is `repr(C)`: a 64-byte `io_uring_sqe` (plain integers and
        // unions of integers, built from a zeroed SQE, so every byte is initialised) followed
        // by the 64-byte command tail; io-uring tests its size is 128. A clone is moved in.
        unsafe { std::mem::transmute::<squeue::Entry128, [u8; 128]>(sqe.clone()) }
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    // `struct io_uring_sqe` offsets (include/uapi/linux/io_uring.h).
    const SQE_OPCODE_AT: usize = 0;
    const SQE_FLAGS_AT: usize = 1;
    const SQE_FD_AT: usize = 4;
    const SQE_CMD_OP_AT: usize = 8;
    const SQE_URING_CMD_FLAGS_AT: usize = 28;
    const SQE_BUF_INDEX_AT: usize = 40;
    const SQE_CMD_AT: usize = 48;
    /// `IOSQE_FIXED_FILE`.
    const SQE_FLAG_FIXED_FILE: u8 = 1;
    /// `IORING_URING_CMD_FIXED`.
    const URING_CMD_FIXED: u32 = 1;

    #[test]
    fn read_becomes_a_uring_cmd_with_the_nvme_command_in_its_cmd_area() {
        let codec = codec(512, FileTarget::Raw(7));
        let piece = codec
            .prepare(&request(OpKind::Read, 0x1234_5600, 8192))
            .unwrap();
        assert_eq!(piece.len_bytes, 8192);
        let bytes = sqe_bytes(&piece.sqe);
        assert_eq!(bytes[SQE_OPCODE_AT], opcode::UringCmd80::CODE, "opcode");
        assert_eq!(bytes[SQE_FLAGS_AT], 0, "no fixed file");
        assert_eq!(u32_at(&bytes, SQE_FD_AT), 7, "fd");
        assert_eq!(u32_at(&bytes, SQE_CMD_OP_AT), 0xc048_4e80, "cmd_op");
        assert_eq!(u32_at(&bytes, SQE_URING_CMD_FLAGS_AT), 0, "not fixed");
        assert_eq!(u16_at(&bytes, SQE_BUF_INDEX_AT), 0, "buf_index");
        let cmd = &bytes[SQE_CMD_AT..];
        assert_eq!(cmd[0], 0x02, "nvme read");
        assert_eq!(u32_at(cmd, 4), 3, "nsid");
        assert_eq!(u64_at(cmd, 24), 0x7f00_1234_0000, "addr");
        assert_eq!(u32_at(cmd, 36), 8192, "data_len");
        assert_eq!(u32_at(cmd, 40), 0x1234_5600 / 512, "cdw10: slba low");
        assert_eq!(u32_at(cmd, 44), 0, "cdw11: slba high");
        assert_eq!(u32_at(cmd, 48), 15, "cdw12: 16 blocks, zero-based");
        assert!(cmd[52..].iter().all(|&b| b == 0), "cdw13.. and the tail");
    }

    #[test]
    fn write_with_fixed_file_and_buffer_sets_both_flags() {
        // 64 buffers of 16 KiB in iovecs of 31 buffers (496 KiB, within 127 pages).
        let pool = BufferPool::new(4 * 4096, 64, 4096).unwrap();
        let (codec, base_addr) = fixed_codec(4096, &pool);
        let addr = base_addr + 2 * 31 * 4 * 4096 + 4 * 4096;
        let write = PieceRequest {
            addr,
            buf_index: Some(2),
            ..request(OpKind::Write, (5 << 32) * 4096, 4096)
        };
        let bytes = sqe_bytes(&codec.prepare(&write).unwrap().sqe);
        assert_eq!(bytes[SQE_FLAGS_AT], SQE_FLAG_FIXED_FILE);
        assert_eq!(u32_at(&bytes, SQE_FD_AT), 0, "registered file 0");
        assert_eq!(u32_at(&bytes, SQE_URING_CMD_FLAGS_AT), URING_CMD_FIXED);
        assert_eq!(u16_at(&bytes, SQE_BUF_INDEX_AT), 2);
        let cmd = &bytes[SQE_CMD_AT..];
        assert_eq!(cmd[0], 0x01, "nvme write");
        assert_eq!(
            u64_at(cmd, 24),
            addr as u64,
            "addr inside the registered buffer"
        );
        assert_eq!(u32_at(cmd, 40), 0, "cdw10: slba low");
        assert_eq!(u32_at(cmd, 44), 5, "cdw11: slba high");
        assert_eq!(u32_at(cmd, 48), 0, "cdw12: one block");
    }

    #[test]
    fn a_write_with_a_placement_id_carries_the_data_placement_directive() {
        let codec = codec(4096, FileTarget::Raw(7));
        let placed = PieceRequest {
            placement_id: Some(9),
            ..request(OpKind::Write, 8192, 8192)
        };
        let bytes = sqe_bytes(&codec.prepare(&placed).unwrap().sqe);
        let cmd = &bytes[SQE_CMD_AT..];
        assert_eq!(cmd[0], 0x01, "nvme write");
        assert_eq!(u32_at(cmd, 48), (2 << 20) | 1, "cdw12: dtype 2, two blocks");
        assert_eq!(u32_at(cmd, 52), 9 << 16, "cdw13: dspec = placement id");
        let unplaced = sqe_bytes(
            &codec
                .prepare(&request(OpKind::Write, 8192, 8192))
                .unwrap()
                .sqe,
        );
        assert_eq!(u32_at(&unplaced[SQE_CMD_AT..], 48), 1, "cdw12 without");
        assert_eq!(u32_at(&unplaced[SQE_CMD_AT..], 52), 0, "cdw13 without");
    }

    #[test]
    fn registered_iovecs_span_at_most_the_pages_one_command_may() {
        assert_eq!(registered_chunk_bytes_max(127 * 4096, 0x10000), 127 * 4096);
        assert_eq!(
            registered_chunk_bytes_max(127 * 4096 + 100, 0x10000),
            127 * 4096
        );
        assert_eq!(registered_chunk_bytes_max(127 * 4096, 0x10200), 126 * 4096);
        assert_eq!(registered_chunk_bytes_max(512, 0x10200), 4096);
    }

    #[test]
    fn a_piece_too_far_from_its_iovec_end_goes_unfixed() {
        // One 1 MiB buffer is one iovec of 256 pages: more than 127 from its start.
        let pool = BufferPool::new(256 * 4096, 1, 4096).unwrap();
        let (codec, base_addr) = fixed_codec(512, &pool);
        let flags_of = |addr: usize| {
            let read = PieceRequest {
                addr,
                buf_index: Some(0),
                ..request(OpKind::Read, 0, 4096)
            };
            let bytes = sqe_bytes(&codec.prepare(&read).unwrap().sqe);
            u32_at(&bytes, SQE_URING_CMD_FLAGS_AT)
        };
        assert_eq!(flags_of(base_addr), 0, "256 pages to the iovec's end");
        assert_eq!(flags_of(base_addr + 128 * 4096), 0, "128 pages");
        assert_eq!(
            flags_of(base_addr + 129 * 4096),
            URING_CMD_FIXED,
            "127 pages"
        );
        assert_eq!(flags_of(base_addr + 129 * 4096 + 512), URING_CMD_FIXED);
    }

    #[test]
    fn flush_carries_only_opcode_and_nsid_and_no_buffer() {
        let codec = codec(512, FileTarget::Fixed);
        let mut flush = request(OpKind::Flush, 0, 0);
        flush.addr = 0;
        flush.buf_index = Some(1);
        let piece = codec.prepare(&flush).unwrap();
        assert_eq!(piece.len_bytes, 0);
        let bytes = sqe_bytes(&piece.sqe);
        assert_eq!(u32_at(&bytes, SQE_CMD_OP_AT), NVME_URING_CMD_IO);
        assert_eq!(u32_at(&bytes, SQE_URING_CMD_FLAGS_AT), 0, "no buffer");
        let mut expected = [0u8; URING_CMD_AREA_BYTES];
        expected[4] = 3;
        assert_eq!(&bytes[SQE_CMD_AT..], &expected[..]);
    }

    #[test]
    fn long_transfers_are_cut_at_the_limit_for_their_address() {
        let codec = codec(512, FileTarget::Fixed);
        let long = request(OpKind::Read, 4096, 2 << 20);
        assert_eq!(codec.prepare(&long).unwrap().len_bytes, 127 * 4096);
        // A continuation 512 bytes into a page spans one page more: one page less fits.
        let continuation = PieceRequest {
            addr: long.addr + 512,
            ..long
        };
        let piece = codec.prepare(&continuation).unwrap();
        assert_eq!(piece.len_bytes, 126 * 4096);
        let cmd = &sqe_bytes(&piece.sqe)[SQE_CMD_AT..];
        assert_eq!(u32_at(cmd, 36), 126 * 4096, "data_len");
        assert_eq!(u32_at(cmd, 48), 126 * 8 - 1, "cdw12");
        let short = request(OpKind::Read, 4096, 3 * 512);
        assert_eq!(codec.prepare(&short).unwrap().len_bytes, 3 * 512);
    }

    #[test]
    fn misaligned_offsets_lengths_and_addresses_are_refused_with_the_lba_size() {
        let codec = codec(4096, FileTarget::Fixed);
        let refused = IoError::Misaligned { align_bytes: 4096 };
        let prepare = |request| codec.prepare(&request).map(|piece| piece.len_bytes);
        assert_eq!(
            prepare(request(OpKind::Read, 512, 4096)),
            Err(refused.clone())
        );
        assert_eq!(
            prepare(request(OpKind::Write, 0, 4095)),
            Err(refused.clone())
        );
        let mut odd_address = request(OpKind::Read, 0, 4096);
        odd_address.addr += 2;
        assert_eq!(prepare(odd_address), Err(refused));
        let mut dword_address = request(OpKind::Read, 0, 4096);
        dword_address.addr += 512;
        assert_eq!(prepare(dword_address), Ok(4096));
    }

    #[test]
    fn a_range_past_2_pow_64_is_out_of_range() {
        let codec = codec(512, FileTarget::Fixed);
        let error = codec
            .prepare(&request(OpKind::Read, u64::MAX - 511, 1024))
            .map(|piece| piece.len_bytes)
            .unwrap_err();
        assert_eq!(
            error,
            IoError::OutOfRange {
                size_bytes: 64 << 20
            }
        );
    }

    #[test]
    fn cqe_results_decode_to_moved_status_or_errno() {
        assert_eq!(outcome_of(0, 4096, false), Outcome::Moved(4096));
        assert_eq!(outcome_of(0, 0, false), Outcome::Moved(0));
        assert_eq!(
            outcome_of(0x4080, 4096, false),
            Outcome::Failed(IoError::Nvme(NvmeStatus {
                sct: 0,
                sc: 0x80,
                dnr: true
            }))
        );
        assert_eq!(
            outcome_of(0x0281, 4096, false),
            Outcome::Failed(IoError::Nvme(NvmeStatus {
                sct: 2,
                sc: 0x81,
                dnr: false
            }))
        );
        assert_eq!(
            outcome_of(-libc::EINTR, 4096, false),
            Outcome::Errno(Errno::EINTR)
        );
        assert_eq!(
            outcome_of(-libc::EOPNOTSUPP, 4096, false),
            Outcome::Errno(Errno::EOPNOTSUPP)
        );
        assert!(matches!(
            outcome_of(-libc::EOPNOTSUPP, 4096, true),
            Outcome::Failed(IoError::Unsupported { .. })
        ));
    }
}
