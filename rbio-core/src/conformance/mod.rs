//! The engine-generic conformance suite (feature `testing`).
//!
//! Every case runs on the [`SerialEngine`] (the reference) and on the engine under test over
//! the same image, and compares completions tag by tag: result for result, byte for byte.
//! Reads are also checked against the image's known pattern and writes are read back, so two
//! engines wrong in the same way are caught too. Each engine crate runs it in one line:
//!
//! ```no_run
//! rbio_core::conformance::run_all("serial", |target| {
//!     rbio_core::SerialEngine::new(target.device.clone()).unwrap()
//! });
//! ```
//!
//! Cases are labelled; `RBIO_CONFORMANCE_CASES=random-batches,flush` runs only those.

mod cases;
mod image;
mod plan;

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

pub use image::pattern_byte;

use crate::buffer::BufferPool;
use crate::device::Device;
use crate::engine::Engine;
use crate::serial::SerialEngine;

/// What the factory builds an engine for: the device, and the pool the suite takes the
/// engine's buffers from (register it for fixed buffers).
pub struct Target {
    /// The device under test, open for writing, O_DIRECT if the suite asked for it.
    pub device: Arc<Device>,
    /// The pool every buffer the suite gives the engine comes from.
    pub pool: BufferPool,
}

/// Size of the temporary image file the suite makes when no path is given.
pub const IMAGE_BYTES: u64 = 4 << 20;
/// Buffers in [`Target::pool`].
pub const POOL_BUFFER_COUNT: usize = 2048;
/// Bytes of [`Target::pool`]: what registering it as fixed buffers locks.
pub const POOL_BYTES: u64 = plan::OP_BYTES_MAX as u64 * POOL_BUFFER_COUNT as u64;

/// One configuration of the suite: where it runs, with or without O_DIRECT.
#[derive(Clone, Debug)]
pub struct Suite {
    label: String,
    direct: bool,
    path: Option<PathBuf>,
    cases: u32,
}

impl Suite {
    /// A suite on a temporary image file, without O_DIRECT; `label` names it in failures.
    pub fn new(label: impl Into<String>) -> Suite {
        Suite {
            label: label.into(),
            direct: false,
            path: None,
            cases: 24,
        }
    }

    /// Opens the target with O_DIRECT: misaligned requests must fail as `Misaligned`.
    pub fn direct(mut self, direct: bool) -> Suite {
        self.direct = direct;
        self
    }

    /// Runs on this writable file or block device (its first bytes are overwritten).
    pub fn on_path(mut self, path: impl Into<PathBuf>) -> Suite {
        self.path = Some(path.into());
        self
    }

    /// How many random batches the `random-batches` case tries (default 24).
    pub fn cases(mut self, cases: u32) -> Suite {
        self.cases = cases;
        self
    }

    /// Runs every selected case against the engines `factory` builds.
    ///
    /// # Panics
    /// On the first difference from the reference or from the image, with the suite's label,
    /// the case, the operation and both results; or if the target cannot be set up.
    pub fn run<E: Engine>(&self, factory: impl Fn(&Target) -> E) {
        let (_image, path) = self.target_path();
        let device = Device::options()
            .write(true)
            .direct(self.direct)
            .open(&path)
            .unwrap_or_else(|error| panic!("conformance[{}]: open target: {error}", self.label));
        let device = Arc::new(device);
        assert!(
            device.size_bytes() >= 2 * plan::SLOT_BYTES,
            "conformance[{}]: target {} is only {} bytes",
            self.label,
            path.display(),
            device.size_bytes()
        );
        let slot_count = (device.size_bytes() / plan::SLOT_BYTES).min(64);
        // Batches also touch the few slots past the image (out of range on a target of exactly
        // that size, real bytes on a larger one): give those the pattern too.
        let touched_slots = slot_count + plan::SLOTS_PAST_IMAGE;
        image::write_pattern(&device, 0, touched_slots * plan::SLOT_BYTES);
        let pool = BufferPool::new(plan::OP_BYTES_MAX, POOL_BUFFER_COUNT, 4096)
            .unwrap_or_else(|error| panic!("conformance[{}]: pool: {error}", self.label));
        let target = Target {
            device: device.clone(),
            pool,
        };
        let reference = SerialEngine::new(device.clone()).expect("reference engine");
        let mut context = cases::Context {
            label: &self.label,
            target: &target,
            reference,
            reference_pool: BufferPool::new(plan::OP_BYTES_MAX, POOL_BUFFER_COUNT, 4096)
                .expect("reference pool"),
            slot_count,
            cases: self.cases,
        };
        let mut engine = factory(&target);
        for (name, case) in cases::ALL {
            if selected(name) {
                case(&mut context, &mut engine);
            }
        }
    }

    fn target_path(&self) -> (Option<tempfile::NamedTempFile>, PathBuf) {
        if let Some(path) = &self.path {
            return (None, path.clone());
        }
        let image = tempfile::NamedTempFile::new().expect("conformance: temporary image");
        image
            .as_file()
            .set_len(IMAGE_BYTES)
            .expect("conformance: size the image");
        let path = image.path().to_path_buf();
        (Some(image), path)
    }
}

fn selected(case: &str) -> bool {
    match std::env::var("RBIO_CONFORMANCE_CASES") {
        Ok(list) => list.split(',').any(|wanted| wanted.trim() == case),
        Err(_) => true,
    }
}

/// Runs the suite on a temporary image, buffered and with O_DIRECT.
pub fn run_all<E: Engine>(label: &str, factory: impl Fn(&Target) -> E) {
    Suite::new(format!("{label}/buffered")).run(&factory);
    Suite::new(format!("{label}/direct"))
        .direct(true)
        .run(&factory);
}

/// Runs `work` on its own thread and panics, naming `what`, if it has not returned within
/// `limit`: the watchdog that turns a hang into a loud failure instead of a stuck test run. A
/// panic inside `work` is passed on as it is. A hung `work` is left running (detached).
///
/// # Panics
/// When `limit` passes first, or when `work` panics.
pub fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = mpsc::channel();
    let worker = std::thread::spawn(move || drop(sender.send(work())));
    match receiver.recv_timeout(limit) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("HANG: {what} did not finish within {limit:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("{what} returned without sending its result"),
        },
    }
}
