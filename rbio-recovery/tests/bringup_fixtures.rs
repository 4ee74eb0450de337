//! Bringup of devices written by real LMCache 0.5.6 finds exactly what their manifests say:
//! every `present` key with its offset and size, no `dropped` key (each for the reason its
//! damage implies), no `absent_deleted` key; with every engine, buffered and O_DIRECT.

mod common;

use std::collections::HashMap;

use rbio_recovery::{
    open_device, read_layout, Bringup, BringupError, BringupOptions, DevicePathPolicy, EntryState,
    Layout, LayoutSource, StaleReason,
};
use serde_json::Value;

fn layout_of(manifest: &Value) -> Layout {
    let config = &manifest["config"];
    Layout {
        block_align: config["block_align"].as_u64().unwrap(),
        header_bytes: config["header_bytes"].as_u64().unwrap(),
        slot_bytes: config["slot_bytes"].as_u64().unwrap(),
        meta_total_bytes: config["meta_total_bytes"].as_u64().unwrap(),
        ..Layout::default()
    }
}

fn expected_stale_code(corruption: &Value) -> &'static str {
    match corruption["type"].as_str().unwrap() {
        "bad_magic" | "zeroed" => "bad_magic",
        "wrong_identity" | "foreign_identity" => "identity_mismatch",
        "wrong_length" => "length_mismatch",
        other => panic!("manifest names an unknown corruption {other}"),
    }
}

fn check_fixture(name: &str) {
    let (_dir, image, manifest) = common::unpack_fixture(name);
    for direct in [false, true] {
        for (engine_name, factory) in common::engines() {
            let device = open_device(&image, direct).unwrap();
            let options = BringupOptions {
                layout: layout_of(&manifest),
                device_path_policy: DevicePathPolicy::Ignore,
                report_all_entries: true,
                ..BringupOptions::default()
            };
            let bringup = Bringup::new(device.clone(), options).unwrap();
            let mut engine = factory(&device, bringup.header_pool());
            let recovered = bringup.run(&mut *engine, &mut |_| {}).unwrap();
            let label = format!("{name} with {engine_name}, direct={direct}");
            check_against_manifest(&label, &manifest, &recovered);
        }
    }
}

fn check_against_manifest(label: &str, manifest: &Value, recovered: &rbio_recovery::Recovered) {
    let report = &recovered.report;
    let chosen = report.checkpoint.expect("a checkpoint is chosen");
    assert_eq!(
        (chosen.mirror_index, chosen.seq),
        (1, 2),
        "{label}: newest checkpoint"
    );
    assert_eq!(
        report.warnings.len(),
        1,
        "{label}: the device path differs and must be warned about"
    );
    let index: HashMap<&str, rbio_recovery::IndexEntry> = recovered
        .index
        .iter()
        .map(|entry| (entry.key, entry))
        .collect();
    let states: HashMap<&str, &EntryState> = report
        .entries
        .iter()
        .map(|entry| (entry.key.as_str(), &entry.state))
        .collect();
    for key in manifest["keys"].as_array().unwrap() {
        let encoded = key["encoded"].as_str().unwrap();
        match key["expected"].as_str().unwrap() {
            "present" => {
                let entry = index
                    .get(encoded)
                    .unwrap_or_else(|| panic!("{label}: {encoded} missing"));
                assert_eq!(
                    entry.offset_bytes,
                    key["offset"].as_u64().unwrap(),
                    "{label}: {encoded}"
                );
                assert_eq!(
                    entry.size_bytes,
                    key["payload_len"].as_u64().unwrap(),
                    "{label}: {encoded}"
                );
                assert_eq!(states[encoded], &EntryState::Kept, "{label}: {encoded}");
            }
            "dropped" => {
                assert!(
                    !index.contains_key(encoded),
                    "{label}: dropped {encoded} is in the index"
                );
                let EntryState::Stale(reason) = states[encoded] else {
                    panic!("{label}: {encoded} is {:?}, not stale", states[encoded]);
                };
                assert_eq!(
                    reason.code(),
                    expected_stale_code(&key["corruption"]),
                    "{label}: {encoded}"
                );
                if let StaleReason::IdentityMismatch { header, .. } = reason {
                    assert_eq!(Some(*header), key["corruption"]["header_identity"].as_u64());
                }
            }
            "absent_deleted" => {
                assert!(
                    !states.contains_key(encoded),
                    "{label}: deleted {encoded} was in the checkpoint"
                );
            }
            other => panic!("manifest has unknown expectation {other}"),
        }
    }
    let expected_count = manifest["expected_entries_after_recovery"]
        .as_u64()
        .unwrap();
    assert_eq!(
        recovered.index.len() as u64,
        expected_count,
        "{label}: index size"
    );
    assert_eq!(report.counts.in_index(), expected_count, "{label}: counts");
    let next_slot = manifest["layout"]["next_slot"].as_u64().unwrap();
    assert_eq!(recovered.next_slot, next_slot, "{label}: next_slot");
    let free: Vec<u64> = recovered.free_slots.clone();
    assert_eq!(
        free.len() as u64,
        next_slot - expected_count,
        "{label}: every other slot below next_slot is free"
    );
    for entry in &recovered.index {
        let slot = (entry.offset_bytes - 4 * 1024 * 1024) / layout_of(manifest).slot_bytes;
        assert!(
            free.binary_search(&slot).is_err(),
            "{label}: slot {slot} of a kept entry is free"
        );
    }
}

