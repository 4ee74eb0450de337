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
use std::path::{Path, PathBuf};
use std::process::Command;
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

const FIXTURES_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/lmcache-0.5.6"
);
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

// ---------------------------------------------------------------------------------------------
// (a) byte compatibility with LMCache 0.5.6

fn unpack(name: &str) -> (tempfile::TempDir, PathBuf, Value) {
    let archive = Path::new(FIXTURES_DIR).join(format!("{name}.tar.gz"));
    assert!(
        archive.is_file(),
        "fixture {} is missing: shared/ must sit beside the repository checkout",
        archive.display()
    );
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("run tar");
    assert!(
        status.success(),
        "tar xzf {} failed: {status}",
        archive.display()
    );
    let manifest_path = dir.path().join(format!("{name}.img.manifest.json"));
    let manifest = serde_json::from_slice(&std::fs::read(manifest_path).expect("read manifest"))
        .expect("parse manifest");
    let image = dir.path().join(format!("{name}.img"));
    (dir, image, manifest)
}

fn layout_of(manifest: &Value) -> Layout {
    let config = &manifest["config"];
    let int = |name: &str| config[name].as_u64().expect(name);
    Layout {
        block_align: int("block_align"),
        header_bytes: int("header_bytes"),
        slot_bytes: int("slot_bytes"),
        meta_total_bytes: int("meta_total_bytes"),
        meta_magic: config["meta_magic"]
            .as_str()
            .and_then(|m| m.as_bytes().try_into().ok())
            .expect("meta_magic"),
        meta_version: int("meta_version") as u32,
        ..Layout::default()
    }
}

/// A manifest key: `(i, encoded key, identity, slot, payload_len, corruption)`.
struct FixtureKey {
    entry_index: u64,
    key: String,
    identity: u64,
    slot_index: u64,
    payload_len_bytes: u64,
    corruption: Value,
}

fn fixture_keys(manifest: &Value) -> Vec<FixtureKey> {
    let keys = manifest["keys"].as_array().expect("keys");
    keys.iter()
        .map(|key| FixtureKey {
            entry_index: key["i"].as_u64().expect("i"),
            key: key["encoded"].as_str().expect("encoded").to_owned(),
            identity: key["identity"].as_u64().expect("identity"),
            slot_index: key["slot"].as_u64().expect("slot"),
            payload_len_bytes: key["payload_len"].as_u64().expect("payload_len"),
            corruption: key["corruption"].clone(),
        })
        .collect()
}

/// The manifest's corruption of a key as a `BlockWrite`, checked against the manifest's values.
fn fixture_damage(geometry: &Geometry, key: &FixtureKey) -> Option<BlockWrite> {
    let kind = key
        .corruption
        .get("type")?
        .as_str()
        .expect("corruption type");
    let damage = Damage::from_name(kind).unwrap_or_else(|| panic!("unknown corruption {kind}"));
    let header = SlotHeader {
        identity: key.identity,
        payload_len_bytes: key.payload_len_bytes,
    };
    let ghost_identity = key.corruption["ghost_key"]
        .as_str()
        .map_or(0, object_identity);
    let Some(info) = damage.damaged_header(header, ghost_identity) else {
        assert_eq!(key.corruption["payload_byte0_xor"], 255, "{}", key.key);
        let mut block = vec![0u8; geometry.block_align() as usize];
        let len = block.len().min(key.payload_len_bytes as usize);
        PayloadPattern::Entry {
            entry_index: key.entry_index,
        }
        .fill(0, &mut block[..len]);
        block[0] ^= 0xff;
        let offset_bytes = geometry.slot_payload_offset_bytes(key.slot_index);
        return Some(BlockWrite {
            offset_bytes,
            bytes: block,
        });
    };
    if let Ok(damaged) = SlotHeader::decode(&info) {
        if let Some(identity) = key.corruption["header_identity"].as_u64() {
            assert_eq!(damaged.identity, identity, "{kind} of {}", key.key);
        }
        if let Some(len_bytes) = key.corruption["header_payload_len"].as_u64() {
            assert_eq!(
                damaged.payload_len_bytes, len_bytes,
                "{kind} of {}",
                key.key
            );
        }
    }
    let mut block = vec![0u8; geometry.header_bytes() as usize];
    block[..SLOT_HEADER_INFO_BYTES].copy_from_slice(&info);
    Some(BlockWrite {
        offset_bytes: geometry.slot_offset_bytes(key.slot_index),
        bytes: block,
    })
}

