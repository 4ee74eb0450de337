//! Bringup rules beyond the spec's letter that keep a recovered cache safe: a kept entry whose
//! slot lies at or past the checkpoint's `next_slot` raises `next_slot` (with a warning), so
//! the slot is never handed out again while the entry still owns it.

use std::sync::Arc;

use rbio_core::{Device, SerialEngine};
use rbio_recovery::{
    prepare, Bringup, BringupOptions, CheckpointHead, CheckpointWriter, DeviceWriter, EntryFields,
    Layout, PrepareSpec, TensorMeta,
};

#[test]
fn a_kept_entry_past_next_slot_raises_next_slot() {
    let layout = Layout {
        slot_bytes: 64 << 10,
        meta_total_bytes: 1 << 20,
        ..Layout::default()
    };
    let spec = PrepareSpec::new(layout.clone(), 6);
    let image = tempfile::NamedTempFile::new().unwrap();
    image
        .as_file()
        .set_len(spec.required_device_bytes())
        .unwrap();
    let device = Arc::new(Device::options().write(true).open(image.path()).unwrap());
    let mut engine = SerialEngine::new(device.clone()).unwrap();
    let prepared = prepare(&device, &mut engine, &spec, &mut |_, _| {}).unwrap();

    // A newer checkpoint lists every entry but claims only two slots were ever allocated.
    let head = CheckpointHead::for_layout(&layout, &prepared.geometry, "", 2);
    let mut payload = CheckpointWriter::new(&head);
    for entry in prepared.entries() {
        let fields = EntryFields {
            offset_bytes: entry.offset_bytes,
            size_bytes: entry.size_bytes,
            tensor: TensorMeta::default(),
        };
        payload.push(&entry.key, &fields);
    }
    let mut writer = DeviceWriter::new(&device, &mut engine, &layout).unwrap();
    writer.write_checkpoint(3, &payload.finish()).unwrap();

    let options = BringupOptions {
        layout,
        configured_device_path: Some(String::new()),
        ..BringupOptions::default()
    };
    let bringup = Bringup::new(device.clone(), options).unwrap();
    let recovered = bringup.run(&mut engine, &mut |_| {}).unwrap();
    assert_eq!(recovered.index.len(), 6);
    assert_eq!(
        recovered.next_slot, 6,
        "next_slot must pass the highest owned slot"
    );
    assert!(
        recovered.free_slots.is_empty(),
        "{:?}",
        recovered.free_slots
    );
    let warning = recovered
        .report
        .warnings
        .iter()
        .find(|w| w.contains("next_slot raised"));
    assert!(
        warning.is_some(),
        "no warning in {:?}",
        recovered.report.warnings
    );
}
