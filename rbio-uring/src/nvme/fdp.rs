//! Flexible Data Placement status: the I/O Management Receive command that asks a namespace
//! for its Reclaim Unit Handle Status, the decoder of its answer, and the error of both.
//!
//! The answer (NVMe 2.0 base spec, I/O Management Receive, management operation 01h) is a
//! 16-byte header whose bytes 14..16 hold the number of descriptors (NRUHSD), then that many
//! 32-byte descriptors:
//!
//! ```text
//! bytes 0..2    PID     placement identifier (what a write's DSPEC names)
//! bytes 2..4    RUHID   reclaim unit handle identifier
//! bytes 4..8    EARUTR  estimated active reclaim unit time remaining, seconds
//! bytes 8..16   RUAMW   reclaim unit available media writes, logical blocks
//! bytes 16..32  reserved
//! ```
//!
//! The decoder is a pure function over bytes, tested on hand-built buffers; the ioctl that
//! fetches them is in `ioctl.rs`.

use std::fmt;

use rbio_core::{Errno, NvmeStatus};

use super::abi::NvmePassthruCmd;

/// I/O command set opcode of I/O Management Receive.
const OPCODE_IO_MANAGEMENT_RECEIVE: u8 = 0x12;
/// Management operation 01h: Reclaim Unit Handle Status (cdw10 bits 7:0).
const MO_RECLAIM_UNIT_HANDLE_STATUS: u32 = 0x01;

/// Bytes of the Reclaim Unit Handle Status header.
pub const RUH_STATUS_HEADER_BYTES: usize = 16;
/// Bytes of one Reclaim Unit Handle Status descriptor.
pub const RUH_STATUS_DESCRIPTOR_BYTES: usize = 32;
/// Where the descriptor count (NRUHSD, little-endian u16) sits in the header.
const NRUHSD_AT: usize = 14;
const PID_AT: usize = 0;
const RUHID_AT: usize = PID_AT + 2;
const EARUTR_AT: usize = RUHID_AT + 2;
const RUAMW_AT: usize = EARUTR_AT + 4;
const _: () = assert!(RUAMW_AT + 8 <= RUH_STATUS_DESCRIPTOR_BYTES);
const _: () = assert!(NRUHSD_AT + 2 == RUH_STATUS_HEADER_BYTES);

/// The largest answer: the header and 65535 descriptors (NRUHSD is 16 bits), about 2 MiB.
pub const RUH_STATUS_BYTES_MAX: usize =
    RUH_STATUS_HEADER_BYTES + u16::MAX as usize * RUH_STATUS_DESCRIPTOR_BYTES;

/// One reclaim unit handle a namespace may write through, as its status descriptor gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuhStatusDescriptor {
    /// PID: the placement identifier a write names in its DSPEC to use this handle.
    pub placement_id: u16,
    /// RUHID: the reclaim unit handle the placement identifier maps to.
    pub ruh_id: u16,
    /// EARUTR: estimated seconds before the active reclaim unit is closed (0: not reported).
    pub active_time_remaining_s: u32,
    /// RUAMW: logical blocks that can still be written to the active reclaim unit.
    pub available_media_writes_blocks: u64,
}

/// Why the Reclaim Unit Handle Status could not be had.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FdpStatusError {
    /// The passthrough ioctl itself failed (`NVME_IOCTL_IO_CMD` returned -1 with this errno).
    Os(Errno),
    /// The controller completed the command with this status: a controller without FDP, or
    /// with FDP disabled, refuses it (QEMU before 8.0 answers invalid opcode).
    Nvme {
        /// The decoded status.
        status: NvmeStatus,
        /// The status field as the kernel returned it (see `status.rs`), for messages that
        /// print it whole.
        status_field: u16,
    },
    /// The answer is shorter than its header, or than the descriptors its header counts.
    Truncated {
        /// Descriptors the header counts (0 when even the header is missing).
        descriptor_count: u16,
        /// Bytes needed for them.
        needed_bytes: usize,
        /// Bytes there were.
        len_bytes: usize,
    },
}

