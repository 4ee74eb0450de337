//! Fault injection: wraps any engine and, following a seeded plan, turns chosen operations
//! into errors, short transfers, transient failures or stalls past a deadline.
//!
//! Decisions depend only on the plan's seed and the operation's kind and offset, never on
//! submission order, so every engine under the same plan sees the same faults.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::completion::Completion;
use crate::engine::{Capabilities, Engine, Wait};
use crate::error::{Errno, IoError};
use crate::op::{Op, OpInfo, OpKind};
use crate::ready::{Alarm, Readiness, ReadinessSet};
use crate::tag_map::TagMap;

/// What happens to an operation the plan picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Completes with this error without reaching the device.
    Fail(IoError),
    /// Reaches the device, then reports a short transfer of at most `done_bytes`.
    Short {
        /// How many bytes the transfer claims to have moved.
        done_bytes: usize,
    },
    /// Fails with `errno` on the first `attempts` submissions of the same operation (same
    /// kind and offset), then reaches the device: a retry policy must absorb it.
    Transient {
        /// The transient error (`EINTR`, `EAGAIN`, `EBUSY`).
        errno: Errno,
        /// How many submissions fail before one goes through.
        attempts: u32,
    },
    /// Never reaches the device; completes as [`IoError::TimedOut`] when the plan's stall
    /// timeout has passed, like an operation the device never answered.
    Stall,
    /// As [`Fault::Stall`], but the completion comes without its buffer, which the engine
    /// keeps for `held` more (what the kernel does with the buffer of a read stuck in the
    /// device) and then returns to its pool, announcing it on the readiness fd.
    StallHolding {
        /// How long the buffer stays with the engine after the timeout.
        held: Duration,
    },
}

/// Which operations a rule picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    /// Operations that start at this offset.
    Offset(u64),
    /// Operations whose transfer covers this byte.
    Covering(u64),
    /// A pseudo-random share of operations, in parts per million, drawn from the seed.
    Share {
        /// Parts per million picked.
        per_million: u32,
    },
    /// Every operation.
    All,
}

/// A seeded list of rules; the first rule that picks an operation decides its fault.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    seed: u64,
    rules: Vec<(FaultTarget, Option<OpKind>, Fault)>,
    stall_timeout: Duration,
}

impl FaultPlan {
    /// An empty plan (no faults) with `seed` for [`FaultTarget::Share`] rules.
    pub fn new(seed: u64) -> Self {
        FaultPlan {
            seed,
            rules: Vec::new(),
            stall_timeout: Duration::from_millis(50),
        }
    }

    /// Adds a rule for operations of any kind.
    pub fn with(mut self, target: FaultTarget, fault: Fault) -> Self {
        self.rules.push((target, None, fault));
        self
    }

    /// Adds a rule for operations of one kind.
    pub fn with_kind(mut self, target: FaultTarget, kind: OpKind, fault: Fault) -> Self {
        self.rules.push((target, Some(kind), fault));
        self
    }

    /// How long a [`Fault::Stall`] lasts before it completes as timed out (default 50 ms).
    pub fn stall_timeout(mut self, stall_timeout: Duration) -> Self {
        self.stall_timeout = stall_timeout;
        self
    }

    /// The fault for `info`, if any rule picks it.
    pub fn fault_for(&self, info: &OpInfo) -> Option<&Fault> {
        self.rules
            .iter()
            .enumerate()
            .find(|(rule_index, (target, kind, _))| {
                kind.is_none_or(|kind| kind == info.kind) && self.picks(*rule_index, target, info)
            })
            .map(|(_, (_, _, fault))| fault)
    }

    fn picks(&self, rule_index: usize, target: &FaultTarget, info: &OpInfo) -> bool {
        match *target {
            FaultTarget::Offset(offset_bytes) => info.offset_bytes == offset_bytes,
            FaultTarget::Covering(byte) => info.offset_bytes <= byte && byte < info.end_bytes(),
            FaultTarget::Share { per_million } => {
                let draw = mix(self.seed
                    ^ mix(rule_index as u64)
                    ^ mix(info.offset_bytes ^ kind_salt(info.kind)));
                draw % 1_000_000 < u64::from(per_million)
            }
            FaultTarget::All => true,
        }
    }
}

fn kind_salt(kind: OpKind) -> u64 {
    match kind {
        OpKind::Read => 0x5245_4144,
        OpKind::Write => 0x5752_4954,
        OpKind::Flush => 0x464c_5553,
    }
}

/// splitmix64's finaliser: a well-spread hash of one word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Counts of what a [`FaultyEngine`] injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Operations failed with an error.
    pub failed: u64,
    /// Operations cut short.
    pub shortened: u64,
    /// Submissions failed with a transient error.
    pub transient: u64,
    /// Operations stalled until their timeout.
    pub stalled: u64,
    /// Buffers of stalled operations held past their timeout and since given back.
    pub held_returned: u64,
}

/// A stalled operation: its timed-out completion, due at `deadline`, and for
/// [`Fault::StallHolding`] the operation itself, whose buffer the engine keeps for `held`
/// after the deadline.
struct Stalled {
    deadline: Instant,
    timed_out: Completion,
    holding: Option<(Duration, Op)>,
}