fn assert_same_bytes(what: &str, offset_bytes: u64, ours: &[u8], theirs: &[u8]) {
    if let Some(at) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at device offset {}: rbio wrote {:#04x}, LMCache {:#04x}",
            offset_bytes + at as u64,
            ours[at],
            theirs[at]
        );
    }
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths differ");
}

fn rebuild_fixture(name: &str) {
    let (_dir, fixture_path, manifest) = unpack(name);
    let fixture = File::open(&fixture_path).expect("open fixture");
    let size_bytes = fixture.metadata().expect("stat fixture").len();
    let layout = layout_of(&manifest);
    let geometry = layout.validate(size_bytes).expect("fixture layout");

    // Both checkpoints, parsed and re-encoded.
    let mut payloads = HashMap::new();
    for mirror_index in 0..2 {
        let (seq, payload) = mirror_payload(&fixture, &layout, &geometry, mirror_index)
            .unwrap_or_else(|e| panic!("{name} mirror {mirror_index}: {e}"));
        let checkpoint = Checkpoint::parse(&payload).expect("fixture checkpoint parses");
        assert_eq!(encode_checkpoint(&checkpoint), payload, "{name} seq {seq}");
        payloads.insert(seq, checkpoint.into_owned());
    }
    let newest = &payloads[&2];

    // Slot headers for every entry ever written; the newest checkpoint's entries are derived
    // from the checkpoint itself (identity from the key, offset and size from the entry).
    let keys = fixture_keys(&manifest);
    let by_key: HashMap<&str, &FixtureKey> = keys.iter().map(|k| (k.key.as_str(), k)).collect();
    for entry in &newest.entries {
        let fields = entry.fields.as_ref().expect("well-formed entry");
        let key = by_key[entry.key.as_ref()];
        assert_eq!(object_identity(&entry.key), key.identity, "{}", entry.key);
        assert_eq!(
            geometry.slot_index_of(fields.offset_bytes),
            Ok(key.slot_index)
        );
        assert_eq!(fields.size_bytes, key.payload_len_bytes, "{}", entry.key);
    }
    let slots = keys.iter().map(|key| SlotWrite {
        slot_index: key.slot_index,
        header: SlotHeader {
            identity: object_identity(&key.key),
            payload_len_bytes: key.payload_len_bytes,
        },
        payload: Some(PayloadSpec {
            len_bytes: key.payload_len_bytes,
            pattern: PayloadPattern::Entry {
                entry_index: key.entry_index,
            },
        }),
    });

    let mut blank = blank(size_bytes);
    let mut writer = DeviceWriter::new(&blank.device, &mut blank.engine, &layout).expect("writer");
    let stats = writer.write_slots(slots).expect("write slots");
    assert_eq!(stats.slot_count, keys.len() as u64);
    for seq in [1, 2] {
        let payload = encode_checkpoint(&payloads[&seq]);
        writer.write_checkpoint(seq, &payload).expect("checkpoint");
    }
    let damage: Vec<_> = keys
        .iter()
        .filter_map(|k| fixture_damage(&geometry, k))
        .collect();
    assert_eq!(
        damage.len(),
        keys.iter().filter(|k| !k.corruption.is_null()).count()
    );
    writer.write_blocks(damage).expect("damage");
    writer.flush().expect("flush");
    drop(writer);

    let ours = File::open(&blank.path).expect("open our image");
    let meta_bytes = layout.meta_total_bytes;
    assert_same_bytes(
        &format!("{name} metadata region"),
        0,
        &read_at(&ours, 0, meta_bytes),
        &read_at(&fixture, 0, meta_bytes),
    );
    for key in &keys {
        let offset_bytes = geometry.slot_offset_bytes(key.slot_index);
        let what = format!("{name} slot {} of {}", key.slot_index, key.key);
        assert_same_bytes(
            &what,
            offset_bytes,
            &read_at(&ours, offset_bytes, layout.slot_bytes),
            &read_at(&fixture, offset_bytes, layout.slot_bytes),
        );
    }
    let ours_all = std::fs::read(&blank.path).expect("read our image");
    let theirs_all = std::fs::read(&fixture_path).expect("read fixture");
    assert_same_bytes(&format!("{name} whole image"), 0, &ours_all, &theirs_all);
}

#[test]
fn rebuilds_c1000_byte_for_byte() {
    rebuild_fixture("c1000");
}

#[test]
fn rebuilds_c2000kv_byte_for_byte() {
    rebuild_fixture("c2000kv");
}

