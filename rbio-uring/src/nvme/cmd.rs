//! The typed NVMe I/O command encoder and the byte-to-LBA arithmetic that feeds it.
//!
//! Callers speak in bytes and one-based block counts; the NVMe wire format's zero-based
//! "number of logical blocks" exists only inside [`NvmeIo::encode`].

use std::fmt;

use super::abi::NvmeUringCmd;

/// The most logical blocks one read or write can move: NLB is a zero-based 16-bit field.
pub const NVME_BLOCK_COUNT_MAX: u32 = 1 << 16;

/// Directive type 2, data placement (Flexible Data Placement), in a write's cdw12 DTYPE.
const DIRECTIVE_TYPE_DATA_PLACEMENT: u32 = 2;
/// Where DTYPE (bits 23:20) sits in cdw12.
const CDW12_DTYPE_SHIFT: u32 = 20;
/// Where DSPEC (bits 31:16) sits in cdw13.
const CDW13_DSPEC_SHIFT: u32 = 16;

/// The smallest LBA data size NVMe allows (LBADS >= 9).
const LBA_BYTES_MIN: u32 = 512;
/// The largest LBA data size rbio accepts; larger formats exist only on paper.
const LBA_BYTES_MAX: u32 = 1 << 16;

/// NVM command set opcodes rbio issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NvmeIoOpcode {
    /// Flush (0x00): commit volatile write cache contents to media; moves no data.
    Flush = 0x00,
    /// Write (0x01): host buffer to media.
    Write = 0x01,
    /// Read (0x02): media to host buffer.
    Read = 0x02,
}

/// One NVMe read, write or flush, in caller units: a one-based block count and the buffer.
///
/// `addr` is a user-space address; encoding does not dereference it, but whoever submits the
/// encoded command must own `data_len_bytes` bytes there until the command completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvmeIo {
    /// What to do.
    pub opcode: NvmeIoOpcode,
    /// Namespace id (from `NVME_IOCTL_ID`).
    pub nsid: u32,
    /// First logical block.
    pub start_lba: u64,
    /// Number of logical blocks, one-based: 1..=65536 for reads and writes, 0 for a flush.
    pub block_count: u32,
    /// User-space address of the data buffer (0 for a flush).
    pub addr: u64,
    /// Length of the data buffer; must equal `block_count` times the LBA size.
    pub data_len_bytes: u32,
    /// A write's FDP placement identifier, sent as the data placement directive (DTYPE 2 in
    /// cdw12 bits 23:20, DSPEC in cdw13 bits 31:16); `None` sends no directive.
    pub placement_id: Option<u16>,
}

/// Why an [`NvmeIo`] could not be encoded.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NvmeEncodeError {
    /// A read or write of zero blocks, or more than [`NVME_BLOCK_COUNT_MAX`].
    BlockCount {
        /// The count asked for.
        block_count: u32,
    },
    /// The buffer length does not match the blocks to move.
    DataLen {
        /// The buffer length given.
        data_len_bytes: u32,
        /// The blocks asked for.
        block_count: u32,
        /// The namespace's LBA size.
        lba_bytes: u32,
    },
    /// `start_lba + block_count` overflows 64 bits.
    LbaOverflow {
        /// The first block asked for.
        start_lba: u64,
        /// The blocks asked for.
        block_count: u32,
    },
    /// A flush was given blocks, a buffer or a starting LBA.
    FlushWithData,
    /// A read or flush was given a placement identifier; only writes are placed.
    PlacementNotWrite {
        /// The operation given one.
        opcode: NvmeIoOpcode,
    },
}

impl fmt::Display for NvmeEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeEncodeError::BlockCount { block_count } => write!(
                f,
                "nvme block count {block_count} outside 1..={NVME_BLOCK_COUNT_MAX}"
            ),
            NvmeEncodeError::DataLen {
                data_len_bytes,
                block_count,
                lba_bytes,
            } => write!(
                f,
                "nvme data length {data_len_bytes} bytes for {block_count} blocks of {lba_bytes} bytes ({} bytes)",
                u64::from(*block_count) * u64::from(*lba_bytes)
            ),
            NvmeEncodeError::LbaOverflow {
                start_lba,
                block_count,
            } => write!(f, "nvme lba range overflows: start {start_lba} + {block_count} blocks"),
            NvmeEncodeError::FlushWithData => {
                write!(f, "nvme flush given blocks, a buffer or a start lba")
            }
            NvmeEncodeError::PlacementNotWrite { opcode } => {
                let name = match opcode {
                    NvmeIoOpcode::Flush => "flush",
                    NvmeIoOpcode::Write => "write",
                    NvmeIoOpcode::Read => "read",
                };
                write!(f, "nvme {name} given a placement id; only writes are placed")
            }
        }
    }
}

