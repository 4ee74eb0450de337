//! Aligned, owned buffers carved from a pool, suitable for O_DIRECT and NVMe.
//!
//! A [`BufferPool`] is one aligned arena cut into equal slots. A [`Buffer`] owns one slot until
//! it is dropped, when the slot returns to the pool. Operations take buffers by value and
//! completions give them back, so a buffer an engine has in flight is unreachable from the
//! caller; `mem::forget` of any handle can only leak memory, never free memory in use.
#![allow(unsafe_code)]

mod arena;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arena::Arena;
use bytes::Bytes;

/// Page size, the default buffer alignment (enough for O_DIRECT and for NVMe PRPs).
pub const PAGE_BYTES: usize = 4096;

/// Why a pool could not be created.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The alignment is not a power of two.
    AlignNotPowerOfTwo {
        /// The alignment asked for.
        align_bytes: usize,
    },
    /// The buffer size is zero or not a multiple of the alignment.
    BufferSize {
        /// The buffer size asked for.
        buffer_bytes: usize,
        /// The alignment asked for.
        align_bytes: usize,
    },
    /// The buffer count is zero or the arena size overflows.
    BufferCount {
        /// The buffer count asked for.
        buffer_count: usize,
    },
    /// The allocator could not provide the arena.
    OutOfMemory {
        /// The arena size asked for.
        arena_bytes: usize,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::AlignNotPowerOfTwo { align_bytes } => {
                write!(f, "buffer alignment {align_bytes} is not a power of two")
            }
            PoolError::BufferSize { buffer_bytes, align_bytes } => write!(
                f,
                "buffer size {buffer_bytes} is not a positive multiple of the alignment {align_bytes}"
            ),
            PoolError::BufferCount { buffer_count } => {
                write!(f, "buffer count {buffer_count} is zero or too large")
            }
            PoolError::OutOfMemory { arena_bytes } => {
                write!(f, "could not allocate a {arena_bytes}-byte buffer arena")
            }
        }
    }
}

impl std::error::Error for PoolError {}

/// A fixed set of equal, aligned buffers in one arena.
///
/// Cloning a pool is cheap and gives another handle to the same buffers. The arena lives until
/// the last pool handle and the last buffer are gone.
#[derive(Clone)]
pub struct BufferPool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    arena: Arena,
    id: u64,
    buffer_bytes: usize,
    align_bytes: usize,
    slots: Mutex<SlotState>,
}

struct SlotState {
    free: Vec<u32>,
    taken_max: usize,
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

impl BufferPool {
    /// Creates a pool of `buffer_count` buffers of `buffer_bytes` each, aligned to `align_bytes`.
    ///
    /// # Errors
    /// A [`PoolError`] when the alignment is not a power of two, the size is not a positive
    /// multiple of it, the count is zero, or the arena cannot be allocated.
    pub fn new(
        buffer_bytes: usize,
        buffer_count: usize,
        align_bytes: usize,
    ) -> Result<BufferPool, PoolError> {
        if !align_bytes.is_power_of_two() {
            return Err(PoolError::AlignNotPowerOfTwo { align_bytes });
        }
        if buffer_bytes == 0 || buffer_bytes % align_bytes != 0 {
            return Err(PoolError::BufferSize {
                buffer_bytes,
                align_bytes,
            });
        }
        let arena_bytes = buffer_bytes
            .checked_mul(buffer_count)
            .filter(|_| buffer_count > 0 && buffer_count <= u32::MAX as usize)
            .ok_or(PoolError::BufferCount { buffer_count })?;
        let arena =
            Arena::new(arena_bytes, align_bytes).ok_or(PoolError::OutOfMemory { arena_bytes })?;
        let free = (0..buffer_count as u32).rev().collect();
        Ok(BufferPool {
            shared: Arc::new(PoolShared {
                arena,
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                buffer_bytes,
                align_bytes,
                slots: Mutex::new(SlotState { free, taken_max: 0 }),
            }),
        })
    }

    /// Takes a free buffer, its length set to its capacity, or `None` if all are in use.
    pub fn take(&self) -> Option<Buffer> {
        let mut slots = self.shared.lock_slots();
        let slot_index = slots.free.pop()?;
        let taken_count = self.buffer_count() - slots.free.len();
        slots.taken_max = slots.taken_max.max(taken_count);
        Some(Buffer {
            pool: Arc::clone(&self.shared),
            slot_index,
            len_bytes: self.shared.buffer_bytes,
        })
    }

