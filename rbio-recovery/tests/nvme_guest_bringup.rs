//! Inside the QEMU NVMe guest (scripts/nvme-vm/run): bringup through the NVMe passthrough
//! engine on `/dev/ng0nY`, with and without fixed buffers, finds exactly what the serial
//! engine finds on the same namespace's block device `/dev/nvme0nY` (O_DIRECT), and what
//! `prepare` says a correct bringup must find; on 512-byte and 4 KiB LBA namespaces.
//!
//! Built only with `--features nvme-guest`: it needs the rig's devices and fails with a clear
//! message without them.

use std::path::PathBuf;
use std::sync::Arc;

use rbio_core::{Device, Engine, SerialEngine};
use rbio_recovery::{
    prepare, Bringup, BringupOptions, CheckpointDamage, DamagePlan, EntrySizes, ExpectedState,
    Layout, PrepareSpec, Recovered, SlotPlacement,
};
use rbio_uring::NvmeEngine;

/// `(char device, block device)` of every namespace the rig made.
fn namespaces() -> Vec<(PathBuf, PathBuf)> {
    let devices = std::env::var("RBIO_NVME_DEVICES").unwrap_or_else(|_| {
        panic!("RBIO_NVME_DEVICES is not set: run this test inside the NVMe guest (scripts/nvme-vm/run)")
    });
    devices
        .split(',')
        .map(|ng| {
            let block = ng.replace("/dev/ng", "/dev/nvme");
            (PathBuf::from(ng), PathBuf::from(block))
        })
        .collect()
}

fn specs() -> Vec<PrepareSpec> {
    let layout = Layout {
        slot_bytes: 64 << 10,
        meta_total_bytes: 1 << 20,
        ..Layout::default()
    };
    let mut plain = PrepareSpec::new(layout.clone(), 600);
    plain.seed = 1;
    plain.damage = DamagePlan::Random {
        per_million: 50_000,
        seed: 2,
    };
    let mut shuffled = plain.clone();
    shuffled.seed = 3;
    shuffled.placement = SlotPlacement::Shuffled;
    shuffled.sizes = EntrySizes::Fixed(4096);
    shuffled.checkpoint_damage = CheckpointDamage::BadCrcNewest;
    let mut strided = plain.clone();
    strided.seed = 4;
    strided.placement = SlotPlacement::Strided { stride: 3 };
    strided.entry_count = 300;
    strided.with_payloads = true;
    vec![plain, shuffled, strided]
}

fn options(spec: &PrepareSpec) -> BringupOptions {
    BringupOptions {
        layout: spec.layout.clone(),
        configured_device_path: Some(String::new()),
        window_ops_max: 64,
        report_all_entries: true,
        ..BringupOptions::default()
    }
}

fn comparable(mut recovered: Recovered) -> Recovered {
    recovered.report.engine.clear();
    // The passthrough run names /dev/ng0nY, the serial one /dev/nvme0nY.
    recovered.report.device.clear();
    recovered.report.phases = Default::default();
    recovered.report.header_buffer_bytes_max = 0;
    recovered.report.settings.engine_in_flight_max = 0;
    recovered.report.settings.op_timeout = None;
    // The generic char device takes no O_DIRECT (passthrough bypasses the page cache anyway);
    // the serial reference reads the block device with it.
    recovered.report.settings.direct = false;
    recovered.report.settings.direct_refused = false;
    recovered
}

fn bring_up(device: Arc<Device>, spec: &PrepareSpec, engine: &mut dyn Engine) -> Recovered {
    let bringup = Bringup::new(device, options(spec)).expect("bringup set-up");
    comparable(bringup.run(engine, &mut |_| {}).expect("bringup"))
}

/// Brings the namespace up with NVMe passthrough; the pool is registered when `fixed`.
fn bring_up_nvme(ng: &PathBuf, spec: &PrepareSpec, fixed: bool) -> Recovered {
    let device = NvmeEngine::open(ng)
        .expect("open NVMe namespace")
        .device()
        .clone();
    let bringup = Bringup::new(device, options(spec)).expect("bringup set-up");
    let builder = NvmeEngine::builder(ng).window(64);
    let builder = if fixed {
        builder.fixed_buffers(bringup.header_pool())
    } else {
        builder
    };
    let mut engine = builder.build().expect("NVMe engine");
    comparable(
        bringup
            .run(&mut engine, &mut |_| {})
            .expect("bringup over NVMe"),
    )
}

#[test]
fn nvme_passthrough_bringup_matches_serial_and_the_prepared_truth() {
    for (ng, block) in namespaces() {
        for spec in specs() {
            let writable = Device::options()
                .write(true)
                .direct(true)
                .open(&block)
                .expect("open block device");
            let writable = Arc::new(writable);
            let mut writer_engine = SerialEngine::new(writable.clone()).unwrap();
            let prepared =
                prepare(&writable, &mut writer_engine, &spec, &mut |_, _| {}).expect("prepare");
            drop((writer_engine, writable));

            let reference_device = Arc::new(Device::options().direct(true).open(&block).unwrap());
            let mut serial = SerialEngine::new(reference_device.clone()).unwrap();
            let reference = bring_up(reference_device, &spec, &mut serial);
            let label = format!("{} placement {:?}", ng.display(), spec.placement);
            assert_eq!(
                reference.index.len() as u64,
                prepared.expected_index_len(),
                "{label}"
            );
            assert_eq!(
                reference.free_slots,
                prepared.expected_free_slots(),
                "{label}"
            );
            let dropped = prepared
                .entries()
                .filter(|e| matches!(e.state, ExpectedState::Dropped(_)))
                .count();
            assert_eq!(reference.report.counts.stale() as usize, dropped, "{label}");

            for fixed in [false, true] {
                let over_nvme = bring_up_nvme(&ng, &spec, fixed);
                assert_eq!(
                    over_nvme, reference,
                    "{label}, fixed buffers {fixed}: NVMe differs from serial"
                );
            }
            eprintln!(
                "{label}: {} kept, {} stale, the same over NVMe passthrough with and without fixed buffers",
                reference.report.counts.kept,
                reference.report.counts.stale()
            );
        }
    }
}
