//! rbio-uring: rbio engines over io_uring.
//!
//! [`UringEngine`] performs the reads, writes and flushes of [`rbio_core::Op`]s on a file or
//! block device through one io_uring: a batch becomes SQEs in bulk and reaches the kernel with
//! one `io_uring_enter`; completions are reaped as they arrive and the window refilled at
//! once. [`UringBuilder`] configures it (window, fixed buffers from a
//! [`BufferPool`](rbio_core::BufferPool), registered file, SQPOLL, IOPOLL, operation
//! timeout); [`SetupReport`] says which [`RingFlags`] the kernel accepted and why others were
//! refused; [`SetupError`] says why none could be built; [`UringStats`] counts what the engine
//! did. The engines run on Linux 5.10 and later: [`kernel_features`] probes what the running
//! kernel offers, each engine uses only that and reports the [`RingFeatures`] it runs with,
//! and [`SetupWarning`] says what it does without though asked for.
//!
//! Inside, a ring core generic over a codec (how an operation becomes an SQE, what a CQE
//! means) holds the window, retries, continuations of short transfers, deadlines, readiness,
//! fixed buffers and drop; the block codec is one implementation and NVMe passthrough is
//! the second: [`NvmeEngine`] reads and writes an NVMe namespace's generic char device
//! (`/dev/ngXnY`) with NVMe commands (`IORING_OP_URING_CMD`, 128-byte SQEs, 32-byte CQEs),
//! configured by [`NvmeBuilder`]; [`NvmeSetupError`] says why one could not be built.
//!
//! ```
//! use std::sync::Arc;
//! use rbio_core::{BufferPool, Device, Engine, Op, Wait};
//! use rbio_uring::UringEngine;
//!
//! let image = tempfile::NamedTempFile::new().unwrap();
//! std::fs::write(image.path(), vec![7u8; 1 << 16]).unwrap();
//! let device = Arc::new(Device::open(image.path()).unwrap());
//! let pool = BufferPool::new(4096, 16, 4096).unwrap();
//! let mut engine = UringEngine::builder(device).window(8).fixed_buffers(&pool).build().unwrap();
//!
//! let mut batch: Vec<Op> = (0..16u64).map(|i| Op::read(i, i * 4096, pool.take().unwrap())).collect();
//! engine.submit(&mut batch);
//! let mut completions = Vec::new();
//! let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
//! while completions.len() < 16 {
//!     engine.reap(&mut completions, Wait::Until(deadline));
//! }
//! assert!(completions.iter().all(|c| c.data() == &[7u8; 4096][..]));
//! ```

mod block;
mod codec;
mod deadline;
mod engine;
mod error;
mod features;
mod fixed;
mod flags;
mod issuer;
mod options;
mod readiness;
mod reap;
mod ring;
mod setup;
mod shutdown;
mod slot;
mod stats;
mod submit;
mod timer;

pub use engine::{UringBuilder, UringEngine};
pub use error::SetupError;
pub use features::{kernel_features, RingFeatures, SetupWarning};
pub use flags::{RingFlags, SetupAttempt, SetupReport};
pub use options::{OP_TIMEOUT_DEFAULT, WINDOW_DEFAULT, WINDOW_MAX};
pub use shutdown::DROP_DRAIN_TIMEOUT;
pub use slot::{BUSY_RETRIES_MAX, SHORT_CONTINUATIONS_MAX};
pub use stats::UringStats;

mod nvme;
// NVMe passthrough: the engine, ABI structs, the command encoder, Identify, limits and status
// decoding.
pub use nvme::*;
