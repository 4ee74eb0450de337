//! The fault matrix: one prepared device (3000 entries, shuffled slots, some damaged headers),
//! brought up by every engine of `common::engines()` under each kind of injected fault: EIO on
//! one header, on many, on all of them and on every read; short transfers; `EINTR`, `EAGAIN`
//! and `EBUSY` storms (absorbed by `rbio_core::Retrying`); operations stalled past their
//! deadline; and the device shrinking, before bringup and after `Bringup::new` measured it.
//!
//! Each case runs under a watchdog that fails it loudly by name if bringup does not finish,
//! and its result is checked against an oracle: the fault-free result with exactly the entries
//! the plan hits turned unreadable (kept by default, dropped with `keep_unreadable: false`).
//! On every result: each checkpoint entry ends in exactly one state, no slot of an index entry
//! is free, every engine gives the same result and the same fault counts, and the image's
//! bytes are the same before and after (bringup never writes). A table of what was injected is
//! printed (`cargo test --test fault_matrix -- --nocapture`).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rbio_core::{
    Device, Errno, Fault, FaultCounts, FaultPlan, FaultTarget, FaultyEngine, IoError, OpInfo,
    OpKind, Retrying, SerialEngine, RETRIES_MAX_DEFAULT,
};
use rbio_recovery::{
    prepare, ApplyRejection, Bringup, BringupError, BringupOptions, CheckpointIgnored, Counts,
    DamagePlan, EntryOutcome, EntrySizes, EntryState, Layout, PrepareSpec, Prepared, Recovered,
    SlotPlacement, Warning,
};

const ENTRY_COUNT: u64 = 3000;
/// Far above what any case needs (a few hundred milliseconds): only a hang reaches it.
const BRINGUP_DEADLINE: Duration = Duration::from_secs(30);
const STALL_TIMEOUT: Duration = Duration::from_millis(20);

/// The shared watchdog, with this file's argument order.
fn within<T: Send + 'static>(
    limit: Duration,
    case: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    rbio_core::conformance::within(case, limit, work)
}

fn layout() -> Layout {
    Layout {
        slot_bytes: 8 << 10,
        meta_total_bytes: 4 << 20,
        ..Layout::default()
    }
}

/// The prepared image every case reads: 3000 entries in shuffled slots, about 5% of their
/// headers damaged after the last checkpoint, two checkpoints.
fn prepare_image(dir: &Path) -> (PathBuf, Prepared) {
    let mut spec = PrepareSpec::new(layout(), ENTRY_COUNT);
    spec.seed = 8;
    spec.placement = SlotPlacement::Shuffled;
    spec.sizes = EntrySizes::Random;
    spec.damage = DamagePlan::Random {
        per_million: 50_000,
        seed: 8,
    };
    let path = dir.join("matrix.img");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(spec.required_device_bytes() + 16 * spec.layout.slot_bytes)
        .unwrap();
    let device = Arc::new(Device::options().write(true).open(&path).unwrap());
    let mut engine = SerialEngine::new(device.clone()).unwrap();
    let prepared = prepare(&device, &mut engine, &spec, &mut |_, _| {}).unwrap();
    (path, prepared)
}

/// CRC-32 of the whole image: equal before and after means bringup wrote nothing.
fn image_hash(path: &Path) -> (u64, u32) {
    let bytes = std::fs::read(path).unwrap();
    (bytes.len() as u64, rbio_recovery::crc32(&bytes))
}

/// What one bringup gave, made comparable across engines, and what its injector counted.
#[derive(Debug)]
struct Run {
    result: Result<Recovered, String>,
    counts: FaultCounts,
    retried_count: u64,
}

fn options(keep_unreadable: bool, verify: bool) -> BringupOptions {
    BringupOptions {
        layout: layout(),
        configured_device_path: Some(String::new()),
        keep_unreadable,
        verify,
        window_ops_max: 64,
        report_all_entries: true,
        ..BringupOptions::default()
    }
}