impl std::error::Error for NvmeEncodeError {}

impl NvmeIo {
    /// A flush of namespace `nsid`.
    pub fn flush(nsid: u32) -> NvmeIo {
        NvmeIo {
            opcode: NvmeIoOpcode::Flush,
            nsid,
            start_lba: 0,
            block_count: 0,
            addr: 0,
            data_len_bytes: 0,
            placement_id: None,
        }
    }

    /// The `struct nvme_uring_cmd` for this operation on a namespace formatted with `format`.
    ///
    /// SLBA goes to cdw10 (low 32 bits) and cdw11 (high 32 bits); the zero-based block count
    /// to cdw12 bits 15:0; a write's placement identifier to DTYPE 2 (cdw12 bits 23:20) and
    /// DSPEC (cdw13 bits 31:16); every other field stays zero (no FUA, no protection
    /// information, the kernel's default timeout).
    ///
    /// # Errors
    ///
    /// [`NvmeEncodeError`] when the count, the buffer length or the range is impossible;
    /// nothing is checked against the namespace size (the device answers that).
    pub fn encode(&self, format: LbaFormat) -> Result<NvmeUringCmd, NvmeEncodeError> {
        if self.placement_id.is_some() && self.opcode != NvmeIoOpcode::Write {
            return Err(NvmeEncodeError::PlacementNotWrite {
                opcode: self.opcode,
            });
        }
        if self.opcode == NvmeIoOpcode::Flush {
            return self.encode_flush();
        }
        if self.block_count == 0 || self.block_count > NVME_BLOCK_COUNT_MAX {
            return Err(NvmeEncodeError::BlockCount {
                block_count: self.block_count,
            });
        }
        let expected_len_bytes = u64::from(self.block_count) * u64::from(format.lba_bytes());
        if u64::from(self.data_len_bytes) != expected_len_bytes {
            return Err(NvmeEncodeError::DataLen {
                data_len_bytes: self.data_len_bytes,
                block_count: self.block_count,
                lba_bytes: format.lba_bytes(),
            });
        }
        if self
            .start_lba
            .checked_add(u64::from(self.block_count))
            .is_none()
        {
            return Err(NvmeEncodeError::LbaOverflow {
                start_lba: self.start_lba,
                block_count: self.block_count,
            });
        }
        let block_count_zero_based = self.block_count - 1;
        let (directive_cdw12, cdw13) = match self.placement_id {
            Some(placement_id) => (
                DIRECTIVE_TYPE_DATA_PLACEMENT << CDW12_DTYPE_SHIFT,
                u32::from(placement_id) << CDW13_DSPEC_SHIFT,
            ),
            None => (0, 0),
        };
        Ok(NvmeUringCmd {
            opcode: self.opcode as u8,
            nsid: self.nsid,
            addr: self.addr,
            data_len: self.data_len_bytes,
            cdw10: (self.start_lba & 0xffff_ffff) as u32,
            cdw11: (self.start_lba >> 32) as u32,
            cdw12: (block_count_zero_based & 0xffff) | directive_cdw12,
            cdw13,
            ..NvmeUringCmd::default()
        })
    }

    fn encode_flush(&self) -> Result<NvmeUringCmd, NvmeEncodeError> {
        if self.block_count != 0
            || self.data_len_bytes != 0
            || self.addr != 0
            || self.start_lba != 0
        {
            return Err(NvmeEncodeError::FlushWithData);
        }
        Ok(NvmeUringCmd {
            opcode: NvmeIoOpcode::Flush as u8,
            nsid: self.nsid,
            ..NvmeUringCmd::default()
        })
    }
}

/// A namespace's logical block size: a power of two from 512 to 65536 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LbaFormat {
    lba_bytes: u32,
}

