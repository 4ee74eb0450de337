//! Waits bounded by timeout SQEs, for kernels without `IORING_FEAT_EXT_ARG` (before 5.11),
//! whose `io_uring_enter` cannot carry a timeout of its own.
//!
//! A wait that must end by a moment pushes an `IORING_OP_TIMEOUT` SQE (5.4, a pure timer:
//! no completion count) for that moment, unless a timer already armed fires no later, and
//! waits for one CQE: the timer's CQE, if nothing else, ends the wait on time. The timer's
//! `timespec` stays allocated, at a stable address, until its CQE arrives: under SQPOLL the
//! kernel may read it after the enter that submitted it has returned. At most [`TIMERS_MAX`]
//! timers are armed at once (the CQ has room for their CQEs); if all are armed and fire later
//! than needed, the wait ends at the earliest of them instead.
#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use io_uring::{opcode, types};

use crate::codec::Codec;
use crate::ring::Ring;

/// The most timeout SQEs armed at once.
pub(crate) const TIMERS_MAX: usize = 4;

/// User data of the first timer's SQE; timer `i` has `TIMER_USER_DATA_FIRST - i`. Never a
/// slot's user data: slot keys stay below the window, far under these low 32 bits.
const TIMER_USER_DATA_FIRST: u64 = u64::MAX - 1;

/// The armed timeout SQEs.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Each timer's moment and the `timespec` its SQE points at, while its CQE is owed.
    armed: [Option<Timer>; TIMERS_MAX],
}

/// One armed timeout SQE.
#[derive(Debug)]
struct Timer {
    /// When it fires.
    at: Instant,
    /// What its SQE points at.
    timespec: Box<types::Timespec>,
    /// A cancel for it has been pushed.
    canceled: bool,
}

impl Timers {
    /// Timers whose CQE is owed.
    pub(crate) fn armed_count(&self) -> usize {
        self.armed.iter().filter(|timer| timer.is_some()).count()
    }

    /// The user data of every armed timer not canceled yet, which counts as canceled from
    /// now on (the caller pushes the cancels).
    pub(crate) fn take_uncanceled(&mut self) -> Vec<u64> {
        let mut targets = Vec::new();
        for (index, timer) in self.armed.iter_mut().enumerate() {
            if let Some(timer) = timer.as_mut().filter(|timer| !timer.canceled) {
                timer.canceled = true;
                targets.push(timer_user_data(index));
            }
        }
        targets
    }

    /// Accounts for a CQE: `true` if it was a timer's (which is then free again).
    pub(crate) fn on_cqe(&mut self, user_data: u64) -> bool {
        let Some(index) = timer_index(user_data) else {
            return false;
        };
        assert!(
            self.armed[index].take().is_some(),
            "CQE for timer {index}, which is not armed"
        );
        true
    }

    /// Forgets every armed timer without freeing its `timespec`: the ring is abandoned and
    /// the kernel may still read them.
    pub(crate) fn leak_all(&mut self) {
        for timer in &mut self.armed {
            std::mem::forget(timer.take());
        }
    }

    /// Whether an armed timer fires by `until`.
    fn fires_by(&self, until: Instant) -> bool {
        self.armed.iter().flatten().any(|timer| timer.at <= until)
    }
}

/// The user data of timer `index`'s SQE.
fn timer_user_data(index: usize) -> u64 {
    TIMER_USER_DATA_FIRST - index as u64
}

/// The timer a CQE's user data names, if it names one.
fn timer_index(user_data: u64) -> Option<usize> {
    let index = TIMER_USER_DATA_FIRST.checked_sub(user_data)?;
    (index < TIMERS_MAX as u64).then_some(index as usize)
}

impl<C: Codec> Ring<C> {
    /// Makes sure a timer fires within `timeout` from now, arming one if none does and one is
    /// free. Returns after pushing its SQE; the caller's enter submits it.
    pub(crate) fn arm_timer(&mut self, timeout: Duration) {
        let until = Instant::now() + timeout;
        if self.timers.fires_by(until) {
            return;
        }
        let Some(index) = self.timers.armed.iter().position(Option::is_none) else {
            return;
        };
        if self.ring.submission().is_full() {
            self.submit_pushed();
        }
        let timer = Timer {
            at: until,
            timespec: Box::new(types::Timespec::from(timeout)),
            canceled: false,
        };
        let sqe = C::Sqe::from(
            opcode::Timeout::new(&*timer.timespec as *const types::Timespec)
                .build()
                .user_data(timer_user_data(index)),
        );
        let mut sq = self.ring.submission();
        // SAFETY: the SQE points at the timer's `timespec`, a heap allocation that moves with
        // the timer into `self.timers` and stays there until the timer's CQE is reaped
        // (`Timers::on_cqe`) or is leaked with the ring (`Timers::leak_all`), so it is valid
        // whenever the kernel reads it.
        let pushed = unsafe { sq.push(&sqe) };
        if pushed.is_ok() {
            self.timers.armed[index] = Some(timer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_user_data_round_trips_and_names_no_slot_or_cancel() {
        for index in 0..TIMERS_MAX {
            assert_eq!(timer_index(timer_user_data(index)), Some(index));
            assert_ne!(timer_user_data(index), crate::slot::CANCEL_USER_DATA);
        }
        assert_eq!(timer_index(crate::slot::CANCEL_USER_DATA), None);
        assert_eq!(timer_index(crate::slot::user_data(5, 7)), None);
        assert_eq!(timer_index(TIMER_USER_DATA_FIRST - TIMERS_MAX as u64), None);
    }

    #[test]
    fn an_armed_timer_counts_until_its_cqe() {
        let mut timers = Timers::default();
        let at = Instant::now();
        timers.armed[2] = Some(Timer {
            at,
            timespec: Box::new(types::Timespec::new()),
            canceled: false,
        });
        assert_eq!(timers.armed_count(), 1);
        assert!(timers.fires_by(at) && !timers.fires_by(at - Duration::from_millis(1)));
        assert_eq!(timers.take_uncanceled(), vec![timer_user_data(2)]);
        assert_eq!(timers.take_uncanceled(), Vec::<u64>::new(), "canceled once");
        assert!(timers.on_cqe(timer_user_data(2)));
        assert!(!timers.on_cqe(crate::slot::user_data(0, 0)));
        assert_eq!(timers.armed_count(), 0);
    }
}
