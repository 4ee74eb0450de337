//! The Python package `rbio`: bringup from Python and a drop-in for LMCache's native raw_block
//! module, on rbio's engines.
//!
//! The Python-free core is tested here in Rust: [`IoWorker`] (one thread owning an engine,
//! batches from any thread, outcomes filed per batch); bringup's options and the call that runs
//! them are `rbio_engines::BringupSettings`, shared with the `rbio` command. The Python layer
//! (module `rbio._rbio`, built only with the `extension-module` feature that maturin turns on)
//! adds the `Report`, `bringup()`, `inspect()` and `RawBlockDevice` on top.

mod buffers;
mod worker;

#[cfg(feature = "extension-module")]
mod py;

pub use buffers::BufferCache;
pub use worker::{IoWorker, NotAccepting, OpFailure, OpOutcome, WorkerOptions};
