//! The synchronous NVMe ioctls: namespace id, admin and I/O passthrough, and a blocking read.
//!
//! This is the only nvme file with `unsafe`: each ioctl hands the kernel a command whose data
//! address is a buffer borrowed mutably for the whole (synchronous) call, so no caller can
//! point the kernel at memory it does not own. The kernel maps exactly that buffer, but the
//! controller moves what the command says (blocks × LBA size), so every command is built here
//! from sizes that fit its buffer: Identify's fixed page, and reads split by the LBA size
//! Identify gave on the same descriptor ([`NvmeNamespace`] holds both).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use rbio_core::{Errno, IoError};

use super::abi::{
    NvmeAdminCmd, NvmePassthruCmd, NVME_IOCTL_ADMIN_CMD, NVME_IOCTL_ID, NVME_IOCTL_IO_CMD,
};
use super::cmd::{LbaError, NvmeIo, NvmeIoOpcode};
use super::fdp::{
    parse_ruh_status, ruh_status_command, FdpStatusError, RuhStatusDescriptor, RUH_STATUS_BYTES_MAX,
};
use super::namespace::NvmeNamespace;
use super::status::{decode_nvme_status, nvme_res_to_result};

/// Admin opcode of Identify.
const ADMIN_OPCODE_IDENTIFY: u8 = 0x06;
/// The first Reclaim Unit Handle Status buffer: a page, room for 127 descriptors.
const RUH_STATUS_FIRST_BYTES: usize = 4096;
/// Bytes of every Identify data structure.
pub(crate) const IDENTIFY_PAGE_BYTES: usize = 4096;

/// The namespace id behind `fd`, from `NVME_IOCTL_ID` (the kernel returns it as the value).
pub(crate) fn namespace_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: NVME_IOCTL_ID takes no argument, so the kernel touches no user memory; `fd` is a
    // live descriptor for the duration of the borrow.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), NVME_IOCTL_ID as _) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret.unsigned_abs())
}

/// Runs one passthrough command through `request` with `buf` as its whole data buffer and
/// returns the completion's dword 0.
///
/// # Safety
///
/// As [`passthru_status`].
unsafe fn passthru(
    fd: BorrowedFd<'_>,
    request: u32,
    cmd: &mut NvmePassthruCmd,
    buf: &mut [u8],
) -> Result<u32, IoError> {
    if u32::try_from(buf.len()).is_err() {
        return Err(IoError::Unsupported {
            what: "a passthrough buffer of 4 GiB or more",
        });
    }
    // SAFETY: the caller's promise, passed on.
    let status = unsafe { passthru_status(fd, request, cmd, buf) }.map_err(IoError::Os)?;
    nvme_res_to_result(status)?;
    Ok(cmd.result)
}

/// Runs one passthrough command through `request` with `buf` as its whole data buffer and
/// returns the ioctl's value: 0, or the NVMe status field as the kernel gives it (see
/// `status.rs`); the completion's dword 0 is left in `cmd.result`.
///
/// # Errors
///
/// The errno when the ioctl fails.
///
/// # Panics
///
/// If `buf` is 4 GiB or more (callers check).
///
/// # Safety
///
/// `cmd`, as the controller behind `fd` reads it, moves at most `buf.len()` bytes: the kernel
/// maps only `buf`, and a controller that moves more writes past it (a read's blocks × the
/// namespace's real LBA size, an admin command's data structure).
unsafe fn passthru_status(
    fd: BorrowedFd<'_>,
    request: u32,
    cmd: &mut NvmePassthruCmd,
    buf: &mut [u8],
) -> Result<i32, Errno> {
    assert_eq!(cmd.metadata, 0, "passthrough with a metadata buffer");
    assert_eq!(cmd.metadata_len, 0, "passthrough with a metadata length");
    let data_len_bytes = u32::try_from(buf.len()).expect("passthrough buffer under 4 GiB");
    cmd.addr = buf.as_mut_ptr() as u64;
    cmd.data_len = data_len_bytes;
    cmd.result = 0;
    let cmd_ptr: *mut NvmePassthruCmd = cmd;
    // SAFETY: `cmd_ptr` is a valid, exclusive `struct nvme_passthru_cmd` (layout checked in
    // abi.rs) that the kernel reads and writes back during the call. Its `addr`/`data_len`
    // describe exactly `buf`, which is mutably borrowed until this synchronous ioctl returns,
    // it has no metadata buffer (asserted above), and the caller promises the command moves
    // no more than `buf` holds.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, cmd_ptr) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(ret)
}