/// An engine that injects the faults of a [`FaultPlan`] into another.
///
/// Its readiness fd is readable when the inner engine's is, an injected failure waits, a
/// stalled operation's timeout has passed or a held buffer is due back; a stalled operation
/// surfaces, and a held buffer goes back to its pool, at the first reap after its instant.
pub struct FaultyEngine<E> {
    inner: E,
    plan: FaultPlan,
    shortened: TagMap<Option<usize>>,
    injected: VecDeque<Completion>,
    stalled: Vec<Stalled>,
    /// Buffers of timed-out operations, each with the instant it goes back to its pool.
    holding: Vec<(Instant, Op)>,
    submissions: HashMap<(OpKind, u64), u32>,
    counts: FaultCounts,
    own_readiness: Readiness,
    alarm: Alarm,
    readiness: ReadinessSet,
}

impl<E: Engine> FaultyEngine<E> {
    /// Wraps `inner` with `plan`.
    ///
    /// # Errors
    /// The error of creating the readiness eventfd or epoll set.
    pub fn new(inner: E, plan: FaultPlan) -> io::Result<Self> {
        let own_readiness = Readiness::new()?;
        let alarm = Alarm::new()?;
        let readiness = ReadinessSet::new()?;
        readiness.add(own_readiness.as_fd())?;
        readiness.add(alarm.as_fd())?;
        readiness.add(inner.readiness())?;
        Ok(FaultyEngine {
            inner,
            plan,
            shortened: TagMap::new(),
            injected: VecDeque::new(),
            stalled: Vec::new(),
            holding: Vec::new(),
            submissions: HashMap::new(),
            counts: FaultCounts::default(),
            own_readiness,
            alarm,
            readiness,
        })
    }

    /// What has been injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }

    /// Decides one op's fate: an injected completion now, a stall, or the inner engine.
    fn route(&mut self, op: Op, passed_on: &mut Vec<Op>) {
        let info = op.info();
        let submission = self
            .submissions
            .entry((info.kind, info.offset_bytes))
            .or_default();
        *submission += 1;
        let submission = *submission;
        match self.plan.fault_for(&info).cloned() {
            Some(Fault::Fail(error)) => {
                self.counts.failed += 1;
                self.injected.push_back(op.complete(Err(error)));
            }
            Some(Fault::Transient { errno, attempts }) if submission <= attempts => {
                self.counts.transient += 1;
                self.injected
                    .push_back(op.complete(Err(IoError::Os(errno))));
            }
            Some(Fault::Stall) => {
                self.counts.stalled += 1;
                let timeout = self.plan.stall_timeout;
                self.stalled.push(Stalled {
                    deadline: Instant::now() + timeout,
                    timed_out: op.complete(Err(IoError::TimedOut { timeout })),
                    holding: None,
                });
            }
            Some(Fault::StallHolding { held }) => {
                self.counts.stalled += 1;
                let timeout = self.plan.stall_timeout;
                self.stalled.push(Stalled {
                    deadline: Instant::now() + timeout,
                    timed_out: Completion::new(info, Err(IoError::TimedOut { timeout }), None),
                    holding: Some((held, op)),
                });
            }
            Some(Fault::Short { done_bytes }) => {
                passed_on.push(self.shortened.wrap(op, Some(done_bytes)));
            }
            _ => passed_on.push(self.shortened.wrap(op, None)),
        }
    }

    /// Moves expired stalls and injected failures to `completions`, gives back the held
    /// buffers that are due, and sets the alarm for the next instant something falls due.
    fn release_local(&mut self, completions: &mut Vec<Completion>) {
        let now = Instant::now();
        let mut index = 0;
        while index < self.stalled.len() {
            if self.stalled[index].deadline > now {
                index += 1;
                continue;
            }
            let stalled = self.stalled.swap_remove(index);
            if let Some((held, op)) = stalled.holding {
                self.holding.push((stalled.deadline + held, op));
            }
            completions.push(stalled.timed_out);
        }
        let held_before = self.holding.len();
        // Dropping the operation returns its buffer to its pool.
        self.holding.retain(|(due, _)| *due > now);
        self.counts.held_returned += (held_before - self.holding.len()) as u64;
        completions.extend(self.injected.drain(..));
        self.own_readiness.clear();
        self.set_alarm();
    }