/// Why a byte range or an LBA size does not map onto logical blocks.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LbaError {
    /// The LBA size is not a power of two from 512 to 65536.
    LbaBytes {
        /// The size given.
        lba_bytes: u64,
    },
    /// The byte offset is not a multiple of the LBA size.
    OffsetMisaligned {
        /// The offset given.
        offset_bytes: u64,
        /// The LBA size.
        lba_bytes: u32,
    },
    /// The byte length is not a multiple of the LBA size.
    LenMisaligned {
        /// The length given.
        len_bytes: u64,
        /// The LBA size.
        lba_bytes: u32,
    },
    /// `offset_bytes + len_bytes` overflows 64 bits.
    RangeOverflow {
        /// The offset given.
        offset_bytes: u64,
        /// The length given.
        len_bytes: u64,
    },
    /// The transfer limit is smaller than one logical block.
    TransferTooSmall {
        /// The limit given.
        max_transfer_bytes: u32,
        /// The LBA size.
        lba_bytes: u32,
    },
}

impl fmt::Display for LbaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LbaError::LbaBytes { lba_bytes } => write!(
                f,
                "lba size {lba_bytes} bytes is not a power of two from {LBA_BYTES_MIN} to {LBA_BYTES_MAX}"
            ),
            LbaError::OffsetMisaligned {
                offset_bytes,
                lba_bytes,
            } => write!(
                f,
                "offset {offset_bytes} bytes is not a multiple of the lba size {lba_bytes}"
            ),
            LbaError::LenMisaligned {
                len_bytes,
                lba_bytes,
            } => write!(
                f,
                "length {len_bytes} bytes is not a multiple of the lba size {lba_bytes}"
            ),
            LbaError::RangeOverflow {
                offset_bytes,
                len_bytes,
            } => write!(f, "range overflows: offset {offset_bytes} + length {len_bytes} bytes"),
            LbaError::TransferTooSmall {
                max_transfer_bytes,
                lba_bytes,
            } => write!(
                f,
                "max transfer {max_transfer_bytes} bytes is smaller than the lba size {lba_bytes}"
            ),
        }
    }
}

impl std::error::Error for LbaError {}

/// A run of logical blocks, converted from a byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbaRange {
    /// First logical block.
    pub start_lba: u64,
    /// Number of logical blocks (one-based; 0 for an empty range).
    pub block_count: u64,
}

/// One command's share of a split byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbaPiece {
    /// First logical block of this piece.
    pub start_lba: u64,
    /// Blocks in this piece: 1..=65536, one-based.
    pub block_count: u32,
    /// Where this piece's bytes sit in the caller's buffer.
    pub buffer_offset_bytes: u64,
}

impl LbaFormat {
    /// 512-byte logical blocks.
    pub const LBA_512: LbaFormat = LbaFormat { lba_bytes: 512 };
    /// 4096-byte logical blocks.
    pub const LBA_4096: LbaFormat = LbaFormat { lba_bytes: 4096 };

    /// The format with `lba_bytes`-byte blocks.
    ///
    /// # Errors
    ///
    /// [`LbaError::LbaBytes`] unless `lba_bytes` is a power of two from 512 to 65536.
    pub fn new(lba_bytes: u32) -> Result<LbaFormat, LbaError> {
        if !lba_bytes.is_power_of_two() || !(LBA_BYTES_MIN..=LBA_BYTES_MAX).contains(&lba_bytes) {
            return Err(LbaError::LbaBytes {
                lba_bytes: u64::from(lba_bytes),
            });
        }
        Ok(LbaFormat { lba_bytes })
    }

    /// The format whose blocks are `1 << lba_shift` bytes (Identify's LBADS).
    ///
    /// # Errors
    ///
    /// [`LbaError::LbaBytes`] unless `lba_shift` is 9 to 16.
    pub fn from_shift(lba_shift: u8) -> Result<LbaFormat, LbaError> {
        if !(9..=16).contains(&lba_shift) {
            return Err(LbaError::LbaBytes {
                lba_bytes: 1u64.checked_shl(u32::from(lba_shift)).unwrap_or(u64::MAX),
            });
        }
        LbaFormat::new(1 << lba_shift)
    }

    /// Bytes per logical block.
    pub fn lba_bytes(self) -> u32 {
        self.lba_bytes
    }

