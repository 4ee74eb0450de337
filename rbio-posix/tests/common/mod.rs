//! Helpers shared by the integration tests: pattern images, a watchdog, and a buffer that
//! really blocks the kernel (see `stall`).
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod stall;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{Completion, Device, Engine, Wait};

/// The byte at `offset_bytes` of every test image: the 4 KiB block number, mixed a little so
/// that neighbouring blocks and bytes differ.
pub fn pattern_byte(offset_bytes: u64) -> u8 {
    let block = offset_bytes / 4096;
    (block.wrapping_mul(31) ^ ((offset_bytes % 4096) / 16)) as u8
}

/// A temporary image of `len_bytes` holding the pattern, opened read-only and buffered.
pub fn image(len_bytes: u64) -> (tempfile::NamedTempFile, Arc<Device>) {
    let file = tempfile::NamedTempFile::new().expect("temporary image");
    let bytes: Vec<u8> = (0..len_bytes).map(pattern_byte).collect();
    std::fs::write(file.path(), bytes).expect("write the image");
    let device = Device::open(file.path()).expect("open the image");
    (file, Arc::new(device))
}

/// Whether a completion holds exactly the pattern for its read.
pub fn holds_pattern(completion: &Completion) -> bool {
    let info = completion.info();
    completion.result() == &Ok(info.len_bytes)
        && completion
            .data()
            .iter()
            .zip(info.offset_bytes..)
            .all(|(&byte, offset)| byte == pattern_byte(offset))
}

/// Reaps until `count` completions have arrived, failing loudly after 30 s.
pub fn reap_count(engine: &mut impl Engine, count: usize) -> Vec<Completion> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut completions = Vec::new();
    while completions.len() < count {
        engine.reap(&mut completions, Wait::Until(deadline));
        assert!(
            Instant::now() < deadline,
            "only {} of {count} completions after 30 s",
            completions.len()
        );
    }
    completions
}

/// Reaps until nothing is pending, failing loudly after 30 s.
pub fn reap_all(engine: &mut impl Engine) -> Vec<Completion> {
    let pending_count = engine.pending_count();
    reap_count(engine, pending_count)
}

/// Runs `work` on its own thread and fails the test if it has not returned within `bound`:
/// the watchdog that turns a hang into a loud failure instead of a stuck test run.
pub fn within<T: Send + 'static>(
    bound: Duration,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    rbio_core::conformance::within(what, bound, work)
}