    /// Arms the alarm for the next stall timeout or held buffer's return.
    fn set_alarm(&self) {
        let next_hold = self.holding.iter().map(|(due, _)| *due).min();
        let next = match (self.next_stall_deadline(), next_hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.alarm.set(next);
    }

    /// Reaps the inner engine and applies short-transfer faults to what it returns.
    fn reap_inner(&mut self, completions: &mut Vec<Completion>, wait: Wait) {
        let start = completions.len();
        self.inner.reap(completions, wait);
        for slot in &mut completions[start..] {
            let placeholder = Completion::new(slot.info(), Err(IoError::Canceled), None);
            let (completion, short) = self.shortened.unwrap(std::mem::replace(slot, placeholder));
            *slot = match (short, completion.result()) {
                (Some(cap), Ok(done_bytes)) => {
                    self.counts.shortened += 1;
                    let len_bytes = completion.info().len_bytes;
                    let done_bytes = (*done_bytes).min(cap);
                    completion.with_result(Err(IoError::ShortTransfer {
                        done_bytes,
                        len_bytes,
                    }))
                }
                _ => completion,
            };
        }
    }

    fn next_stall_deadline(&self) -> Option<Instant> {
        self.stalled.iter().map(|stalled| stalled.deadline).min()
    }
}

impl<E: Engine> Engine for FaultyEngine<E> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn submit(&mut self, ops: &mut Vec<Op>) {
        let mut passed_on = Vec::with_capacity(ops.len());
        for op in ops.drain(..) {
            self.route(op, &mut passed_on);
        }
        if !self.injected.is_empty() {
            self.own_readiness.signal();
        }
        self.set_alarm();
        self.inner.submit(&mut passed_on);
    }

    fn reap(&mut self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        let start = completions.len();
        loop {
            self.release_local(completions);
            self.reap_inner(completions, Wait::Nothing);
            let now = Instant::now();
            let wait_deadline = match wait {
                Wait::Nothing => now,
                Wait::Until(deadline) => deadline,
            };
            if completions.len() > start || now >= wait_deadline || self.pending_count() == 0 {
                return completions.len() - start;
            }
            let until = self
                .next_stall_deadline()
                .map_or(wait_deadline, |d| d.min(wait_deadline));
            if self.inner.pending_count() > 0 {
                self.reap_inner(completions, Wait::Until(until));
            } else {
                // Only simulated stalls remain: their timeout is the event being simulated.
                std::thread::sleep(until.saturating_duration_since(now));
            }
        }
    }

    fn pending_count(&self) -> usize {
        self.inner.pending_count() + self.injected.len() + self.stalled.len()
    }

    fn readiness(&self) -> BorrowedFd<'_> {
        self.readiness.as_fd()
    }

    fn held_buffer_count(&self) -> usize {
        self.inner.held_buffer_count() + self.holding.len()
    }

    /// The inner engine's timeout, or the plan's stall timeout if that is longer (or the
    /// inner engine has none and the plan stalls operations).
    fn op_timeout(&self) -> Option<Duration> {
        let stalls = self
            .plan
            .rules
            .iter()
            .any(|(_, _, fault)| matches!(fault, Fault::Stall | Fault::StallHolding { .. }));
        let own = stalls.then_some(self.plan.stall_timeout);
        match (self.inner.op_timeout(), own) {
            (Some(inner), Some(own)) => Some(inner.max(own)),
            (inner, own) => inner.or(own),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_info(offset_bytes: u64) -> OpInfo {
        OpInfo {
            kind: OpKind::Read,
            tag: 0,
            offset_bytes,
            len_bytes: 4096,
            placement_id: None,
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let plan = FaultPlan::new(1)
            .with(
                FaultTarget::Offset(4096),
                Fault::Fail(IoError::Os(Errno::EIO)),
            )
            .with(FaultTarget::All, Fault::Stall);
        assert_eq!(
            plan.fault_for(&read_info(4096)),
            Some(&Fault::Fail(IoError::Os(Errno::EIO)))
        );
        assert_eq!(plan.fault_for(&read_info(0)), Some(&Fault::Stall));
    }

    #[test]
    fn kind_filter_and_covering_target() {
        let plan =
            FaultPlan::new(1).with_kind(FaultTarget::Covering(5000), OpKind::Write, Fault::Stall);
        assert_eq!(plan.fault_for(&read_info(4096)), None);
        let write = OpInfo {
            kind: OpKind::Write,
            ..read_info(4096)
        };
        assert_eq!(plan.fault_for(&write), Some(&Fault::Stall));
        let write_after = OpInfo {
            kind: OpKind::Write,
            ..read_info(8192)
        };
        assert_eq!(plan.fault_for(&write_after), None);
    }

    #[test]
    fn share_is_seeded_and_near_its_rate() {
        let plan = FaultPlan::new(42).with(
            FaultTarget::Share {
                per_million: 100_000,
            },
            Fault::Stall,
        );
        let picked = (0..100_000u64)
            .filter(|i| plan.fault_for(&read_info(i * 4096)).is_some())
            .count();
        assert!(
            (9_000..11_000).contains(&picked),
            "picked {picked} of 100000 at 10%"
        );
        let again = FaultPlan::new(42).with(
            FaultTarget::Share {
                per_million: 100_000,
            },
            Fault::Stall,
        );
        let other_seed = FaultPlan::new(43).with(
            FaultTarget::Share {
                per_million: 100_000,
            },
            Fault::Stall,
        );
        let picks = |plan: &FaultPlan| {
            (0..1000u64)
                .map(|i| plan.fault_for(&read_info(i)).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(&plan), picks(&again));
        assert_ne!(picks(&plan), picks(&other_seed));
    }
}
