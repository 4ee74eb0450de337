//! The Python package `rbio`: bringup from Python and a drop-in for LMCache's native raw_block
//! module, on rbio's engines.
//!
//! The Python-free core is tested here in Rust: [`IoWorker`] (one thread owning an engine,
//! batches from any thread, outcomes filed per batch) and [`BringupSettings`] (the options of
//! `rbio bringup`, named after its flags, and the one call that runs it). The Python layer
//! (module `rbio._rbio`, built only with the `extension-module` feature that maturin turns on)
//! adds the `Report`, `bringup()`, `inspect()` and `RawBlockDevice` on top.

mod settings;
mod worker;

#[cfg(feature = "extension-module")]
mod py;

pub use settings::{BringupSettings, Failure};
pub use worker::{
    IoWorker, NotAccepting, OpFailure, OpOutcome, WorkerOptions, STALL_TIMEOUT_DEFAULT,
};
