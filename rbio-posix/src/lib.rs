//! rbio-posix: an rbio engine that performs operations with `pread`/`pwrite` on a bounded
//! pool of worker threads.
//!
//! [`PosixEngine`] implements [`rbio_core::Engine`]. Its workers are started once, by
//! [`PosixEngineBuilder::build`], and reused for every batch: a batch is split into
//! contiguous ranges of operations, one range per worker, and each worker performs its range
//! in order with [`rbio_core::transfer`], the same routine as the serial engine. Each worker
//! has its own queue, so a streaming driver can keep several batches in flight. A timer
//! thread completes an operation that outlives its timeout as
//! [`IoError::TimedOut`](rbio_core::IoError::TimedOut); dropping the engine waits a bounded
//! time for its workers and detaches any stuck in a system call.
//!
//! [`PosixEngine::worker_stats`] shows how batches were split ([`WorkerStats`]), and
//! [`PosixEngine::timeout_stats`] what the deadlines decided ([`TimeoutStats`]).
//!
//! ```
//! use std::sync::Arc;
//! use rbio_core::{BufferPool, Device, OpSpec, Stream};
//! use rbio_posix::PosixEngine;
//!
//! let image = tempfile::NamedTempFile::new().unwrap();
//! std::fs::write(image.path(), vec![7u8; 1 << 20]).unwrap();
//! let device = Arc::new(Device::open(image.path()).unwrap());
//! let mut engine = PosixEngine::builder(device).workers(4).build().unwrap();
//! let pool = BufferPool::new(4096, 16, 4096).unwrap();
//!
//! let specs = (0..256u64).map(|i| OpSpec::read(i, i * 4096, 4096));
//! let mut sevens = 0;
//! let stats = Stream::new(&mut engine, &pool)
//!     .run_reads(specs, |completion| {
//!         sevens += completion.data().iter().filter(|&&b| b == 7).count();
//!     })
//!     .unwrap();
//! assert_eq!(stats.op_count, 256);
//! assert_eq!(sevens, 1 << 20);
//! ```
#![forbid(unsafe_code)]

mod builder;
mod ledger;
mod partition;
mod pool;
mod worker;

pub use builder::{
    default_worker_count, PosixEngineBuilder, OP_TIMEOUT_DEFAULT, OP_TIMEOUT_MAX, WORKERS_MAX,
};
pub use ledger::{TimeoutStats, ANNOUNCE_LATENCY_MAX};
pub use pool::{PosixEngine, DROP_JOIN_TIMEOUT};
pub use worker::WorkerStats;
