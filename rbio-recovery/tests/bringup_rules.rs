//! Bringup rules beyond the spec's letter that keep a recovered cache safe: a kept entry whose
//! slot lies at or past the checkpoint's `next_slot` raises `next_slot` (with a warning), so
//! the slot is never handed out again while the entry still owns it; a read refused as a
//! configuration error stops bringup with nothing recovered; a checkpoint ignored as a whole
//! costs no slot header read.

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;

use rbio_core::{
    Capabilities, Completion, Device, Engine, Errno, Fault, FaultPlan, FaultTarget, FaultyEngine,
    IoError, Op, SerialEngine, Wait,
};
use rbio_recovery::{
    prepare, Bringup, BringupError, BringupOptions, CheckpointHead, CheckpointWriter, DeviceWriter,
    EntryFields, Layout, PrepareSpec, Prepared, TensorMeta, Warning,
};

/// A small layout: 64 KiB slots, 1 MiB of metadata.
fn small_layout() -> Layout {
    Layout {
        slot_bytes: 64 << 10,
        meta_total_bytes: 1 << 20,
        ..Layout::default()
    }
}

/// An image at `path` prepared with `entry_count` entries, recording `device_path`.
fn prepared_image(path: &Path, entry_count: u64, device_path: &str) -> Prepared {
    let mut spec = PrepareSpec::new(small_layout(), entry_count);
    spec.device_path = device_path.to_owned();
    let file = std::fs::File::create(path).unwrap();
    file.set_len(spec.required_device_bytes()).unwrap();
    let device = Arc::new(Device::options().write(true).open(path).unwrap());
    let mut engine = SerialEngine::new(device.clone()).unwrap();
    prepare(&device, &mut engine, &spec, &mut |_, _| {}).unwrap()
}

/// An engine that counts the operations submitted to the one it wraps.
struct Counting<E> {
    inner: E,
    submitted: u64,
}

impl<E: Engine> Engine for Counting<E> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn submit(&mut self, ops: &mut Vec<Op>) {
        self.submitted += ops.len() as u64;
        self.inner.submit(ops);
    }

    fn reap(&mut self, completions: &mut Vec<Completion>, wait: Wait) -> usize {
        self.inner.reap(completions, wait)
    }

    fn pending_count(&self) -> usize {
        self.inner.pending_count()
    }

    fn readiness(&self) -> BorrowedFd<'_> {
        self.inner.readiness()
    }
}

#[test]
fn a_read_refused_as_misconfigured_stops_bringup_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("einval.img");
    prepared_image(&path, 20, "");
    let device = Arc::new(Device::open(&path).unwrap());
    let options = BringupOptions {
        layout: small_layout(),
        configured_device_path: Some(String::new()),
        window_ops_max: 4,
        ..BringupOptions::default()
    };
    let bringup = Bringup::new(device.clone(), options).unwrap();
    let einval = Fault::Fail(IoError::Os(Errno::EINVAL));
    // Every read, then only the slot headers (past the metadata): both stop bringup.
    let data_bytes = small_layout().meta_total_bytes;
    let share_past_metadata = (0..20).map(|slot| data_bytes + slot * (64 << 10));
    let header_plan = share_past_metadata.fold(FaultPlan::new(0), |plan, offset| {
        plan.with(FaultTarget::Offset(offset), einval.clone())
    });
    for plan in [
        FaultPlan::new(0).with(FaultTarget::All, einval.clone()),
        header_plan,
    ] {
        let serial = SerialEngine::new(device.clone()).unwrap();
        let mut engine = FaultyEngine::new(serial, plan).unwrap();
        let error = bringup.run(&mut engine, &mut |_| {}).unwrap_err();
        assert!(matches!(error, BringupError::Configuration(_)), "{error:?}");
        let line = error.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("Invalid argument"), "{line}");
        assert!(line.contains("--buffered"), "no fix named: {line}");
        assert!(
            engine.counts().failed <= 4,
            "reads went on past the window of the first refusal: {:?}",
            engine.counts()
        );
    }
}

#[test]
fn a_device_error_on_every_header_is_an_answer_not_a_misconfiguration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eio.img");
    prepared_image(&path, 20, "");
    let device = Arc::new(Device::open(&path).unwrap());
    let options = BringupOptions {
        layout: small_layout(),
        configured_device_path: Some(String::new()),
        ..BringupOptions::default()
    };
    let bringup = Bringup::new(device.clone(), options).unwrap();
    let data_bytes = small_layout().meta_total_bytes;
    let plan = (0..20).fold(FaultPlan::new(0), |plan, slot| {
        let offset = data_bytes + slot * (64 << 10);
        plan.with(
            FaultTarget::Offset(offset),
            Fault::Fail(IoError::Os(Errno::EIO)),
        )
    });
    let mut engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
    let recovered = bringup.run(&mut engine, &mut |_| {}).unwrap();
    assert_eq!(recovered.report.counts.unreadable_kept, 20);
}

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
    let warning = recovered.report.warnings.iter().find(|w| {
        matches!(
            w,
            Warning::NextSlotRaised {
                next_slot: 2,
                highest_owned: 5
            }
        )
    });
    assert!(
        warning.is_some(),
        "no warning in {:?}",
        recovered.report.warnings
    );
}
