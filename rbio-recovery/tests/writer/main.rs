//! The writer makes devices LMCache could have written, and `prepare` makes the images it says.
//!
//! - Byte compatibility: each LMCache 0.5.6 fixture is rebuilt from its own checkpoints and
//!   manifest with `DeviceWriter` (slots, payloads by the manifest's `payload_rule`, both
//!   checkpoints re-encoded, then the manifest's damage) and must equal the fixture image byte
//!   for byte: metadata region, every slot header, every payload, the whole file.
//! - `prepare` is read back with `std::fs` and the format decoders alone: every slot header,
//!   payload and checkpoint is what the spec says, damage sits exactly where the plan puts it,
//!   checkpoint damage leaves the right mirror in charge, and the same seed gives the same bytes.
//! - 200 000 header-only entries stream through the writer's bounded pool.
//! - Writing to a read-only device is a typed error, not a panic.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use rbio_core::{Device, IoError, SerialEngine};
use rbio_recovery::{
    encode_checkpoint, object_identity, payload_byte, prepare, BlockWrite, Checkpoint,
    CheckpointDamage, CheckpointHeader, CheckpointRejection, Damage, DamagePlan, DevicePathPolicy,
    DeviceWriter, EntrySizes, ExpectedState, Geometry, Layout, PayloadPattern, PayloadSpec,
    PrepareSpec, Prepared, SlotHeader, SlotPlacement, SlotWrite, WriteError,
    SLOT_HEADER_INFO_BYTES,
};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// A fresh sparse image file of `size_bytes`, opened for writing, with a serial engine.
struct Blank {
    _dir: tempfile::TempDir,
    path: PathBuf,
    device: Arc<Device>,
    engine: SerialEngine,
}

fn blank(size_bytes: u64) -> Blank {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("image.img");
    File::create(&path)
        .and_then(|file| file.set_len(size_bytes))
        .expect("create a sparse image");
    let device = Arc::new(
        Device::options()
            .write(true)
            .open(&path)
            .expect("open image"),
    );
    let engine = SerialEngine::new(device.clone()).expect("serial engine");
    Blank {
        _dir: dir,
        path,
        device,
        engine,
    }
}

fn read_at(file: &File, offset_bytes: u64, len_bytes: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len_bytes as usize];
    file.read_exact_at(&mut bytes, offset_bytes)
        .expect("read image");
    bytes
}

/// The valid checkpoint payload of mirror `mirror_index`, or why a reader rejects it.
fn mirror_payload(
    file: &File,
    layout: &Layout,
    geometry: &Geometry,
    mirror_index: usize,
) -> Result<(u64, Vec<u8>), CheckpointRejection> {
    let header_block = read_at(file, geometry.mirror_offset_bytes(mirror_index), 4096);
    let header = CheckpointHeader::decode(&header_block).expect("32 bytes");
    header.check(layout, geometry)?;
    let read_bytes = header.payload_read_bytes(geometry);
    let payload_read = read_at(
        file,
        geometry.mirror_payload_offset_bytes(mirror_index),
        read_bytes,
    );
    let payload = header.check_payload(&payload_read)?;
    Ok((header.seq, payload.to_vec()))
}

fn small_layout() -> Layout {
    Layout {
        slot_bytes: 64 << 10,
        meta_total_bytes: 4 * MIB,
        ..Layout::default()
    }
}

#[path = "../common/mod.rs"]
mod common;
mod lmcache;
mod prepared;
mod refusals;