    /// The capacity of each buffer.
    pub fn buffer_bytes(&self) -> usize {
        self.shared.buffer_bytes
    }

    /// How many buffers the pool holds.
    pub fn buffer_count(&self) -> usize {
        self.shared.arena.len_bytes() / self.shared.buffer_bytes
    }

    /// The alignment of every buffer's first byte.
    pub fn align_bytes(&self) -> usize {
        self.shared.align_bytes
    }

    /// How many buffers are taken right now.
    pub fn taken_count(&self) -> usize {
        self.buffer_count() - self.shared.lock_slots().free.len()
    }

    /// The most buffers ever taken at once: the pool's memory high-water mark, in buffers.
    pub fn taken_max(&self) -> usize {
        self.shared.lock_slots().taken_max
    }

    /// A number that identifies this pool among all pools of the process.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The arena's first byte and length, for engines that register it with the kernel.
    ///
    /// The pointer stays valid while this pool handle or any of its buffers lives.
    pub fn arena_region(&self) -> (*mut u8, usize) {
        (self.shared.arena.base(), self.shared.arena.len_bytes())
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("id", &self.id())
            .field("buffer_bytes", &self.buffer_bytes())
            .field("buffer_count", &self.buffer_count())
            .field("taken_count", &self.taken_count())
            .finish()
    }
}

impl PoolShared {
    fn lock_slots(&self) -> MutexGuard<'_, SlotState> {
        // The free list stays consistent even if a holder panicked: each push or pop is one step.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn slot_ptr(&self, slot_index: u32) -> *mut u8 {
        let offset_bytes = slot_index as usize * self.buffer_bytes;
        debug_assert!(offset_bytes + self.buffer_bytes <= self.arena.len_bytes());
        // SAFETY: `slot_index < buffer_count`, so the offset stays inside the arena allocation.
        unsafe { self.arena.base().add(offset_bytes) }
    }
}

/// One aligned buffer, owned: the only handle to its slot of the pool's arena.
///
/// It has a fixed capacity and a length (`len_bytes() <= capacity_bytes()`): an operation
/// reads or writes exactly `len_bytes()` bytes. Dropping it returns the slot to its pool.
pub struct Buffer {
    pool: Arc<PoolShared>,
    slot_index: u32,
    len_bytes: usize,
}

impl Buffer {
    /// A stand-alone buffer of `len_bytes` (rounded up to the alignment for its capacity).
    ///
    /// # Errors
    /// As [`BufferPool::new`].
    pub fn new_aligned(len_bytes: usize, align_bytes: usize) -> Result<Buffer, PoolError> {
        if !align_bytes.is_power_of_two() {
            return Err(PoolError::AlignNotPowerOfTwo { align_bytes });
        }
        let capacity_bytes = len_bytes.max(1).next_multiple_of(align_bytes);
        let pool = BufferPool::new(capacity_bytes, 1, align_bytes)?;
        let mut buffer = pool
            .take()
            .expect("a new one-buffer pool has a free buffer");
        buffer.set_len(len_bytes);
        Ok(buffer)
    }

