//! Bad input gives a typed error or a documented result, never a panic. A small prepared image
//! is damaged through `std::fs` in every way the issue lists, then brought up:
//!
//! - device and layout: truncated images, a device smaller than its layout, each layout rule
//!   broken, a layout other than the writer's, a directory, a missing path, `/dev/null`:
//!   `OpenError` or `BringupError::Layout` with the rule, or the checkpoint ignored with why;
//! - mirrors: both corrupt (an empty index, not an error), absurd `payload_len`, bad magic and
//!   version, and a payload forged to the valid one's CRC-32 (accepted, as CRC-32 cannot tell,
//!   and then refused entry by entry by header validation);
//! - payloads with a correct CRC: wrong types, huge numbers, 10 000 levels of nesting, duplicate
//!   keys, negative offsets, invalid UTF-8 and lone surrogates: the checkpoint is ignored with
//!   the reason, or the entry is rejected with it while the rest are kept.
//!
//! The same inputs through the built `rbio` binary exit with their documented code and print
//! one readable line, never a panic (`tests/cli.rs` has the missing-path, directory,
//! `/dev/null`, small-image and bad-flag cases; these are the others).

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use rbio_core::{Device, SerialEngine};
use rbio_recovery::{
    crc32, encode_mirror, open_device, prepare, Bringup, BringupError, BringupOptions,
    CheckpointHeader, CheckpointRejection, FormatError, Layout, MirrorVerdict, PrepareSpec,
    Prepared, Recovered, CHECKPOINT_HEADER_BYTES,
};

const ENTRY_COUNT: u64 = 40;

fn layout() -> Layout {
    Layout {
        slot_bytes: 8 << 10,
        meta_total_bytes: 256 << 10,
        ..Layout::default()
    }
}

/// A prepared image of 40 undamaged entries with two checkpoints (seq 2 newest, in mirror 1).
struct Image {
    _dir: tempfile::TempDir,
    path: PathBuf,
    prepared: Prepared,
}

impl Image {
    fn new() -> Image {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.img");
        let spec = PrepareSpec::new(layout(), ENTRY_COUNT);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(spec.required_device_bytes())
            .unwrap();
        let device = Arc::new(Device::options().write(true).open(&path).unwrap());
        let mut engine = SerialEngine::new(device.clone()).unwrap();
        let prepared = prepare(&device, &mut engine, &spec, &mut |_, _| {}).unwrap();
        Image {
            _dir: dir,
            path,
            prepared,
        }
    }

    fn write_at(&self, offset_bytes: u64, bytes: &[u8]) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap();
        file.write_all_at(bytes, offset_bytes).unwrap();
    }

    fn read_at(&self, offset_bytes: u64, len_bytes: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len_bytes];
        let file = std::fs::File::open(&self.path).unwrap();
        file.read_exact_at(&mut bytes, offset_bytes).unwrap();
        bytes
    }

    /// Writes `payload` as checkpoint seq 3 (mirror 0, newer than both prepared ones), with a
    /// correct header and CRC, as LMCache would.
    fn write_checkpoint(&self, payload: &[u8]) {
        let geometry = &self.prepared.geometry;
        let write = encode_mirror(&layout(), geometry, 3, payload).expect("a payload that fits");
        self.write_at(write.payload_offset_bytes, &write.payload_blocks);
        self.write_at(write.header_offset_bytes, &write.header_block);
    }

    /// The header of mirror `mirror_index` as stored.
    fn mirror_header(&self, mirror_index: usize) -> CheckpointHeader {
        let offset = self.prepared.geometry.mirror_offset_bytes(mirror_index);
        CheckpointHeader::decode(&self.read_at(offset, CHECKPOINT_HEADER_BYTES)).unwrap()
    }

    fn set_mirror_header(&self, mirror_index: usize, header: &CheckpointHeader) {
        let offset = self.prepared.geometry.mirror_offset_bytes(mirror_index);
        self.write_at(offset, &header.to_bytes());
    }

    /// Entry `k` as a checkpoint member, with its real key, offset and size.
    fn entry(&self, k: u64) -> String {
        let entry = self.prepared.entry(k);
        member(&entry.key, entry.offset_bytes, entry.size_bytes)
    }
}

