//! One aligned, zeroed allocation that a pool carves into equal slots.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Owned, aligned, zero-initialised memory, freed on drop.
///
/// The arena hands out raw slot pointers only; the pool guarantees that each slot has one
/// owner at a time, which is what makes the slices built from them sound.
pub(crate) struct Arena {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the arena is plain memory with no thread affinity; exclusive access to each slot is
// enforced by the pool's free list (one `Buffer` per slot), so sharing the base pointer across
// threads cannot create aliasing `&mut` slices.
unsafe impl Send for Arena {}
// SAFETY: as above; `&Arena` exposes only the base pointer and length, never a slice.
unsafe impl Sync for Arena {}

impl Arena {
    /// Allocates `len_bytes` of zeroed memory aligned to `align_bytes`, or `None` if the
    /// request is invalid (zero length, alignment not a power of two) or memory is exhausted.
    pub(crate) fn new(len_bytes: usize, align_bytes: usize) -> Option<Arena> {
        if len_bytes == 0 {
            return None;
        }
        let layout = Layout::from_size_align(len_bytes, align_bytes).ok()?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let base = unsafe { alloc::alloc_zeroed(layout) };
        NonNull::new(base).map(|base| Arena { base, layout })
    }

    /// The first byte of the arena.
    pub(crate) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The arena's length in bytes.
    pub(crate) fn len_bytes(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `base` was returned by `alloc_zeroed(self.layout)` and is freed only here.
        // Buffers hold an `Arc` to the pool that owns this arena, so no slot is still in use.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_is_aligned_and_zeroed() {
        let arena = Arena::new(3 * 4096, 4096).expect("allocation");
        assert_eq!(arena.base() as usize % 4096, 0);
        assert_eq!(arena.len_bytes(), 3 * 4096);
        // SAFETY: the arena is live and `len_bytes` long; nothing else refers to it.
        let bytes = unsafe { std::slice::from_raw_parts(arena.base(), arena.len_bytes()) };
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn invalid_requests_are_refused() {
        assert!(Arena::new(0, 4096).is_none());
        assert!(Arena::new(4096, 3000).is_none());
    }
}
