//! The engine-neutral ring core: one io_uring, the operations it owns ([`Slots`]), and how
//! they reach the kernel. Generic over the [`Codec`] that encodes SQEs and decodes CQEs.
//!
//! Its work is split by job: `submit.rs` fills the window, `reap.rs` processes CQEs and waits,
//! `deadline.rs` times operations out, `issuer.rs` keeps a thread-bound ring on its thread,
//! `shutdown.rs` cancels and drains on drop, `readiness.rs` keeps the eventfd accurate. None of
//! them changes a slot or an in-flight count itself: [`Slots`] (slot.rs) owns them and states
//! their invariants.

use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use io_uring::IoUring;
use rbio_core::{Capabilities, Device, IoError};

use crate::codec::Codec;
use crate::deadline::Deadlines;
use crate::error::SetupError;
use crate::features::{RingFeatures, SetupWarning};
use crate::fixed::FixedBuffers;
use crate::flags::SetupReport;
use crate::issuer::Issuer;
use crate::readiness::RingReadiness;
use crate::setup::{self, Registrations, RingPlan};
use crate::slot::Slots;
use crate::stats::UringStats;
use crate::timer::Timers;

/// How a core is configured, beyond its codec.
pub(crate) struct CoreConfig {
    pub(crate) device: Arc<Device>,
    pub(crate) window: usize,
    pub(crate) plan: RingPlan,
    pub(crate) fixed: Option<FixedBuffers>,
    pub(crate) register_file: bool,
    pub(crate) op_timeout: Option<Duration>,
}

/// One ring and the operations it owns.
///
/// **Invariant:** the kernel holds a buffer only while its slot is in the kernel (see
/// [`Slots`]); the ring is dropped before `fixed` only when the kernel owes no CQE, and is
/// leaked (with every buffer it may hold) otherwise.
pub(crate) struct Ring<C: Codec> {
    /// Dropped explicitly in `Drop` (before `fixed`), or leaked if the kernel may still hold
    /// buffers.
    pub(crate) ring: ManuallyDrop<IoUring<C::Sqe, C::Cqe>>,
    pub(crate) codec: C,
    pub(crate) device: Arc<Device>,
    pub(crate) fixed: Option<FixedBuffers>,
    pub(crate) readiness: RingReadiness,
    pub(crate) plan: RingPlan,
    pub(crate) register_file: bool,
    pub(crate) report: SetupReport,
    /// Every admitted, uncompleted operation, plus zombies, and the in-flight counts.
    pub(crate) slots: Slots,
    pub(crate) deadlines: Deadlines,
    /// Timeout SQEs bounding waits where the kernel lacks `EXT_ARG`.
    pub(crate) timers: Timers,
    /// The most SQEs one `io_uring_enter` hands to the kernel while refilling (default: all).
    pub(crate) sqes_per_enter_max: usize,
    pub(crate) issuer: Issuer,
    /// Set when the ring became unusable; every operation then fails with this error.
    pub(crate) broken: Option<IoError>,
    /// The ring must be leaked on drop: it was abandoned with work in the kernel.
    pub(crate) leak_ring: bool,
    pub(crate) stats: UringStats,
}

impl<C: Codec> Ring<C> {
    /// Creates the ring (trying the plan's flag ladder) and registers buffers and file.
    pub(crate) fn new(codec: C, config: CoreConfig) -> Result<Ring<C>, SetupError> {
        let readiness = RingReadiness::new().map_err(|source| SetupError::Readiness { source })?;
        let registrations = Registrations {
            fixed: config.fixed.as_ref(),
            file: config
                .register_file
                .then(|| config.device.file().as_raw_fd()),
            eventfd: None,
        };
        let created = setup::create::<C::Sqe, C::Cqe>(&config.plan, registrations)?;
        let mut fixed = config.fixed;
        let mut warnings = Vec::new();
        if let Some(errno) = created.buffers_refused {
            let refused = fixed.take().expect("only a registered arena is refused");
            warnings.push(SetupWarning::FixedBuffersRefused {
                arena_bytes: refused.arena_bytes(),
                errno,
            });
        }
        let features = RingFeatures::of_flags(created.flags)
            .union(
                config
                    .plan
                    .usable
                    .intersect(RingFeatures::EXT_ARG.union(RingFeatures::MIN_TIMEOUT)),
            )
            .without(RingFeatures::when(
                !config.plan.usable.contains(RingFeatures::EXT_ARG),
                RingFeatures::MIN_TIMEOUT,
            ))
            .union(RingFeatures::when(
                config.register_file,
                RingFeatures::FIXED_FILE,
            ))
            .union(RingFeatures::when(
                fixed.is_some(),
                RingFeatures::FIXED_BUFFERS,
            ))
            .union(RingFeatures::when(C::PASSTHROUGH, RingFeatures::URING_CMD));
        let report = SetupReport {
            attempts: created.attempts,
            flags: created.flags,
            sq_entries: created.ring.params().sq_entries(),
            cq_entries: created.ring.params().cq_entries(),
            fixed_buffer_count: fixed.as_ref().map_or(0, FixedBuffers::iovec_count),
            fixed_file: config.register_file,
            features,
            warnings,
        };
        let cq_entries_min = 2 * config.window + config.plan.timer_cqe_max();
        check_cq_entries(report.cq_entries, cq_entries_min)?;
        Ok(Ring {
            issuer: Issuer::for_flags(created.flags),
            ring: ManuallyDrop::new(created.ring),
            codec,
            device: config.device,
            fixed,
            readiness,
            plan: config.plan,
            register_file: config.register_file,
            slots: Slots::new(config.window),
            deadlines: Deadlines::new(config.op_timeout),
            timers: Timers::default(),
            sqes_per_enter_max: usize::MAX,
            broken: None,
            leak_ring: false,
            stats: UringStats::default(),
            report,
        })
    }