fn member(key: &str, offset_bytes: u64, size_bytes: u64) -> String {
    format!(r#""{key}":{{"offset":{offset_bytes},"size":{size_bytes}}}"#)
}

/// A checkpoint payload with the prepared image's `next_slot` and these members.
fn payload(members: &[String]) -> String {
    let members = members.join(",");
    format!(r#"{{"version":1,"next_slot":{ENTRY_COUNT},"entries":{{{members}}}}}"#)
}

fn options(layout: Layout) -> BringupOptions {
    BringupOptions {
        layout,
        configured_device_path: Some(String::new()),
        report_all_entries: true,
        ..BringupOptions::default()
    }
}

fn bring_up_with(path: &Path, layout: Layout) -> Result<Recovered, BringupError> {
    let device = open_device(path, false).expect("open the image");
    let bringup = Bringup::new(device.clone(), options(layout))?;
    let mut engine = SerialEngine::new(device).unwrap();
    bringup.run(&mut engine, &mut |_| {})
}

fn bring_up(image: &Image) -> Recovered {
    bring_up_with(&image.path, layout()).expect("bad content is not a bringup error")
}

/// Asserts the checkpoint was chosen and ignored as a whole, for `reason`; the index is empty.
fn assert_ignored(case: &str, recovered: &Recovered, reason: &str) {
    let ignored = recovered.report.ignored.as_ref();
    let ignored = ignored.unwrap_or_else(|| panic!("{case}: not ignored"));
    assert!(
        ignored.to_string().contains(reason),
        "{case}: ignored for {ignored:?}, expected {reason:?}"
    );
    assert!(
        recovered.index.is_empty() && recovered.free_slots.is_empty(),
        "{case}"
    );
}

/// The state and reason of the last entry with `key` in the report.
fn state_of(recovered: &Recovered, key: &str) -> (String, String) {
    let outcome = recovered.report.entries.iter().rev().find(|e| e.key == key);
    let outcome = outcome.unwrap_or_else(|| panic!("{key} not in the report"));
    let reason = outcome.state.reason().unwrap_or_default();
    (outcome.state.name().to_owned(), reason)
}

#[test]
#[rustfmt::skip]
fn payloads_that_are_not_checkpoints_are_ignored_with_their_reason() {
    let image = Image::new();
    let deep_open = "[".repeat(10_000);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("version as text", br#"{"version":"1"}"#.to_vec(), "version is a string, not an integer"),
        ("version 2", br#"{"version":2,"entries":{}}"#.to_vec(), "checkpoint version 2"),
        ("root array", b"[1,2,3]".to_vec(), "payload is an array, not an object"),
        ("root string", br#""checkpoint""#.to_vec(), "payload is a string, not an object"),
        ("entries array", br#"{"version":1,"entries":[]}"#.to_vec(), "entries is an array, expected an object"),
        ("next_slot text", br#"{"version":1,"next_slot":"3"}"#.to_vec(), "next_slot is a string"),
        ("next_slot > u64", br#"{"version":1,"next_slot":99999999999999999999999}"#.to_vec(), "next_slot is larger than 2^64 - 1"),
        ("next_slot negative", br#"{"version":1,"next_slot":-1}"#.to_vec(), "next_slot is negative"),
        ("next_slot float", br#"{"version":1,"next_slot":1e3}"#.to_vec(), "next_slot is a floating-point number"),
        ("number beyond f64", br#"{"version":1,"capacity_bytes":1e400}"#.to_vec(), "not JSON"),
        ("device_path number", br#"{"version":1,"device_path":7}"#.to_vec(), "device_path is a number, expected a string"),
        ("block_align bool", br#"{"version":1,"block_align":true}"#.to_vec(), "block_align is a boolean"),
        ("trailing garbage", br#"{"version":1} {}"#.to_vec(), "not JSON"),
        ("10k open brackets, top level", format!(r#"{{"version":1,"x":{deep_open}}}"#).into_bytes(), "not JSON"),
        ("10k open brackets, in an entry", payload(&[format!(r#""k":{{"offset":0,"shape":{deep_open}}}"#)]).into_bytes(), "not JSON"),
        ("invalid UTF-8 in a key", [&br#"{"version":1,"entries":{"k"#[..], b"\xff\xfe", br#"":{}}}"#].concat(), "not UTF-8 after byte 26"),
        ("lone surrogate in device_path", br#"{"version":1,"device_path":"\ud800"}"#.to_vec(), "not JSON"),
        ("other block_align", br#"{"version":1,"block_align":512}"#.to_vec(), "block_align 512 in checkpoint, 4096 configured"),
        ("other slot_bytes", br#"{"version":1,"slot_bytes":16384}"#.to_vec(), "slot_bytes 16384 in checkpoint"),
        ("other meta_magic", br#"{"version":1,"meta_magic":"LMCIDX02"}"#.to_vec(), "meta_magic \"LMCIDX02\""),
        ("next_slot past the device", br#"{"version":1,"next_slot":1000000}"#.to_vec(), "exceeds max_slots"),
        ("another device's path", br#"{"version":1,"device_path":"/dev/other"}"#.to_vec(), "device_path \"/dev/other\" in checkpoint"),
    ];
    for (case, bytes, reason) in cases {
        image.write_checkpoint(&bytes);
        let recovered = bring_up(&image);
        assert_eq!(
            recovered.report.checkpoint.map(|c| c.seq),
            Some(3),
            "{case}"
        );
        assert_ignored(case, &recovered, reason);
    }
}

#[test]
#[rustfmt::skip]
fn broken_entries_are_rejected_alone_and_the_rest_kept() {
    let image = Image::new();
    let (e0, e1, e2) = (
        image.prepared.entry(0),
        image.prepared.entry(1),
        image.prepared.entry(2),
    );
    let e3 = image.prepared.entry(3);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let members = vec![
        image.entry(0),
        image.entry(1),
        // The first of two members with one key yields to the second (as in LMCache's dict).
        member(&e2.key, e1.offset_bytes, e2.size_bytes),
        image.entry(2),
        r#""negative":{"offset":-8192,"size":1}"#.to_owned(),
        r#""too large":{"offset":18446744073709551616,"size":1}"#.to_owned(),
        member("huge size", e0.offset_bytes, u64::MAX),
        r#""offset as text":{"offset":"65536","size":1}"#.to_owned(),
        r#""size null":{"offset":65536,"size":null}"#.to_owned(),
        r#""a number":5"#.to_owned(),
        r#""a list":[65536,1]"#.to_owned(),
        r#""\ud800lone":{"offset":65536,"size":1}"#.to_owned(),
        member("in the metadata", 0, 1),
        member("misaligned", e0.offset_bytes + 512, 1),
        member("second owner", e0.offset_bytes, e0.size_bytes),
        // Entry 3 with 10 000 levels of nesting in its tensor metadata and in an unknown field.
        format!(
            r#""{}":{{"offset":{},"size":{},"shape":{deep},"future":{{"x":{deep}}}}}"#,
            e3.key, e3.offset_bytes, e3.size_bytes
        ),
    ];
    image.write_checkpoint(payload(&members).as_bytes());
    let recovered = bring_up(&image);
    assert!(
        recovered.report.ignored.is_none(),
        "{:?}",
        recovered.report.ignored
    );
    let cases = [
        (e0.key.as_str(), "kept", ""),
        (e1.key.as_str(), "kept", ""),
        (e2.key.as_str(), "kept", ""),
        ("negative", "rejected", "offset is negative"),
        ("too large", "rejected", "offset is larger than 2^64 - 1"),
        ("huge size", "rejected", "size 18446744073709551615 exceeds"),
        ("offset as text", "rejected", "offset is a string, not an integer"),
        ("size null", "rejected", "size is null, not an integer"),
        ("a number", "rejected", "entry is a number, not an object"),
        ("a list", "rejected", "entry is an array, not an object"),
        ("\u{fffd}lone", "rejected", "lone surrogate"),
        ("in the metadata", "rejected", "before the data region"),
        ("misaligned", "rejected", "not a slot boundary"),
        ("second owner", "rejected", "slot 0 belongs to entry"),
        (e3.key.as_str(), "kept", ""),
    ];
    for (key, state, reason) in cases {
        let (found_state, found_reason) = state_of(&recovered, key);
        assert_eq!(found_state, state, "{key}: {found_reason}");
        assert!(found_reason.contains(reason), "{key}: {found_reason:?}");
    }
    // The superseded first member with entry 2's key.
    let duplicates = recovered.report.entries.iter().filter(|e| e.key == e2.key);
    let states: Vec<String> = duplicates
        .map(|e| e.state.reason().unwrap_or_default())
        .collect();
    assert_eq!(
        states,
        ["superseded by a later entry with the same key", ""]
    );
    // Nesting is carried through unchanged.
    let entry3 = recovered.index.iter().find(|e| e.key == e3.key);
    let shape = entry3.unwrap().tensor_texts[0].unwrap();
    assert_eq!(shape, deep);
    assert_eq!(recovered.index.len(), 4);
    assert_eq!(recovered.report.counts.in_checkpoint, 16);
}

#[test]
#[rustfmt::skip]
fn corrupt_or_absurd_mirrors_fall_back_or_leave_an_empty_index() {
    let image = Image::new();
    let geometry = image.prepared.geometry;
    let capacity = geometry.mirror_payload_capacity_bytes();
    let newest = image.mirror_header(1);
    let older = image.mirror_header(0);
    assert_eq!((older.seq, newest.seq), (1, 2));

    // The newest mirror broken in each way: the older one (seq 1) wins.
    let broken: [(&str, CheckpointHeader, &str); 7] = [
        ("payload_len u64::MAX", CheckpointHeader { payload_len_bytes: u64::MAX, ..newest }, "exceeds"),
        ("payload_len capacity + 1", CheckpointHeader { payload_len_bytes: capacity + 1, ..newest }, "exceeds"),
        ("payload_len 0", CheckpointHeader { payload_len_bytes: 0, ..newest }, "length is 0"),
        ("payload_len whole mirror", CheckpointHeader { payload_len_bytes: capacity, ..newest }, "crc32"),
        ("bad magic", CheckpointHeader { magic: [0xff; 8], ..newest }, "magic"),
        ("bad version", CheckpointHeader { version: 7, ..newest }, "version 7"),
        ("bad CRC", CheckpointHeader { crc32: !newest.crc32, ..newest }, "crc32"),
    ];
    for (case, header, reason) in broken {
        image.set_mirror_header(1, &header);
        let recovered = bring_up(&image);
        assert_eq!(
            recovered.report.checkpoint.map(|c| c.seq),
            Some(1),
            "{case}"
        );
        let verdict = &recovered.report.mirrors[1].verdict;
        assert!(verdict.to_string().contains(reason), "{case}: {verdict}");
        assert_eq!(recovered.index.len() as u64, ENTRY_COUNT / 2, "{case}");
    }

    // Both mirrors broken: an empty device, not an error.
    image.set_mirror_header(
        1,
        &CheckpointHeader {
            crc32: !newest.crc32,
            ..newest
        },
    );
    let absurd = CheckpointHeader {
        payload_len_bytes: u64::MAX,
        ..older
    };
    image.set_mirror_header(0, &absurd);
    let recovered = bring_up(&image);
    assert_eq!(recovered.report.checkpoint, None);
    assert!(recovered.index.is_empty() && recovered.free_slots.is_empty());
    assert_eq!(recovered.next_slot, 0);
    let verdicts: Vec<&MirrorVerdict> = recovered
        .report
        .mirrors
        .iter()
        .map(|m| &m.verdict)
        .collect();
    assert!(
        matches!(
            verdicts[..],
            [
                MirrorVerdict::Rejected(CheckpointRejection::PayloadTooLarge { .. }),
                MirrorVerdict::Rejected(CheckpointRejection::CrcMismatch { .. })
            ]
        ),
        "{verdicts:?}"
    );
}

/// Changes the low 4 bits of the bytes in `filler` (each `0x40..=0x4f`, so they stay
/// printable and need no JSON escape) until `crc32(payload) == target`. CRC-32 is affine over
/// GF(2) for a fixed length, so each free bit flips the CRC by a fixed delta; Gaussian
/// elimination finds the bits whose deltas add up to the difference.
fn forge_crc(payload: &mut [u8], filler: Range<usize>, target: u32) {
    let base = crc32(payload);
    let bits: Vec<(usize, u8)> = filler
        .flat_map(|i| (0..4).map(move |b| (i, 1u8 << b)))
        .collect();
    assert!(bits.len() <= 64, "the bit set is a u64");
    let mut basis: Vec<(u32, u64)> = Vec::new(); // (delta, bits used), distinct leading bits
    let reduce = |basis: &[(u32, u64)], (mut delta, mut used): (u32, u64)| {
        for &(pivot, pivot_used) in basis {
            if delta ^ pivot < delta {
                (delta, used) = (delta ^ pivot, used ^ pivot_used);
            }
        }
        (delta, used)
    };
    for (j, &(index, mask)) in bits.iter().enumerate() {
        payload[index] ^= mask;
        let delta = crc32(payload) ^ base;
        payload[index] ^= mask;
        let reduced = reduce(&basis, (delta, 1 << j));
        if reduced.0 != 0 {
            basis.push(reduced);
            basis.sort_by_key(|pivot| std::cmp::Reverse(pivot.0));
        }
    }
    let (left, used) = reduce(&basis, (base ^ target, 0));
    assert_eq!(left, 0, "not enough filler bits to reach the CRC");
    for (j, &(index, mask)) in bits.iter().enumerate() {
        if used >> j & 1 == 1 {
            payload[index] ^= mask;
        }
    }
    assert_eq!(crc32(payload), target);
}

#[test]
fn a_payload_forged_to_the_same_crc_cannot_smuggle_entries_past_validation() {
    let image = Image::new();
    let geometry = image.prepared.geometry;
    let header = image.mirror_header(1);
    let original = image.read_at(
        geometry.mirror_payload_offset_bytes(1),
        header.payload_len_bytes as usize,
    );
    // Entry 0 as it is, and a forged key claiming entry 1's slot; padded to the original length.
    let (e0, e1) = (image.prepared.entry(0), image.prepared.entry(1));
    let forged_member = member("forged-key", e1.offset_bytes, e1.size_bytes);
    let head = format!(
        r#"{{"version":1,"next_slot":{ENTRY_COUNT},"entries":{{{},{forged_member}}},"pad":""#,
        image.entry(0)
    );
    let pad_len = original.len() - head.len() - 2;
    let mut forged = format!("{head}{}\"}}", "@".repeat(pad_len)).into_bytes();
    assert_eq!(forged.len(), original.len());
    forge_crc(&mut forged, head.len()..head.len() + 16, header.crc32);
    assert_ne!(forged, original);
    assert_eq!(crc32(&forged), crc32(&original));
    image.write_at(geometry.mirror_payload_offset_bytes(1), &forged);

    let recovered = bring_up(&image);
    // CRC-32 cannot tell: the forged checkpoint is selected and parsed...
    assert_eq!(recovered.report.checkpoint.map(|c| c.seq), Some(2));
    assert!(recovered.report.ignored.is_none());
    // ...and header validation refuses the forged entry, freeing nothing that is in use.
    let (state, reason) = state_of(&recovered, "forged-key");
    assert_eq!(
        (state.as_str(), reason.contains("identity")),
        ("stale", true),
        "{reason}"
    );
    assert_eq!(state_of(&recovered, &e0.key).0, "kept");
    let keys: Vec<&str> = recovered.index.iter().map(|e| e.key).collect();
    assert_eq!(keys, [e0.key.as_str()]);
    let e1_slot = geometry.slot_index_of(e1.offset_bytes).unwrap();
    assert!(recovered.free_slots.contains(&e1_slot));
}

#[test]
#[rustfmt::skip]
fn devices_and_layouts_that_do_not_fit_are_typed_errors() {
    let image = Image::new();
    let len = std::fs::metadata(&image.path).unwrap().len();
    let layout_error = |path: &Path, layout: Layout| match bring_up_with(path, layout) {
        Err(BringupError::Layout(error)) => error,
        other => panic!("{}: expected a layout error, got {other:?}", path.display()),
    };
    let cut = |len_bytes: u64| {
        let copy = image.path.with_extension(format!("cut{len_bytes}"));
        std::fs::copy(&image.path, &copy).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
        file.set_len(len_bytes).unwrap();
        copy
    };
    let meta = layout().meta_total_bytes;
    let slot = layout().slot_bytes;
    assert!(matches!(
        layout_error(&cut(0), layout()),
        FormatError::MetadataExceedsCapacity {
            capacity_bytes: 0,
            ..
        }
    ));
    assert!(matches!(
        layout_error(&cut(meta / 2), layout()),
        FormatError::MetadataExceedsCapacity { .. }
    ));
    assert!(matches!(
        layout_error(&cut(meta + slot - 1), layout()),
        FormatError::NoSlots { .. }
    ));
    // Cut among the slots: the layout fits, the checkpoint's next_slot does not.
    let recovered = bring_up_with(&cut(meta + 10 * slot), layout()).unwrap();
    assert_ignored(
        "cut among the slots",
        &recovered,
        "next_slot 40 in checkpoint exceeds max_slots 10",
    );
    // Each layout rule broken: its own FormatError, before any read.
    let rules: [(Layout, &str); 10] = [
        (Layout { block_align: 3000, ..layout() }, "block_align 3000 is not a power of two"),
        (Layout { block_align: 0, ..layout() }, "block_align 0 is not a power of two"),
        (Layout { block_align: 16, ..layout() }, "block_align 16 is less than the 32 bytes of a checkpoint header"),
        (Layout { header_bytes: 16, block_align: 32, ..layout() }, "header_bytes 16 is less than the 24 bytes"),
        (Layout { header_bytes: 6000, ..layout() }, "header_bytes 6000 is not a multiple"),
        (Layout { slot_bytes: 4096, ..layout() }, "slot_bytes 4096 leaves no payload room"),
        (Layout { slot_bytes: 10000, ..layout() }, "slot_bytes 10000 is not a multiple"),
        (Layout { meta_total_bytes: 4096, ..layout() }, "meta_total_bytes 4096 is not larger"),
        (Layout { meta_magic: *b"LMC\xffDX01", ..layout() }, "not ASCII"),
        (Layout { meta_version: 0, ..layout() }, "meta_version is 0"),
    ];
    for (layout, message) in rules {
        let error = layout_error(&image.path, layout);
        assert!(error.to_string().contains(message), "{error} / {message}");
    }
    let error = layout_error(&image.path, Layout { meta_total_bytes: 8192, ..layout() });
    assert!(matches!(error, FormatError::MirrorTooSmall { .. }), "{error}");
    // A layout other than the writer's: the checkpoint is ignored, or no mirror matches.
    let other = Layout { slot_bytes: 16 << 10, ..layout() };
    let recovered = bring_up_with(&image.path, other).unwrap();
    assert_ignored("other slot_bytes", &recovered, "slot_bytes 8192 in checkpoint, 16384 configured");
    let other = Layout { meta_magic: *b"LMCIDX02", ..layout() };
    let recovered = bring_up_with(&image.path, other).unwrap();
    assert_eq!(recovered.report.checkpoint, None, "no mirror has the configured magic");
    assert_eq!(std::fs::metadata(&image.path).unwrap().len(), len);
}

#[test]
fn paths_that_are_not_devices_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let error = open_device(dir.path(), false).unwrap_err();
    assert!(
        matches!(error, rbio_core::OpenError::IsDirectory { .. }),
        "{error}"
    );
    let error = open_device(&dir.path().join("absent"), false).unwrap_err();
    assert!(
        matches!(error, rbio_core::OpenError::NotFound { .. }),
        "{error}"
    );
    // A character device that is not NVMe reports no size: no layout fits it.
    let device = open_device(Path::new("/dev/null"), false).unwrap();
    match Bringup::new(device, options(layout())) {
        Err(BringupError::Layout(FormatError::MetadataExceedsCapacity {
            capacity_bytes: 0,
            ..
        })) => {}
        Err(other) => panic!("/dev/null: {other}"),
        Ok(_) => panic!("/dev/null: a layout fitted a device of no size"),
    }
}

// The same inputs through the `rbio` command.

fn rbio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbio"))
        .args(args)
        .output()
        .expect("run the rbio binary")
}

/// The image's layout flags, path, and `--ignore-device-path` (the image moved).
fn bringup_args<'a>(image: &'a Image, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "bringup",
        image.path.to_str().unwrap(),
        "--slot-bytes",
        "8192",
        "--meta-total-bytes",
        "262144",
    ];
    args.extend_from_slice(extra);
    args
}

/// Exit `code`, no sign of a panic, and at most `stderr_lines` lines on stderr, each a
/// readable `rbio:` line.
fn assert_exit(case: &str, output: &Output, code: i32, stderr_lines: usize) -> String {
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "{case}: stderr {err} stdout {out}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{case}: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), stderr_lines, "{case}: {err}");
    assert!(
        lines.iter().all(|l| l.starts_with("rbio: ")),
        "{case}: {err}"
    );
    out + &err
}

#[test]
#[rustfmt::skip]
fn the_command_exits_with_its_documented_code_and_one_line() {
    let image = Image::new();
    let path = image.path.to_str().unwrap();
    for (case, flags, needle) in [
        ("header below 24 bytes", ["--header-bytes", "16", "--block-align", "32"], "header_bytes 16"),
        ("slot not above header", ["--slot-bytes", "4096", "--header-bytes", "4096"], "slot_bytes 4096"),
        ("metadata too small", ["--meta-total-bytes", "8192", "--block-align", "4096"], "mirror"),
        ("version 0", ["--meta-version", "0", "--block-align", "4096"], "meta_version is 0"),
    ] {
        let output = rbio(&[&["bringup", path][..], &flags].concat());
        let text = assert_exit(case, &output, 2, 1);
        assert!(text.contains(needle), "{case}: {text}");
    }
    let truncated = image.path.with_extension("cut");
    std::fs::copy(&image.path, &truncated).unwrap();
    std::fs::OpenOptions::new().write(true).open(&truncated).unwrap().set_len(32 << 10).unwrap();
    let output = rbio(&[
        "bringup",
        truncated.to_str().unwrap(),
        "--meta-total-bytes",
        "262144",
    ]);
    assert_exit("image cut inside its metadata", &output, 2, 1);

    // Payloads that are not checkpoints: bringup and inspect both exit 4, the reason in the
    // report, nothing on stderr.
    let deep = format!(r#"{{"version":1,"x":{}}}"#, "[".repeat(10_000));
    for (case, bytes, reason) in [
        ("wrong types", br#"{"version":1,"next_slot":"3"}"#.to_vec(), "next_slot is a string"),
        ("huge number", br#"{"version":1,"next_slot":1e999}"#.to_vec(), "not JSON"),
        ("deep nesting", deep.into_bytes(), "not JSON"),
        ("invalid UTF-8", b"{\"version\":1,\"\xc3\x28\":1}".to_vec(), "not UTF-8"),
    ] {
        image.write_checkpoint(&bytes);
        for command in ["bringup", "inspect"] {
            let mut args = bringup_args(&image, &[]);
            args[0] = command;
            let output = rbio(&args);
            let text = assert_exit(case, &output, 4, 0);
            assert!(text.contains(reason), "{command} {case}: {text}");
        }
    }

    // Both mirrors corrupt: an empty device, exit 0.
    let geometry = image.prepared.geometry;
    for mirror_index in 0..2 {
        image.write_at(
            geometry.mirror_payload_offset_bytes(mirror_index),
            b"garbage",
        );
    }
    let output = rbio(&bringup_args(&image, &["--json"]));
    let text = assert_exit("both mirrors corrupt", &output, 0, 0);
    let report: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON report");
    assert_eq!(report["checkpoint"], serde_json::Value::Null, "{text}");
}