    /// The blocks covering exactly `len_bytes` bytes from `offset_bytes`.
    ///
    /// # Errors
    ///
    /// [`LbaError`] when the offset or length is not a multiple of the LBA size or the range
    /// overflows.
    pub fn byte_range_to_lbas(
        self,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> Result<LbaRange, LbaError> {
        let lba_bytes = self.lba_bytes;
        if offset_bytes.checked_add(len_bytes).is_none() {
            return Err(LbaError::RangeOverflow {
                offset_bytes,
                len_bytes,
            });
        }
        if offset_bytes % u64::from(lba_bytes) != 0 {
            return Err(LbaError::OffsetMisaligned {
                offset_bytes,
                lba_bytes,
            });
        }
        if len_bytes % u64::from(lba_bytes) != 0 {
            return Err(LbaError::LenMisaligned {
                len_bytes,
                lba_bytes,
            });
        }
        Ok(LbaRange {
            start_lba: offset_bytes / u64::from(lba_bytes),
            block_count: len_bytes / u64::from(lba_bytes),
        })
    }

    /// Cuts `len_bytes` from `offset_bytes` into commands of at most `max_transfer_bytes`
    /// (rounded down to whole blocks) and at most [`NVME_BLOCK_COUNT_MAX`] blocks each.
    ///
    /// An empty range yields no pieces.
    ///
    /// # Errors
    ///
    /// As [`LbaFormat::byte_range_to_lbas`], and [`LbaError::TransferTooSmall`] when the limit
    /// is less than one block.
    pub fn split(
        self,
        offset_bytes: u64,
        len_bytes: u64,
        max_transfer_bytes: u32,
    ) -> Result<LbaSplit, LbaError> {
        let range = self.byte_range_to_lbas(offset_bytes, len_bytes)?;
        let piece_blocks_max = (max_transfer_bytes / self.lba_bytes).min(NVME_BLOCK_COUNT_MAX);
        if piece_blocks_max == 0 {
            return Err(LbaError::TransferTooSmall {
                max_transfer_bytes,
                lba_bytes: self.lba_bytes,
            });
        }
        Ok(LbaSplit {
            format: self,
            next_lba: range.start_lba,
            end_lba: range.start_lba + range.block_count,
            start_lba: range.start_lba,
            piece_blocks_max,
        })
    }
}

/// The pieces of a split range, in order; see [`LbaFormat::split`].
#[derive(Clone, Debug)]
pub struct LbaSplit {
    format: LbaFormat,
    start_lba: u64,
    next_lba: u64,
    end_lba: u64,
    piece_blocks_max: u32,
}

impl Iterator for LbaSplit {
    type Item = LbaPiece;

