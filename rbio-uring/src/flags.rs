//! Ring set-up flags, the order they are tried in, and the report of what the kernel accepted.

use std::fmt;

use rbio_core::Errno;

use crate::features::{RingFeatures, SetupWarning};

/// A set of `IORING_SETUP_*` flags, with the kernel's bit values.
///
/// Only the flags rbio chooses between are named; any other bits are kept and printed in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RingFlags(pub u32);

impl RingFlags {
    /// No flags: the plain ring every kernel with io_uring accepts.
    pub const NONE: RingFlags = RingFlags(0);
    /// `IORING_SETUP_IOPOLL`: completions are polled for, not interrupt-driven.
    pub const IOPOLL: RingFlags = RingFlags(1 << 0);
    /// `IORING_SETUP_SQPOLL`: a kernel thread polls the submission queue.
    pub const SQPOLL: RingFlags = RingFlags(1 << 1);
    /// `IORING_SETUP_SUBMIT_ALL`: one bad SQE does not stop the rest of a batch.
    pub const SUBMIT_ALL: RingFlags = RingFlags(1 << 7);
    /// `IORING_SETUP_COOP_TASKRUN`: no interrupt to run completion work; it runs at the next
    /// system call.
    pub const COOP_TASKRUN: RingFlags = RingFlags(1 << 8);
    /// `IORING_SETUP_TASKRUN_FLAG`: the kernel flags the SQ ring when completion work waits.
    pub const TASKRUN_FLAG: RingFlags = RingFlags(1 << 9);
    /// `IORING_SETUP_SINGLE_ISSUER`: one thread submits and reaps.
    pub const SINGLE_ISSUER: RingFlags = RingFlags(1 << 12);
    /// `IORING_SETUP_DEFER_TASKRUN`: completion work runs only when the issuer waits.
    pub const DEFER_TASKRUN: RingFlags = RingFlags(1 << 13);

    const NAMES: [(RingFlags, &'static str); 8] = [
        (RingFlags::IOPOLL, "iopoll"),
        (RingFlags::SQPOLL, "sqpoll"),
        (RingFlags::SUBMIT_ALL, "submit_all"),
        (RingFlags::COOP_TASKRUN, "coop_taskrun"),
        (RingFlags::TASKRUN_FLAG, "taskrun_flag"),
        (RingFlags::SINGLE_ISSUER, "single_issuer"),
        (RingFlags::DEFER_TASKRUN, "defer_taskrun"),
        (RingFlags::NONE, ""),
    ];

    /// The fast sets tried first, in order, before the plain ring: single issuer with
    /// deferred task run, then cooperative task run. Both carry `TASKRUN_FLAG`, which the
    /// engine reads to know when completion work waits for it to enter the kernel.
    pub const LADDER: [RingFlags; 3] = [
        RingFlags(
            RingFlags::SINGLE_ISSUER.0 | RingFlags::DEFER_TASKRUN.0 | RingFlags::TASKRUN_FLAG.0,
        ),
        RingFlags(RingFlags::COOP_TASKRUN.0 | RingFlags::TASKRUN_FLAG.0),
        RingFlags::NONE,
    ];

    /// Whether every flag of `other` is set here.
    pub fn contains(self, other: RingFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets together.
    pub fn union(self, other: RingFlags) -> RingFlags {
        RingFlags(self.0 | other.0)
    }

    /// Whether the ring is bound to one thread: only the thread that enabled it may submit,
    /// reap or register (single issuer without a submission thread).
    pub fn is_thread_bound(self) -> bool {
        self.contains(RingFlags::SINGLE_ISSUER) && !self.contains(RingFlags::SQPOLL)
    }

    /// Whether `io_uring_enter` polls for completions itself (IOPOLL without SQPOLL, the
    /// kernel's `syscall_iopoll`). Such an enter ignores the wait timeout: it polls the device
    /// until enough CQEs arrive, a signal, or the scheduler wants the CPU back
    /// (`io_iopoll_check`), which with a stuck command on an idle CPU may be long after any
    /// deadline. With SQPOLL the kernel thread polls and the enter waits with its timeout.
    pub(crate) fn polls_in_enter(self) -> bool {
        self.contains(RingFlags::IOPOLL) && !self.contains(RingFlags::SQPOLL)
    }

    /// Task-run modes need `TASKRUN_FLAG` for the engine to see waiting completion work.
    pub(crate) fn normalized(self) -> RingFlags {
        if self.contains(RingFlags::COOP_TASKRUN) || self.contains(RingFlags::DEFER_TASKRUN) {
            self.union(RingFlags::TASKRUN_FLAG)
        } else {
            self
        }
    }
}

impl fmt::Display for RingFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "plain");
        }
        let mut rest = self.0;
        let mut first = true;
        for (flag, name) in RingFlags::NAMES.iter().filter(|(flag, _)| flag.0 != 0) {
            if self.contains(*flag) {
                write!(f, "{}{name}", if first { "" } else { "|" })?;
                rest &= !flag.0;
                first = false;
            }
        }
        if rest != 0 {
            write!(f, "{}{rest:#x}", if first { "" } else { "|" })?;
        }
        Ok(())
    }
}

