//! What the running kernel offers io_uring, probed once per process, and the features an engine
//! runs with: each set-up flag, feature and opcode is used only where the kernel has it, so the
//! engines run on Linux 5.10 and later.
//!
//! The probe creates small throwaway rings: a plain one gives the feature bits of
//! `io_uring_params` (`IORING_FEAT_EXT_ARG`) and the opcodes of `IORING_REGISTER_PROBE`; one
//! ring per optional set-up flag tells whether the kernel accepts it (it refuses unknown flags
//! with `EINVAL`).

use std::fmt;
use std::sync::OnceLock;

use io_uring::{opcode, IoUring, Probe};
use rbio_core::Errno;

use crate::flags::RingFlags;

/// A set of io_uring features an engine may use, each present only where the running kernel
/// offers it (the kernel release that brought it in brackets).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RingFeatures(u32);

impl RingFeatures {
    /// None of them: what Linux 5.10 without registrations gives.
    pub const NONE: RingFeatures = RingFeatures(0);
    /// `IORING_SETUP_SUBMIT_ALL` (5.18): one bad SQE does not stop the rest of a batch.
    pub const SUBMIT_ALL: RingFeatures = RingFeatures(1 << 0);
    /// `IORING_SETUP_COOP_TASKRUN` (5.19): completion work waits for the next system call
    /// instead of interrupting the task.
    pub const COOP_TASKRUN: RingFeatures = RingFeatures(1 << 1);
    /// `IORING_SETUP_SINGLE_ISSUER` (6.0): one thread submits and reaps.
    pub const SINGLE_ISSUER: RingFeatures = RingFeatures(1 << 2);
    /// `IORING_SETUP_DEFER_TASKRUN` (6.1): completion work runs only when the issuer waits.
    pub const DEFER_TASKRUN: RingFeatures = RingFeatures(1 << 3);
    /// `IORING_FEAT_EXT_ARG` (5.11): a wait carries its own timeout. Without it, waits are
    /// bounded by `IORING_OP_TIMEOUT` SQEs (5.4).
    pub const EXT_ARG: RingFeatures = RingFeatures(1 << 4);
    /// A registered device file (`IORING_REGISTER_FILES`, 5.1).
    pub const FIXED_FILE: RingFeatures = RingFeatures(1 << 5);
    /// Registered buffers (`IORING_REGISTER_BUFFERS`, 5.1), within `RLIMIT_MEMLOCK` for users
    /// without `CAP_IPC_LOCK`.
    pub const FIXED_BUFFERS: RingFeatures = RingFeatures(1 << 6);
    /// `IORING_OP_URING_CMD` (5.19): NVMe passthrough.
    pub const URING_CMD: RingFeatures = RingFeatures(1 << 7);
    /// Every feature above.
    pub const ALL: RingFeatures = RingFeatures((1 << 8) - 1);

    const NAMES: [(RingFeatures, &'static str); 8] = [
        (RingFeatures::SUBMIT_ALL, "submit_all"),
        (RingFeatures::COOP_TASKRUN, "coop_taskrun"),
        (RingFeatures::SINGLE_ISSUER, "single_issuer"),
        (RingFeatures::DEFER_TASKRUN, "defer_taskrun"),
        (RingFeatures::EXT_ARG, "ext_arg"),
        (RingFeatures::FIXED_FILE, "fixed_file"),
        (RingFeatures::FIXED_BUFFERS, "fixed_buffers"),
        (RingFeatures::URING_CMD, "uring_cmd"),
    ];

    /// Whether every feature of `other` is here.
    pub fn contains(self, other: RingFeatures) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets together.
    pub const fn union(self, other: RingFeatures) -> RingFeatures {
        RingFeatures(self.0 | other.0)
    }

    /// This set without the features of `other`.
    pub const fn without(self, other: RingFeatures) -> RingFeatures {
        RingFeatures(self.0 & !other.0)
    }

    /// The features in both sets.
    pub fn intersect(self, other: RingFeatures) -> RingFeatures {
        RingFeatures(self.0 & other.0)
    }

    /// `other` if `present`, else none.
    pub(crate) fn when(present: bool, other: RingFeatures) -> RingFeatures {
        if present {
            other
        } else {
            RingFeatures::NONE
        }
    }

    /// The name of each feature in the set, in a fixed order (`submit_all`, `ext_arg`, ...).
    pub fn names(self) -> Vec<&'static str> {
        RingFeatures::NAMES
            .iter()
            .filter(|(feature, _)| self.contains(*feature))
            .map(|(_, name)| *name)
            .collect()
    }

    /// The features a ring running with `flags` gets from them.
    pub(crate) fn of_flags(flags: RingFlags) -> RingFeatures {
        [
            (RingFlags::SUBMIT_ALL, RingFeatures::SUBMIT_ALL),
            (RingFlags::COOP_TASKRUN, RingFeatures::COOP_TASKRUN),
            (RingFlags::SINGLE_ISSUER, RingFeatures::SINGLE_ISSUER),
            (RingFlags::DEFER_TASKRUN, RingFeatures::DEFER_TASKRUN),
        ]
        .into_iter()
        .fold(RingFeatures::NONE, |set, (flag, feature)| {
            set.union(RingFeatures::when(flags.contains(flag), feature))
        })
    }