/// Identify with `cns` for `nsid` through `NVME_IOCTL_ADMIN_CMD`: the 4096-byte data structure.
pub(crate) fn identify(
    fd: BorrowedFd<'_>,
    cns: u8,
    nsid: u32,
) -> Result<Box<[u8; IDENTIFY_PAGE_BYTES]>, IoError> {
    let mut page = Box::new([0u8; IDENTIFY_PAGE_BYTES]);
    let mut cmd = NvmeAdminCmd {
        opcode: ADMIN_OPCODE_IDENTIFY,
        nsid,
        cdw10: u32::from(cns),
        ..NvmeAdminCmd::default()
    };
    // SAFETY: every Identify data structure is IDENTIFY_PAGE_BYTES long (NVMe base spec), the
    // size of `page`.
    unsafe { passthru(fd, NVME_IOCTL_ADMIN_CMD, &mut cmd, &mut page[..]) }?;
    Ok(page)
}

/// The Reclaim Unit Handle Status of `namespace` through the synchronous
/// `NVME_IOCTL_IO_CMD`: first into a page, then, if the header counts more descriptors than
/// a page holds, once more into a buffer of exactly their size. See
/// [`NvmeNamespace::reclaim_unit_handle_status`].
pub(crate) fn reclaim_unit_handle_status(
    namespace: &NvmeNamespace,
) -> Result<Vec<RuhStatusDescriptor>, FdpStatusError> {
    let first = ruh_status_into(namespace, RUH_STATUS_FIRST_BYTES)?;
    match parse_ruh_status(&first) {
        Err(FdpStatusError::Truncated { needed_bytes, .. })
            if needed_bytes > first.len() && needed_bytes <= RUH_STATUS_BYTES_MAX =>
        {
            let whole = ruh_status_into(namespace, needed_bytes)?;
            parse_ruh_status(&whole)
        }
        parsed => parsed,
    }
}

/// One Reclaim Unit Handle Status command into a fresh buffer of `len_bytes`.
fn ruh_status_into(namespace: &NvmeNamespace, len_bytes: usize) -> Result<Vec<u8>, FdpStatusError> {
    let mut buf = vec![0u8; len_bytes];
    let mut cmd = ruh_status_command(namespace.info().nsid(), len_bytes);
    // SAFETY: NUMD asks for exactly `len_bytes / 4` dwords (`ruh_status_command`), and the
    // controller returns at most the dwords NUMD asks for (NVMe base spec, I/O Management
    // Receive), so it moves at most `buf.len()` bytes.
    let status = unsafe { passthru_status(namespace.fd(), NVME_IOCTL_IO_CMD, &mut cmd, &mut buf) };
    match status {
        Ok(0) => Ok(buf),
        Ok(status_field) => Err(FdpStatusError::Nvme {
            status: decode_nvme_status(status_field.unsigned_abs()),
            status_field: u16::try_from(status_field).unwrap_or(u16::MAX),
        }),
        Err(errno) => Err(FdpStatusError::Os(errno)),
    }
}

/// Reads `buf.len()` bytes at `offset_bytes` of `namespace` with NVMe Read commands through
/// the synchronous `NVME_IOCTL_IO_CMD`, one command per transfer-sized piece. See
/// [`NvmeNamespace::read_blocking`].
pub(crate) fn read_blocking(
    namespace: &NvmeNamespace,
    offset_bytes: u64,
    buf: &mut [u8],
) -> Result<(), IoError> {
    let info = namespace.info();
    let format = info.lba_format();
    let max_transfer_bytes = info.max_transfer_bytes_at(buf.as_ptr() as usize);
    let split = format
        .split(offset_bytes, buf.len() as u64, max_transfer_bytes)
        .map_err(|error| match error {
            LbaError::TransferTooSmall { .. } => IoError::Unsupported {
                what: "a transfer limit below one logical block",
            },
            _ => IoError::Misaligned {
                align_bytes: format.lba_bytes() as usize,
            },
        })?;
    for piece in split {
        let start = piece.buffer_offset_bytes as usize;
        let len_bytes = piece.block_count * format.lba_bytes();
        let piece_buf = &mut buf[start..start + len_bytes as usize];
        let io = NvmeIo {
            opcode: NvmeIoOpcode::Read,
            nsid: info.nsid(),
            start_lba: piece.start_lba,
            block_count: piece.block_count,
            addr: piece_buf.as_mut_ptr() as u64,
            data_len_bytes: len_bytes,
            placement_id: None,
        };
        let encoded = io
            .encode(format)
            .unwrap_or_else(|error| panic!("split piece {piece:?} does not encode: {error}"));
        let mut cmd = NvmePassthruCmd::from(encoded);
        // SAFETY: the command reads `piece.block_count` blocks of `format`, the LBA size that
        // Identify gave on this same descriptor (`NvmeNamespace` is only made by `open`, which
        // asks it), so the controller moves `len_bytes`, exactly `piece_buf.len()`.
        unsafe { passthru(namespace.fd(), NVME_IOCTL_IO_CMD, &mut cmd, piece_buf) }?;
    }
    Ok(())
}