impl fmt::Debug for RingFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingFlags({self})")
    }
}

/// One `io_uring_setup` call: the flags tried and, if the kernel refused them, its errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupAttempt {
    /// Every flag passed to `io_uring_setup`, including SQPOLL, IOPOLL and SUBMIT_ALL.
    pub flags: RingFlags,
    /// `None` if the ring was created, else why not.
    pub refused: Option<Errno>,
}

impl fmt::Display for SetupAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.refused {
            None => write!(f, "{}: accepted", self.flags),
            Some(errno) => write!(f, "{}: refused, {errno}", self.flags),
        }
    }
}

/// How the ring was set up: every flag set tried, the one running, sizes and registrations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupReport {
    /// Each `io_uring_setup` call in order; the last one was accepted.
    pub attempts: Vec<SetupAttempt>,
    /// The flags the ring runs with.
    pub flags: RingFlags,
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries (at least twice the window: one CQE per op, one per cancel).
    pub cq_entries: u32,
    /// How many iovecs of the buffer pool's arena are registered (0: no fixed buffers).
    pub fixed_buffer_count: usize,
    /// Whether the device file is registered (SQEs name it as `Fixed(0)`).
    pub fixed_file: bool,
    /// The io_uring features the engine runs with.
    pub features: RingFeatures,
    /// What the engine does without though it was asked for, and why.
    pub warnings: Vec<SetupWarning>,
}

impl SetupReport {
    /// The attempts the kernel refused, with why.
    pub fn refusals(&self) -> impl Iterator<Item = &SetupAttempt> {
        self.attempts
            .iter()
            .filter(|attempt| attempt.refused.is_some())
    }
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "io_uring {} (sq {}, cq {}, {} fixed buffers, fixed file {})",
            self.flags,
            self.sq_entries,
            self.cq_entries,
            self.fixed_buffer_count,
            if self.fixed_file { "yes" } else { "no" }
        )?;
        for refusal in self.refusals() {
            write!(f, "; {refusal}")?;
        }
        for warning in &self.warnings {
            write!(f, "; {warning}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_each_flag_and_keeps_unknown_bits() {
        assert_eq!(
            RingFlags::LADDER[0].to_string(),
            "taskrun_flag|single_issuer|defer_taskrun"
        );
        assert_eq!(RingFlags::NONE.to_string(), "plain");
        assert_eq!(
            RingFlags(RingFlags::SQPOLL.0 | 1 << 20).to_string(),
            "sqpoll|0x100000"
        );
    }

    #[test]
    fn task_run_modes_get_the_taskrun_flag() {
        let coop = RingFlags::COOP_TASKRUN.normalized();
        assert!(coop.contains(RingFlags::TASKRUN_FLAG));
        assert_eq!(RingFlags::NONE.normalized(), RingFlags::NONE);
    }

    #[test]
    fn only_single_issuer_without_sqpoll_binds_a_thread() {
        assert!(RingFlags::LADDER[0].is_thread_bound());
        assert!(!RingFlags::LADDER[1].is_thread_bound());
        assert!(!RingFlags::SINGLE_ISSUER
            .union(RingFlags::SQPOLL)
            .is_thread_bound());
    }

    /// Review finding (LOW, IOPOLL rings): the kernel ignores the `io_uring_enter` wait
    /// timeout when the enter itself polls, so such a ring must never wait in the kernel.
    #[test]
    fn only_iopoll_without_sqpoll_polls_in_enter() {
        assert!(RingFlags::IOPOLL.polls_in_enter());
        assert!(RingFlags::IOPOLL
            .union(RingFlags::LADDER[0])
            .polls_in_enter());
        assert!(!RingFlags::IOPOLL.union(RingFlags::SQPOLL).polls_in_enter());
        assert!(!RingFlags::LADDER[0].polls_in_enter());
    }
}