    fn next(&mut self) -> Option<LbaPiece> {
        if self.next_lba == self.end_lba {
            return None;
        }
        let remaining_blocks = self.end_lba - self.next_lba;
        let block_count = remaining_blocks.min(u64::from(self.piece_blocks_max)) as u32;
        let piece = LbaPiece {
            start_lba: self.next_lba,
            block_count,
            buffer_offset_bytes: (self.next_lba - self.start_lba)
                * u64::from(self.format.lba_bytes),
        };
        self.next_lba += u64::from(block_count);
        assert!(self.next_lba <= self.end_lba, "split overran its range");
        Some(piece)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining_blocks = self.end_lba - self.next_lba;
        let pieces = remaining_blocks.div_ceil(u64::from(self.piece_blocks_max));
        let pieces = usize::try_from(pieces).unwrap_or(usize::MAX);
        (pieces, Some(pieces))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dword_at(bytes: &[u8; 72], at: usize) -> u32 {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    }

    fn read(start_lba: u64, block_count: u32, data_len_bytes: u32) -> NvmeIo {
        NvmeIo {
            opcode: NvmeIoOpcode::Read,
            nsid: 1,
            start_lba,
            block_count,
            addr: 0x7f00_1234_5000,
            data_len_bytes,
            placement_id: None,
        }
    }

    #[test]
    fn read_encodes_slba_across_cdw10_cdw11_and_zero_based_count_in_cdw12() {
        let io = NvmeIo {
            nsid: 3,
            ..read(0x0000_0012_3456_789a, 8, 8 * 512)
        };
        let bytes = io.encode(LbaFormat::LBA_512).unwrap().to_bytes();
        assert_eq!(bytes[0], 0x02, "opcode");
        assert_eq!(bytes[1], 0, "flags");
        assert_eq!(&bytes[4..8], &[3, 0, 0, 0], "nsid");
        assert_eq!(
            &bytes[24..32],
            &[0x00, 0x50, 0x34, 0x12, 0x00, 0x7f, 0, 0],
            "addr"
        );
        assert_eq!(dword_at(&bytes, 36), 4096, "data_len");
        assert_eq!(
            &bytes[40..44],
            &[0x9a, 0x78, 0x56, 0x34],
            "cdw10 = slba low"
        );
        assert_eq!(&bytes[44..48], &[0x12, 0, 0, 0], "cdw11 = slba high");
        assert_eq!(&bytes[48..52], &[7, 0, 0, 0], "cdw12 = nlb, zero-based");
        assert!(bytes[52..72].iter().all(|&b| b == 0), "cdw13..rsvd2 zero");
        assert!(
            bytes[8..24].iter().all(|&b| b == 0),
            "cdw2, cdw3, metadata zero"
        );
    }

    #[test]
    fn write_and_largest_count() {
        let io = NvmeIo {
            opcode: NvmeIoOpcode::Write,
            ..read(0, NVME_BLOCK_COUNT_MAX, NVME_BLOCK_COUNT_MAX * 4096)
        };
        let bytes = io.encode(LbaFormat::LBA_4096).unwrap().to_bytes();
        assert_eq!(bytes[0], 0x01);
        assert_eq!(&bytes[48..52], &[0xff, 0xff, 0, 0]);
        assert_eq!(dword_at(&bytes, 36), 256 << 20);
    }

    #[test]
    fn a_placed_write_carries_dtype_2_in_cdw12_and_the_id_in_cdw13_dspec() {
        let io = NvmeIo {
            opcode: NvmeIoOpcode::Write,
            placement_id: Some(0xbeef),
            ..read(0x10, 8, 8 * 512)
        };
        let bytes = io.encode(LbaFormat::LBA_512).unwrap().to_bytes();
        assert_eq!(bytes[0], 0x01, "nvme write");
        assert_eq!(dword_at(&bytes, 40), 0x10, "cdw10 = slba low");
        assert_eq!(
            dword_at(&bytes, 48),
            (2 << 20) | 7,
            "cdw12 = dtype 2 in bits 23:20 | nlb zero-based"
        );
        assert_eq!(dword_at(&bytes, 52), 0xbeef << 16, "cdw13 = dspec in 31:16");
        assert!(bytes[56..72].iter().all(|&b| b == 0), "cdw14..rsvd2 zero");
        let unplaced = NvmeIo {
            placement_id: None,
            ..io
        };
        let bytes = unplaced.encode(LbaFormat::LBA_512).unwrap().to_bytes();
        assert_eq!(
            dword_at(&bytes, 48),
            7,
            "no directive without a placement id"
        );
        assert_eq!(dword_at(&bytes, 52), 0);
        let zero = NvmeIo {
            placement_id: Some(0),
            ..io
        };
        let bytes = zero.encode(LbaFormat::LBA_512).unwrap().to_bytes();
        assert_eq!(
            dword_at(&bytes, 48),
            (2 << 20) | 7,
            "placement id 0 (handle 0) is a directive too"
        );
    }

    #[test]
    fn reads_and_flushes_refuse_a_placement_id() {
        let placed_read = NvmeIo {
            placement_id: Some(1),
            ..read(0, 1, 512)
        };
        assert_eq!(
            placed_read.encode(LbaFormat::LBA_512),
            Err(NvmeEncodeError::PlacementNotWrite {
                opcode: NvmeIoOpcode::Read
            })
        );
        let placed_flush = NvmeIo {
            placement_id: Some(1),
            ..NvmeIo::flush(1)
        };
        let error = placed_flush.encode(LbaFormat::LBA_512).unwrap_err();
        assert_eq!(
            error.to_string(),
            "nvme flush given a placement id; only writes are placed"
        );
    }

    #[test]
    fn flush_has_only_opcode_and_nsid() {
        let bytes = NvmeIo::flush(9)
            .encode(LbaFormat::LBA_512)
            .unwrap()
            .to_bytes();
        let mut expected = [0u8; 72];
        expected[4] = 9;
        assert_eq!(bytes, expected);
        let bad = NvmeIo {
            block_count: 1,
            ..NvmeIo::flush(9)
        };
        assert_eq!(
            bad.encode(LbaFormat::LBA_512),
            Err(NvmeEncodeError::FlushWithData)
        );
    }

    #[test]
    fn encoder_refuses_impossible_counts_lengths_and_ranges() {
        let fmt = LbaFormat::LBA_512;
        assert_eq!(
            read(0, 0, 0).encode(fmt),
            Err(NvmeEncodeError::BlockCount { block_count: 0 })
        );
        assert_eq!(
            read(0, 65537, 65537 * 512).encode(fmt),
            Err(NvmeEncodeError::BlockCount { block_count: 65537 })
        );
        let err = read(0, 8, 4095).encode(fmt).unwrap_err();
        assert_eq!(
            err.to_string(),
            "nvme data length 4095 bytes for 8 blocks of 512 bytes (4096 bytes)"
        );
        assert_eq!(
            read(u64::MAX, 1, 512).encode(fmt),
            Err(NvmeEncodeError::LbaOverflow {
                start_lba: u64::MAX,
                block_count: 1
            })
        );
        assert!(read(u64::MAX - 1, 1, 512).encode(fmt).is_ok());
    }

    #[test]
    fn lba_format_accepts_only_powers_of_two_in_range() {
        assert_eq!(LbaFormat::new(4096), Ok(LbaFormat::LBA_4096));
        assert_eq!(LbaFormat::from_shift(9), Ok(LbaFormat::LBA_512));
        for bad in [0, 256, 520, 3000, 1 << 17] {
            assert_eq!(
                LbaFormat::new(bad),
                Err(LbaError::LbaBytes {
                    lba_bytes: u64::from(bad)
                })
            );
        }
        assert!(LbaFormat::from_shift(8).is_err());
        assert!(LbaFormat::from_shift(200).is_err());
    }

    #[test]
    fn byte_range_to_lbas_checks_alignment() {
        let fmt = LbaFormat::LBA_4096;
        assert_eq!(
            fmt.byte_range_to_lbas(8192, 12288),
            Ok(LbaRange {
                start_lba: 2,
                block_count: 3
            })
        );
        assert_eq!(
            fmt.byte_range_to_lbas(512, 4096),
            Err(LbaError::OffsetMisaligned {
                offset_bytes: 512,
                lba_bytes: 4096
            })
        );
        assert_eq!(
            fmt.byte_range_to_lbas(4096, 100).unwrap_err().to_string(),
            "length 100 bytes is not a multiple of the lba size 4096"
        );
        assert!(matches!(
            fmt.byte_range_to_lbas(u64::MAX - 4095, 8192),
            Err(LbaError::RangeOverflow { .. })
        ));
        assert_eq!(fmt.byte_range_to_lbas(4096, 0).unwrap().block_count, 0);
    }

    #[test]
    fn split_cuts_at_the_transfer_limit_and_tracks_buffer_offsets() {
        let pieces: Vec<LbaPiece> = LbaFormat::LBA_512
            .split(1024, 5 * 1024, 2048 + 100)
            .unwrap()
            .collect();
        let expected = [(2, 4, 0), (6, 4, 2048), (10, 2, 4096)];
        assert_eq!(pieces.len(), expected.len());
        for (piece, (start_lba, block_count, buffer_offset_bytes)) in pieces.iter().zip(expected) {
            assert_eq!(
                *piece,
                LbaPiece {
                    start_lba,
                    block_count,
                    buffer_offset_bytes
                }
            );
        }
    }

    #[test]
    fn split_caps_pieces_at_the_nlb_limit_and_covers_the_range_exactly() {
        let split = LbaFormat::LBA_512
            .split(0, 3 * 65536 * 512 + 512, u32::MAX)
            .unwrap();
        assert_eq!(split.size_hint(), (4, Some(4)));
        let pieces: Vec<LbaPiece> = split.collect();
        assert_eq!(pieces.len(), 4);
        assert!(pieces.iter().all(|p| p.block_count <= NVME_BLOCK_COUNT_MAX));
        let mut next_lba = 0;
        for piece in &pieces {
            assert_eq!(piece.start_lba, next_lba);
            assert_eq!(piece.buffer_offset_bytes, next_lba * 512);
            next_lba += u64::from(piece.block_count);
        }
        assert_eq!(next_lba, 3 * 65536 + 1);
    }

    #[test]
    fn split_of_nothing_is_empty_and_tiny_limits_are_refused() {
        assert_eq!(LbaFormat::LBA_4096.split(4096, 0, 4096).unwrap().count(), 0);
        assert_eq!(
            LbaFormat::LBA_4096.split(0, 4096, 4095).unwrap_err(),
            LbaError::TransferTooSmall {
                max_transfer_bytes: 4095,
                lba_bytes: 4096
            }
        );
    }

    #[test]
    fn every_split_piece_encodes() {
        let fmt = LbaFormat::LBA_4096;
        for piece in fmt.split(0, 10 << 20, 1 << 20).unwrap() {
            let io = NvmeIo {
                opcode: NvmeIoOpcode::Read,
                nsid: 1,
                start_lba: piece.start_lba,
                block_count: piece.block_count,
                addr: 0x1000 + piece.buffer_offset_bytes,
                data_len_bytes: piece.block_count * fmt.lba_bytes(),
                placement_id: None,
            };
            assert!(io.encode(fmt).is_ok(), "{piece:?}");
        }
    }
}
