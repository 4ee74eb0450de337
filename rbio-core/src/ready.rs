//! Readiness handles: an eventfd an engine signals, a timer that becomes readable at a chosen
//! instant, and a set that merges several into one fd.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Instant;

/// An eventfd that an engine makes readable when `reap` has something to hand out.
///
/// Level-triggered from the caller's point of view: the engine signals it when work becomes
/// reapable and clears it when a reap finds nothing left.
#[derive(Debug)]
pub struct Readiness {
    fd: OwnedFd,
}

impl Readiness {
    /// A new, non-blocking, unsignalled eventfd.
    ///
    /// # Errors
    /// The `eventfd` system call's error (for example, out of file descriptors).
    pub fn new() -> io::Result<Readiness> {
        // SAFETY: plain system call with constant flags; the result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Readiness { fd })
    }

    /// Makes the fd readable.
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to our own eventfd. A full counter
        // (EAGAIN) already means "readable", so the result needs no handling.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the fd unreadable until the next `signal`.
    pub fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live local from our own non-blocking eventfd; EAGAIN
        // means it was already clear.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }

    /// Whether the fd is readable right now.
    pub fn is_signalled(&self) -> bool {
        poll_readable(self.fd.as_fd(), 0)
    }
}

impl AsFd for Readiness {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A timerfd on the monotonic clock: readable from the instant it is armed for until it is
/// disarmed or armed again. Engines that simulate time (the fault injector) announce on it
/// what becomes reapable at a future instant.
#[derive(Debug)]
pub struct Alarm {
    fd: OwnedFd,
}

impl Alarm {
    /// A new, non-blocking, disarmed timer.
    ///
    /// # Errors
    /// The `timerfd_create` system call's error.
    pub fn new() -> io::Result<Alarm> {
        // SAFETY: plain system call with constant flags; the result is checked below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Alarm { fd })
    }

    /// Makes the fd readable at `at` (at once if it has passed); `None` disarms it. Either
    /// way a past expiry no longer makes it readable.
    pub fn set(&self, at: Option<Instant>) {
        // An `it_value` of zero disarms; a deadline already passed becomes one nanosecond.
        let value = at.map_or(
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            |at| {
                let left = at.saturating_duration_since(Instant::now());
                libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: libc::c_long::from(left.subsec_nanos().max(1) as i32),
                }
            },
        );
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        let mut expirations: u64 = 0;
        // SAFETY: reads 8 bytes into a live local from our own non-blocking timerfd (EAGAIN:
        // nothing expired), then arms it from a live local the kernel only reads.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                8,
            );
            libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut());
        }
    }
}

impl AsFd for Alarm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One fd that is readable when any of its members is: an epoll instance.
///
/// Wrapping engines use it to offer a single readiness handle over their own and the inner
/// engine's. Members must outlive the set (the wrapper owns both).
#[derive(Debug)]
pub struct ReadinessSet {
    epoll: OwnedFd,
}

impl ReadinessSet {
    /// An empty set.
    ///
    /// # Errors
    /// The `epoll_create1` system call's error.
    pub fn new() -> io::Result<ReadinessSet> {
        // SAFETY: plain system call; the result is checked below.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(ReadinessSet { epoll })
    }

    /// Adds `member`: the set becomes readable whenever `member` is.
    ///
    /// # Errors
    /// The `epoll_ctl` system call's error.
    pub fn add(&self, member: BorrowedFd<'_>) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: member.as_raw_fd() as u64,
        };
        // SAFETY: both descriptors are open (one owned, one borrowed) and `event` is a live
        // local the kernel only reads.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                member.as_raw_fd(),
                &mut event,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsFd for ReadinessSet {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

/// Whether `fd` is readable within `timeout_ms` milliseconds (0: right now).
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live `pollfd` for an open descriptor; the kernel writes only `revents`.
    let ready = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
    ready > 0 && pollfd.revents & libc::POLLIN != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_signal_and_clear() {
        let readiness = Readiness::new().unwrap();
        assert!(!readiness.is_signalled());
        readiness.signal();
        readiness.signal();
        assert!(readiness.is_signalled());
        readiness.clear();
        assert!(!readiness.is_signalled());
    }

    #[test]
    fn alarm_is_readable_from_its_instant_until_set_again() {
        let alarm = Alarm::new().unwrap();
        assert!(!poll_readable(alarm.as_fd(), 0));
        alarm.set(Some(Instant::now()));
        assert!(
            poll_readable(alarm.as_fd(), 1000),
            "a past instant fires at once"
        );
        alarm.set(Some(Instant::now() + std::time::Duration::from_secs(3600)));
        assert!(
            !poll_readable(alarm.as_fd(), 0),
            "re-arming clears the expiry"
        );
        alarm.set(None);
        assert!(!poll_readable(alarm.as_fd(), 0));
    }

    #[test]
    fn set_is_readable_when_any_member_is() {
        let (a, b) = (Readiness::new().unwrap(), Readiness::new().unwrap());
        let set = ReadinessSet::new().unwrap();
        set.add(a.as_fd()).unwrap();
        set.add(b.as_fd()).unwrap();
        assert!(!poll_readable(set.as_fd(), 0));
        b.signal();
        assert!(poll_readable(set.as_fd(), 0));
        b.clear();
        assert!(!poll_readable(set.as_fd(), 0));
    }
}
