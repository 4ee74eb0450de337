//! Aligned transfer buffers reused across a device's operations.
//!
//! A fresh aligned buffer costs more than the transfer it carries: the allocator zeroes it
//! page by page (every page faults in), and freeing it unmaps it again. LMCache's core moves
//! the same sizes over and over (one slot's payload, one header), so a device keeps the buffers
//! its completed operations gave back, by size class, up to a bound, and hands them out again.
//! A reused buffer holds bytes of an earlier transfer of the same device: a read overwrites
//! them (and only a read that succeeded is copied out), a write copies its payload over them
//! and zeroes its padding.

use std::collections::HashMap;
use std::sync::Mutex;

use rbio_core::{Buffer, PoolError};

/// Buffers kept for reuse by one [`BufferCache`].
#[derive(Default)]
struct Kept {
    by_class: HashMap<usize, Vec<Buffer>>,
    kept_bytes: usize,
}

/// Reusable aligned buffers, by size class (powers of two, at least the alignment).
pub struct BufferCache {
    align_bytes: usize,
    kept_bytes_max: usize,
    kept: Mutex<Kept>,
}

impl BufferCache {
    /// A cache of buffers aligned to `align_bytes` (a power of two) keeping at most
    /// `kept_bytes_max` bytes of buffers given back.
    pub fn new(align_bytes: usize, kept_bytes_max: usize) -> BufferCache {
        BufferCache {
            align_bytes,
            kept_bytes_max,
            kept: Mutex::new(Kept::default()),
        }
    }

    /// A buffer of `len_bytes`: a kept one of its class, else a new one.
    ///
    /// # Errors
    /// As [`Buffer::new_aligned`] (an alignment that is not a power of two, no memory).
    pub fn take(&self, len_bytes: usize) -> Result<Buffer, PoolError> {
        let class_bytes = self.class_bytes(len_bytes);
        let reused = {
            let mut kept = self.lock();
            let buffer = kept.by_class.get_mut(&class_bytes).and_then(Vec::pop);
            if buffer.is_some() {
                kept.kept_bytes -= class_bytes;
            }
            buffer
        };
        let mut buffer = match reused {
            Some(buffer) => buffer,
            None => Buffer::new_aligned(class_bytes, self.align_bytes)?,
        };
        buffer.set_len(len_bytes);
        Ok(buffer)
    }

    /// Keeps `buffer` for a later [`take`](BufferCache::take), unless the bound is reached
    /// or it is not one of this cache's (then it is freed).
    pub fn give_back(&self, buffer: Buffer) {
        let class_bytes = buffer.capacity_bytes();
        if buffer.align_bytes() != self.align_bytes || self.class_bytes(class_bytes) != class_bytes
        {
            return;
        }
        let mut kept = self.lock();
        if kept.kept_bytes + class_bytes > self.kept_bytes_max {
            drop(kept);
            drop(buffer); // freed outside the lock
            return;
        }
        kept.kept_bytes += class_bytes;
        kept.by_class.entry(class_bytes).or_default().push(buffer);
    }

    /// Bytes of buffers kept right now.
    pub fn kept_bytes(&self) -> usize {
        self.lock().kept_bytes
    }

    /// The capacity of the buffers that serve `len_bytes`.
    fn class_bytes(&self, len_bytes: usize) -> usize {
        len_bytes
            .max(1)
            .checked_next_power_of_two()
            .unwrap_or(len_bytes)
            .max(self.align_bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Each step under the lock is one push or pop and a counter: consistent after a panic.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_reused_for_its_class() {
        let cache = BufferCache::new(4096, 1 << 30);
        let mut first = cache.take(1_044_480).unwrap();
        assert_eq!(first.len_bytes(), 1_044_480);
        assert_eq!(first.capacity_bytes(), 1 << 20);
        assert_eq!(first.as_mut_ptr() as usize % 4096, 0);
        let first_addr = first.as_mut_ptr() as usize;
        cache.give_back(first);
        assert_eq!(cache.kept_bytes(), 1 << 20);
        let mut second = cache.take(1 << 20).unwrap();
        assert_eq!(second.as_mut_ptr() as usize, first_addr, "reused");
        assert_eq!(second.len_bytes(), 1 << 20);
        assert_eq!(cache.kept_bytes(), 0);
        let mut other = cache.take(4096).unwrap();
        assert_ne!(other.as_mut_ptr() as usize, first_addr, "another class");
    }

    #[test]
    fn the_bound_frees_what_does_not_fit() {
        let cache = BufferCache::new(4096, 12288);
        let buffers: Vec<Buffer> = (0..4).map(|_| cache.take(4096).unwrap()).collect();
        for buffer in buffers {
            cache.give_back(buffer);
        }
        assert_eq!(cache.kept_bytes(), 12288);
        cache.give_back(cache.take(65536).unwrap());
        assert_eq!(cache.kept_bytes(), 12288, "a 64 KiB buffer does not fit");
    }

    #[test]
    fn foreign_buffers_are_not_kept() {
        let cache = BufferCache::new(4096, 1 << 30);
        cache.give_back(Buffer::new_aligned(4096, 512).unwrap());
        cache.give_back(Buffer::new_aligned(12288, 4096).unwrap());
        assert_eq!(cache.kept_bytes(), 0);
    }
}