/// Brings `path` up through `Retrying<FaultyEngine<engine>>` with `plan`. With `shrink_to`,
/// the file is cut to that length after `Bringup::new` measured its size, and the cut image
/// must hash the same after the run.
fn bring_up(
    path: &Path,
    factory: common::EngineFactory,
    plan: &FaultPlan,
    options: BringupOptions,
    shrink_to: Option<u64>,
) -> Run {
    let device = Arc::new(Device::open(path).unwrap());
    let bringup = Bringup::new(device.clone(), options).expect("the layout fits the image");
    let cut_hash = shrink_to.map(|len_bytes| {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(len_bytes).unwrap();
        image_hash(path)
    });
    let faulty = FaultyEngine::new(factory(&device, bringup.header_pool()), plan.clone()).unwrap();
    let mut engine = Retrying::new(faulty, RETRIES_MAX_DEFAULT);
    let result = bringup.run(&mut engine, &mut |_| {});
    if let Some(cut_hash) = cut_hash {
        assert_eq!(image_hash(path), cut_hash, "the shrunk image changed");
    }
    Run {
        result: result.map(comparable).map_err(|error| describe(&error)),
        counts: engine.inner().counts(),
        retried_count: engine.retried_count(),
    }
}

/// The result without what legitimately differs between engines and runs: name, times,
/// buffer peak, in-flight bound, and the device's path (a shrunk case runs on a copy of the
/// image).
fn comparable(mut recovered: Recovered) -> Recovered {
    let report = &mut recovered.report;
    report.engine.clear();
    report.device.clear();
    report.phases = Default::default();
    report.header_buffer_bytes_max = 0;
    report.settings.engine_in_flight_max = 0;
    report.settings.op_timeout = None;
    recovered
}

fn describe(error: &BringupError) -> String {
    match error {
        BringupError::CheckpointUnreadable { .. } => format!("CheckpointUnreadable: {error}"),
        other => format!("other: {other}"),
    }
}

/// A rule target's fault that fails no attempt: it matches, so later rules never see the
/// operation, and passes it on untouched. Used to shield the metadata region.
fn untouched() -> Fault {
    Fault::Transient {
        errno: Errno::EINTR,
        attempts: 0,
    }
}

/// A plan whose first rules shield every read in the metadata region (mirror headers and
/// payloads), so that the rules added after it hit slot headers only.
fn headers_only(seed: u64, geometry_meta_bytes: u64) -> FaultPlan {
    (0..geometry_meta_bytes / 4096).fold(FaultPlan::new(seed), |plan, block| {
        plan.with(FaultTarget::Offset(block * 4096), untouched())
    })
}

/// One row of the matrix.
struct Case {
    name: &'static str,
    plan: FaultPlan,
    keep_unreadable: bool,
    expect: Expect,
}

