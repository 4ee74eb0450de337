//! Recovery equivalence: for random layouts, entry sets, slot damage, checkpoint damage,
//! checkpoints carrying broken entries (duplicate slots and keys, out-of-range offsets, bad
//! sizes) and random injected I/O faults, every engine recovers exactly the index, free list
//! and report that the serial reference does. Without faults, the serial result is also
//! checked against what `prepare` says a correct bringup must find.

mod common;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rbio_core::{
    Device, Errno, Fault, FaultPlan, FaultTarget, FaultyEngine, IoError, OpKind, SerialEngine,
};
use rbio_recovery::{
    prepare, Bringup, BringupOptions, CheckpointDamage, CheckpointHead, CheckpointWriter,
    DamagePlan, DeviceWriter, EntryFields, EntrySizes, EntryState, ExpectedState, Layout,
    PrepareSpec, Prepared, Recovered, SlotPlacement, TensorMeta,
};

/// One random image and how to read it.
#[derive(Clone, Debug)]
struct Case {
    spec: PrepareSpec,
    broken_entries: bool,
    fault_per_million: u32,
    fault_seed: u64,
    keep_unreadable: bool,
    verify: bool,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        prop_oneof![Just(8u64 << 10), Just(16 << 10), Just(64 << 10)],
        prop_oneof![Just(4096u64), Just(8192)],
    )
        .prop_map(|(slot_bytes, header_bytes)| Layout {
            slot_bytes,
            header_bytes: header_bytes.min(slot_bytes / 2),
            meta_total_bytes: 1 << 20,
            ..Layout::default()
        })
}

fn case() -> impl Strategy<Value = Case> {
    let damage = prop_oneof![
        Just(DamagePlan::None),
        (1u32..400_000, any::<u64>())
            .prop_map(|(per_million, seed)| DamagePlan::Random { per_million, seed }),
    ];
    let checkpoint_damage = prop_oneof![
        4 => Just(CheckpointDamage::None),
        1 => Just(CheckpointDamage::BadCrcNewest),
        1 => Just(CheckpointDamage::ZeroedNewestHeader),
        1 => Just(CheckpointDamage::BothMirrorsBad),
    ];
    let placement = prop_oneof![
        Just(SlotPlacement::Sequential),
        Just(SlotPlacement::Shuffled),
        (2u64..4).prop_map(|stride| SlotPlacement::Strided { stride }),
    ];
    (
        (
            layout(),
            0u64..300,
            any::<u64>(),
            damage,
            checkpoint_damage,
            placement,
            0u32..=2,
        ),
        (
            any::<bool>(),
            prop_oneof![3 => Just(0u32), 1 => 1u32..50_000],
            any::<u64>(),
            any::<bool>(),
            prop_oneof![4 => Just(true), 1 => Just(false)],
        ),
    )
        .prop_map(
            |(
                (layout, entry_count, seed, damage, checkpoint_damage, placement, checkpoints),
                rest,
            )| {
                let (broken_entries, fault_per_million, fault_seed, keep_unreadable, verify) = rest;
                let mut spec = PrepareSpec::new(layout, entry_count);
                spec.seed = seed;
                spec.damage = damage;
                spec.checkpoint_damage = checkpoint_damage;
                spec.placement = placement;
                spec.checkpoints = checkpoints;
                spec.sizes = EntrySizes::Random;
                Case {
                    spec,
                    broken_entries,
                    fault_per_million,
                    fault_seed,
                    keep_unreadable,
                    verify,
                }
            },
        )
}

/// Writes the image of `case` into a new temporary file.
fn make_image(case: &Case) -> (tempfile::NamedTempFile, Prepared) {
    let image = tempfile::NamedTempFile::new().unwrap();
    let extra_slots = 4 * case.spec.layout.slot_bytes;
    image
        .as_file()
        .set_len(case.spec.required_device_bytes() + extra_slots)
        .unwrap();
    let device = Arc::new(Device::options().write(true).open(image.path()).unwrap());
    let mut engine = SerialEngine::new(device.clone()).unwrap();
    let prepared = prepare(&device, &mut engine, &case.spec, &mut |_, _| {}).unwrap();
    if case.broken_entries && prepared.spec.entry_count > 0 {
        write_broken_checkpoint(&device, &mut engine, &prepared);
    }
    (image, prepared)
}

/// Writes a newer checkpoint listing every entry plus entries that break each rule: a second
/// owner for a slot, a repeated key, offsets out of range or misaligned, sizes 0 and too big.
fn write_broken_checkpoint(device: &Device, engine: &mut SerialEngine, prepared: &Prepared) {
    let geometry = prepared.geometry;
    let layout = &prepared.spec.layout;
    let next_slot = prepared.spec.slots_used();
    let head = CheckpointHead::for_layout(layout, &geometry, "", next_slot);
    let mut writer = CheckpointWriter::new(&head);
    let fields = |offset_bytes, size_bytes| EntryFields {
        offset_bytes,
        size_bytes,
        tensor: TensorMeta::default(),
    };
    let entries: Vec<_> = prepared.entries().collect();
    for entry in &entries {
        writer.push(&entry.key, &fields(entry.offset_bytes, entry.size_bytes));
    }
    let first = &entries[0];
    let last = &entries[entries.len() - 1];
    writer.push(
        "second-owner-of-first-slot",
        &fields(first.offset_bytes, first.size_bytes),
    );
    writer.push(&last.key, &fields(first.offset_bytes, last.size_bytes));
    let end = geometry.data_base_bytes() + geometry.max_slots() * geometry.slot_bytes();
    writer.push("past-the-end", &fields(end, 10));
    writer.push("misaligned", &fields(geometry.data_base_bytes() + 100, 10));
    writer.push("in-the-metadata", &fields(0, 10));
    writer.push("size-zero", &fields(last.offset_bytes, 0));
    writer.push(
        "size-too-big",
        &fields(last.offset_bytes, geometry.payload_capacity_bytes() + 1),
    );
    let seq = prepared
        .winning_seq
        .unwrap_or(0)
        .max(u64::from(prepared.spec.checkpoints))
        + 1;
    let mut device_writer = DeviceWriter::new(device, engine, layout).unwrap();
    device_writer
        .write_checkpoint(seq, &writer.finish())
        .unwrap();
}

