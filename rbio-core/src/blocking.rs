//! One operation done synchronously with `pread`/`pwrite`/`fdatasync`: the reference transfer
//! that the serial engine and the POSIX workers share.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

use crate::buffer::Buffer;
use crate::device::Device;
use crate::error::{Errno, IoError};
use crate::op::{OpInfo, OpKind};

/// How many times one system call is restarted after `EINTR` before the error is reported.
pub const EINTR_RETRIES_MAX: u32 = 64;

/// Performs `info` on `device` with `buffer`, blocking until done.
///
/// A short transfer continues at the next byte; a continuation that transfers nothing ends as
/// [`IoError::ShortTransfer`]; `EINTR` restarts the call (at most [`EINTR_RETRIES_MAX`] times);
/// any other error ends the operation with that error. The caller has already checked the
/// operation against the device ([`Device::check`]).
///
/// # Errors
/// The [`IoError`] that ended the transfer; [`IoError::BufferLength`] when the buffer does
/// not match the operation.
pub fn transfer(
    device: &Device,
    info: &OpInfo,
    buffer: Option<&mut Buffer>,
) -> Result<usize, IoError> {
    if info.kind == OpKind::Flush {
        return retry_eintr(|| {
            // SAFETY: plain system call on an open descriptor.
            unsafe { libc::fdatasync(device.file().as_raw_fd()) as isize }
        })
        .map(|_| 0);
    }
    let buffer = match buffer {
        Some(buffer) if buffer.len_bytes() == info.len_bytes => buffer,
        other => {
            let buffer_bytes = other.map_or(0, |buffer| buffer.len_bytes());
            let len_bytes = info.len_bytes;
            return Err(IoError::BufferLength {
                buffer_bytes,
                len_bytes,
            });
        }
    };
    let base = buffer.as_mut_ptr();
    let mut done_bytes = 0;
    while done_bytes < info.len_bytes {
        let remaining_bytes = info.len_bytes - done_bytes;
        let offset = (info.offset_bytes + done_bytes as u64) as libc::off_t;
        // SAFETY: `base + done_bytes .. base + len_bytes` lies inside the buffer, which this call
        // borrows mutably for its whole duration, so nothing else reads or writes it meanwhile.
        let cursor = unsafe { base.add(done_bytes) };
        let fd = device.file().as_raw_fd();
        let moved = retry_eintr(|| match info.kind {
            // SAFETY: `cursor` is valid for `remaining_bytes` writable bytes (see above).
            OpKind::Read => unsafe { libc::pread(fd, cursor.cast(), remaining_bytes, offset) },
            // SAFETY: `cursor` is valid for `remaining_bytes` readable bytes (see above).
            _ => unsafe { libc::pwrite(fd, cursor.cast(), remaining_bytes, offset) },
        })?;
        if moved == 0 {
            return Err(IoError::ShortTransfer {
                done_bytes,
                len_bytes: info.len_bytes,
            });
        }
        done_bytes += moved;
    }
    Ok(done_bytes)
}

fn retry_eintr(mut call: impl FnMut() -> isize) -> Result<usize, IoError> {
    let mut retries = 0;
    loop {
        let rc = call();
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let errno = Errno::last();
        if errno != Errno::EINTR || retries == EINTR_RETRIES_MAX {
            return Err(IoError::Os(errno));
        }
        retries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_and_writes_whole_buffers() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&(0..=255u8).cycle().take(8192).collect::<Vec<u8>>())
            .unwrap();
        let device = Device::options().write(true).open(file.path()).unwrap();

        let mut buffer = Buffer::new_aligned(100, 512).unwrap();
        let info = OpInfo {
            kind: OpKind::Read,
            tag: 0,
            offset_bytes: 300,
            len_bytes: 100,
            placement_id: None,
        };
        assert_eq!(transfer(&device, &info, Some(&mut buffer)), Ok(100));
        assert_eq!(buffer.as_slice()[0], (300 % 256) as u8);

        buffer.as_mut_slice().fill(9);
        let write = OpInfo {
            kind: OpKind::Write,
            ..info
        };
        assert_eq!(transfer(&device, &write, Some(&mut buffer)), Ok(100));
        let flush = OpInfo {
            kind: OpKind::Flush,
            tag: 0,
            offset_bytes: 0,
            len_bytes: 0,
            placement_id: None,
        };
        assert_eq!(transfer(&device, &flush, None), Ok(0));
        assert_eq!(std::fs::read(file.path()).unwrap()[300..400], [9; 100]);
    }

    #[test]
    fn read_across_end_of_file_is_a_short_transfer() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(1000).unwrap();
        let device = Device::open(file.path()).unwrap();
        let mut buffer = Buffer::new_aligned(512, 512).unwrap();
        let info = OpInfo {
            kind: OpKind::Read,
            tag: 0,
            offset_bytes: 700,
            len_bytes: 512,
            placement_id: None,
        };
        assert_eq!(
            transfer(&device, &info, Some(&mut buffer)),
            Err(IoError::ShortTransfer {
                done_bytes: 300,
                len_bytes: 512
            })
        );
    }
}
