//! The system calls that measure an open device: size, logical block, direct-I/O alignment.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `_IOR(0x12, 114, size_t)`: the size of a block device in bytes.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// The size of the block device open as `file`, in bytes.
pub(super) fn block_size_bytes(file: &File) -> io::Result<u64> {
    let mut size_bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size_bytes) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size_bytes)
}

/// The logical block size of the block device open as `file`.
pub(super) fn block_logical_bytes(file: &File) -> io::Result<u32> {
    let mut block_bytes: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::BLKSSZGET, &mut block_bytes) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(block_bytes as u32)
}

/// Direct-I/O alignment from `statx(STATX_DIOALIGN)`: (memory, offset) in bytes, or `None`
/// when the kernel or file system does not report it.
pub(super) fn dio_align_bytes(file: &File) -> Option<(u32, u32)> {
    // SAFETY: `statx` is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty path with AT_EMPTY_PATH names `file` itself; `stx` is a live local the
    // kernel fills.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    let reported = rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0;
    (reported && stx.stx_dio_offset_align > 0)
        .then_some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}
