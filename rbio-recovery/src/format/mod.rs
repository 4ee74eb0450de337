//! The raw_block on-device format, version 1 (spec/raw-block-v1.md): pure encoders, decoders
//! and rules, with no I/O.
//!
//! - [`Layout`] is the configuration; [`Layout::validate`] turns it into a [`Geometry`] for a
//!   device size, which places slots and checkpoint mirrors.
//! - [`SlotHeader`] is the 24 bytes at the start of every slot.
//! - [`CheckpointHeader`] is the 32 bytes at the start of a mirror; [`encode_mirror`] lays out a
//!   checkpoint write.
//! - [`Checkpoint`] is a parsed payload; [`CheckpointWriter`] and [`encode_checkpoint`] write
//!   one byte-compatible with LMCache. Its apply rules are [`Checkpoint::check_against`] and
//!   [`CheckpointEntry::slot_index`].
//! - [`KeyNamespace::identity`] derives the identity a slot header stores for a key;
//!   [`ObjectKey`] encodes keys.
//!
//! Every on-device integer is little-endian, written with `to_le_bytes` and read with
//! `from_le_bytes`; the lints below keep it so.
#![deny(clippy::host_endian_bytes, clippy::big_endian_bytes)]

mod checkpoint;
mod checkpoint_error;
mod checkpoint_header;
mod checkpoint_parse;
mod checkpoint_write;
mod identity;
mod layout;
mod slot_header;
#[cfg(test)]
mod test_fixture;

pub use checkpoint::{
    Checkpoint, CheckpointEntry, CheckpointHead, DevicePathPolicy, EntryFields, TensorMeta,
};
pub use checkpoint_error::{
    ApplyRejection, CheckpointError, EntryProblem, EntryRejection, IntegerProblem, JsonKind,
};
pub use checkpoint_header::{
    crc32, encode_mirror, mirror_index_for_seq, CheckpointHeader, CheckpointHeaderError,
    CheckpointRejection, MirrorWrite, CHECKPOINT_HEADER_BYTES,
};
pub use checkpoint_parse::EntryEvent;
pub use checkpoint_write::{encode_checkpoint, CheckpointWriter};
pub use identity::{legacy_identity, object_identity, IdentityError, KeyNamespace, ObjectKey};
pub use layout::{FormatError, Geometry, Layout, SlotOffsetError, MIRROR_COUNT};
pub use slot_header::{SlotHeader, SlotHeaderError, SLOT_HEADER_INFO_BYTES, SLOT_MAGIC};

/// The `N` bytes of `bytes` at `offset`: how the header decoders read their fixed fields
/// (offsets are the format's constants, within a slice the decoder has length-checked).
fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut field = [0u8; N];
    field.copy_from_slice(&bytes[offset..offset + N]);
    field
}