enum Expect {
    /// The fault-free result with the entries the plan hits unreadable.
    Oracle,
    /// Bringup refuses with this error, not an empty index.
    Error(&'static str),
    /// The newest mirror cannot be read: the older checkpoint (seq 1, half the entries) is
    /// used, and a warning says a newer one may have been there.
    OlderCheckpoint,
}

fn cases(baseline: &Recovered, geometry_meta_bytes: u64) -> Vec<Case> {
    let eio = Fault::Fail(IoError::Os(Errno::EIO));
    let share = |per_million| FaultTarget::Share { per_million };
    let shielded = || headers_only(81, geometry_meta_bytes);
    let kept_offset = baseline
        .report
        .entries
        .iter()
        .find(|e| e.state == EntryState::Kept)
        .and_then(|e| e.offset_bytes)
        .expect("a kept entry");
    let stale_offset = baseline
        .report
        .entries
        .iter()
        .find(|e| matches!(e.state, EntryState::Stale(_)))
        .and_then(|e| e.offset_bytes)
        .expect("a stale entry");
    let oracle = |name, plan, keep_unreadable| Case {
        name,
        plan,
        keep_unreadable,
        expect: Expect::Oracle,
    };
    let transient = |errno, attempts| Fault::Transient { errno, attempts };
    // The first 80 headers in checkpoint order (more than the window of 64): every read of
    // the first window times out at once, and the engine keeps the buffers past that.
    let window_stalled = || {
        let first_headers = baseline
            .report
            .entries
            .iter()
            .filter_map(|e| e.offset_bytes);
        first_headers.take(80).fold(
            shielded().stall_timeout(STALL_TIMEOUT),
            |plan, offset_bytes| {
                let held = Duration::from_millis(60);
                plan.with(
                    FaultTarget::Offset(offset_bytes),
                    Fault::StallHolding { held },
                )
            },
        )
    };
    vec![
        oracle("no faults", FaultPlan::new(1), true),
        oracle(
            "EIO on one header",
            FaultPlan::new(2).with(FaultTarget::Offset(kept_offset), eio.clone()),
            true,
        ),
        oracle(
            "EIO on a stale header",
            FaultPlan::new(3).with(FaultTarget::Offset(stale_offset), eio.clone()),
            true,
        ),
        oracle(
            "EIO on 20% of headers",
            shielded().with(share(200_000), eio.clone()),
            true,
        ),
        oracle(
            "EIO on 20%, drop unreadable",
            shielded().with(share(200_000), eio.clone()),
            false,
        ),
        oracle(
            "EIO on every header",
            shielded().with(FaultTarget::All, eio.clone()),
            true,
        ),
        oracle(
            "EIO on every header, drop",
            shielded().with(FaultTarget::All, eio.clone()),
            false,
        ),
        Case {
            name: "EIO on every read",
            plan: FaultPlan::new(4).with(FaultTarget::All, eio.clone()),
            keep_unreadable: true,
            expect: Expect::Error("CheckpointUnreadable"),
        },
        Case {
            name: "EIO on the newest mirror",
            plan: FaultPlan::new(12)
                .with(FaultTarget::Offset(geometry_meta_bytes / 2), eio.clone()),
            keep_unreadable: true,
            expect: Expect::OlderCheckpoint,
        },
        oracle(
            "short transfers",
            shielded()
                .with(
                    FaultTarget::Offset(kept_offset),
                    Fault::Short { done_bytes: 0 },
                )
                .with(share(100_000), Fault::Short { done_bytes: 8 }),
            true,
        ),
        oracle(
            "EINTR storm",
            FaultPlan::new(5).with(FaultTarget::All, transient(Errno::EINTR, 3)),
            true,
        ),
        oracle(
            "EAGAIN+EBUSY storm",
            FaultPlan::new(6)
                .with(share(500_000), transient(Errno::EAGAIN, 5))
                .with(FaultTarget::All, transient(Errno::EBUSY, 2)),
            true,
        ),
        oracle(
            "stalls past deadline",
            shielded()
                .with(share(50_000), Fault::Stall)
                .stall_timeout(STALL_TIMEOUT),
            true,
        ),
        oracle("a window of stalls, buffers held", window_stalled(), true),
        oracle("a window of stalls, held, drop", window_stalled(), false),
        Case {
            name: "stalled mirror headers",
            plan: FaultPlan::new(7)
                .with(FaultTarget::Offset(0), Fault::Stall)
                .with(FaultTarget::Offset(geometry_meta_bytes / 2), Fault::Stall)
                .stall_timeout(STALL_TIMEOUT),
            keep_unreadable: true,
            expect: Expect::Error("CheckpointUnreadable"),
        },
        oracle(
            "storm + EIO + short + stall",
            FaultPlan::new(9)
                .with(FaultTarget::Offset(kept_offset), eio.clone())
                .with(FaultTarget::Offset(stale_offset), Fault::Stall)
                .with(share(300_000), transient(Errno::EINTR, 2))
                .with_kind(share(300_000), OpKind::Read, transient(Errno::EAGAIN, 1))
                .with(share(20_000), Fault::Short { done_bytes: 100 })
                .stall_timeout(STALL_TIMEOUT),
            true,
        ),
    ]
}

/// Bytes validation reads per slot header on this image (buffered file: one 512-byte block).
const HEADER_READ_BYTES: usize = 512;

/// The state `plan` gives an entry whose header read found `state` without faults.
fn faulted_state(
    state: &EntryState,
    offset_bytes: u64,
    plan: &FaultPlan,
    keep: bool,
) -> EntryState {
    if !matches!(state, EntryState::Kept | EntryState::Stale(_)) {
        return state.clone(); // no header read was made for it
    }
    let read = OpInfo {
        kind: OpKind::Read,
        tag: 0,
        offset_bytes,
        len_bytes: HEADER_READ_BYTES,
        placement_id: None,
    };
    let error = match plan.fault_for(&read) {
        Some(Fault::Fail(error)) => error.clone(),
        Some(Fault::Short { done_bytes }) => IoError::ShortTransfer {
            done_bytes: (*done_bytes).min(HEADER_READ_BYTES),
            len_bytes: HEADER_READ_BYTES,
        },
        Some(Fault::Stall | Fault::StallHolding { .. }) => IoError::TimedOut {
            timeout: STALL_TIMEOUT,
        },
        // Transient faults are absorbed by the retry policy.
        _ => return state.clone(),
    };
    EntryState::Unreadable { error, kept: keep }
}

/// The fault-free result with each entry's state passed through `state_of`, and the index,
/// free list and counts that follow. `every_entry` is the unverified result, whose index holds
/// every entry of the checkpoint with its fields, in checkpoint order.
fn derive(
    baseline: &Recovered,
    every_entry: &Recovered,
    mut state_of: impl FnMut(&EntryOutcome) -> EntryState,
) -> Recovered {
    let mut expected = baseline.clone();
    let counts = &mut expected.report.counts;
    *counts = Counts {
        in_checkpoint: counts.in_checkpoint,
        ..Counts::default()
    };
    let mut in_index = HashSet::new();
    for outcome in &mut expected.report.entries {
        outcome.state = state_of(outcome);
        counts.add(&outcome.state);
        if outcome.state.is_in_index() {
            in_index.insert(outcome.key.clone());
        }
    }
    expected.index = every_entry.index.clone();
    expected.index.retain(|entry| in_index.contains(entry.key));
    let geometry = layout().validate(u64::MAX >> 8).unwrap();
    // A dropped unreadable entry was never validated: its slot stays off the free list too.
    let unread_dropped = expected
        .report
        .entries
        .iter()
        .filter(|outcome| matches!(outcome.state, EntryState::Unreadable { kept: false, .. }))
        .map(|outcome| outcome.offset_bytes.unwrap());
    let owned: HashSet<u64> = expected
        .index
        .iter()
        .map(|entry| entry.offset_bytes)
        .chain(unread_dropped)
        .map(|offset_bytes| geometry.slot_index_of(offset_bytes).unwrap())
        .collect();
    expected.free_slots = (0..baseline.next_slot)
        .filter(|slot| !owned.contains(slot))
        .collect();
    expected
}

/// What must hold of any result: one state per entry, counts that add up, and no slot of an
/// index entry on the free list; unreadable entries kept or dropped as asked.
fn check_invariants(case: &str, recovered: &Recovered, keep_unreadable: bool) {
    let report = &recovered.report;
    let counts = &report.counts;
    let sum = counts.kept + counts.stale() + counts.unreadable() + counts.rejected();
    assert_eq!(sum, counts.in_checkpoint, "{case}: states do not add up");
    assert_eq!(report.entries.len() as u64, counts.in_checkpoint, "{case}");
    let keys: HashSet<&str> = report.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys.len(), report.entries.len(), "{case}: a key twice");
    assert_eq!(recovered.index.len() as u64, counts.in_index(), "{case}");
    let geometry = layout().validate(u64::MAX >> 8).unwrap();
    for entry in &recovered.index {
        let slot = geometry.slot_index_of(entry.offset_bytes).unwrap();
        assert!(
            recovered.free_slots.binary_search(&slot).is_err(),
            "{case}: slot {slot} of index entry {} is free",
            entry.key
        );
    }
    for outcome in &report.entries {
        if let (EntryState::Unreadable { .. }, Some(offset_bytes)) =
            (&outcome.state, outcome.offset_bytes)
        {
            let slot = geometry.slot_index_of(offset_bytes).unwrap();
            assert!(
                recovered.free_slots.binary_search(&slot).is_err(),
                "{case}: slot {slot} of unread entry {} is free",
                outcome.key
            );
        }
    }
    for outcome in &report.entries {
        if let EntryState::Unreadable { kept, .. } = outcome.state {
            assert_eq!(kept, keep_unreadable, "{case}: {}", outcome.key);
            let in_index = recovered.index.iter().any(|e| e.key == outcome.key);
            assert_eq!(in_index, kept, "{case}: {}", outcome.key);
        }
    }
}

