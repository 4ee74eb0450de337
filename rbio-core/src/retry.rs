//! A retry policy above any engine: transient errors (`EINTR`, `EAGAIN`, `EBUSY`) are
//! resubmitted up to a bound instead of reaching the caller.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::completion::Completion;
use crate::engine::{Capabilities, Engine, Wait};
use crate::op::Op;
use crate::tag_map::TagMap;

/// Default bound on resubmissions of one operation.
pub const RETRIES_MAX_DEFAULT: u32 = 16;

/// Wraps an engine and resubmits operations that failed with a transient error.
///
/// After `retries_max` resubmissions the transient error is reported like any other.
#[derive(Debug)]
pub struct Retrying<E> {
    inner: E,
    retries_max: u32,
    attempts: TagMap<u32>,
    resubmit: Vec<Op>,
    retried_count: u64,
}

impl<E: Engine> Retrying<E> {
    /// Wraps `inner`, resubmitting each operation at most `retries_max` times.
    pub fn new(inner: E, retries_max: u32) -> Self {
        Retrying {
            inner,
            retries_max,
            attempts: TagMap::new(),
            resubmit: Vec::new(),
            retried_count: 0,
        }
    }

    /// How many resubmissions this wrapper has made.
    pub fn retried_count(&self) -> u64 {
        self.retried_count
    }

    /// The wrapped engine.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// Sorts new inner completions into delivered (appended back) and resubmitted ones.
    fn sort_out(&mut self, completions: &mut Vec<Completion>, start: usize) -> usize {
        let fresh: Vec<Completion> = completions.drain(start..).collect();
        for completion in fresh {
            let (completion, attempts) = self.attempts.unwrap(completion);
            let transient = matches!(completion.result(), Err(error) if error.is_transient());
            if !(transient && attempts < self.retries_max && completion.can_resubmit()) {
                completions.push(completion);
                continue;
            }
            let op = completion
                .into_op()
                .expect("can_resubmit promised the buffer is back");
            self.resubmit.push(self.attempts.wrap(op, attempts + 1));
            self.retried_count += 1;
        }
        if !self.resubmit.is_empty() {
            self.inner.submit(&mut self.resubmit);
        }
        completions.len() - start
    }
}

impl<E: Engine> Engine for Retrying<E> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn submit(&mut self, ops: &mut Vec<Op>) {
        let mut wrapped: Vec<Op> = ops.drain(..).map(|op| self.attempts.wrap(op, 0)).collect();
        self.inner.submit(&mut wrapped);
    }

    fn reap(&mut self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        // Loop only while everything the inner engine returned was resubmitted: an inner reap
        // that returns nothing has already waited as long as `wait` allows.
        loop {
            let start = completions.len();
            let reaped = self.inner.reap(completions, wait);
            let delivered = self.sort_out(completions, start);
            let expired = match wait {
                Wait::Nothing => true,
                Wait::Until(deadline) => Instant::now() >= deadline,
            };
            if delivered > 0 || reaped == 0 || expired || self.inner.pending_count() == 0 {
                return delivered;
            }
        }
    }

    fn pending_count(&self) -> usize {
        self.attempts.len()
    }

    fn readiness(&self) -> BorrowedFd<'_> {
        self.inner.readiness()
    }

    fn held_buffer_count(&self) -> usize {
        self.inner.held_buffer_count()
    }

    /// The inner engine's timeout once per submission: the first and each resubmission.
    fn op_timeout(&self) -> Option<Duration> {
        let submissions = self.retries_max.saturating_add(1);
        self.inner
            .op_timeout()
            .map(|timeout| timeout.saturating_mul(submissions))
    }
}