impl fmt::Display for FdpStatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdpStatusError::Os(errno) => write!(
                f,
                "nvme fdp reclaim unit handle status ioctl failed: {}",
                std::io::Error::from_raw_os_error(errno.0)
            ),
            FdpStatusError::Nvme {
                status,
                status_field,
            } => write!(
                f,
                "nvme fdp reclaim unit handle status refused: {status} (status field {status_field:#x})"
            ),
            FdpStatusError::Truncated {
                descriptor_count,
                needed_bytes,
                len_bytes,
            } => write!(
                f,
                "nvme fdp reclaim unit handle status truncated: {descriptor_count} descriptors \
                 need {needed_bytes} bytes, {len_bytes} returned"
            ),
        }
    }
}

impl std::error::Error for FdpStatusError {}

/// Bytes of an answer with `descriptor_count` descriptors.
pub fn ruh_status_len_bytes(descriptor_count: u16) -> usize {
    RUH_STATUS_HEADER_BYTES + usize::from(descriptor_count) * RUH_STATUS_DESCRIPTOR_BYTES
}

/// I/O Management Receive, Reclaim Unit Handle Status, for namespace `nsid` into a buffer of
/// `len_bytes` (a multiple of 4 from 4 to [`RUH_STATUS_BYTES_MAX`] rounded up); the caller
/// sets the buffer address. cdw10 carries the management operation (bits 7:0, no specific
/// field), cdw11 the number of dwords to return, zero-based (NUMD).
///
/// # Panics
///
/// If `len_bytes` is 0 or not a multiple of 4: rbio sizes these buffers itself.
pub(crate) fn ruh_status_command(nsid: u32, len_bytes: usize) -> NvmePassthruCmd {
    assert!(
        len_bytes >= 4 && len_bytes % 4 == 0,
        "ruh status buffer of {len_bytes} bytes is not whole dwords"
    );
    let dword_count = u32::try_from(len_bytes / 4).expect("ruh status buffer under 16 GiB");
    NvmePassthruCmd {
        opcode: OPCODE_IO_MANAGEMENT_RECEIVE,
        nsid,
        cdw10: MO_RECLAIM_UNIT_HANDLE_STATUS,
        cdw11: dword_count - 1,
        ..NvmePassthruCmd::default()
    }
}

/// Decodes a Reclaim Unit Handle Status answer; bytes past the counted descriptors are
/// ignored.
///
/// # Errors
///
/// [`FdpStatusError::Truncated`] when `bytes` is shorter than the header or than the
/// descriptors the header counts (the caller then asks again with a buffer of
/// `needed_bytes`).
pub fn parse_ruh_status(bytes: &[u8]) -> Result<Vec<RuhStatusDescriptor>, FdpStatusError> {
    if bytes.len() < RUH_STATUS_HEADER_BYTES {
        return Err(FdpStatusError::Truncated {
            descriptor_count: 0,
            needed_bytes: RUH_STATUS_HEADER_BYTES,
            len_bytes: bytes.len(),
        });
    }
    let descriptor_count = u16::from_le_bytes([bytes[NRUHSD_AT], bytes[NRUHSD_AT + 1]]);
    let needed_bytes = ruh_status_len_bytes(descriptor_count);
    if bytes.len() < needed_bytes {
        return Err(FdpStatusError::Truncated {
            descriptor_count,
            needed_bytes,
            len_bytes: bytes.len(),
        });
    }
    let descriptors = bytes[RUH_STATUS_HEADER_BYTES..needed_bytes]
        .chunks_exact(RUH_STATUS_DESCRIPTOR_BYTES)
        .map(parse_descriptor)
        .collect::<Vec<_>>();
    assert_eq!(descriptors.len(), usize::from(descriptor_count));
    Ok(descriptors)
}