    /// CQEs the kernel still owes: one per piece in the kernel, per cancel and per timer.
    pub(crate) fn cqe_owed(&self) -> usize {
        self.slots.cqe_owed() + self.timers.armed_count()
    }

    /// Forgets everything the kernel holds (operations, zombies, timers), completing the
    /// operations with `error`; the caller leaks the ring. Returns how many it completed.
    pub(crate) fn abandon_in_kernel(&mut self, error: &IoError) -> u64 {
        self.timers.leak_all();
        self.slots.abandon_in_kernel(error)
    }

    /// Marks the ring unusable and completes every operation with `error`: those waiting with
    /// their buffers, those the kernel holds without theirs (see `Slots::abandon_in_kernel`).
    /// Later submissions fail the same way, at once, so every caller gets an answer per
    /// operation.
    pub(crate) fn break_ring(&mut self, error: IoError) {
        if self.broken.is_some() {
            return;
        }
        self.broken = Some(error.clone());
        // The kernel may still write into what it holds: the ring and those buffers leak.
        self.leak_ring |= self.cqe_owed() > 0;
        self.abandon_in_kernel(&error);
        self.slots.fail_waiting(&error);
    }

    /// Operations submitted and not yet handed out by `reap`.
    pub(crate) fn pending_count(&self) -> usize {
        self.slots.pending_count()
    }

    pub(crate) fn capabilities(&self) -> Capabilities {
        Capabilities {
            name: C::NAME,
            align_bytes: self.codec.align_bytes(&self.device),
            in_flight_max: self.window(),
            fixed_buffers: self.fixed.is_some(),
            passthrough: C::PASSTHROUGH,
        }
    }

    /// At most this many operations in the kernel at once.
    pub(crate) fn window(&self) -> usize {
        self.slots.window()
    }
}

