//! Inspection: what the checkpoint region of a device holds, without validating any slot.
//!
//! Unlike bringup, which reads only the winning mirror's payload, inspection verifies both
//! mirrors' payloads (the selection code with `check_all`), so a person sees whether the older
//! checkpoint would also have been usable. It reads only the metadata region, never a slot.

use std::sync::Arc;

use rbio_core::{BufferPool, Device, Engine, PAGE_BYTES};
use serde_json::{json, Value};

use crate::bringup::{compared_path, select, BringupError, MirrorStatus, MirrorVerdict};
use crate::format::{Checkpoint, CheckpointHead, DevicePathPolicy, Geometry, Layout};
use crate::report::{CheckpointIgnored, ChosenCheckpoint, LayoutSource};

/// Bytes per payload read while inspecting.
const PAYLOAD_CHUNK_BYTES: usize = 1 << 20;
/// Payload reads in flight at once.
const PAYLOAD_WINDOW_OPS: usize = 8;

/// What to inspect and how.
#[derive(Clone, Debug, Default)]
pub struct InspectOptions {
    /// The layout the device was written with.
    pub layout: Layout,
    /// The path the checkpoint's `device_path` must equal; `None`: the device's own path.
    pub configured_device_path: Option<String>,
    /// Whether a different recorded `device_path` makes bringup ignore the checkpoint.
    pub device_path_policy: DevicePathPolicy,
    /// List every entry of the chosen checkpoint, not only the counts.
    pub list_entries: bool,
    /// Where `layout` came from, for the inspection.
    pub layout_source: LayoutSource,
}

/// One entry of the chosen checkpoint, as recorded (no slot header was read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectedEntry {
    /// The encoded key.
    pub key: String,
    /// The recorded offset, if the entry is well formed.
    pub offset_bytes: Option<u64>,
    /// The recorded size, if the entry is well formed.
    pub size_bytes: Option<u64>,
    /// The slot the entry claims, if it passes the per-entry rules.
    pub slot_index: Option<u64>,
    /// Why apply would skip the entry, if it would.
    pub rejection: Option<String>,
}

/// What the checkpoint region of a device holds.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The geometry the layout gives the device.
    pub geometry: Geometry,
    /// Where the layout came from.
    pub layout_source: LayoutSource,
    /// Both mirrors, each with its payload verified when its header was valid.
    pub mirrors: Vec<MirrorStatus>,
    /// The checkpoint bringup would choose, `None` when no mirror is valid.
    pub checkpoint: Option<ChosenCheckpoint>,
    /// The chosen checkpoint's top-level fields, if its payload parsed.
    pub head: Option<CheckpointHead<'static>>,
    /// Why bringup would ignore the chosen checkpoint as a whole, if it would.
    pub ignored: Option<CheckpointIgnored>,
    /// Entries in the chosen checkpoint.
    pub entry_count: u64,
    /// Entries that break a per-entry rule (apply would skip them).
    pub rejected_count: u64,
    /// Every entry, when [`InspectOptions::list_entries`] asked for them.
    pub entries: Vec<InspectedEntry>,
}

