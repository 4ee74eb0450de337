//! Fuzzes the checkpoint payload parser and the apply rules over what it returns.
//!
//! For any bytes: `Checkpoint::parse` and `parse_streaming` agree (same head, same entries,
//! or the same error), nothing panics or overflows the stack; the whole-checkpoint and
//! per-entry rules judge every parsed checkpoint, an accepted entry names a slot inside the
//! device, and identities derive or fail typed. What rbio writes back for a parsed checkpoint
//! parses again to the same head and entries, and writing that again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbio_recovery::{
    encode_checkpoint, Checkpoint, CheckpointEntry, DevicePathPolicy, EntryEvent, KeyNamespace,
    Layout,
};

fuzz_target!(|data: &[u8]| {
    let parsed = Checkpoint::parse(data);
    let mut streamed: Vec<CheckpointEntry<'_>> = Vec::new();
    let head = Checkpoint::parse_streaming(data, &mut |event| match event {
        EntryEvent::EntriesStart(_) => {}
        EntryEvent::Entry(entry) => streamed.push(entry),
        EntryEvent::Restart => streamed.clear(),
    });
    let checkpoint = match (parsed, head) {
        (Ok(checkpoint), Ok(head)) => {
            assert_eq!(checkpoint.head, head);
            assert_eq!(checkpoint.entries, streamed);
            checkpoint
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            return;
        }
        (a, b) => panic!("parse and parse_streaming disagree: {a:?} / {b:?}"),
    };
    apply_rules(&checkpoint);
    round_trip(&checkpoint);
});

/// The spec's apply rules on a c1000-like geometry: typed verdicts, slots inside the device.
fn apply_rules(checkpoint: &Checkpoint<'_>) {
    let layout = Layout {
        slot_bytes: 64 << 10,
        meta_total_bytes: 4 << 20,
        ..Layout::default()
    };
    let geometry = layout.validate(72 << 20).expect("a valid layout");
    for policy in [DevicePathPolicy::Strict, DevicePathPolicy::Ignore] {
        if let Err(rejection) = checkpoint.check_against(&layout, &geometry, Some("/dev/x"), policy)
        {
            assert!(!rejection.to_string().is_empty());
        }
    }
    for entry in &checkpoint.entries {
        match entry.slot_index(&geometry) {
            Ok(slot_index) => {
                let fields = entry.fields.as_ref().expect("an accepted entry has fields");
                assert!(slot_index < geometry.max_slots());
                assert_eq!(geometry.slot_offset_bytes(slot_index), fields.offset_bytes);
                assert!(fields.size_bytes > 0);
                assert!(fields.size_bytes <= geometry.payload_capacity_bytes());
            }
            Err(rejection) => assert!(!rejection.to_string().is_empty()),
        }
        for namespace in [KeyNamespace::Object, KeyNamespace::Legacy] {
            if let Err(error) = namespace.identity(&entry.key) {
                assert!(!error.to_string().is_empty());
            }
        }
    }
}

/// rbio's writer on a parsed checkpoint gives a payload that parses to the same head and
/// well-formed entries, and that the writer reproduces exactly.
fn round_trip(checkpoint: &Checkpoint<'_>) {
    let written = encode_checkpoint(checkpoint);
    assert!(written.is_ascii(), "rbio writes ASCII checkpoints");
    let again = Checkpoint::parse(&written).expect("rbio's own checkpoint parses");
    assert_eq!(again.head, checkpoint.head);
    let well_formed: Vec<&CheckpointEntry<'_>> = checkpoint
        .entries
        .iter()
        .filter(|entry| entry.fields.is_ok())
        .collect();
    assert_eq!(again.entries.len(), well_formed.len());
    for (read, original) in again.entries.iter().zip(well_formed) {
        assert_eq!(read.key, original.key);
        let (read, original) = (read.fields.as_ref(), original.fields.as_ref());
        let (read, original) = (read.expect("written"), original.expect("filtered"));
        assert_eq!(read.offset_bytes, original.offset_bytes);
        assert_eq!(read.size_bytes, original.size_bytes);
    }
    assert_eq!(encode_checkpoint(&again), written);
}
