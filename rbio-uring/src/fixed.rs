//! Fixed buffers: the pool's arena registered with the ring once, and the lookup from a
//! buffer to its registered index.
//!
//! The arena is registered as a few large iovecs (one per gibibyte, the kernel's limit for one
//! registered buffer), not one per pool slot: one pinning pass, one kernel object per GiB, and
//! `buf_index` is a division. The chunk size is a whole number of pool buffers, so no buffer
//! straddles two iovecs and `ReadFixed`/`WriteFixed` ranges always lie inside one.
#![allow(unsafe_code)]

use std::io;

use io_uring::{cqueue, squeue, IoUring};
use rbio_core::{Buffer, BufferPool};

use crate::error::SetupError;

/// The largest buffer the kernel registers in one iovec.
const REGISTERED_BYTES_MAX: usize = 1 << 30;

/// A pool's arena as registered buffers. Holds a pool handle, so the arena outlives every
/// registration made from it.
#[derive(Debug)]
pub(crate) struct FixedBuffers {
    pool: BufferPool,
    base_addr: usize,
    arena_bytes: usize,
    chunk_bytes: usize,
}

impl FixedBuffers {
    /// Plans the registration of `pool`'s arena.
    pub(crate) fn new(pool: &BufferPool) -> Result<FixedBuffers, SetupError> {
        let (base, arena_bytes) = pool.arena_region();
        let buffer_bytes = pool.buffer_bytes();
        let chunk_bytes = (REGISTERED_BYTES_MAX / buffer_bytes).max(1) * buffer_bytes;
        let fixed = FixedBuffers {
            pool: pool.clone(),
            base_addr: base as usize,
            arena_bytes,
            chunk_bytes,
        };
        let iovec_count = fixed.iovec_count();
        if iovec_count > usize::from(u16::MAX) {
            return Err(SetupError::FixedBufferCount { iovec_count });
        }
        Ok(fixed)
    }

    /// How many iovecs the arena is registered as.
    pub(crate) fn iovec_count(&self) -> usize {
        self.arena_bytes.div_ceil(self.chunk_bytes)
    }

    /// Registers the arena with `ring`.
    pub(crate) fn register<S, C>(&self, ring: &IoUring<S, C>) -> Result<(), SetupError>
    where
        S: squeue::EntryMarker,
        C: cqueue::EntryMarker,
    {
        let iovecs: Vec<libc::iovec> = (0..self.iovec_count())
            .map(|chunk_index| {
                let start = chunk_index * self.chunk_bytes;
                libc::iovec {
                    iov_base: (self.base_addr + start) as *mut libc::c_void,
                    iov_len: self.chunk_bytes.min(self.arena_bytes - start),
                }
            })
            .collect();
        // SAFETY: the iovecs cover exactly the arena of `self.pool`, which stays allocated while
        // `self.pool` (or any of its buffers) lives. The ring core drops its ring before this
        // `FixedBuffers` (explicitly, in `Ring::drop`) and leaks both together when the kernel
        // may still use them, so the registration never outlives the memory.
        let registered = unsafe { ring.submitter().register_buffers(&iovecs) };
        registered.map_err(|source: io::Error| SetupError::RegisterBuffers {
            arena_bytes: self.arena_bytes,
            source,
        })
    }

    /// The registered index holding `buffer`, or `None` if it is not from this pool.
    pub(crate) fn index_of(&self, buffer: &Buffer) -> Option<u16> {
        if buffer.pool_id() != self.pool.id() {
            return None;
        }
        let offset_bytes = buffer.as_slice().as_ptr() as usize - self.base_addr;
        debug_assert!(
            offset_bytes + buffer.len_bytes() <= self.arena_bytes,
            "buffer at arena offset {offset_bytes} overruns the {}-byte arena",
            self.arena_bytes
        );
        Some((offset_bytes / self.chunk_bytes) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_of_the_pool_map_to_index_zero_and_others_to_none() {
        let pool = BufferPool::new(4096, 4, 4096).unwrap();
        let fixed = FixedBuffers::new(&pool).unwrap();
        assert_eq!(fixed.iovec_count(), 1);
        let buffers: Vec<Buffer> = std::iter::from_fn(|| pool.take()).collect();
        assert!(buffers
            .iter()
            .all(|buffer| fixed.index_of(buffer) == Some(0)));
        let stranger = Buffer::new_aligned(4096, 4096).unwrap();
        assert_eq!(fixed.index_of(&stranger), None);
    }

    #[test]
    fn chunks_hold_whole_buffers() {
        let pool = BufferPool::new(3 * 4096, 1, 4096).unwrap();
        let fixed = FixedBuffers::new(&pool).unwrap();
        assert_eq!(fixed.chunk_bytes % (3 * 4096), 0);
        assert!(fixed.chunk_bytes <= REGISTERED_BYTES_MAX);
    }
}
