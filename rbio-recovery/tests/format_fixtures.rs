//! The format module reads devices written by the real LMCache 0.5.6 and writes their
//! checkpoints back byte for byte.
//!
//! Each fixture archive in fixtures/lmcache-0.5.6 is unpacked into a temporary directory
//! and read with `std::fs` alone: both mirror headers, both payloads, every key of the manifest
//! (expectations come from the manifest, never regenerated), and the slot headers, damaged ones
//! included. A missing fixture fails the test and says where it was looked for.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use rbio_recovery::{
    encode_checkpoint, mirror_index_for_seq, ApplyRejection, Checkpoint, CheckpointHeader,
    DevicePathPolicy, EntryFields, Geometry, KeyNamespace, Layout, SlotHeader, SlotHeaderError,
    MIRROR_COUNT,
};
use serde_json::Value;

/// An unpacked fixture image with its manifest and the layout the manifest describes.
struct Image {
    _dir: tempfile::TempDir,
    file: File,
    manifest: Value,
    layout: Layout,
    geometry: Geometry,
}

impl Image {
    fn unpack(name: &str) -> Image {
        let (dir, image_path, manifest) = common::unpack_fixture(name);
        let file = File::open(&image_path).expect("open image");
        let device_size_bytes = file.metadata().expect("stat image").len();
        let layout = layout_of(&manifest);
        let geometry = layout
            .validate(device_size_bytes)
            .expect("fixture layout is valid");
        Image {
            _dir: dir,
            file,
            manifest,
            layout,
            geometry,
        }
    }

    fn read(&self, offset_bytes: u64, len_bytes: u64) -> Vec<u8> {
        let mut buf = vec![0u8; len_bytes as usize];
        self.file
            .read_exact_at(&mut buf, offset_bytes)
            .expect("read image");
        buf
    }

    /// The checkpoint header and CRC-checked payload of mirror `mirror_index`.
    fn mirror(&self, mirror_index: usize) -> (CheckpointHeader, Vec<u8>) {
        let g = &self.geometry;
        let block = self.read(g.mirror_offset_bytes(mirror_index), g.block_align());
        let header = CheckpointHeader::decode(&block).expect("decode mirror header");
        header
            .check(&self.layout, g)
            .expect("mirror header accepted");
        let payload_offset_bytes = g.mirror_payload_offset_bytes(mirror_index);
        let read = self.read(payload_offset_bytes, header.payload_read_bytes(g));
        let payload = header
            .check_payload(&read)
            .expect("payload CRC matches")
            .to_vec();
        assert!(
            read[payload.len()..].iter().all(|&b| b == 0),
            "payload padding is zero"
        );
        (header, payload)
    }

    fn manifest_u64(&self, pointer: &str) -> u64 {
        self.manifest
            .pointer(pointer)
            .and_then(Value::as_u64)
            .expect(pointer)
    }

    fn keys(&self) -> &[Value] {
        self.manifest["keys"].as_array().expect("manifest keys[]")
    }
}

fn layout_of(manifest: &Value) -> Layout {
    let config = &manifest["config"];
    let number = |name: &str| config[name].as_u64().expect(name);
    let magic = config["meta_magic"]
        .as_str()
        .expect("meta_magic")
        .as_bytes();
    let namespace = match manifest["key_namespace"].as_str() {
        Some("object") => KeyNamespace::Object,
        Some("legacy") => KeyNamespace::Legacy,
        other => panic!("unknown key_namespace {other:?}"),
    };
    Layout {
        block_align: number("block_align"),
        header_bytes: number("header_bytes"),
        slot_bytes: number("slot_bytes"),
        meta_total_bytes: number("meta_total_bytes"),
        meta_magic: magic.try_into().expect("8-byte meta_magic"),
        meta_version: number("meta_version").try_into().expect("u32 meta_version"),
        capacity_bytes: number("capacity_bytes"),
        namespace,
    }
}

#[test]
fn c1000_binary_metadata() {
    check_image("c1000", check_binary_tensor);
}

#[test]
fn c2000kv_kv_tensor_metadata() {
    check_image("c2000kv", check_kv_tensor);
}

