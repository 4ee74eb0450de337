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
    prepare, Bringup, BringupError, BringupOptions, CheckpointHead, CheckpointWriter,
    DevicePathPolicy, DeviceWriter, EntryFields, Layout, PrepareSpec, Prepared, TensorMeta,
    Warning,
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
        // The window in flight when the refusal came back, and the window sent before it
        // was looked at (the stream tops up before it visits completions).
        assert!(
            engine.counts().failed <= 2 * 4,
            "reads went on past two windows of the first refusal: {:?}",
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

/// A payload listing every prepared entry, with `head` written before or after `entries`.
fn payload_with_head_at(prepared: &Prepared, head: &str, head_first: bool) -> Vec<u8> {
    let entries: Vec<String> = prepared
        .entries()
        .map(|entry| {
            format!(
                r#""{}":{{"offset":{},"size":{}}}"#,
                entry.key, entry.offset_bytes, entry.size_bytes
            )
        })
        .collect();
    let entries = format!(r#""entries":{{{}}}"#, entries.join(","));
    let fields = if head_first {
        format!(r#"{head},{entries}"#)
    } else {
        format!(r#"{entries},{head}"#)
    };
    format!(r#"{{"version":1,{fields}}}"#).into_bytes()
}

/// Brings `path` up with `layout` and `configured` as the device path through a counting
/// serial engine; returns the ops submitted, whether the checkpoint was ignored, and the
/// entries kept.
fn counted_bringup(
    path: &Path,
    layout: Layout,
    configured: &str,
    verify: bool,
) -> (u64, bool, u64) {
    let device = Arc::new(Device::open(path).unwrap());
    let options = BringupOptions {
        layout,
        configured_device_path: Some(configured.to_owned()),
        verify,
        ..BringupOptions::default()
    };
    let bringup = Bringup::new(device.clone(), options).unwrap();
    let mut engine = Counting {
        inner: SerialEngine::new(device).unwrap(),
        submitted: 0,
    };
    let recovered = bringup.run(&mut engine, &mut |_| {}).unwrap();
    let report = recovered.report;
    (
        engine.submitted,
        report.ignored.is_some(),
        report.counts.kept,
    )
}

#[test]
fn an_ignored_checkpoint_costs_no_header_read() {
    const ENTRIES: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copied.img");
    prepared_image(&path, ENTRIES, "/srv/raw_block/elsewhere.img");
    let elsewhere = "/srv/raw_block/elsewhere.img";
    // Selection alone: what an unverified bringup of the accepted checkpoint reads.
    let (select_ops, ignored, _) = counted_bringup(&path, small_layout(), elsewhere, false);
    assert!(!ignored);
    let (verified_ops, ignored, kept) = counted_bringup(&path, small_layout(), elsewhere, true);
    assert_eq!((ignored, kept), (false, ENTRIES));
    assert_eq!(
        verified_ops,
        select_ops + ENTRIES,
        "one header read per entry"
    );

    // Another device path, then a layout field the checkpoint contradicts.
    let (ops, ignored, _) = counted_bringup(&path, small_layout(), "/dev/other", true);
    assert!(ignored);
    assert_eq!(ops, select_ops, "the device path check read slot headers");
    let header_bytes = Layout {
        header_bytes: 8192,
        ..small_layout()
    };
    let (ops, ignored, _) = counted_bringup(&path, header_bytes, elsewhere, true);
    assert!(ignored);
    assert_eq!(ops, select_ops, "the layout check read slot headers");
}

#[test]
fn fields_after_entries_hold_validation_until_the_parse_ends() {
    const ENTRIES: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.img");
    let prepared = prepared_image(&path, ENTRIES, "");
    let rewrite = |head: &str, head_first: bool| {
        let device = Arc::new(Device::options().write(true).open(&path).unwrap());
        let mut engine = SerialEngine::new(device.clone()).unwrap();
        let mut writer = DeviceWriter::new(&device, &mut engine, &small_layout()).unwrap();
        let payload = payload_with_head_at(&prepared, head, head_first);
        writer.write_checkpoint(9, &payload).unwrap();
    };
    let (select_ops, _, _) = counted_bringup(&path, small_layout(), "/dev/x", false);

    // A device path after `entries` that the rules refuse: nothing read, checkpoint ignored.
    rewrite(r#""device_path":"/dev/other","next_slot":12"#, false);
    let (ops, ignored, _) = counted_bringup(&path, small_layout(), "/dev/x", true);
    assert!(ignored);
    assert_eq!(ops, select_ops);

    // The same fields, accepted: every entry validated once the parse ended.
    rewrite(r#""device_path":"/dev/x","next_slot":12"#, false);
    let (ops, ignored, kept) = counted_bringup(&path, small_layout(), "/dev/x", true);
    assert_eq!((ignored, kept), (false, ENTRIES));
    assert_eq!(ops, select_ops + ENTRIES);

    // Refused before `entries`, then a repeated field after it overturns the verdict: the
    // checkpoint is accepted and its entries are validated after all.
    let complete = r#""device_path":"/dev/other","block_align":4096,"header_bytes":4096,"slot_bytes":65536,"meta_total_bytes":1048576,"meta_magic":"LMCIDX01","meta_version":1,"next_slot":12"#;
    let device = Arc::new(Device::options().write(true).open(&path).unwrap());
    let mut engine = SerialEngine::new(device.clone()).unwrap();
    let mut writer = DeviceWriter::new(&device, &mut engine, &small_layout()).unwrap();
    let mut payload = payload_with_head_at(&prepared, complete, true);
    payload.pop();
    payload.extend_from_slice(br#","device_path":"/dev/x"}"#);
    writer.write_checkpoint(10, &payload).unwrap();
    let (ops, ignored, kept) = counted_bringup(&path, small_layout(), "/dev/x", true);
    assert_eq!((ignored, kept), (false, ENTRIES));
    // The payload (one read: it is smaller than a read chunk) is freed as it is parsed, so
    // it is read again for the second parse.
    assert_eq!(ops, select_ops + 1 + ENTRIES);
}

#[test]
fn a_recorded_path_naming_the_same_file_is_the_same_device() {
    const ENTRIES: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.img");
    let link = dir.path().join("by-id");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    prepared_image(&path, ENTRIES, link.to_str().unwrap());
    let run = |policy: DevicePathPolicy| {
        let device = Arc::new(Device::open(&path).unwrap());
        let options = BringupOptions {
            layout: small_layout(),
            device_path_policy: policy,
            ..BringupOptions::default()
        };
        let bringup = Bringup::new(device.clone(), options).unwrap();
        let mut engine = SerialEngine::new(device).unwrap();
        bringup.run(&mut engine, &mut |_| {}).unwrap().report
    };
    let report = run(DevicePathPolicy::SameDevice);
    assert_eq!(report.ignored, None);
    assert_eq!(report.counts.kept, ENTRIES);
    let expected = Warning::DevicePathAlias {
        recorded: link.to_str().unwrap().to_owned(),
        configured: path.to_str().unwrap().to_owned(),
    };
    assert_eq!(report.warnings, [expected]);
    let strict = run(DevicePathPolicy::Strict);
    assert!(strict.ignored.is_some(), "LMCache's string comparison");

    std::fs::remove_file(&link).unwrap();
    let gone = run(DevicePathPolicy::SameDevice);
    assert!(
        gone.ignored.is_some(),
        "a recorded path that no longer resolves compares as a string"
    );
}