#[test]
fn c1000_recovers_as_its_manifest_says() {
    check_fixture("c1000");
}

#[test]
fn c2000kv_recovers_as_its_manifest_says() {
    check_fixture("c2000kv");
}

#[test]
fn strict_device_path_ignores_a_copied_image_as_lmcache_does() {
    let (_dir, image, manifest) = common::unpack_fixture("c1000");
    let device = open_device(&image, false).unwrap();
    let options = BringupOptions {
        layout: layout_of(&manifest),
        ..BringupOptions::default()
    };
    let bringup = Bringup::new(device.clone(), options).unwrap();
    let mut engine = rbio_core::SerialEngine::new(device).unwrap();
    let recovered = bringup.run(&mut engine, &mut |_| {}).unwrap();
    assert!(recovered.index.is_empty());
    let ignored = recovered
        .report
        .ignored
        .expect("checkpoint ignored")
        .to_string();
    assert!(ignored.contains("/srv/raw_block/c1000.img"), "{ignored}");
}

#[test]
fn configured_device_path_matching_the_checkpoint_is_accepted_strictly() {
    let (_dir, image, manifest) = common::unpack_fixture("c1000");
    let device = open_device(&image, false).unwrap();
    let options = BringupOptions {
        layout: layout_of(&manifest),
        configured_device_path: Some("/srv/raw_block/c1000.img".into()),
        ..BringupOptions::default()
    };
    let bringup = Bringup::new(device.clone(), options).unwrap();
    let mut engine = rbio_core::SerialEngine::new(device).unwrap();
    let recovered = bringup.run(&mut engine, &mut |_| {}).unwrap();
    assert_eq!(recovered.index.len(), 985);
    assert!(recovered.report.warnings.is_empty());
}

#[test]
fn the_layout_of_each_fixture_is_read_from_the_device() {
    for name in ["c1000", "c2000kv"] {
        let (_dir, image, manifest) = common::unpack_fixture(name);
        for direct in [false, true] {
            let device = open_device(&image, direct).unwrap();
            let mut engine = rbio_core::SerialEngine::new(device.clone()).unwrap();
            let found = read_layout(&device, &mut engine, &Layout::default()).unwrap();
            let expected = Layout {
                capacity_bytes: device.size_bytes(),
                ..layout_of(&manifest)
            };
            assert_eq!(found.layout, expected, "{name}, direct={direct}");
            assert_eq!(found.mirror_index, 0);
            let options = BringupOptions {
                layout: found.layout,
                layout_source: LayoutSource::Device { mirror_index: 0 },
                device_path_policy: DevicePathPolicy::Ignore,
                report_all_entries: true,
                ..BringupOptions::default()
            };
            let bringup = Bringup::new(device.clone(), options).unwrap();
            let recovered = bringup.run(&mut engine, &mut |_| {}).unwrap();
            check_against_manifest(name, &manifest, &recovered);
        }
    }
}

/// Overwrites `len_bytes` at `offset_bytes` of `image` with zeroes.
fn zero(image: &std::path::Path, offset_bytes: u64, len_bytes: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    file.write_all_at(&vec![0; len_bytes], offset_bytes)
        .unwrap();
}

#[test]
fn a_blank_mirror_0_leaves_mirror_1_at_the_default_place_or_asks_for_flags() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("default-meta.img");
    let layout = Layout {
        slot_bytes: 64 << 10,
        ..Layout::default()
    };
    let spec = rbio_recovery::PrepareSpec::new(layout.clone(), 30);
    let file = std::fs::File::create(&image).unwrap();
    file.set_len(spec.required_device_bytes()).unwrap();
    let device = std::sync::Arc::new(
        rbio_core::Device::options()
            .write(true)
            .open(&image)
            .unwrap(),
    );
    let mut engine = rbio_core::SerialEngine::new(device.clone()).unwrap();
    rbio_recovery::prepare(&device, &mut engine, &spec, &mut |_, _| {}).unwrap();
    zero(&image, 0, 4096);

    let device = open_device(&image, false).unwrap();
    let mut engine = rbio_core::SerialEngine::new(device.clone()).unwrap();
    let found = read_layout(&device, &mut engine, &Layout::default()).unwrap();
    assert_eq!(found.mirror_index, 1);
    assert_eq!(found.layout.slot_bytes, 64 << 10);
    assert_eq!(found.layout.meta_total_bytes, 256 << 20);

    zero(&image, 128 << 20, 4096);
    let error = read_layout(&device, &mut engine, &Layout::default()).unwrap_err();
    let line = error.to_string();
    assert!(
        matches!(error, BringupError::LayoutNotRecorded { ref attempts } if attempts.len() == 2),
        "{line}"
    );
    assert!(line.contains("--slot-bytes"), "{line}");
    assert!(line.contains("mirror 1 at 134217728"), "{line}");
}
