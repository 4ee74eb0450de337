//! Decoding the NVMe status the kernel returns in `cqe.res` or as a passthrough ioctl's value.
//!
//! The kernel stores a completion's 16-bit status field shifted right by one (the phase bit
//! dropped) in `nvme_req(req)->status` and returns that as a positive number:
//!
//! ```text
//! bit 14    DNR  do not retry
//! bit 13    M    more (error log has more)
//! bits 12:11 CRD command retry delay
//! bits 10:8 SCT  status code type
//! bits 7:0  SC   status code
//! ```
//!
//! So QEMU's "LBA out of range, do not retry" arrives as `0x4080`. The kernel's own codes
//! for a dead path (`0x370`) or an aborted command (`0x371`) use the same encoding. Negative
//! values are `-errno` (for example `-EINTR` after a timeout and controller reset).

use rbio_core::{Errno, IoError, NvmeStatus};

const STATUS_SC_MASK: u32 = 0xff;
const STATUS_SCT_SHIFT: u32 = 8;
const STATUS_SCT_MASK: u32 = 0x7;
const STATUS_DNR_BIT: u32 = 1 << 14;

/// Status code type 0: generic command status.
pub const NVME_SCT_GENERIC: u8 = 0;
/// Status code type 1: command specific status.
pub const NVME_SCT_COMMAND_SPECIFIC: u8 = 1;
/// Status code type 2: media and data integrity errors.
pub const NVME_SCT_MEDIA: u8 = 2;
/// Status code type 3: path related status (also used by the Linux host for its own errors).
pub const NVME_SCT_PATH: u8 = 3;
/// Status code type 7: vendor specific.
pub const NVME_SCT_VENDOR: u8 = 7;

/// `(sct, sc)` of generic "invalid command opcode".
pub const NVME_SC_INVALID_OPCODE: (u8, u8) = (NVME_SCT_GENERIC, 0x01);
/// `(sct, sc)` of generic "command abort requested".
pub const NVME_SC_ABORT_REQUESTED: (u8, u8) = (NVME_SCT_GENERIC, 0x07);
/// `(sct, sc)` of generic "invalid namespace or format".
pub const NVME_SC_INVALID_NAMESPACE_OR_FORMAT: (u8, u8) = (NVME_SCT_GENERIC, 0x0b);
/// `(sct, sc)` of generic "capacity exceeded".
pub const NVME_SC_CAPACITY_EXCEEDED: (u8, u8) = (NVME_SCT_GENERIC, 0x81);
/// `(sct, sc)` of generic "namespace not ready".
pub const NVME_SC_NAMESPACE_NOT_READY: (u8, u8) = (NVME_SCT_GENERIC, 0x82);
/// `(sct, sc)` of media "write fault".
pub const NVME_SC_WRITE_FAULT: (u8, u8) = (NVME_SCT_MEDIA, 0x80);
/// `(sct, sc)` the Linux host reports when no path to the namespace is usable.
pub const NVME_SC_HOST_PATH_ERROR: (u8, u8) = (NVME_SCT_PATH, 0x70);
/// `(sct, sc)` the Linux host reports for a command it aborted itself.
pub const NVME_SC_HOST_ABORTED_COMMAND: (u8, u8) = (NVME_SCT_PATH, 0x71);

/// The status type, code and do-not-retry bit of a kernel status value (see the module docs).
///
/// The command retry delay and "more" bits are not kept; bits above 14 cannot come from the
/// kernel and are ignored.
pub fn decode_nvme_status(status_field: u32) -> NvmeStatus {
    NvmeStatus {
        sct: ((status_field >> STATUS_SCT_SHIFT) & STATUS_SCT_MASK) as u8,
        sc: (status_field & STATUS_SC_MASK) as u8,
        dnr: status_field & STATUS_DNR_BIT != 0,
    }
}

/// What a passthrough completion's `cqe.res` (or the ioctl's return value) says: `0` success,
/// positive an NVMe status, negative `-errno`.
///
/// # Errors
///
/// [`IoError::Nvme`] for a status, [`IoError::Os`] for an errno.
pub fn nvme_res_to_result(res: i32) -> Result<(), IoError> {
    match res {
        0 => Ok(()),
        status if status > 0 => Err(IoError::Nvme(decode_nvme_status(status.unsigned_abs()))),
        negative => Err(IoError::Os(Errno(negative.saturating_neg()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(res: i32, sct: u8, sc: u8, dnr: bool) {
        assert_eq!(
            nvme_res_to_result(res),
            Err(IoError::Nvme(NvmeStatus { sct, sc, dnr })),
            "res {res:#x}"
        );
    }

    #[test]
    fn decodes_kernel_status_values() {
        check(0x4080, 0, 0x80, true); // what QEMU returned for an LBA past the end
        check(0x0080, 0, 0x80, false);
        check(0x0281, 2, 0x81, false); // NVME_SC_READ_ERROR
        check(0x4281, 2, 0x81, true);
        check(0x0370, 3, 0x70, false); // NVME_SC_HOST_PATH_ERROR
        check(0x0371, 3, 0x71, false); // NVME_SC_HOST_ABORTED_CMD
        check(0x0002, 0, 0x02, false);
        check(0x7fff, 7, 0xff, true); // every bit: CRD and more dropped
        check(0x1806, 0, 0x06, false); // CRD bits only
        check(0x2004, 0, 0x04, false); // more bit only
    }

    #[test]
    fn zero_is_success_and_negatives_are_errno() {
        assert_eq!(nvme_res_to_result(0), Ok(()));
        assert_eq!(
            nvme_res_to_result(-libc::EINTR),
            Err(IoError::Os(Errno::EINTR))
        );
        assert_eq!(nvme_res_to_result(-libc::EIO), Err(IoError::Os(Errno::EIO)));
        assert_eq!(
            nvme_res_to_result(i32::MIN),
            Err(IoError::Os(Errno(i32::MAX)))
        );
    }

    #[test]
    fn named_codes_match_decoded_fields() {
        let status = decode_nvme_status(0x4080);
        assert_eq!((status.sct, status.sc), NvmeStatus::LBA_OUT_OF_RANGE);
        let path = decode_nvme_status(0x370);
        assert_eq!((path.sct, path.sc), NVME_SC_HOST_PATH_ERROR);
    }
}