fn fault_plan(case: &Case) -> FaultPlan {
    let share = |per_million| FaultTarget::Share { per_million };
    FaultPlan::new(case.fault_seed)
        .with_kind(
            share(case.fault_per_million),
            OpKind::Read,
            Fault::Fail(IoError::Os(Errno::EIO)),
        )
        .with_kind(
            share(case.fault_per_million / 2),
            OpKind::Read,
            Fault::Short { done_bytes: 8 },
        )
        .with_kind(
            share(case.fault_per_million / 4),
            OpKind::Read,
            Fault::Stall,
        )
        .stall_timeout(Duration::from_millis(2))
}

/// Brings the image up with one engine, its result made comparable (no timings, no name).
fn bring_up(
    case: &Case,
    path: &std::path::Path,
    factory: common::EngineFactory,
) -> Result<Recovered, String> {
    let device = Arc::new(Device::open(path).unwrap());
    let options = BringupOptions {
        layout: case.spec.layout.clone(),
        configured_device_path: Some(String::new()),
        keep_unreadable: case.keep_unreadable,
        verify: case.verify,
        window_ops_max: 32,
        report_all_entries: true,
        ..BringupOptions::default()
    };
    let bringup = Bringup::new(device.clone(), options).map_err(|e| e.to_string())?;
    let inner = factory(&device, bringup.header_pool());
    let mut engine = FaultyEngine::new(inner, fault_plan(case)).unwrap();
    let mut recovered = bringup
        .run(&mut engine, &mut |_| {})
        .map_err(|e| e.to_string())?;
    let report = &mut recovered.report;
    report.engine.clear();
    report.phases = Default::default();
    report.header_buffer_bytes_max = 0;
    report.settings.engine_in_flight_max = 0;
    report.settings.op_timeout = None;
    Ok(recovered)
}

/// Without faults or broken entries, serial bringup must find what `prepare` promised.
fn check_expectations(prepared: &Prepared, recovered: &Recovered) -> Result<(), TestCaseError> {
    let states: std::collections::HashMap<&str, &EntryState> = recovered
        .report
        .entries
        .iter()
        .map(|e| (e.key.as_str(), &e.state))
        .collect();
    for entry in prepared.entries() {
        let state = states.get(entry.key.as_str());
        match &entry.state {
            ExpectedState::Present => {
                prop_assert_eq!(state, Some(&&EntryState::Kept), "{}", entry.key)
            }
            ExpectedState::Dropped(reason) => {
                prop_assert_eq!(
                    state,
                    Some(&&EntryState::Stale(reason.clone())),
                    "{}",
                    entry.key
                )
            }
            ExpectedState::Absent => {
                prop_assert!(state.is_none(), "{} should be absent", entry.key)
            }
        }
    }
    prop_assert_eq!(recovered.index.len() as u64, prepared.expected_index_len());
    prop_assert_eq!(&recovered.free_slots, &prepared.expected_free_slots());
    prop_assert_eq!(
        recovered.report.checkpoint.map(|c| c.seq),
        prepared.winning_seq
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_engine_recovers_what_the_serial_engine_recovers(case in case()) {
        let (image, prepared) = make_image(&case);
        let engines = common::engines();
        let (_, serial) = engines[0];
        let reference = bring_up(&case, image.path(), serial);
        let plain = case.fault_per_million == 0 && !case.broken_entries && case.verify;
        if let (true, Ok(recovered)) = (plain, &reference) {
            check_expectations(&prepared, recovered)?;
        }
        for &(name, factory) in &engines[1..] {
            let result = bring_up(&case, image.path(), factory);
            prop_assert_eq!(&result, &reference, "engine {} differs from serial", name);
        }
        if let Ok(recovered) = &reference {
            for entry in &recovered.index {
                let slot = prepared.geometry.slot_index_of(entry.offset_bytes).unwrap();
                prop_assert!(recovered.free_slots.binary_search(&slot).is_err(), "slot {} of {} freed", slot, entry.key);
            }
            let unreadable_kept = recovered.report.entries.iter().filter(|e| matches!(e.state, EntryState::Unreadable { kept: true, .. })).count() as u64;
            prop_assert_eq!(unreadable_kept, recovered.report.counts.unreadable_kept);
            if !case.keep_unreadable {
                prop_assert_eq!(recovered.report.counts.unreadable_kept, 0);
            }
        }
    }
}