    /// The bytes an operation transfers: the first `len_bytes()` of the buffer.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: this `Buffer` is the only handle to its slot (the pool hands each slot out
        // once), the slot is `capacity_bytes()` long inside a live arena, and `len_bytes` never
        // exceeds the capacity (`set_len` checks it).
        unsafe { std::slice::from_raw_parts(self.pool.slot_ptr(self.slot_index), self.len_bytes) }
    }

    /// The same bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes the access exclusive.
        unsafe {
            std::slice::from_raw_parts_mut(self.pool.slot_ptr(self.slot_index), self.len_bytes)
        }
    }

    /// The first byte, for engines that hand the buffer to the kernel.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pool.slot_ptr(self.slot_index)
    }

    /// How many bytes an operation on this buffer transfers.
    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// Whether the length is zero.
    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }

    /// The most bytes this buffer can hold.
    pub fn capacity_bytes(&self) -> usize {
        self.pool.buffer_bytes
    }

    /// Sets how many bytes an operation transfers. New bytes keep whatever the slot held.
    ///
    /// # Panics
    /// If `len_bytes` exceeds [`Buffer::capacity_bytes`].
    pub fn set_len(&mut self, len_bytes: usize) {
        assert!(
            len_bytes <= self.capacity_bytes(),
            "buffer length {len_bytes} exceeds capacity {}",
            self.capacity_bytes()
        );
        self.len_bytes = len_bytes;
    }

    /// The alignment of the first byte.
    pub fn align_bytes(&self) -> usize {
        self.pool.align_bytes
    }

    /// The id of the pool this buffer came from (see [`BufferPool::id`]).
    pub fn pool_id(&self) -> u64 {
        self.pool.id
    }

    /// Hands the first `len_bytes()` bytes over as [`Bytes`] without copying.
    ///
    /// The slot returns to its pool when the last `Bytes` clone is dropped.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.pool.lock_slots().free.push(self.slot_index);
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("pool_id", &self.pool.id)
            .field("slot_index", &self.slot_index)
            .field("len_bytes", &self.len_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_each_slot_once_and_takes_it_back_on_drop() {
        let pool = BufferPool::new(4096, 2, 4096).unwrap();
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert!(pool.take().is_none());
        assert_ne!(a.as_slice().as_ptr(), b.as_slice().as_ptr());
        drop(a);
        assert_eq!(pool.taken_count(), 1);
        assert!(pool.take().is_some());
        assert_eq!(pool.taken_max(), 2);
    }

    #[test]
    fn buffers_are_aligned() {
        let pool = BufferPool::new(8192, 3, 4096).unwrap();
        let buffers: Vec<Buffer> = std::iter::from_fn(|| pool.take()).collect();
        assert_eq!(buffers.len(), 3);
        for buffer in &buffers {
            assert_eq!(buffer.as_slice().as_ptr() as usize % 4096, 0);
            assert_eq!(buffer.len_bytes(), 8192);
        }
    }

    #[test]
    fn bad_configurations_are_typed_errors() {
        assert_eq!(
            BufferPool::new(4096, 1, 3000).unwrap_err(),
            PoolError::AlignNotPowerOfTwo { align_bytes: 3000 }
        );
        assert_eq!(
            BufferPool::new(1000, 1, 4096).unwrap_err(),
            PoolError::BufferSize {
                buffer_bytes: 1000,
                align_bytes: 4096
            }
        );
        assert_eq!(
            BufferPool::new(4096, 0, 4096).unwrap_err(),
            PoolError::BufferCount { buffer_count: 0 }
        );
        assert!(matches!(
            BufferPool::new(1 << 40, 1 << 20, 4096).unwrap_err(),
            PoolError::OutOfMemory { .. } | PoolError::BufferCount { .. }
        ));
    }

    #[test]
    fn bytes_hand_off_keeps_the_slot_until_the_last_clone_drops() {
        let pool = BufferPool::new(4096, 1, 4096).unwrap();
        let mut buffer = pool.take().unwrap();
        buffer.as_mut_slice()[..3].copy_from_slice(b"abc");
        buffer.set_len(3);
        let bytes = buffer.into_bytes();
        let clone = bytes.clone();
        drop(bytes);
        assert!(
            pool.take().is_none(),
            "slot must stay taken while a Bytes clone lives"
        );
        assert_eq!(&clone[..], b"abc");
        drop(clone);
        assert!(pool.take().is_some());
    }

    #[test]
    fn pool_memory_outlives_the_pool_handle() {
        let pool = BufferPool::new(4096, 1, 4096).unwrap();
        let mut buffer = pool.take().unwrap();
        drop(pool);
        buffer.as_mut_slice().fill(7);
        assert!(buffer.as_slice().iter().all(|&b| b == 7));
    }

    #[test]
    fn forgetting_a_buffer_leaks_its_slot_instead_of_reusing_it() {
        let pool = BufferPool::new(4096, 1, 4096).unwrap();
        std::mem::forget(pool.take().unwrap());
        assert!(pool.take().is_none());
    }

    #[test]
    fn stand_alone_buffer_rounds_capacity_up() {
        let buffer = Buffer::new_aligned(100, 512).unwrap();
        assert_eq!(buffer.len_bytes(), 100);
        assert_eq!(buffer.capacity_bytes(), 512);
    }

    #[test]
    fn set_len_past_capacity_panics_with_both_numbers() {
        let mut buffer = Buffer::new_aligned(512, 512).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| buffer.set_len(513)));
        let message = *caught.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(message, "buffer length 513 exceeds capacity 512");
    }
}
