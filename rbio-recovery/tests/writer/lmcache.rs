//! (a) Byte compatibility: both LMCache 0.5.6 fixtures rebuilt with `DeviceWriter` equal the
//! originals byte for byte.

use super::*;

fn unpack(name: &str) -> (tempfile::TempDir, PathBuf, Value) {
    common::unpack_fixture(name)
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