/// Reads both checkpoint mirrors of `device` through `engine` and summarises the chosen one.
///
/// # Errors
/// [`BringupError::Layout`] when the layout does not fit the device, [`BringupError::Pool`]
/// when buffers cannot be allocated, [`BringupError::Engine`] when the engine stops answering.
/// An invalid checkpoint is not an error: the inspection says why.
pub fn inspect(
    device: &Arc<Device>,
    engine: &mut dyn Engine,
    options: &InspectOptions,
) -> Result<Inspection, BringupError> {
    let layout = &options.layout;
    let geometry = layout
        .validate(device.size_bytes())
        .map_err(BringupError::Layout)?;
    let chunk_bytes = PAYLOAD_CHUNK_BYTES.max(layout.block_align as usize);
    let pool =
        BufferPool::new(chunk_bytes, PAYLOAD_WINDOW_OPS, PAGE_BYTES).map_err(BringupError::Pool)?;
    let selection = select(engine, &pool, layout, &geometry, true)?;
    let mut inspection = Inspection {
        geometry,
        layout_source: options.layout_source,
        mirrors: selection.mirrors,
        checkpoint: None,
        head: None,
        ignored: None,
        entry_count: 0,
        rejected_count: 0,
        entries: Vec::new(),
    };
    let Some((mirror_index, header, payload)) = selection.chosen else {
        return Ok(inspection);
    };
    inspection.checkpoint = Some(ChosenCheckpoint {
        mirror_index,
        seq: header.seq,
        payload_len_bytes: header.payload_len_bytes,
    });
    let payload = payload.concat();
    match Checkpoint::parse(&payload) {
        Err(error) => inspection.ignored = Some(CheckpointIgnored::Parse(Arc::new(error))),
        Ok(checkpoint) => summarise(&mut inspection, &checkpoint, device, options),
    }
    Ok(inspection)
}

/// Fills in the head, the apply verdict, the counts and (if asked) the entries.
fn summarise(
    inspection: &mut Inspection,
    checkpoint: &Checkpoint<'_>,
    device: &Device,
    options: &InspectOptions,
) {
    let configured = options
        .configured_device_path
        .clone()
        .unwrap_or_else(|| device.path().to_string_lossy().into_owned());
    let recorded = checkpoint.head.device_path.as_deref().unwrap_or_default();
    let configured = compared_path(recorded, configured, options.device_path_policy);
    let geometry = &inspection.geometry;
    if let Err(rejection) = checkpoint.check_against(
        &options.layout,
        geometry,
        Some(&configured),
        options.device_path_policy,
    ) {
        inspection.ignored = Some(CheckpointIgnored::Apply(rejection));
    }
    inspection.head = Some(checkpoint.head.clone().into_owned());
    inspection.entry_count = checkpoint.entries.len() as u64;
    for entry in &checkpoint.entries {
        let claim = entry.slot_index(geometry);
        inspection.rejected_count += u64::from(claim.is_err());
        if options.list_entries {
            let fields = entry.fields.as_ref().ok();
            inspection.entries.push(InspectedEntry {
                key: entry.key.to_string(),
                offset_bytes: fields.map(|f| f.offset_bytes),
                size_bytes: fields.map(|f| f.size_bytes),
                slot_index: claim.as_ref().ok().copied(),
                rejection: claim.err().map(|rejection| rejection.to_string()),
            });
        }
    }
}

