//! A buffer whose memory holds the kernel up: a `pread` into it blocks inside the kernel until
//! the test releases it. This is how the tests get a worker truly stuck in a system call, as a
//! device that does not answer leaves it, without a test hook in the engine.
//!
//! How: the buffer's pages are dropped (`MADV_DONTNEED`) and registered with a userfaultfd in
//! missing-page mode. The kernel's copy into the buffer then faults, and the fault waits for
//! the userfaultfd's owner, who never answers; closing the userfaultfd wakes the fault, which
//! is then served as an ordinary zero-fill and the `pread` completes. Faults raised by the
//! kernel itself need CAP_SYS_PTRACE (root) or `vm.unprivileged_userfaultfd = 1`.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use rbio_core::Buffer;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

const UFFD_API: u64 = 0xaa;
/// `_IOWR(0xaa, 0x3f, struct uffdio_api)`.
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `_IOWR(0xaa, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const _: () = assert!(std::mem::size_of::<UffdioApi>() == 0x18);
const _: () = assert!(std::mem::size_of::<UffdioRegister>() == 0x20);

/// A registered buffer: the kernel blocks on its memory until [`Stall::release`] or drop.
///
/// Release it before the buffer's pool is freed: the allocator may write into freed memory.
pub struct Stall {
    uffd: Option<OwnedFd>,
}

impl Stall {
    /// Makes every kernel write into `buffer` block. `buffer` must be page-aligned and a
    /// whole number of pages long, as pool buffers of 4096 bytes are, and untouched by the
    /// test from now on (the test thread would block too).
    ///
    /// # Panics
    /// If userfaultfd is unavailable or refused, saying what the test needs.
    pub fn arm(buffer: &Buffer) -> Stall {
        let start = buffer.as_slice().as_ptr() as usize;
        let len = buffer.capacity_bytes();
        assert!(
            start % 4096 == 0 && len % 4096 == 0,
            "stall needs whole pages"
        );
        // SAFETY: plain system call; the result is checked.
        let raw =
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        assert!(
            raw >= 0,
            "userfaultfd: {} (these tests need root, CAP_SYS_PTRACE or \
             vm.unprivileged_userfaultfd=1 to stall a pread inside the kernel)",
            std::io::Error::last_os_error()
        );
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let uffd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: 0,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API reads and writes one `uffdio_api`, a live local of that layout.
        let rc = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api) };
        assert_eq!(rc, 0, "UFFDIO_API: {}", std::io::Error::last_os_error());
        // SAFETY: the range is the buffer's own whole pages, which this buffer alone owns;
        // dropping them only makes the next access fault in zeroes, which nothing relies on.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        assert_eq!(rc, 0, "MADV_DONTNEED: {}", std::io::Error::last_os_error());
        let mut register = UffdioRegister {
            start: start as u64,
            len: len as u64,
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER reads and writes one `uffdio_register`, a live local of
        // that layout; the range is page-aligned anonymous memory of this process.
        let rc = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_REGISTER, &mut register) };
        assert_eq!(
            rc,
            0,
            "UFFDIO_REGISTER: {}",
            std::io::Error::last_os_error()
        );
        Stall { uffd: Some(uffd) }
    }

    /// Waits until something (a worker's `pread`) is blocked on the buffer, at most `bound`.
    /// Returns whether it happened.
    pub fn wait_until_hit(&self, bound: Duration) -> bool {
        let uffd = self.uffd.as_ref().expect("stall already released");
        let mut pollfd = libc::pollfd {
            fd: uffd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout_ms = bound.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one live `pollfd` for an open descriptor; the kernel writes only `revents`.
        let ready = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
        ready == 1 && pollfd.revents & libc::POLLIN != 0
    }

    /// Lets the blocked system call finish (the buffer reads as zeroes where it faulted).
    pub fn release(&mut self) {
        self.uffd = None;
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.release();
    }
}
