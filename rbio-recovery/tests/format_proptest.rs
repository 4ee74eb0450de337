//! Property tests of the format module: what is written reads back the same, and no input,
//! however damaged, makes a decoder or parser panic.
//!
//! Headers and checkpoints are generated with arbitrary values and keys (any Unicode, control
//! characters and astral characters included), written, read back and written again; arbitrary
//! and mutated bytes are fed to every decoder.

use std::borrow::Cow;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rbio_recovery::{
    encode_checkpoint, Checkpoint, CheckpointEntry, CheckpointHead, CheckpointHeader,
    CheckpointWriter, EntryFields, KeyNamespace, Layout, SlotHeader, TensorMeta,
    CHECKPOINT_HEADER_BYTES, SLOT_HEADER_INFO_BYTES,
};
use serde_json::value::RawValue;

/// Tensor metadata texts as LMCache writes them, plus odd but valid JSON.
fn raw_json() -> impl Strategy<Value = Option<Cow<'static, RawValue>>> {
    let text = prop_oneof![
        Just("null".to_owned()),
        prop::collection::vec(any::<u32>(), 0..5).prop_map(|v| serde_json::to_string(&v).unwrap()),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("{\"a\":[1,{\"b\":null}]}".to_owned()),
    ];
    text.prop_map(|t| Some(Cow::Owned(RawValue::from_string(t).unwrap())))
}

fn tensor() -> impl Strategy<Value = TensorMeta<'static>> {
    (raw_json(), raw_json(), raw_json(), raw_json()).prop_map(
        |(shape, dtype, fmt, cached_positions)| TensorMeta {
            shape,
            dtype,
            fmt,
            cached_positions,
        },
    )
}

fn entry() -> impl Strategy<Value = CheckpointEntry<'static>> {
    (any::<String>(), any::<u64>(), any::<u64>(), tensor()).prop_map(
        |(key, offset_bytes, size_bytes, tensor)| CheckpointEntry {
            key: Cow::Owned(key),
            fields: Ok(EntryFields {
                offset_bytes,
                size_bytes,
                tensor,
            }),
        },
    )
}

fn head() -> impl Strategy<Value = CheckpointHead<'static>> {
    let text = || proptest::option::of(any::<String>().prop_map(Cow::Owned));
    let number = || proptest::option::of(any::<u64>());
    (
        (text(), number(), number(), number(), number()),
        (number(), text(), number(), number(), number()),
    )
        .prop_map(
            |((device_path, capacity, align, header, slot), (meta, magic, version, base, next))| {
                CheckpointHead {
                    device_path,
                    capacity_bytes: capacity,
                    block_align: align,
                    header_bytes: header,
                    slot_bytes: slot,
                    meta_total_bytes: meta,
                    meta_magic: magic,
                    meta_version: version,
                    data_base_offset: base,
                    next_slot: next,
                }
            },
        )
}

fn json_values(tensor: &TensorMeta<'_>) -> [Option<serde_json::Value>; 4] {
    tensor
        .texts()
        .map(|text| text.map(|t| serde_json::from_str(t).unwrap()))
}