    /// Whether a ring may be set up with `flags` when only these features may be used.
    pub(crate) fn allow_flags(self, flags: RingFlags) -> bool {
        self.contains(RingFeatures::of_flags(flags))
    }
}

impl fmt::Display for RingFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        f.write_str(&self.names().join(","))
    }
}

impl fmt::Debug for RingFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingFeatures({self})")
    }
}

/// What the running kernel's io_uring offers, probed on first use and remembered for the
/// process. [`RingFeatures::NONE`] where io_uring cannot be set up at all (disabled, or
/// before 5.1).
pub fn kernel_features() -> RingFeatures {
    static PROBED: OnceLock<RingFeatures> = OnceLock::new();
    *PROBED.get_or_init(probe)
}

fn probe() -> RingFeatures {
    let Ok(ring) = IoUring::new(2) else {
        return RingFeatures::NONE;
    };
    let mut opcodes = Probe::new();
    // `IORING_REGISTER_PROBE` came in 5.6; without it, no opcode after 5.5 is assumed.
    let probed = ring.submitter().register_probe(&mut opcodes).is_ok();
    let uring_cmd = probed && opcodes.is_supported(opcode::UringCmd16::CODE);
    let flag_sets = [
        (RingFlags::SUBMIT_ALL, RingFeatures::SUBMIT_ALL),
        (RingFlags::COOP_TASKRUN, RingFeatures::COOP_TASKRUN),
        (RingFlags::SINGLE_ISSUER, RingFeatures::SINGLE_ISSUER),
        (
            RingFlags::SINGLE_ISSUER.union(RingFlags::DEFER_TASKRUN),
            RingFeatures::DEFER_TASKRUN,
        ),
    ];
    let accepted = flag_sets
        .into_iter()
        .fold(RingFeatures::NONE, |set, (flags, feature)| {
            set.union(RingFeatures::when(accepts(flags), feature))
        });
    accepted
        .union(RingFeatures::when(
            ring.params().is_feature_ext_arg(),
            RingFeatures::EXT_ARG,
        ))
        .union(RingFeatures::FIXED_FILE)
        .union(RingFeatures::FIXED_BUFFERS)
        .union(RingFeatures::when(uring_cmd, RingFeatures::URING_CMD))
}

/// Whether the kernel creates a ring with `flags`.
fn accepts(flags: RingFlags) -> bool {
    let mut builder = IoUring::<io_uring::squeue::Entry, io_uring::cqueue::Entry>::builder();
    builder.setup_r_disabled();
    if flags.contains(RingFlags::SUBMIT_ALL) {
        builder.setup_submit_all();
    }
    if flags.contains(RingFlags::COOP_TASKRUN) {
        builder.setup_coop_taskrun();
    }
    if flags.contains(RingFlags::SINGLE_ISSUER) {
        builder.setup_single_issuer();
    }
    if flags.contains(RingFlags::DEFER_TASKRUN) {
        builder.setup_defer_taskrun();
    }
    builder.build(2).is_ok()
}

/// Something the engine does without because the kernel or the machine refused it.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupWarning {
    /// Registering the buffer arena failed for lack of locked memory (`ENOMEM` or `EPERM`
    /// under `RLIMIT_MEMLOCK`): the engine runs without fixed buffers.
    FixedBuffersRefused {
        /// The arena's size.
        arena_bytes: usize,
        /// The kernel's error.
        errno: Errno,
    },
}

impl fmt::Display for SetupWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupWarning::FixedBuffersRefused { arena_bytes, errno } => write!(
                f,
                "running without fixed buffers: registering the {arena_bytes}-byte arena failed \
                 with {errno} (raise RLIMIT_MEMLOCK, `ulimit -l`, above the arena size)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_set_and_display_joins_them() {
        let set = RingFeatures::EXT_ARG.union(RingFeatures::SUBMIT_ALL);
        assert_eq!(set.names(), ["submit_all", "ext_arg"]);
        assert_eq!(set.to_string(), "submit_all,ext_arg");
        assert_eq!(RingFeatures::NONE.to_string(), "none");
        assert_eq!(RingFeatures::ALL.names().len(), RingFeatures::NAMES.len());
        assert_eq!(set.without(RingFeatures::EXT_ARG), RingFeatures::SUBMIT_ALL);
    }

    #[test]
    fn flags_map_to_their_features() {
        let features = RingFeatures::of_flags(RingFlags::LADDER[0].union(RingFlags::SUBMIT_ALL));
        assert_eq!(
            features,
            RingFeatures::SUBMIT_ALL
                .union(RingFeatures::SINGLE_ISSUER)
                .union(RingFeatures::DEFER_TASKRUN)
        );
        assert!(!RingFeatures::COOP_TASKRUN.allow_flags(RingFlags::LADDER[0]));
        assert!(RingFeatures::NONE.allow_flags(RingFlags::IOPOLL));
    }

    /// The machine this runs on is 6.18 (notes/machine-facts.md): everything is offered. On
    /// an older kernel the probe must find less; this checks it runs and is consistent.
    #[test]
    fn the_probe_is_stable_and_defer_taskrun_comes_with_single_issuer() {
        let offered = kernel_features();
        assert_eq!(offered, kernel_features());
        if offered.contains(RingFeatures::DEFER_TASKRUN) {
            assert!(offered.contains(RingFeatures::SINGLE_ISSUER), "{offered}");
        }
        assert!(offered.contains(RingFeatures::FIXED_FILE), "{offered}");
    }
}