#[test]
fn payload_rule_is_the_manifests() {
    let (_dir, image, manifest) = unpack("c1000");
    let rule = manifest["payload_rule"].as_str().expect("payload_rule");
    assert!(rule.contains("bytes[0:8] = i as u64 LE; bytes[j] = (i*131 + j*7 + 1) & 0xff"));
    let file = File::open(image).expect("open fixture");
    let layout = layout_of(&manifest);
    let geometry = layout.validate(file.metadata().unwrap().len()).unwrap();
    let key = &fixture_keys(&manifest)[1];
    let payload = read_at(
        &file,
        geometry.slot_payload_offset_bytes(key.slot_index),
        64,
    );
    let expected: Vec<u8> = (0..64).map(|j| payload_byte(key.entry_index, j)).collect();
    assert_eq!(payload, expected);
}

// ---------------------------------------------------------------------------------------------
// (b) prepare, read back

fn small_layout() -> Layout {
    Layout {
        slot_bytes: 64 << 10,
        meta_total_bytes: 4 * MIB,
        ..Layout::default()
    }
}

fn prepare_image(spec: &PrepareSpec) -> (Blank, Prepared) {
    let mut blank = blank(spec.required_device_bytes());
    let mut calls = 0;
    let prepared = prepare(
        &blank.device,
        &mut blank.engine,
        spec,
        &mut |done, total| {
            assert!(done <= total);
            calls += 1;
        },
    )
    .expect("prepare");
    assert!(calls > 0 || spec.entry_count == 0);
    (blank, prepared)
}

/// Checks every slot of a prepared image against its spec, damage included.
fn check_slots(file: &File, prepared: &Prepared) {
    let (spec, geometry) = (&prepared.spec, &prepared.geometry);
    for entry in prepared.entries() {
        let header_block = read_at(file, entry.offset_bytes, geometry.header_bytes());
        let expected_info = match entry.damage {
            Some(damage) => {
                damage.damaged_header(entry.header(), spec.other_identity(entry.entry_index))
            }
            None => None,
        }
        .unwrap_or_else(|| entry.header().to_bytes());
        assert_eq!(
            header_block[..24],
            expected_info,
            "header of entry {}",
            entry.entry_index
        );
        assert!(header_block[24..].iter().all(|&b| b == 0));
        let expected_header = SlotHeader::decode(&header_block);
        match entry.damage {
            None | Some(Damage::PayloadFlip) => assert_eq!(expected_header, Ok(entry.header())),
            Some(_) => assert_ne!(expected_header, Ok(entry.header())),
        }
        if !spec.with_payloads {
            continue;
        }
        let padded = geometry.round_up_bytes(entry.size_bytes);
        let payload = read_at(file, entry.offset_bytes + geometry.header_bytes(), padded);
        let mut expected: Vec<u8> = (0..padded)
            .map(|j| match j < entry.size_bytes {
                true => payload_byte(entry.entry_index, j),
                false => 0,
            })
            .collect();
        if entry.damage == Some(Damage::PayloadFlip) {
            expected[0] ^= 0xff;
        }
        assert!(
            payload == expected,
            "payload of entry {}",
            entry.entry_index
        );
    }
}

/// Checks both mirrors and returns the seq a reader selects.
fn check_checkpoints(file: &File, prepared: &Prepared) -> Option<u64> {
    let (spec, geometry) = (&prepared.spec, &prepared.geometry);
    let mut best: Option<u64> = None;
    for mirror_index in 0..2 {
        let Ok((seq, payload)) = mirror_payload(file, &spec.layout, geometry, mirror_index) else {
            continue;
        };
        let checkpoint = Checkpoint::parse(&payload).expect("checkpoint parses");
        checkpoint
            .check_against(
                &spec.layout,
                geometry,
                Some(&spec.device_path),
                DevicePathPolicy::Strict,
            )
            .expect("checkpoint applies");
        let listed = if seq < u64::from(spec.checkpoints) {
            spec.entry_count / 2
        } else {
            spec.entry_count
        };
        assert_eq!(checkpoint.entries.len() as u64, listed, "seq {seq}");
        for (k, parsed) in checkpoint.entries.iter().enumerate() {
            let entry = spec.entry(k as u64);
            let fields = parsed.fields.as_ref().expect("well-formed");
            assert_eq!(parsed.key, entry.key);
            assert_eq!(
                (fields.offset_bytes, fields.size_bytes),
                (entry.offset_bytes, entry.size_bytes)
            );
            assert_eq!(fields.tensor, entry.tensor());
            assert_eq!(parsed.slot_index(geometry), Ok(entry.slot_index));
        }
        best = best.max(Some(seq));
        if Some(seq) == prepared.winning_seq {
            assert_eq!(checkpoint.next_slot(), prepared.next_slot);
        }
    }
    best
}