fn parse_descriptor(bytes: &[u8]) -> RuhStatusDescriptor {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    RuhStatusDescriptor {
        placement_id: u16_at(PID_AT),
        ruh_id: u16_at(RUHID_AT),
        active_time_remaining_s: u32_at(EARUTR_AT),
        available_media_writes_blocks: u64_at(RUAMW_AT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer with `descriptors` as (pid, ruhid, earutr, ruamw), reserved bytes set to
    /// 0xee so a decoder reading them would show it.
    fn answer(descriptors: &[(u16, u16, u32, u64)], count: u16) -> Vec<u8> {
        let mut bytes = vec![0xeeu8; RUH_STATUS_HEADER_BYTES];
        bytes[14..16].copy_from_slice(&count.to_le_bytes());
        for &(pid, ruhid, earutr, ruamw) in descriptors {
            let mut descriptor = [0xeeu8; RUH_STATUS_DESCRIPTOR_BYTES];
            descriptor[0..2].copy_from_slice(&pid.to_le_bytes());
            descriptor[2..4].copy_from_slice(&ruhid.to_le_bytes());
            descriptor[4..8].copy_from_slice(&earutr.to_le_bytes());
            descriptor[8..16].copy_from_slice(&ruamw.to_le_bytes());
            bytes.extend_from_slice(&descriptor);
        }
        bytes
    }

    #[test]
    fn decodes_each_descriptor_field_little_endian() {
        let bytes = answer(
            &[
                (0x0001, 0x0000, 0x0000_0e10, 0x0000_0001_0000_0000),
                (0x0102, 0x0304, 0x0506_0708, 0x1112_1314_1516_1718),
            ],
            2,
        );
        assert_eq!(bytes.len(), 16 + 2 * 32);
        assert_eq!(
            parse_ruh_status(&bytes),
            Ok(vec![
                RuhStatusDescriptor {
                    placement_id: 1,
                    ruh_id: 0,
                    active_time_remaining_s: 3600,
                    available_media_writes_blocks: 1 << 32,
                },
                RuhStatusDescriptor {
                    placement_id: 0x0102,
                    ruh_id: 0x0304,
                    active_time_remaining_s: 0x0506_0708,
                    available_media_writes_blocks: 0x1112_1314_1516_1718,
                },
            ])
        );
    }

    #[test]
    fn zero_descriptors_is_an_empty_list_and_trailing_bytes_are_ignored() {
        assert_eq!(parse_ruh_status(&answer(&[], 0)), Ok(Vec::new()));
        let mut bytes = answer(&[(5, 6, 0, 0)], 1);
        bytes.resize(4096, 0xab);
        let descriptors = parse_ruh_status(&bytes).unwrap();
        assert_eq!(descriptors.len(), 1);
        assert_eq!((descriptors[0].placement_id, descriptors[0].ruh_id), (5, 6));
    }

    #[test]
    fn a_short_answer_is_truncated_with_the_bytes_it_needs() {
        assert_eq!(
            parse_ruh_status(&[0u8; 15]),
            Err(FdpStatusError::Truncated {
                descriptor_count: 0,
                needed_bytes: 16,
                len_bytes: 15
            })
        );
        let bytes = answer(&[(1, 1, 0, 0), (2, 2, 0, 0)], 3);
        let error = parse_ruh_status(&bytes).unwrap_err();
        assert_eq!(
            error,
            FdpStatusError::Truncated {
                descriptor_count: 3,
                needed_bytes: 16 + 3 * 32,
                len_bytes: 16 + 2 * 32
            }
        );
        assert_eq!(
            error.to_string(),
            "nvme fdp reclaim unit handle status truncated: 3 descriptors need 112 bytes, 80 returned"
        );
    }

    #[test]
    fn sizes_follow_the_descriptor_count() {
        assert_eq!(ruh_status_len_bytes(0), 16);
        assert_eq!(ruh_status_len_bytes(127), 4080);
        assert_eq!(ruh_status_len_bytes(u16::MAX), RUH_STATUS_BYTES_MAX);
        assert_eq!(RUH_STATUS_BYTES_MAX % 4, 0);
    }

    #[test]
    fn the_command_is_io_management_receive_mo_1_with_zero_based_numd() {
        let cmd = ruh_status_command(3, 4096);
        let bytes = cmd.to_bytes();
        assert_eq!(bytes[0], 0x12, "opcode: I/O Management Receive");
        assert_eq!(&bytes[4..8], &[3, 0, 0, 0], "nsid");
        assert_eq!(&bytes[40..44], &[0x01, 0, 0, 0], "cdw10: mo 1, mos 0");
        assert_eq!(
            u32::from_le_bytes(bytes[44..48].try_into().unwrap()),
            1023,
            "cdw11: numd = 1024 dwords - 1"
        );
        assert!(bytes[48..72].iter().all(|&b| b == 0), "cdw12.. zero");
        assert_eq!(ruh_status_command(1, 16).cdw11, 3);
    }
}
