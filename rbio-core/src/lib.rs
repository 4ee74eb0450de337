//! rbio-core: batched block I/O over pluggable engines.
//!
//! An [`Op`] reads, writes or flushes at a device offset and owns its [`Buffer`]; an
//! [`Engine`] takes batches of them ([`Engine::submit`]) and hands back one [`Completion`]
//! each ([`Engine::reap`]), with a typed [`IoError`] on failure and the buffer returned.
//! Buffers come from a [`BufferPool`]: one aligned arena, suitable for O_DIRECT and NVMe.
//! A [`Device`] is the open file, block device or character device the engine works on, and
//! refuses misaligned or out-of-range requests before they reach the kernel.
//!
//! Engines here: [`SerialEngine`], one synchronous call after another, the reference every
//! other engine is tested and benchmarked against; [`FaultyEngine`], which injects the faults
//! of a [`FaultPlan`] into any engine; [`Retrying`], which absorbs transient errors. The
//! [`Stream`] driver runs an iterator of any length through any engine with bounded memory.
//!
//! ```
//! use std::sync::Arc;
//! use rbio_core::{Buffer, Device, Engine, Op, SerialEngine, Wait};
//!
//! let image = tempfile::NamedTempFile::new().unwrap();
//! std::fs::write(image.path(), b"hello, device").unwrap();
//! let device = Arc::new(Device::open(image.path()).unwrap());
//! let mut engine = SerialEngine::new(device).unwrap();
//!
//! let mut batch = vec![Op::read(1, 7, Buffer::new_aligned(6, 512).unwrap())];
//! engine.submit(&mut batch);
//! let mut completions = Vec::new();
//! engine.reap(&mut completions, Wait::Nothing);
//! assert_eq!(completions[0].tag(), 1);
//! assert_eq!(completions[0].data(), b"device");
//! ```

mod blocking;
mod buffer;
mod completion;
#[cfg(feature = "testing")]
pub mod conformance;
mod device;
mod driver;
mod engine;
mod error;
mod fan_out;
mod fault;
mod op;
#[cfg(feature = "testing")]
pub mod privilege;
mod ready;
mod retry;
mod serial;
mod tag_map;

pub use blocking::{transfer, EINTR_RETRIES_MAX};
pub use buffer::{Buffer, BufferPool, PoolError, PAGE_BYTES};
pub use completion::{Completion, OpError};
pub use device::{Device, DeviceKind, DeviceOptions};
pub use driver::{
    stall_timeout_for, OpSpec, Stream, StreamError, StreamStats, STALL_TIMEOUT_DEFAULT,
};
pub use engine::{Capabilities, Engine, Wait};
pub use error::{Errno, ErrorClass, IoError, NvmeStatus, OpenError};
pub use fan_out::{fan_out, FanOutError, FAN_OUT_JOBS_MAX, PROGRESS_QUEUED_MAX};
pub use fault::{Fault, FaultCounts, FaultPlan, FaultTarget, FaultyEngine};
pub use op::{Op, OpInfo, OpKind};
pub use ready::{poll_readable, Alarm, Readiness, ReadinessSet};
pub use retry::{Retrying, RETRIES_MAX_DEFAULT};
pub use serial::{SerialEngine, SERIAL_REAP_OPS_MAX};