fn check_image(name: &str, check_tensor: fn(&Value, &EntryFields<'_>)) {
    let image = Image::unpack(name);
    check_geometry(&image);
    let mut newest = None;
    for mirror_index in 0..MIRROR_COUNT {
        let (header, payload) = image.mirror(mirror_index);
        assert_eq!(
            header.seq,
            mirror_index as u64 + 1,
            "{name}: seq in mirror {mirror_index}"
        );
        assert_eq!(mirror_index_for_seq(header.seq), mirror_index);
        check_reencoding(name, &payload);
        newest = Some(payload);
    }
    let payload = newest.expect("two mirrors");
    let checkpoint = Checkpoint::parse(&payload).expect("parse newest checkpoint");
    check_apply_rules(&image, &checkpoint);
    check_manifest_keys(&image, &checkpoint, check_tensor);
    check_slot_headers(&image);
}

fn check_geometry(image: &Image) {
    let g = &image.geometry;
    assert_eq!(g.max_slots(), image.manifest_u64("/layout/max_slots"));
    assert_eq!(
        g.data_base_bytes(),
        image.manifest_u64("/layout/data_base_offset")
    );
    assert_eq!(
        g.mirror_bytes(),
        image.manifest_u64("/layout/meta_container_bytes")
    );
    assert_eq!(
        g.mirror_offset_bytes(1),
        image.manifest_u64("/layout/meta_container_offsets/1")
    );
}

/// Parsing and writing back gives LMCache's bytes, borrowed or owned.
fn check_reencoding(name: &str, payload: &[u8]) {
    let checkpoint = Checkpoint::parse(payload).expect("parse checkpoint");
    assert!(
        encode_checkpoint(&checkpoint) == payload,
        "{name}: re-encoding differs"
    );
    let owned = checkpoint.into_owned();
    assert!(
        encode_checkpoint(&owned) == payload,
        "{name}: owned re-encoding differs"
    );
}

fn check_apply_rules(image: &Image, checkpoint: &Checkpoint<'_>) {
    let (layout, geometry) = (&image.layout, &image.geometry);
    let recorded = image.manifest["device_path_in_checkpoint"].as_str();
    assert_eq!(checkpoint.head.device_path.as_deref(), recorded);
    assert_eq!(
        checkpoint.next_slot(),
        image.manifest_u64("/layout/next_slot")
    );
    let strict = DevicePathPolicy::Strict;
    assert_eq!(
        checkpoint.check_against(layout, geometry, recorded, strict),
        Ok(())
    );
    let elsewhere = checkpoint.check_against(layout, geometry, Some("/tmp/copy.img"), strict);
    assert!(matches!(
        elsewhere,
        Err(ApplyRejection::DevicePathMismatch { .. })
    ));
    let ignore = DevicePathPolicy::Ignore;
    assert_eq!(
        checkpoint.check_against(layout, geometry, Some("/tmp/copy.img"), ignore),
        Ok(())
    );
    for entry in &checkpoint.entries {
        assert!(
            entry.slot_index(geometry).is_ok(),
            "{}: {:?}",
            entry.key,
            entry.fields
        );
    }
}

fn check_manifest_keys(
    image: &Image,
    checkpoint: &Checkpoint<'_>,
    check_tensor: fn(&Value, &EntryFields<'_>),
) {
    let mut by_key = HashMap::new();
    for entry in &checkpoint.entries {
        let fields = entry.fields.as_ref().expect("well-formed entry");
        assert!(
            by_key.insert(&*entry.key, fields).is_none(),
            "duplicate {}",
            entry.key
        );
    }
    let in_checkpoint = image
        .keys()
        .iter()
        .filter(|k| k["in_final_checkpoint"] == true);
    assert_eq!(checkpoint.entries.len(), in_checkpoint.count());
    for key in image.keys() {
        let encoded = key["encoded"].as_str().expect("encoded key");
        let expected = key["expected"].as_str().expect("expected");
        let identity = image.layout.namespace.identity(encoded).expect("identity");
        assert_eq!(
            Some(identity),
            key["identity"].as_u64(),
            "identity of {encoded}"
        );
        match expected {
            "present" | "dropped" => {
                let fields = by_key
                    .get(encoded)
                    .unwrap_or_else(|| panic!("{encoded} missing"));
                assert_eq!(
                    Some(fields.offset_bytes),
                    key["offset"].as_u64(),
                    "{encoded}"
                );
                assert_eq!(
                    Some(fields.size_bytes),
                    key["payload_len"].as_u64(),
                    "{encoded}"
                );
                let slot_index = image.geometry.slot_index_of(fields.offset_bytes);
                assert_eq!(slot_index.ok(), key["slot"].as_u64(), "{encoded}");
                check_tensor(key, fields);
            }
            "absent_deleted" => assert!(!by_key.contains_key(encoded), "{encoded} present"),
            other => panic!("unknown expectation {other:?} for {encoded}"),
        }
    }
}

fn check_binary_tensor(_key: &Value, fields: &EntryFields<'_>) {
    let shape = format!("[{}]", fields.size_bytes);
    let expected = [
        Some(shape.as_str()),
        Some("\"uint8\""),
        Some("\"BINARY\""),
        Some("null"),
    ];
    assert_eq!(fields.tensor.texts(), expected);
}

/// KV tensors: `shape [2,2,T,64]` of bfloat16, `cached_positions` (T of them) on every 5th key.
fn check_kv_tensor(key: &Value, fields: &EntryFields<'_>) {
    let [shape, dtype, fmt, cached_positions] = fields.tensor.texts().map(Option::unwrap);
    let shape: Vec<u64> = serde_json::from_str(shape).expect("shape is a list");
    let tokens = fields.size_bytes / (2 * 2 * 64 * 2);
    assert_eq!(shape, [2, 2, tokens, 64]);
    assert_eq!((dtype, fmt), ("\"bfloat16\"", "\"KV_2LTD\""));
    let positions: Option<Vec<u64>> = serde_json::from_str(cached_positions).expect("positions");
    let every_fifth = key["i"].as_u64().expect("i") % 5 == 0;
    assert_eq!(
        positions.map(|p| p.len() as u64),
        every_fifth.then_some(tokens)
    );
}

/// Intact headers match their entries; damaged ones show the damage the manifest records.
fn check_slot_headers(image: &Image) {
    let (mut intact_count, mut damaged_keys) = (0, Vec::new());
    for key in image.keys() {
        let corruption = key["corruption"]["type"].as_str();
        // A flipped payload byte leaves the header intact.
        let damaged = corruption.is_some_and(|kind| kind != "payload_flip");
        if key["expected"] == "absent_deleted" || (!damaged && intact_count >= 8) {
            continue;
        }
        let offset_bytes = key["offset"].as_u64().expect("offset");
        let decoded = SlotHeader::decode(&image.read(offset_bytes, image.geometry.header_bytes()));
        if damaged {
            check_damaged_header(key, decoded);
            damaged_keys.push(&key["encoded"]);
        } else {
            let header = decoded.expect("intact header");
            assert_eq!(Some(header.identity), key["identity"].as_u64(), "{key}");
            assert_eq!(
                Some(header.payload_len_bytes),
                key["payload_len"].as_u64(),
                "{key}"
            );
            intact_count += 1;
        }
    }
    assert_eq!(intact_count, 8);
    let expected_dropped = image.manifest["expected_dropped"].as_array().expect("list");
    assert_eq!(damaged_keys, expected_dropped.iter().collect::<Vec<_>>());
}

fn check_damaged_header(key: &Value, decoded: Result<SlotHeader, SlotHeaderError>) {
    let corruption = &key["corruption"];
    match corruption["type"].as_str() {
        Some("bad_magic" | "zeroed") => {
            assert!(
                matches!(decoded, Err(SlotHeaderError::BadMagic { .. })),
                "{key}"
            );
        }
        Some("wrong_identity" | "foreign_identity") => {
            let header = decoded.expect("header with another identity");
            assert_eq!(
                Some(header.identity),
                corruption["header_identity"].as_u64()
            );
            assert_ne!(Some(header.identity), key["identity"].as_u64());
        }
        Some("wrong_length") => {
            let header = decoded.expect("header with another length");
            assert_eq!(
                Some(header.payload_len_bytes),
                corruption["header_payload_len"].as_u64()
            );
            assert_ne!(Some(header.payload_len_bytes), key["payload_len"].as_u64());
        }
        other => panic!("unknown corruption {other:?} for {key}"),
    }
}