fn checkpoint() -> impl Strategy<Value = Checkpoint<'static>> {
    (head(), prop::collection::vec(entry(), 0..12))
        .prop_map(|(head, entries)| Checkpoint { head, entries })
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn slot_header_round_trips(identity: u64, payload_len_bytes: u64, extra in 0usize..4096) {
        let header = SlotHeader { identity, payload_len_bytes };
        let mut block = vec![0xAA; SLOT_HEADER_INFO_BYTES + extra];
        header.encode_into(&mut block);
        prop_assert_eq!(SlotHeader::decode(&block), Ok(header));
        prop_assert!(block[SLOT_HEADER_INFO_BYTES..].iter().all(|&b| b == 0));
    }

    #[test]
    fn checkpoint_header_round_trips(magic: [u8; 8], version: u32, seq: u64, len: u64, crc32: u32) {
        let header = CheckpointHeader { magic, version, seq, payload_len_bytes: len, crc32 };
        let mut block = vec![0xAA; 4096];
        header.encode_into(&mut block);
        prop_assert_eq!(CheckpointHeader::decode(&block), Ok(header));
        prop_assert!(block[CHECKPOINT_HEADER_BYTES..].iter().all(|&b| b == 0));
    }

    #[test]
    fn headers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = SlotHeader::decode(&bytes);
        let layout = Layout { meta_total_bytes: 1 << 22, ..Layout::default() };
        let geometry = layout.validate(1 << 30).unwrap();
        if let Ok(header) = CheckpointHeader::decode(&bytes) {
            let _ = header.check(&layout, &geometry);
            let _ = header.check_payload(&bytes);
            let _ = header.payload_read_bytes(&geometry);
        }
    }

    #[test]
    fn checkpoint_round_trips(checkpoint in checkpoint()) {
        let payload = encode_checkpoint(&checkpoint);
        prop_assert!(payload.is_ascii());
        let parsed = Checkpoint::parse(&payload).unwrap();
        prop_assert_eq!(&parsed.head, &checkpoint.head);
        prop_assert_eq!(parsed.entries.len(), checkpoint.entries.len());
        for (read, written) in parsed.entries.iter().zip(&checkpoint.entries) {
            prop_assert_eq!(&read.key, &written.key);
            let (read, written) = (read.fields.as_ref().unwrap(), written.fields.as_ref().unwrap());
            prop_assert_eq!((read.offset_bytes, read.size_bytes), (written.offset_bytes, written.size_bytes));
            // Non-ASCII in carried-through JSON is written escaped: same value, ASCII text.
            prop_assert_eq!(json_values(&read.tensor), json_values(&written.tensor));
        }
        prop_assert!(encode_checkpoint(&parsed) == payload);
        // An independent JSON reader sees the same keys.
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let mut read_keys: Vec<&str> = value["entries"].as_object().unwrap().keys().map(String::as_str).collect();
        let mut written_keys: Vec<&str> = checkpoint.entries.iter().map(|e| &*e.key).collect();
        read_keys.sort_unstable();
        written_keys.sort_unstable();
        written_keys.dedup();
        prop_assert_eq!(read_keys, written_keys);
    }

    #[test]
    fn writer_counts_what_it_wrote(entries in prop::collection::vec(entry(), 0..8)) {
        let mut writer = CheckpointWriter::new(&CheckpointHead::default());
        for entry in &entries {
            writer.push(&entry.key, entry.fields.as_ref().unwrap());
        }
        prop_assert_eq!(writer.entry_count(), entries.len());
        let len_bytes = writer.len_bytes();
        prop_assert_eq!(writer.finish().len(), len_bytes + 2);
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Checkpoint::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_damage(
        checkpoint in checkpoint(),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut payload = encode_checkpoint(&checkpoint);
        for (index, byte) in damage {
            let at = index.index(payload.len());
            payload[at] = byte;
        }
        if let Ok(parsed) = Checkpoint::parse(&payload) {
            let _ = encode_checkpoint(&parsed);
        }
        let _ = Checkpoint::parse(&payload[..cut.index(payload.len() + 1)]);
    }

    #[test]
    fn identities_never_panic(key: String) {
        let _ = KeyNamespace::Object.identity(&key);
        let _ = KeyNamespace::Legacy.identity(&key);
        let legacy = format!("m@1@0@{key}@half");
        let _ = KeyNamespace::Legacy.identity(&legacy);
    }

    #[test]
    fn layouts_validate_or_say_why(
        block_align_log2 in 0u32..64,
        header_blocks in 0u64..4,
        slot_blocks in 0u64..64,
        meta_blocks in 0u64..64,
        capacity_bytes: u64,
        device_size_bytes: u64,
    ) {
        let block_align = 1u64 << block_align_log2;
        let layout = Layout {
            block_align,
            header_bytes: header_blocks.saturating_mul(block_align),
            slot_bytes: slot_blocks.saturating_mul(block_align),
            meta_total_bytes: meta_blocks.saturating_mul(block_align),
            capacity_bytes,
            ..Layout::default()
        };
        let Ok(g) = layout.validate(device_size_bytes) else { return Ok(()) };
        prop_assert!(g.max_slots() >= 1);
        prop_assert!(g.capacity_bytes() <= device_size_bytes);
        prop_assert!(g.mirror_bytes() > g.block_align());
        prop_assert!(2 * g.mirror_bytes() <= g.data_base_bytes());
        let last = g.max_slots() - 1;
        prop_assert!(g.slot_offset_bytes(last) + g.slot_bytes() <= g.capacity_bytes());
        prop_assert_eq!(g.slot_index_of(g.slot_offset_bytes(last)), Ok(last));
        prop_assert_eq!(g.slot_index_of(g.slot_offset_bytes(0)), Ok(0));
    }
}