fn damaged_spec() -> PrepareSpec {
    PrepareSpec {
        with_payloads: true,
        device_path: "/srv/raw_block/test.img".to_owned(),
        seed: 42,
        placement: SlotPlacement::Shuffled,
        damage: DamagePlan::explicit(
            Damage::ALL
                .into_iter()
                .enumerate()
                .map(|(i, d)| (3 + 40 * i as u64, d)),
        ),
        ..PrepareSpec::new(small_layout(), 300)
    }
}

#[test]
fn prepared_image_reads_back_as_specified() {
    let spec = damaged_spec();
    let (blank, prepared) = prepare_image(&spec);
    let file = File::open(&blank.path).unwrap();
    check_slots(&file, &prepared);
    assert_eq!(check_checkpoints(&file, &prepared), Some(2));
    assert_eq!(prepared.winning_seq, Some(2));
    assert_eq!(prepared.next_slot, 300);
    assert_eq!(prepared.expected_index_len(), 300 - 5);
    let states: Vec<_> = prepared
        .entries()
        .filter(|e| e.damage.is_some())
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == ExpectedState::Present)
            .count(),
        1
    );
    assert!(prepared.buffers_taken_max <= prepared.window_ops_max);
}

#[test]
fn same_seed_same_bytes_other_seed_other_keys() {
    let spec = PrepareSpec {
        damage: DamagePlan::Random {
            per_million: 50_000,
            seed: 7,
        },
        ..damaged_spec()
    };
    let (first, _) = prepare_image(&spec);
    let (second, prepared) = prepare_image(&spec);
    assert!(std::fs::read(&first.path).unwrap() == std::fs::read(&second.path).unwrap());
    check_slots(&File::open(&second.path).unwrap(), &prepared);
    let other = PrepareSpec {
        seed: 43,
        ..spec.clone()
    };
    assert_ne!(other.key(0), spec.key(0));
}

#[test]
fn checkpoint_damage_leaves_the_right_mirror_in_charge() {
    let cases = [
        (2, CheckpointDamage::None, Some(2)),
        (2, CheckpointDamage::BadCrcNewest, Some(1)),
        (2, CheckpointDamage::ZeroedNewestHeader, Some(1)),
        (2, CheckpointDamage::BothMirrorsBad, None),
        (1, CheckpointDamage::None, Some(1)),
        (1, CheckpointDamage::BadCrcNewest, None),
        (0, CheckpointDamage::None, None),
    ];
    for (checkpoints, checkpoint_damage, winner) in cases {
        let spec = PrepareSpec {
            checkpoints,
            checkpoint_damage,
            sizes: EntrySizes::Fixed(100),
            placement: SlotPlacement::Strided { stride: 2 },
            ..PrepareSpec::new(small_layout(), 41)
        };
        let (blank, prepared) = prepare_image(&spec);
        let file = File::open(&blank.path).unwrap();
        let case = format!("{checkpoints} checkpoints, {checkpoint_damage:?}");
        assert_eq!(prepared.winning_seq, winner, "{case}");
        assert_eq!(check_checkpoints(&file, &prepared), winner, "{case}");
        let present = prepared
            .entries()
            .filter(|e| e.state == ExpectedState::Present)
            .count();
        let expected_present = match (winner, checkpoints) {
            (None, _) => 0,
            (Some(1), 2) => 20,
            _ => 41,
        };
        assert_eq!(present, expected_present, "{case}");
        let expected_next_slot = match expected_present {
            0 => 0,
            n => 2 * (n as u64 - 1) + 1,
        };
        assert_eq!(prepared.next_slot, expected_next_slot, "{case}");
        check_slots(&file, &prepared);
    }
}

#[test]
fn bad_specs_are_refused_before_writing() {
    let layout = small_layout();
    let cases = [
        PrepareSpec {
            sizes: EntrySizes::Fixed(0),
            ..PrepareSpec::new(layout.clone(), 4)
        },
        PrepareSpec {
            sizes: EntrySizes::Fixed(61441),
            ..PrepareSpec::new(layout.clone(), 4)
        },
        PrepareSpec {
            checkpoints: 3,
            ..PrepareSpec::new(layout.clone(), 4)
        },
        PrepareSpec {
            damage: DamagePlan::explicit([(4, Damage::Zeroed)]),
            ..PrepareSpec::new(layout.clone(), 4)
        },
    ];
    for spec in cases {
        let mut blank = blank(spec.required_device_bytes());
        let error = prepare(&blank.device, &mut blank.engine, &spec, &mut |_, _| {}).unwrap_err();
        assert!(matches!(error, WriteError::Spec { .. }), "{error}");
    }
    let spec = PrepareSpec::new(layout, 100);
    let mut small = blank(spec.required_device_bytes() - (64 << 10));
    let error = prepare(&small.device, &mut small.engine, &spec, &mut |_, _| {}).unwrap_err();
    assert_eq!(
        error.to_string(),
        "bad prepare spec: 100 slots needed, the device has 99"
    );
}

