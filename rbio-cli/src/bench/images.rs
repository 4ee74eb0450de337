//! The benchmark's device images: one per entry count, headers only, prepared once and reused
//! while their recorded spec matches; and the exact header reads bringup makes on each.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbio_core::Device;
use rbio_recovery::{
    inspect, open_device, prepare, Bringup, BringupOptions, DevicePathPolicy, InspectOptions,
    Layout, PrepareSpec,
};
use serde_json::{json, Value};

use crate::demo::layout_for;
use crate::exit::Failure;
use crate::output::note;
use crate::progress::Bar;
use rbio_engines::tiny_pool;
use rbio_engines::EngineConfig;

use super::fio::StridedHeaders;

/// Bumped when the images' content rules change, so old images are rebuilt.
const IMAGE_FORMAT: u64 = 1;

/// A prepared benchmark image.
pub struct Image {
    /// The image file.
    pub path: PathBuf,
    /// Its layout.
    pub layout: Layout,
}

/// The image with `entries` entries in `dir`, prepared unless a matching one is there.
pub fn ensure(dir: &Path, entries: u64) -> Result<Image, Failure> {
    ensure_copy(dir, entries, 0)
}

/// Copy `copy_index` of the image with `entries` entries (copy 0 is [`ensure`]'s): the same
/// content in a file of its own, for bringing several devices up at once.
pub fn ensure_copy(dir: &Path, entries: u64, copy_index: usize) -> Result<Image, Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("{}: cannot create: {error}", dir.display()))?;
    let path = match copy_index {
        0 => dir.join(format!("bringup-{entries}.img")),
        _ => dir.join(format!("bringup-{entries}-copy{copy_index}.img")),
    };
    let stamp_path = path.with_extension("json");
    let layout = layout_for(entries)?;
    let spec = PrepareSpec::new(layout.clone(), entries);
    let stamp = json!({
        "format": IMAGE_FORMAT,
        "entries": entries,
        "slot_bytes": layout.slot_bytes,
        "meta_total_bytes": layout.meta_total_bytes,
        "size_bytes": spec.required_device_bytes(),
    });
    let recorded: Option<Value> = std::fs::read(&stamp_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let image = Image {
        path: path.clone(),
        layout,
    };
    if recorded.as_ref() == Some(&stamp) && path.exists() {
        note!("rbio bench: reusing {}", path.display());
        return Ok(image);
    }
    note!(
        "rbio bench: preparing {} ({entries} entries, headers only)",
        path.display()
    );
    let _ = std::fs::remove_file(&stamp_path);
    let file = std::fs::File::create(&path)
        .map_err(|error| format!("{}: cannot create: {error}", path.display()))?;
    file.set_len(spec.required_device_bytes())
        .map_err(|error| format!("{}: cannot size: {error}", path.display()))?;
    let device = Arc::new(Device::options().write(true).open(&path)?);
    // Serial: its flush (fsync of every dirty page) has no operation timeout to outlast.
    let mut engine = EngineConfig::serial().build(&device, &tiny_pool()?)?;
    let bar = Bar::new("prepare");
    prepare(&device, &mut *engine, &spec, &mut |done, total| {
        bar.set(done, total)
    })?;
    std::fs::write(&stamp_path, stamp.to_string())
        .map_err(|error| format!("{}: cannot write: {error}", stamp_path.display()))?;
    Ok(image)
}

/// The header reads bringup's validation makes on `image`: one at the start of every slot a
/// checkpoint entry names. The benchmark's images fill slots 0 to N-1, so these are exactly
/// fio's strided read from the first slot; an image that does not is refused.
pub fn header_reads(image: &Image, direct: bool) -> Result<StridedHeaders, Failure> {
    let device = open_device(&image.path, direct)?;
    let read_bytes = Bringup::new(
        device.clone(),
        BringupOptions {
            layout: image.layout.clone(),
            ..BringupOptions::default()
        },
    )?
    .header_read_bytes();
    let options = InspectOptions {
        layout: image.layout.clone(),
        device_path_policy: DevicePathPolicy::Ignore,
        list_entries: true,
        ..InspectOptions::default()
    };
    let mut engine = EngineConfig::serial().build(&device, &tiny_pool()?)?;
    let inspection = inspect(&device, &mut *engine, &options)?;
    let mut slots: Vec<u64> = inspection
        .entries
        .iter()
        .filter_map(|entry| entry.slot_index)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    let one_per_slot_from_zero = slots.iter().enumerate().all(|(i, &slot)| slot == i as u64);
    if slots.is_empty() || !one_per_slot_from_zero {
        return Err(format!(
            "{}: its entries do not fill slots 0 to N-1, so fio's strided read would not match",
            image.path.display()
        )
        .into());
    }
    Ok(StridedHeaders {
        path: image.path.clone(),
        first_offset_bytes: image.layout.meta_total_bytes,
        stride_bytes: image.layout.slot_bytes,
        read_bytes,
        count: slots.len() as u64,
    })
}
