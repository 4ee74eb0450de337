//! Random batches for the suite: reads and writes over disjoint slots of the image, some
//! misaligned, some past the end, so that any engine's result is independent of its order.

use proptest::prelude::*;
use proptest::sample::subsequence;

/// Each operation of a batch lives in its own slot of this size, so no two overlap.
pub const SLOT_BYTES: u64 = 64 << 10;
/// Slots past the suite's image that batches also use: out of range on a target of exactly
/// the image's size.
pub const SLOTS_PAST_IMAGE: u64 = 3;
/// The largest transfer the suite asks for (fits the suite's pool buffers).
pub const OP_BYTES_MAX: usize = 32 << 10;

/// One planned operation.
#[derive(Clone, Debug)]
pub struct PlannedOp {
    /// Write rather than read.
    pub write: bool,
    /// The slot it lives in; slots at or past the image's end give out-of-range requests.
    pub slot_index: u64,
    /// Offset inside the slot.
    pub offset_in_slot: u64,
    /// Transfer length.
    pub len_bytes: usize,
    /// The byte a write fills its buffer with (mixed with the position).
    pub fill: u8,
}

impl PlannedOp {
    /// The device offset.
    pub fn offset_bytes(&self) -> u64 {
        self.slot_index * SLOT_BYTES + self.offset_in_slot
    }
}

/// A batch over `slot_count` in-range slots plus a few past the end; `with_flush` adds one
/// flush at the end of some batches.
pub fn batch(slot_count: u64, ops_max: usize) -> impl Strategy<Value = (Vec<PlannedOp>, bool)> {
    let slot_indexes: Vec<u64> = (0..slot_count + SLOTS_PAST_IMAGE).collect();
    let take = ops_max.min(slot_indexes.len());
    (subsequence(slot_indexes, 0..=take), any::<bool>()).prop_flat_map(|(slots, with_flush)| {
        let ops: Vec<_> = slots.into_iter().map(planned_op).collect();
        (ops, Just(with_flush))
    })
}

fn planned_op(slot_index: u64) -> impl Strategy<Value = PlannedOp> {
    let offset_in_slot = prop_oneof![
        3 => (0..8u64).prop_map(|k| k * 4096),
        1 => (0..8u64).prop_map(|k| k * 512),
        1 => 0..(SLOT_BYTES - OP_BYTES_MAX as u64),
    ];
    let len_bytes = prop_oneof![
        3 => (1..=8usize).prop_map(|k| k * 4096),
        1 => (1..=64usize).prop_map(|k| k * 512),
        1 => 1..=OP_BYTES_MAX,
    ];
    (any::<bool>(), offset_in_slot, len_bytes, any::<u8>()).prop_map(
        move |(write, offset_in_slot, len_bytes, fill)| PlannedOp {
            write,
            slot_index,
            offset_in_slot,
            len_bytes,
            fill,
        },
    )
}

/// The bytes a planned write puts at `index` of its buffer.
pub fn write_byte(op: &PlannedOp, index: usize) -> u8 {
    op.fill ^ (index as u8).wrapping_mul(13) ^ 0x5a
}