// ---------------------------------------------------------------------------------------------
// (c) memory stays bounded

#[test]
fn two_hundred_thousand_headers_stream_through_a_bounded_pool() {
    let layout = Layout {
        block_align: 512,
        header_bytes: 512,
        slot_bytes: 1024,
        meta_total_bytes: 96 * MIB,
        ..Layout::default()
    };
    let spec = PrepareSpec {
        checkpoints: 1,
        ..PrepareSpec::new(layout, 200_000)
    };
    let (blank, prepared) = prepare_image(&spec);
    assert_eq!(prepared.stats.slot_count, 200_000);
    assert!(
        prepared.buffers_taken_max <= prepared.window_ops_max,
        "{} buffers taken, window {}",
        prepared.buffers_taken_max,
        prepared.window_ops_max
    );
    let file = File::open(&blank.path).unwrap();
    for k in [0, 1, 99_999, 199_999] {
        let entry = prepared.entry(k);
        let header = SlotHeader::decode(&read_at(&file, entry.offset_bytes, 512));
        assert_eq!(header, Ok(entry.header()), "entry {k}");
    }
    assert_eq!(check_checkpoints(&file, &prepared), Some(1));
}

// ---------------------------------------------------------------------------------------------
// (d) refusals

#[test]
fn read_only_device_is_a_typed_error() {
    let spec = PrepareSpec::new(small_layout(), 10);
    let writable = blank(spec.required_device_bytes());
    let device = Arc::new(Device::open(&writable.path).expect("open read-only"));
    let mut engine = SerialEngine::new(device.clone()).unwrap();
    let error = prepare(&device, &mut engine, &spec, &mut |_, _| {}).unwrap_err();
    let WriteError::Io(op_error) = &error else {
        panic!("expected an I/O error, got {error}");
    };
    assert!(
        matches!(op_error.error, IoError::Unsupported { .. }),
        "{op_error}"
    );
    assert_eq!(
        error.to_string(),
        "write of 4096 bytes at offset 4194304 failed"
    );
    let source = std::error::Error::source(&error).expect("source");
    assert_eq!(source.to_string(), op_error.error.to_string());
    let mut writer = DeviceWriter::new(&device, &mut engine, &small_layout()).unwrap();
    assert!(matches!(
        writer.write_checkpoint(1, b"{}"),
        Err(WriteError::Io(_))
    ));
}

#[test]
fn writer_refuses_what_a_reader_would_reject() {
    let layout = small_layout();
    let mut blank = blank(layout.meta_total_bytes + 4 * layout.slot_bytes);
    let mut writer = DeviceWriter::new(&blank.device, &mut blank.engine, &layout).unwrap();
    let too_large = vec![b' '; (2 * MIB - 4096 + 1) as usize];
    let error = writer.write_checkpoint(1, &too_large).unwrap_err();
    assert!(matches!(
        error,
        WriteError::Checkpoint {
            seq: 1,
            source: CheckpointRejection::PayloadTooLarge { .. }
        }
    ));
    assert!(matches!(
        writer.write_checkpoint(2, b""),
        Err(WriteError::Checkpoint { .. })
    ));
    let header = SlotHeader {
        identity: 1,
        payload_len_bytes: 1,
    };
    let slot = |slot_index, len_bytes| SlotWrite {
        slot_index,
        header,
        payload: Some(PayloadSpec {
            len_bytes,
            pattern: PayloadPattern::Zeroes,
        }),
    };
    let error = writer.write_slots([slot(0, 1), slot(4, 1)]).unwrap_err();
    assert_eq!(error.to_string(), "slot 4 is past max_slots 4");
    let error = writer.write_slots([slot(1, 61441)]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "slot 1: payload of 61441 bytes, a slot holds 61440"
    );
    let error = writer
        .write_blocks([BlockWrite {
            offset_bytes: 512,
            bytes: vec![0; 4096],
        }])
        .unwrap_err();
    assert!(matches!(error, WriteError::Unaligned { .. }), "{error}");
    let file = File::open(&blank.path).unwrap();
    let slot0 = SlotHeader::decode(&read_at(&file, layout.meta_total_bytes, 4096));
    assert_eq!(slot0, Ok(header), "slots before the bad one are written");
}
