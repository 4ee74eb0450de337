//! placeholder

mod nvme;
// NVMe passthrough: ABI structs, the command encoder, Identify, limits and status decoding.
pub use nvme::*;