impl Inspection {
    /// The inspection as one JSON object: `geometry`, `mirrors`, `checkpoint`, `head`,
    /// `ignored`, `counts` and `entries`.
    pub fn to_json(&self) -> Value {
        let g = &self.geometry;
        json!({
            "layout_source": self.layout_source.name(),
            "geometry": {
                "capacity_bytes": g.capacity_bytes(),
                "mirror_bytes": g.mirror_bytes(),
                "data_base_bytes": g.data_base_bytes(),
                "max_slots": g.max_slots(),
            },
            "mirrors": self.mirrors.iter().map(mirror_json).collect::<Vec<_>>(),
            "checkpoint": self.checkpoint.map(|chosen| json!({
                "mirror": chosen.mirror_index,
                "seq": chosen.seq,
                "payload_len_bytes": chosen.payload_len_bytes,
            })),
            "head": self.head.as_ref().map(|head| json!({
                "device_path": head.device_path,
                "capacity_bytes": head.capacity_bytes,
                "next_slot": head.next_slot,
                "slot_bytes": head.slot_bytes,
                "meta_total_bytes": head.meta_total_bytes,
            })),
            "ignored": self.ignored.as_ref().map(ToString::to_string),
            "counts": {
                "in_checkpoint": self.entry_count,
                "rejected": self.rejected_count,
            },
            "entries": self.entries.iter().map(|entry| json!({
                "key": entry.key,
                "offset": entry.offset_bytes,
                "size": entry.size_bytes,
                "slot": entry.slot_index,
                "rejection": entry.rejection,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The report's mirror object, plus `crc_ok`: inspect checks both payloads, so a valid mirror
/// is exactly one whose CRC holds.
fn mirror_json(mirror: &MirrorStatus) -> Value {
    let mut object = crate::report::mirror_json(mirror);
    object["crc_ok"] = Value::Bool(mirror.verdict == MirrorVerdict::Valid);
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_mirror, CheckpointWriter, EntryFields, TensorMeta};
    use rbio_core::SerialEngine;
    use std::io::{Seek, SeekFrom, Write};

    /// An image with checkpoint seq 1 (one entry) in mirror 0 and seq 2 (two) in mirror 1.
    fn image(layout: &Layout) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let size_bytes = layout.meta_total_bytes + 8 * layout.slot_bytes;
        file.as_file().set_len(size_bytes).unwrap();
        let geometry = layout.validate(size_bytes).unwrap();
        for seq in 1..=2u64 {
            let head = CheckpointHead::for_layout(layout, &geometry, "", seq);
            let mut writer = CheckpointWriter::new(&head);
            for slot_index in 0..seq {
                let fields = EntryFields {
                    offset_bytes: geometry.slot_offset_bytes(slot_index),
                    size_bytes: 100,
                    tensor: TensorMeta::default(),
                };
                writer.push(&format!("key{slot_index}"), &fields);
            }
            let payload = writer.finish();
            let write = encode_mirror(layout, &geometry, seq, &payload).unwrap();
            file.seek(SeekFrom::Start(write.payload_offset_bytes))
                .unwrap();
            file.write_all(&write.payload_blocks).unwrap();
            file.seek(SeekFrom::Start(write.header_offset_bytes))
                .unwrap();
            file.write_all(&write.header_block).unwrap();
        }
        file
    }

    #[test]
    fn both_mirrors_are_verified_and_the_newest_is_summarised() {
        let layout = Layout {
            slot_bytes: 65536,
            meta_total_bytes: 1 << 20,
            ..Layout::default()
        };
        let file = image(&layout);
        let device = Arc::new(Device::open(file.path()).unwrap());
        let mut engine = SerialEngine::new(device.clone()).unwrap();
        let options = InspectOptions {
            layout,
            list_entries: true,
            ..InspectOptions::default()
        };
        let inspection = inspect(&device, &mut engine, &options).unwrap();
        let verdicts: Vec<_> = inspection.mirrors.iter().map(|m| &m.verdict).collect();
        assert_eq!(verdicts, [&MirrorVerdict::Valid, &MirrorVerdict::Valid]);
        let chosen = inspection.checkpoint.unwrap();
        assert_eq!((chosen.mirror_index, chosen.seq), (1, 2));
        assert_eq!(inspection.entry_count, 2);
        assert_eq!(inspection.rejected_count, 0);
        assert_eq!(inspection.entries[1].slot_index, Some(1));
        assert!(inspection.ignored.is_none(), "{:?}", inspection.ignored);
        assert_eq!(inspection.to_json()["mirrors"][0]["crc_ok"], true);
    }

    #[test]
    fn a_blank_device_has_no_checkpoint() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(8 << 20).unwrap();
        let device = Arc::new(Device::open(file.path()).unwrap());
        let mut engine = SerialEngine::new(device.clone()).unwrap();
        let options = InspectOptions {
            layout: Layout {
                slot_bytes: 65536,
                meta_total_bytes: 1 << 20,
                ..Layout::default()
            },
            ..InspectOptions::default()
        };
        let inspection = inspect(&device, &mut engine, &options).unwrap();
        assert!(inspection.checkpoint.is_none());
        assert_eq!(inspection.entry_count, 0);
    }
}
