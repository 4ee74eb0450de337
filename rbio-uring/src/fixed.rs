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

/// Where the registered iovecs lie, copied out for a codec that must know which one holds an
/// address (NVMe passthrough on Linux 6.1 refuses a fixed buffer with more pages from the
/// transfer's first page to the end of its iovec than the queue has segments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkLayout {
    base_addr: usize,
    arena_bytes: usize,
    chunk_bytes: usize,
}

impl ChunkLayout {
    /// One past the last byte of the registered iovec holding `addr`, an address in the arena.
    pub(crate) fn chunk_end_addr(&self, addr: usize) -> usize {
        debug_assert!(
            (self.base_addr..self.base_addr + self.arena_bytes).contains(&addr),
            "address {addr:#x} outside the arena"
        );
        let chunk_index = (addr - self.base_addr) / self.chunk_bytes;
        let chunk_end_bytes = ((chunk_index + 1) * self.chunk_bytes).min(self.arena_bytes);
        self.base_addr + chunk_end_bytes
    }
}

impl FixedBuffers {
    /// Plans the registration of `pool`'s arena.
    pub(crate) fn new(pool: &BufferPool) -> Result<FixedBuffers, SetupError> {
        FixedBuffers::with_chunk_bytes_max(pool, REGISTERED_BYTES_MAX)
    }

    /// Plans the registration of `pool`'s arena in iovecs of at most `chunk_bytes_max`
    /// (capped at the kernel's 1 GiB), each a whole number of buffers and at least one.
    pub(crate) fn with_chunk_bytes_max(
        pool: &BufferPool,
        chunk_bytes_max: usize,
    ) -> Result<FixedBuffers, SetupError> {
        let (base, arena_bytes) = pool.arena_region();
        let buffer_bytes = pool.buffer_bytes();
        let chunk_bytes_max = chunk_bytes_max.min(REGISTERED_BYTES_MAX);
        let chunk_bytes = (chunk_bytes_max / buffer_bytes).max(1) * buffer_bytes;
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

    /// Where the iovecs lie.
    pub(crate) fn layout(&self) -> ChunkLayout {
        ChunkLayout {
            base_addr: self.base_addr,
            arena_bytes: self.arena_bytes,
            chunk_bytes: self.chunk_bytes,
        }
    }

    /// The arena's size.
    pub(crate) fn arena_bytes(&self) -> usize {
        self.arena_bytes
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
        if self.chunk_bytes >= self.arena_bytes {
            // One iovec, the usual case: no division on the per-operation path.
            return Some(0);
        }
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
    fn a_chunk_limit_keeps_whole_buffers_and_the_layout_finds_chunk_ends() {
        let pool = BufferPool::new(3 * 4096, 100, 4096).unwrap();
        let fixed = FixedBuffers::with_chunk_bytes_max(&pool, 127 * 4096).unwrap();
        assert_eq!(fixed.chunk_bytes, 42 * 3 * 4096);
        assert_eq!(fixed.iovec_count(), 3);
        let layout = fixed.layout();
        let (base, arena_bytes) = pool.arena_region();
        let base = base as usize;
        assert_eq!(layout.chunk_end_addr(base), base + fixed.chunk_bytes);
        assert_eq!(
            layout.chunk_end_addr(base + fixed.chunk_bytes),
            base + 2 * fixed.chunk_bytes
        );
        assert_eq!(
            layout.chunk_end_addr(base + arena_bytes - 1),
            base + arena_bytes
        );
        let big = BufferPool::new(256 * 4096, 2, 4096).unwrap();
        let fixed = FixedBuffers::with_chunk_bytes_max(&big, 127 * 4096).unwrap();
        assert_eq!((fixed.chunk_bytes, fixed.iovec_count()), (256 * 4096, 2));
    }

    #[test]
    fn chunks_hold_whole_buffers() {
        let pool = BufferPool::new(3 * 4096, 1, 4096).unwrap();
        let fixed = FixedBuffers::new(&pool).unwrap();
        assert_eq!(fixed.chunk_bytes % (3 * 4096), 0);
        assert!(fixed.chunk_bytes <= REGISTERED_BYTES_MAX);
    }
}