/// Refuses a CQ that cannot hold a CQE for every operation of the window, every cancel and
/// every timeout SQE. The kernel rounds the size asked for up, so this fails only if it
/// answers otherwise.
fn check_cq_entries(cq_entries: u32, cq_entries_min: usize) -> Result<(), SetupError> {
    if (cq_entries as usize) < cq_entries_min {
        return Err(SetupError::CqTooSmall {
            cq_entries,
            cq_entries_min,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::time::{Duration, Instant};

    use io_uring::{cqueue, squeue};
    use rbio_core::{Buffer, BufferPool, Completion, Errno, IoError, Op, Wait};

    use super::*;
    use crate::block::{BlockCodec, FileTarget};
    use crate::codec::{Outcome, Piece, PieceRequest};
    use crate::features::kernel_features;
    use crate::flags::RingFlags;
    use crate::slot::BUSY_RETRIES_MAX;

    /// A second codec over the same core: block I/O, except that it cannot encode a piece at
    /// offset 4096, and that it replaces the outcome of the next CQEs by a script, as if the
    /// kernel had said so.
    struct Scripted {
        block: BlockCodec,
        script: RefCell<VecDeque<Outcome>>,
    }

    impl Codec for Scripted {
        type Sqe = squeue::Entry;
        type Cqe = cqueue::Entry;
        const NAME: &'static str = "scripted";
        const PASSTHROUGH: bool = false;

        fn prepare(&self, request: &PieceRequest) -> Result<Piece<squeue::Entry>, IoError> {
            if request.offset_bytes == 4096 {
                return Err(IoError::Unsupported {
                    what: "offset 4096",
                });
            }
            self.block.prepare(request)
        }

        fn outcome(&self, cqe: &cqueue::Entry, piece_bytes: usize) -> Outcome {
            let real = self.block.outcome(cqe, piece_bytes);
            self.script.borrow_mut().pop_front().unwrap_or(real)
        }
    }

    fn scripted(script: Vec<Outcome>) -> Scripted {
        Scripted {
            block: BlockCodec {
                target: FileTarget::Fixed,
                iopoll: false,
                null_io: false,
                async_reads: false,
            },
            script: RefCell::new(script.into()),
        }
    }

    /// A 64 KiB image of byte 5 and a core configuration for `window` on it.
    fn config(window: usize) -> (tempfile::NamedTempFile, CoreConfig) {
        let image = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(image.path(), vec![5u8; 1 << 16]).unwrap();
        let device = Arc::new(Device::open(image.path()).unwrap());
        let config = CoreConfig {
            device,
            window,
            plan: RingPlan::for_window(
                window,
                RingFlags::NONE,
                RingFlags::LADDER.to_vec(),
                kernel_features(),
            ),
            fixed: None,
            register_file: true,
            op_timeout: Some(Duration::from_secs(5)),
        };
        (image, config)
    }

    fn core(window: usize, script: Vec<Outcome>) -> (tempfile::NamedTempFile, Ring<Scripted>) {
        let (image, config) = config(window);
        (image, Ring::new(scripted(script), config).unwrap())
    }

    fn run(ring: &mut Ring<Scripted>, mut ops: Vec<Op>) -> Vec<Completion> {
        let count = ops.len();
        ring.submit(&mut ops);
        let mut completions = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while completions.len() < count && Instant::now() < deadline {
            ring.reap(&mut completions, Wait::Until(deadline));
        }
        completions.sort_by_key(Completion::tag);
        assert_eq!(completions.len(), count);
        assert_eq!((ring.pending_count(), ring.cqe_owed()), (0, 0));
        completions
    }

    fn read(tag: u64, offset_bytes: u64) -> Op {
        Op::read(tag, offset_bytes, Buffer::new_aligned(4096, 4096).unwrap())
    }

    #[test]
    fn an_op_the_codec_cannot_encode_fails_alone() {
        let (_image, mut ring) = core(2, vec![]);
        let completions = run(&mut ring, (0..8u64).map(|i| read(i, i * 4096)).collect());
        let refused = Err(IoError::Unsupported {
            what: "offset 4096",
        });
        assert_eq!(completions[1].result(), &refused);
        assert!(completions[1].buffer().is_some());
        for (index, completion) in completions.iter().enumerate().filter(|(i, _)| *i != 1) {
            assert_eq!(completion.result(), &Ok(4096), "op {index}");
            assert_eq!(completion.data(), &[5u8; 4096][..]);
        }
    }

    #[test]
    fn transient_errors_are_resubmitted_inside_the_engine() {
        let script = [Errno::EINTR, Errno::EAGAIN, Errno::EBUSY].map(Outcome::Errno);
        let (_image, mut ring) = core(1, script.to_vec());
        let completions = run(&mut ring, vec![read(0, 0)]);
        assert_eq!(completions[0].result(), &Ok(4096));
        let stats = ring.stats;
        assert_eq!((stats.eintr_retry_count, stats.busy_retry_count), (1, 2));
        assert_eq!(stats.sqe_count, 4, "one submission and three resubmissions");
    }

    #[test]
    fn a_transient_error_past_its_bound_is_reported_with_the_buffer() {
        let script = vec![Outcome::Errno(Errno::EAGAIN); BUSY_RETRIES_MAX as usize + 1];
        let (_image, mut ring) = core(1, script);
        let completions = run(&mut ring, vec![read(0, 0), read(1, 8192)]);
        assert_eq!(completions[0].result(), &Err(IoError::Os(Errno::EAGAIN)));
        assert!(completions[0].buffer().is_some());
        assert_eq!(
            completions[1].result(),
            &Ok(4096),
            "the next op is untouched"
        );
    }

    #[test]
    fn short_pieces_continue_and_a_piece_of_nothing_ends_the_op() {
        let script = vec![Outcome::Moved(100), Outcome::Moved(1000), Outcome::Moved(0)];
        let (_image, mut ring) = core(1, script);
        let completions = run(&mut ring, vec![read(0, 0), read(1, 8192)]);
        let short = Err(IoError::ShortTransfer {
            done_bytes: 1100,
            len_bytes: 4096,
        });
        assert_eq!(completions[0].result(), &short);
        assert_eq!(completions[0].data(), &[5u8; 1100][..]);
        assert_eq!(completions[1].result(), &Ok(4096));
        assert_eq!(ring.stats.continuation_count, 2);
    }

    /// Review finding (LOW, ring.rs): the CQ size the kernel returns was checked with
    /// `assert!`, so a CQ too small for the window panicked; it is a typed `SetupError`.
    #[test]
    fn a_cq_too_small_for_the_window_is_a_setup_error() {
        let (_image, mut config) = config(8);
        // The ring of a window of 2 (a CQ of 4 entries) under a window of 8.
        config.plan = RingPlan::for_window(
            2,
            RingFlags::NONE,
            RingFlags::LADDER.to_vec(),
            kernel_features(),
        );
        let error = match Ring::new(scripted(Vec::new()), config) {
            Ok(_) => panic!("a CQ of 4 entries was accepted for a window of 8"),
            Err(error) => error,
        };
        assert!(
            matches!(
                error,
                SetupError::CqTooSmall {
                    cq_entries: 4,
                    cq_entries_min: 16
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the kernel made a completion queue of 4 entries; the window needs 16"
        );
    }

    /// Review finding (MEDIUM, submit.rs/reap.rs): after a permanent `io_uring_enter` error,
    /// `reap` returned 0 at once, forever, with the errno only in `stats.enter_error`, so the
    /// operations never completed and a stream reported a stall. The ring is now broken and
    /// every operation completes with the errno; the kernel's buffers are leaked, not freed.
    #[test]
    #[allow(unsafe_code)]
    fn a_permanent_enter_error_completes_every_operation_with_its_errno() {
        let codec = BlockCodec {
            target: FileTarget::Fixed,
            iopoll: false,
            null_io: false,
            async_reads: false,
        };
        let config = CoreConfig {
            device: Arc::new(Device::open("/dev/ptmx").expect("open /dev/ptmx")),
            window: 4,
            plan: RingPlan::for_window(
                4,
                RingFlags::NONE,
                RingFlags::LADDER.to_vec(),
                kernel_features(),
            ),
            fixed: None,
            register_file: true,
            op_timeout: None,
        };
        let mut ring = Ring::new(codec, config).unwrap();
        let pool = BufferPool::new(4096, 9, 4096).unwrap();
        // Reads of a pty master with no data block in the kernel: 4 there, 4 behind the window.
        let mut ops: Vec<Op> = (0..8u64)
            .map(|tag| Op::read(tag, 0, pool.take().unwrap()))
            .collect();
        ring.submit(&mut ops);
        assert_eq!((ring.slots.in_kernel_count(), ring.pending_count()), (4, 8));
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: dup2 touches no memory: it makes the ring's descriptor number refer to
        // /dev/null, which the ring (leaked below) would close once. The ring's mappings hold
        // the io_uring instance, and the reads in it, alive, so nothing is freed under them.
        let replaced = unsafe { libc::dup2(null.as_raw_fd(), ring.ring.as_raw_fd()) };
        assert_eq!(replaced, ring.ring.as_raw_fd(), "dup2 failed");

        let mut completions = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while completions.len() < 8 && Instant::now() < deadline {
            ring.reap(&mut completions, Wait::Until(deadline));
        }
        completions.sort_by_key(Completion::tag);
        let not_a_ring = Err(IoError::Os(Errno(libc::EOPNOTSUPP)));
        assert_eq!(completions.len(), 8, "{:?}", ring.stats);
        assert_eq!(ring.stats.enter_error, Some(Errno(libc::EOPNOTSUPP)));
        for completion in &completions {
            assert_eq!(completion.result(), &not_a_ring, "{}", completion.info());
            let in_kernel = completion.tag() < 4;
            assert_eq!(
                completion.buffer().is_none(),
                in_kernel,
                "tag {}",
                completion.tag()
            );
        }
        assert_eq!(ring.pending_count(), 0);

        // Later operations fail at once, with their buffers.
        ring.submit(&mut vec![Op::read(8, 0, pool.take().unwrap())]);
        let mut later = Vec::new();
        assert_eq!(ring.reap(&mut later, Wait::Nothing), 1);
        assert_eq!(later[0].result(), &not_a_ring);
        assert!(later[0].buffer().is_some());
        drop((completions, later, ring));
        assert_eq!(
            pool.taken_count(),
            4,
            "the kernel's buffers are leaked, not freed"
        );
    }
}