/// The prepared image and what a fault-free bringup of it gives.
struct Fixture {
    path: PathBuf,
    /// Fault-free, with validation: what every case is compared against.
    baseline: Recovered,
    /// Fault-free, without validation: every checkpoint entry in the index, with its fields.
    every_entry: Recovered,
}

/// Runs one case on every engine, checks everything, and returns its table row. With
/// `shrink_to`, each engine brings up a copy of the image cut to that length after
/// `Bringup::new`, and headers past the cut must read short (unreadable).
fn run_case(fixture: &Fixture, case: &Case, shrink_to: Option<u64>) -> String {
    let path = match shrink_to {
        None => fixture.path.clone(),
        Some(_) => {
            let copy = fixture.path.with_extension("cut.img");
            std::fs::copy(&fixture.path, &copy).unwrap();
            copy
        }
    };
    let before = image_hash(&path);
    let mut runs: Vec<(&str, Run)> = Vec::new();
    for (engine_name, factory) in common::engines() {
        let (path_owned, plan) = (path.clone(), case.plan.clone());
        let options = options(case.keep_unreadable, true);
        let label = format!("fault matrix case {:?} on {engine_name}", case.name);
        let run = within(BRINGUP_DEADLINE, &label, move || {
            bring_up(&path_owned, factory, &plan, options, shrink_to)
        });
        if shrink_to.is_some() {
            // Back to full length for the next engine's Bringup::new; the tail reads as zeroes
            // now, but the next engine cuts it off again before reading.
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(before.0).unwrap();
        }
        runs.push((engine_name, run));
    }
    if shrink_to.is_none() {
        assert_eq!(
            image_hash(&path),
            before,
            "{}: the image changed",
            case.name
        );
    }
    let (first_name, first) = &runs[0];
    for (name, run) in &runs[1..] {
        let case = case.name;
        assert_eq!(
            run.result, first.result,
            "{case}: {name} differs from {first_name}"
        );
        assert_eq!(
            run.counts, first.counts,
            "{case}: {name} counted other faults"
        );
    }
    match (&case.expect, &first.result) {
        (Expect::Oracle, Ok(recovered)) => {
            check_invariants(case.name, recovered, case.keep_unreadable);
            let keep = case.keep_unreadable;
            let expected = derive(&fixture.baseline, &fixture.every_entry, |outcome| {
                let offset_bytes = outcome.offset_bytes.unwrap();
                match shrink_to {
                    Some(len_bytes) if offset_bytes >= len_bytes => {
                        let past_end = FaultPlan::new(0)
                            .with(FaultTarget::All, Fault::Short { done_bytes: 0 });
                        faulted_state(&outcome.state, offset_bytes, &past_end, keep)
                    }
                    _ => faulted_state(&outcome.state, offset_bytes, &case.plan, keep),
                }
            });
            assert_eq!(
                recovered, &expected,
                "{}: not what the oracle says",
                case.name
            );
        }
        (Expect::OlderCheckpoint, Ok(recovered)) => {
            check_invariants(case.name, recovered, case.keep_unreadable);
            let report = &recovered.report;
            assert_eq!(report.checkpoint.map(|c| c.seq), Some(1), "{}", case.name);
            assert_eq!(
                report.counts.in_checkpoint,
                ENTRY_COUNT / 2,
                "{}",
                case.name
            );
            let warned = report.warnings.iter().any(|w| {
                matches!(
                    w,
                    Warning::MirrorUnreadable {
                        mirror_index: 1,
                        ..
                    }
                )
            });
            assert!(warned, "{}: {:?}", case.name, report.warnings);
        }
        (Expect::Error(kind), Err(error)) => {
            assert!(error.starts_with(kind), "{}: {error}", case.name)
        }
        (_, result) => panic!("{}: unexpected {result:?}", case.name),
    }
    let outcome = match &first.result {
        Ok(recovered) => {
            let n = &recovered.report.counts;
            let policy = if case.keep_unreadable {
                "kept"
            } else {
                "dropped"
            };
            format!(
                "kept {:>4} stale {:>3} unreadable {:>4} ({policy})",
                n.kept,
                n.stale(),
                n.unreadable(),
            )
        }
        Err(error) => error.split(':').next().unwrap_or_default().to_owned(),
    };
    let retried = runs.iter().map(|(_, run)| run.retried_count).max().unwrap();
    row(case.name, &first.counts, retried, &outcome)
}

