//! Fuzzes the layout rules: any parameters and device size give a geometry or a typed
//! `FormatError`, never a panic or an overflow; a geometry places slots and mirrors inside the
//! device and maps each slot offset back to its slot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbio_recovery::{KeyNamespace, Layout, MIRROR_COUNT};

fn word(data: &[u8], index: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = data.get(index * 8 + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(bytes)
}

fuzz_target!(|data: &[u8]| {
    // Small exponents as often as raw values, so that valid layouts are common.
    let pick = |index: usize| {
        let raw = word(data, index);
        if raw & 1 == 0 {
            1u64 << ((raw >> 1) % 40)
        } else {
            raw >> 1
        }
    };
    let mut meta_magic = [0u8; 8];
    meta_magic.copy_from_slice(&word(data, 5).to_le_bytes());
    let layout = Layout {
        block_align: pick(0),
        header_bytes: pick(1),
        slot_bytes: pick(2),
        meta_total_bytes: pick(3),
        capacity_bytes: pick(4) & word(data, 7),
        meta_magic,
        meta_version: word(data, 6) as u32,
        namespace: KeyNamespace::Object,
    };
    let device_size_bytes = pick(8);
    let Ok(geometry) = layout.validate(device_size_bytes) else {
        return;
    };
    assert!(geometry.max_slots() >= 1);
    assert!(geometry.capacity_bytes() <= device_size_bytes);
    assert!(geometry.mirror_bytes() > geometry.block_align());
    for mirror_index in 0..MIRROR_COUNT {
        let end = geometry.mirror_offset_bytes(mirror_index) + geometry.mirror_bytes();
        assert!(end <= geometry.data_base_bytes());
    }
    for slot_index in [0, geometry.max_slots() / 2, geometry.max_slots() - 1] {
        let offset_bytes = geometry.slot_offset_bytes(slot_index);
        assert_eq!(geometry.slot_index_of(offset_bytes), Ok(slot_index));
        assert!(offset_bytes + geometry.slot_bytes() <= geometry.capacity_bytes());
        assert!(geometry.slot_index_of(offset_bytes + 1).is_err());
    }
    let past_end = geometry.data_base_bytes() + geometry.max_slots() * geometry.slot_bytes();
    assert!(geometry.slot_index_of(past_end).is_err());
    let _ = geometry.round_up_bytes(word(data, 9));
});
