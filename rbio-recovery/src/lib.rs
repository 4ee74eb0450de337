//! raw_block cache device recovery: the on-device format written by LMCache's `RawBlockCore`,
//! checkpoint load and slot-header validation over any rbio engine.
//!
//! The format itself (layout rules, slot and mirror headers, the checkpoint payload, key
//! identities) is pure code with no I/O: [`Layout`], [`Geometry`], [`SlotHeader`],
//! [`CheckpointHeader`], [`Checkpoint`] and [`KeyNamespace`] are its entry points.
#![forbid(unsafe_code)]

mod bringup;
mod format;
mod inspect;
#[cfg(feature = "testing")]
mod prepare;
mod report;
#[cfg(feature = "testing")]
pub mod testing;
mod writer;

pub use bringup::{
    open_device, peak_rss_bytes, read_layout, Bringup, BringupError, BringupOptions, FoundLayout,
    Index, IndexEntry, LayoutAttempt, LayoutMiss, MirrorStatus, MirrorVerdict, Phase, Progress,
    Recovered, FREE_SLOTS_MAX,
};
pub use format::{
    crc32, encode_checkpoint, encode_mirror, legacy_identity, mirror_index_for_seq,
    object_identity, ApplyRejection, Checkpoint, CheckpointEntry, CheckpointError, CheckpointHead,
    CheckpointHeader, CheckpointHeaderError, CheckpointRejection, CheckpointWriter,
    DevicePathPolicy, EntryEvent, EntryFields, EntryProblem, EntryRejection, FormatError, Geometry,
    IdentityError, IntegerProblem, JsonKind, KeyNamespace, Layout, MirrorWrite, ObjectKey,
    SlotHeader, SlotHeaderError, SlotOffsetError, TensorMeta, CHECKPOINT_HEADER_BYTES,
    MIRROR_COUNT, SLOT_HEADER_INFO_BYTES, SLOT_MAGIC,
};
pub use inspect::{inspect, InspectOptions, InspectedEntry, Inspection};
#[cfg(feature = "testing")]
pub use prepare::{
    prepare, CheckpointDamage, Damage, DamagePlan, EntrySizes, ExpectedEntry, ExpectedState,
    PrepareSpec, Prepared, SlotPlacement,
};
pub use report::{
    CheckpointIgnored, ChosenCheckpoint, Counts, EntryOutcome, EntryState, LayoutSource,
    PhaseTimes, RejectReason, Report, Settings, StaleReason, Warning,
};
pub use writer::{
    payload_byte, BlockWrite, DeviceWriter, PayloadPattern, PayloadSpec, SlotWrite, WriteError,
    WriteStats, WriterOptions, WRITE_CHUNK_BYTES_DEFAULT, WRITE_WINDOW_OPS_DEFAULT,
};