fn row(case: &str, c: &FaultCounts, retried: u64, outcome: &str) -> String {
    format!(
        "{case:<30} {:>6} {:>9} {:>9} {:>7} {retried:>7}  {outcome}",
        c.failed, c.shortened, c.transient, c.stalled
    )
}

#[test]
fn every_engine_survives_every_fault_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, prepared) = prepare_image(dir.path());
    let meta_bytes = prepared.geometry.data_base_bytes();
    let device = Arc::new(Device::open(&path).unwrap());
    let bringup = Bringup::new(device, options(true, true)).unwrap();
    assert_eq!(bringup.header_read_bytes(), HEADER_READ_BYTES);

    let (serial_name, serial) = common::engines()[0];
    assert_eq!(serial_name, "serial");
    let no_faults = FaultPlan::new(0);
    let baseline = bring_up(&path, serial, &no_faults, options(true, true), None);
    let baseline = baseline.result.expect("fault-free bringup");
    assert_eq!(baseline.index.len() as u64, prepared.expected_index_len());
    assert_eq!(baseline.free_slots, prepared.expected_free_slots());
    assert!(baseline.report.counts.stale() > 0, "the image has damage");
    let every_entry = bring_up(&path, serial, &no_faults, options(true, false), None);
    let every_entry = every_entry.result.expect("unverified bringup");
    let fixture = Fixture {
        path,
        baseline,
        every_entry,
    };

    let mut table = vec![format!(
        "{:<30} {:>6} {:>9} {:>9} {:>7} {:>7}  result (every engine alike)",
        "case", "failed", "shortened", "transient", "stalled", "retried"
    )];
    for case in cases(&fixture.baseline, meta_bytes) {
        table.push(run_case(&fixture, &case, None));
    }
    // The device shrinks after Bringup::new measured it: headers past the new end read short.
    let half = meta_bytes + (prepared.next_slot / 2) * layout().slot_bytes;
    let shrink = Case {
        name: "device shrank after open",
        plan: FaultPlan::new(10),
        keep_unreadable: true,
        expect: Expect::Oracle,
    };
    table.push(run_case(&fixture, &shrink, Some(half)));
    table.push(shrunk_before_bringup(&fixture.path, half));

    let engines: Vec<&str> = common::engines().iter().map(|(name, _)| *name).collect();
    eprintln!(
        "\nfault matrix: {ENTRY_COUNT} entries; engines {}\n{}",
        engines.join(", "),
        table.join("\n")
    );
}

