//! Helpers shared by the integration tests: images with a known pattern, running a batch to
//! completion, a loop device that detaches itself, and a watchdog for tests that could hang.
#![allow(dead_code)] // Each test file uses its own subset.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{Completion, Device, Engine, Op, Wait};
use rbio_uring::RingFeatures;

/// Feature sets to mask so a suite runs through each fallback path on a recent kernel
/// (issue 12): none masked; no `EXT_ARG` (timeout SQEs bound the waits); no `SUBMIT_ALL`; no
/// registered file or buffers; and every optional feature at once, about what Linux 5.10
/// offers.
pub const FALLBACKS: [(&str, RingFeatures); 5] = [
    ("all-features", RingFeatures::NONE),
    ("no-ext-arg", RingFeatures::EXT_ARG),
    ("no-submit-all", RingFeatures::SUBMIT_ALL),
    (
        "no-registrations",
        RingFeatures::FIXED_FILE.union(RingFeatures::FIXED_BUFFERS),
    ),
    ("linux-5.10", RingFeatures::ALL),
];

/// The byte at `offset_bytes` of a pattern image.
pub fn pattern_byte(offset_bytes: u64) -> u8 {
    (offset_bytes as u8).wrapping_mul(31) ^ ((offset_bytes >> 12) as u8).wrapping_mul(7)
}

/// A temporary file of `len_bytes` filled with [`pattern_byte`].
pub fn pattern_image(len_bytes: u64) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temporary image");
    let bytes: Vec<u8> = (0..len_bytes).map(pattern_byte).collect();
    std::fs::write(file.path(), bytes).expect("write image");
    file
}

/// Opens `path` with O_DIRECT or not, for writing or not.
pub fn open(path: &Path, direct: bool, write: bool) -> Arc<Device> {
    let device = Device::options()
        .direct(direct)
        .write(write)
        .open(path)
        .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
    Arc::new(device)
}

/// Submits `ops` and reaps until all have completed (10 s at most); sorted by tag.
///
/// # Panics
/// If an operation does not complete in time or completes twice.
pub fn run(engine: &mut impl Engine, mut ops: Vec<Op>) -> Vec<Completion> {
    let count = ops.len();
    engine.submit(&mut ops);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut completions = Vec::with_capacity(count);
    while completions.len() < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} operations still pending after 10 s",
            count - completions.len()
        );
        engine.reap(&mut completions, Wait::Until(deadline));
    }
    completions.sort_by_key(Completion::tag);
    let tags: std::collections::BTreeSet<u64> = completions.iter().map(Completion::tag).collect();
    assert_eq!(tags.len(), count, "an operation completed twice");
    completions
}

/// Runs `body` on its own thread and fails if it takes longer than `limit`, so a hang is
/// reported as a failure naming `what` instead of stalling the test run.
pub fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    rbio_core::conformance::within(what, limit, body)
}

/// A loop device over a temporary backing file, with O_DIRECT to the backing file and a
/// chosen logical sector size; detached on drop.
pub struct LoopDevice {
    pub path: PathBuf,
    backing: tempfile::NamedTempFile,
}

impl LoopDevice {
    /// Attaches a loop device of `len_bytes` (filled with [`pattern_byte`]) with
    /// `sector_bytes` logical sectors.
    ///
    /// # Panics
    /// With the reason if `losetup` is missing or refuses (these tests need root and a free
    /// `/dev/loopN`).
    pub fn attach(len_bytes: u64, sector_bytes: u32) -> LoopDevice {
        let backing = pattern_image(len_bytes);
        let output = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on", "--sector-size"])
            .arg(sector_bytes.to_string())
            .arg(backing.path())
            .output()
            .unwrap_or_else(|error| {
                panic!("loop-device tests need losetup (util-linux) and root: {error}")
            });
        assert!(
            output.status.success(),
            "losetup refused to attach {}: {} (these tests need root and a free /dev/loopN)",
            backing.path().display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        LoopDevice { path, backing }
    }

    /// The backing file.
    pub fn backing(&self) -> &Path {
        self.backing.path()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let detached = Command::new("losetup").arg("-d").arg(&self.path).status();
        if !matches!(detached, Ok(status) if status.success()) {
            eprintln!("warning: could not detach {}", self.path.display());
        }
    }
}