/// The device shrinks before bringup: `next_slot` now exceeds `max_slots`, so the checkpoint
/// is ignored as a whole (the spec's rule) and the report says why; every engine agrees.
fn shrunk_before_bringup(path: &Path, len_bytes: u64) -> String {
    let name = "device shrank before bringup";
    let copy = path.with_extension("shrunk.img");
    std::fs::copy(path, &copy).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
    file.set_len(len_bytes).unwrap();
    let before = image_hash(&copy);
    let mut first: Option<Recovered> = None;
    for (engine_name, factory) in common::engines() {
        let label = format!("fault matrix case {name:?} on {engine_name}");
        let copy_owned = copy.clone();
        let run = within(BRINGUP_DEADLINE, &label, move || {
            bring_up(
                &copy_owned,
                factory,
                &FaultPlan::new(11),
                options(true, true),
                None,
            )
        });
        let recovered = run.result.expect("an ignored checkpoint is not an error");
        assert!(
            matches!(
                recovered.report.ignored,
                Some(CheckpointIgnored::Apply(
                    ApplyRejection::NextSlotOutOfRange { .. }
                ))
            ),
            "{label}: {:?}",
            recovered.report.ignored
        );
        assert!(recovered.index.is_empty() && recovered.free_slots.is_empty());
        match &first {
            None => first = Some(recovered),
            Some(first) => assert_eq!(&recovered, first, "{label} differs"),
        }
        assert_eq!(image_hash(&copy), before, "{label}: the image changed");
    }
    let ignored = first.unwrap().report.ignored.unwrap();
    row(
        name,
        &FaultCounts::default(),
        0,
        &format!("ignored: {ignored}"),
    )
}

#[test]
fn a_device_that_never_answers_ends_bringup_with_a_typed_error() {
    // A pseudo-terminal master given a size: io_uring reads on it block until canceled, and
    // `pread` on it fails at once (ESPIPE). Either way no mirror can be read, so bringup must
    // refuse with CheckpointUnreadable, in bounded time, rather than hang or start empty.
    for (engine_name, factory) in common::engines() {
        let case = format!("bringup of a silent device on {engine_name}");
        let error = within(BRINGUP_DEADLINE, &case.clone(), move || {
            let device = Device::open("/dev/ptmx").expect("open /dev/ptmx");
            let device = Arc::new(device.with_geometry(64 << 20, 512));
            let bringup = Bringup::new(device.clone(), options(true, true)).unwrap();
            let engine = if engine_name.starts_with("uring") {
                // The default operation timeout is 30 s; a short one keeps the test short.
                let builder = rbio_uring::UringEngine::builder(device.clone());
                let builder = builder.op_timeout(Duration::from_millis(100));
                Box::new(builder.build().unwrap()) as Box<dyn rbio_core::Engine>
            } else {
                factory(&device, bringup.header_pool())
            };
            let mut engine = engine;
            bringup.run(&mut engine, &mut |_| {}).map(|_| ())
        });
        let error = error.expect_err(&case);
        assert!(
            matches!(error, BringupError::CheckpointUnreadable { .. }),
            "{case}: {error}"
        );
    }
}
