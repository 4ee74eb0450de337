//! `rbio bringup`, `rbio inspect` and `rbio prepare`: each turns its arguments into options,
//! makes one library call and renders the result.

use std::fs::OpenOptions;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use rbio_core::{Device, OpError};
use rbio_recovery::{
    open_device, prepare, CheckpointDamage, Damage, DamagePlan, ExpectedState, Inspection,
    MirrorStatus, MirrorVerdict, PrepareSpec, Report, SlotPlacement, WriteError,
};

use crate::args::{BringupArgs, CheckpointDamageArg, InspectArgs, PrepareArgs};
use crate::exit::{Exit, Failure, UsageError};
use crate::output::{note, out, outln};
use crate::progress::Bar;
use crate::render;
use crate::several;
use rbio_engines::{tiny_pool, EngineConfig};

/// `rbio bringup`: brings the device (or every device, at once) up and prints the report (or
/// one per device).
pub fn bringup(args: &BringupArgs) -> Result<Exit, Failure> {
    match &args.device[..] {
        [device] => bringup_one(args, device),
        _ if args.path_check.device_path.is_some() => Err(UsageError::new(
            "--device-path names one device's recorded path: give it with one device only",
        )
        .into()),
        devices => several::bringup_several(args, devices),
    }
}

/// One device: its report, or its error as the command's.
fn bringup_one(args: &BringupArgs, device: &Path) -> Result<Exit, Failure> {
    let ready = args.settings().prepare(device)?;
    note_direct_refused(ready.device());
    for warning in ready.engine_warnings() {
        note!("rbio: warning: {warning}");
    }
    let bar = Bar::new("bringup");
    let recovered = ready.run(&mut |progress| bar.bringup(progress))?;
    bar.finish();
    if args.json {
        outln!("{}", recovered.to_json())?;
    } else {
        out!("{}", render::bringup_text(&recovered, args.entries))?;
    }
    Ok(exit_of(&recovered.report))
}

/// One line on stderr when O_DIRECT was refused, once the command is past its setup (a
/// command that fails there says one thing: why).
fn note_direct_refused(device: &Device) {
    if device.direct_refused() {
        note_direct_refused_at(device.path());
    }
}

/// The note of [`note_direct_refused`] for the device at `path`.
pub fn note_direct_refused_at(path: &Path) {
    note!(
        "rbio: note: {}: O_DIRECT refused by the file system: reading through the page cache",
        path.display()
    );
}

/// The exit status a bringup report calls for: 4 when the checkpoint was ignored as a whole,
/// 3 when a slot header or a checkpoint mirror could not be read (a newer checkpoint may have
/// been in that mirror), else 0.
pub fn exit_of(report: &Report) -> Exit {
    if report.ignored.is_some() {
        Exit::CheckpointIgnored
    } else if report.counts.unreadable() > 0 || unreadable_mirror(&report.mirrors).is_some() {
        Exit::Unreadable
    } else {
        Exit::Success
    }
}

/// The first mirror the device did not deliver, and why.
fn unreadable_mirror(mirrors: &[MirrorStatus]) -> Option<(usize, &OpError)> {
    mirrors.iter().find_map(|mirror| match &mirror.verdict {
        MirrorVerdict::Unreadable(error) => Some((mirror.mirror_index, error)),
        _ => None,
    })
}

/// The exit status an inspection calls for, in bringup's terms: 2 when a mirror could not be
/// read (the inspection is incomplete), 4 when bringup would ignore the chosen checkpoint,
/// else 0.
fn inspect_exit(inspection: &Inspection) -> Exit {
    if unreadable_mirror(&inspection.mirrors).is_some() {
        Exit::DeviceError
    } else if inspection.ignored.is_some() {
        Exit::CheckpointIgnored
    } else {
        Exit::Success
    }
}

/// `rbio inspect`: reads both mirrors and prints what they hold; a mirror that could not be
/// read is also one line on stderr, saying which and why.
pub fn inspect_device(args: &InspectArgs) -> Result<Exit, Failure> {
    let (inspection, device) = args.settings().inspect(&args.device)?;
    note_direct_refused(&device);
    if args.json {
        outln!("{}", inspection.to_json())?;
    } else {
        out!("{}", render::inspect_text(&inspection))?;
    }
    if let Some((mirror_index, error)) = unreadable_mirror(&inspection.mirrors) {
        note!(
            "rbio: error: mirror {mirror_index} could not be read: {}",
            rbio_engines::error_line(error)
        );
    }
    Ok(inspect_exit(&inspection))
}

/// `rbio prepare`: writes an image with the asked-for entries and damage.
pub fn prepare_image(args: &PrepareArgs) -> Result<Exit, Failure> {
    let spec = PrepareSpec {
        with_payloads: args.payloads,
        device_path: args.record_device_path.clone(),
        seed: args.seed,
        placement: if args.shuffle {
            SlotPlacement::Shuffled
        } else {
            SlotPlacement::Sequential
        },
        damage: damage_plan(&args.damage, args.seed)?,
        checkpoints: args.checkpoints,
        checkpoint_damage: checkpoint_damage(args.checkpoint_damage),
        ..PrepareSpec::new(args.layout.flags().layout(), args.entries)
    };
    // Everything is checked before the target is created or truncated: a bad spec or layout
    // leaves an existing image as it was.
    let target = Target::of(&args.path, args.force)?;
    check_before_writing(&spec, target.size_bytes(&args.path, &spec)?)?;
    let device = create_target(&args.path, target, &spec, args.engine.direct)?;
    // Serial unless asked otherwise: the final flush (an fsync of every dirty page of a large
    // image) can outlast the other engines' operation timeout.
    let config = match args.engine.engine {
        None => EngineConfig::serial(),
        Some(_) => args.engine.config(),
    };
    let config = EngineConfig {
        fixed_buffers: false, // the writer's buffers come from its own pool
        ..config
    };
    let mut engine = config.build(&device, &tiny_pool()?)?;
    let bar = Bar::new("prepare");
    let prepared = prepare(&device, &mut *engine, &spec, &mut |done, total| {
        bar.set(done, total)
    })?;
    bar.finish();
    let damaged: Vec<String> = prepared
        .entries()
        .filter_map(|entry| {
            let damage = entry.damage?;
            Some(format!(
                "entry {} (slot {}): {}",
                entry.entry_index,
                entry.slot_index,
                damage.name()
            ))
        })
        .collect();
    let stale = prepared
        .entries()
        .filter(|entry| matches!(entry.state, ExpectedState::Dropped(_)))
        .count();
    if args.json {
        let value = serde_json::json!({
            "path": args.path.display().to_string(),
            "entries": spec.entry_count,
            "size_bytes": device.size_bytes(),
            "written_bytes": prepared.stats.written_bytes,
            "winning_seq": prepared.winning_seq,
            "next_slot": prepared.next_slot,
            "expected_index_len": prepared.expected_index_len(),
            "expected_stale": stale,
            "damaged": damaged,
        });
        outln!("{value}")?;
    } else {
        outln!(
            "wrote {} entries ({}) to {}: {} in {} writes; device {} (sparse where unwritten)",
            render::count(spec.entry_count),
            if spec.with_payloads {
                "headers and payloads"
            } else {
                "headers only"
            },
            args.path.display(),
            render::bytes(prepared.stats.written_bytes),
            render::count(prepared.stats.op_count),
            render::bytes(device.size_bytes()),
        )?;
        match prepared.winning_seq {
            Some(seq) => outln!(
                "bringup must choose checkpoint seq {seq}, keep {} entries and find {stale} stale",
                prepared.expected_index_len()
            )?,
            None => outln!("no checkpoint survives: bringup must find an empty device")?,
        }
        for line in &damaged {
            outln!("damaged {line}")?;
        }
    }
    Ok(Exit::Success)
}

/// What `rbio prepare` writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// A block or char device (`--force` only): written in place, at its own size.
    Device,
    /// An image file: created or replaced, sized for the spec.
    File,
}

impl Target {
    /// The kind of target `path` is, refusing a device without `force` and a directory. Reads
    /// only the path's metadata.
    fn of(path: &Path, force: bool) -> Result<Target, Failure> {
        let file_type = std::fs::metadata(path).ok().map(|m| m.file_type());
        match file_type {
            Some(kind) if kind.is_block_device() || kind.is_char_device() => {
                if !force {
                    return Err(UsageError::new(format!(
                        "{} is a device: its contents would be destroyed; add --force to write it",
                        path.display()
                    ))
                    .into());
                }
                Ok(Target::Device)
            }
            Some(kind) if kind.is_dir() => {
                Err(UsageError::new(format!("{} is a directory", path.display())).into())
            }
            _ => Ok(Target::File),
        }
    }

    /// The size the target will have once prepared: a device's own (opened read-only to ask),
    /// an image file's from the spec.
    fn size_bytes(self, path: &Path, spec: &PrepareSpec) -> Result<u64, Failure> {
        match self {
            Target::Device => Ok(open_device(path, false)?.size_bytes()),
            Target::File => Ok(spec.required_device_bytes()),
        }
    }
}

/// Validates the layout against `size_bytes` (a device, layout or engine error: exit 2) and
/// the spec against the resulting geometry (bad arguments: exit 1), as `prepare` would after
/// opening the device: here nothing has been written yet.
fn check_before_writing(spec: &PrepareSpec, size_bytes: u64) -> Result<(), Failure> {
    let geometry = spec
        .layout
        .validate(size_bytes)
        .map_err(|source| WriteError::Layout {
            device_size_bytes: size_bytes,
            source,
        })?;
    spec.check(&geometry)
        .map_err(|error| UsageError::new(rbio_engines::error_line(&error)))?;
    Ok(())
}

/// Creates or replaces the image file sized for `spec` (a device is written as it is), and
/// opens the target for writing. Call it only once the spec is known good.
fn create_target(
    path: &Path,
    target: Target,
    spec: &PrepareSpec,
    direct: bool,
) -> Result<Arc<Device>, Failure> {
    if target == Target::File {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|error| {
                Failure::from(format!("{}: cannot create: {error}", path.display()))
            })?;
        file.set_len(spec.required_device_bytes())
            .map_err(|error| {
                format!(
                    "{}: cannot size to {} bytes: {error}",
                    path.display(),
                    spec.required_device_bytes()
                )
            })?;
    }
    Ok(Arc::new(
        Device::options().write(true).direct(direct).open(path)?,
    ))
}

/// Parses `--damage`: `ENTRY:KIND` items, or one `random:PER_MILLION` alone, whose entries
/// come from `seed` (prepare's `--seed`).
fn damage_plan(items: &[String], seed: u64) -> Result<DamagePlan, UsageError> {
    let mut pairs = Vec::new();
    let mut random = None;
    for item in items {
        let (left, right) = item.split_once(':').ok_or_else(|| {
            UsageError::new(format!(
                "--damage {item:?}: expected ENTRY:KIND or random:PER_MILLION"
            ))
        })?;
        if left == "random" {
            let per_million = right.parse().map_err(|_| {
                UsageError::new(format!(
                    "--damage {item:?}: {right:?} is not a count per million"
                ))
            })?;
            random = Some(per_million);
            continue;
        }
        let entry_index: u64 = left.parse().map_err(|_| {
            UsageError::new(format!(
                "--damage {item:?}: {left:?} is not an entry number"
            ))
        })?;
        let kind = Damage::from_name(right).ok_or_else(|| {
            let names: Vec<&str> = Damage::ALL.iter().map(|d| d.name()).collect();
            UsageError::new(format!(
                "--damage {item:?}: unknown kind {right:?} (one of {})",
                names.join(", ")
            ))
        })?;
        pairs.push((entry_index, kind));
    }
    match random {
        Some(_) if items.len() > 1 => Err(UsageError::new(format!(
            "--damage {}: random:PER_MILLION stands alone, not with other items",
            items.join(",")
        ))),
        Some(per_million) => Ok(DamagePlan::Random { per_million, seed }),
        None if pairs.is_empty() => Ok(DamagePlan::None),
        None => Ok(DamagePlan::explicit(pairs)),
    }
}

fn checkpoint_damage(arg: CheckpointDamageArg) -> CheckpointDamage {
    match arg {
        CheckpointDamageArg::None => CheckpointDamage::None,
        CheckpointDamageArg::BadCrcNewest => CheckpointDamage::BadCrcNewest,
        CheckpointDamageArg::ZeroedNewestHeader => CheckpointDamage::ZeroedNewestHeader,
        CheckpointDamageArg::BothMirrorsBad => CheckpointDamage::BothMirrorsBad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbio_core::{Errno, IoError, OpInfo, OpKind};
    use rbio_recovery::{ChosenCheckpoint, Counts, Layout, LayoutSource};

    /// Mirror 0 as the device failed to deliver it, mirror 1 valid.
    fn mirrors_with_one_unreadable() -> Vec<MirrorStatus> {
        let info = OpInfo {
            kind: OpKind::Read,
            tag: 0,
            offset_bytes: 0,
            len_bytes: 4096,
            placement_id: None,
        };
        let error = OpError {
            info,
            error: IoError::Os(Errno::EIO),
        };
        let status = |mirror_index, verdict| MirrorStatus {
            mirror_index,
            offset_bytes: mirror_index as u64 * (128 << 20),
            header: None,
            verdict,
        };
        vec![
            status(0, MirrorVerdict::Unreadable(error)),
            status(1, MirrorVerdict::Valid),
        ]
    }

    fn report(mirrors: Vec<MirrorStatus>) -> Report {
        Report {
            device: "image".to_owned(),
            engine: "serial".to_owned(),
            engine_features: None,
            settings: Default::default(),
            mirrors,
            checkpoint: Some(ChosenCheckpoint {
                mirror_index: 1,
                seq: 1,
                payload_len_bytes: 100,
            }),
            ignored: None,
            verified: true,
            counts: Counts::default(),
            entries: Vec::new(),
            phases: Default::default(),
            header_buffer_bytes_max: 0,
            warnings: Vec::new(),
        }
    }

    fn inspection(mirrors: Vec<MirrorStatus>) -> Inspection {
        Inspection {
            geometry: Layout::default().validate(1 << 30).unwrap(),
            layout_source: LayoutSource::Configured,
            mirrors,
            checkpoint: None,
            head: None,
            ignored: None,
            entry_count: 0,
            rejected_count: 0,
            entries: Vec::new(),
        }
    }

    #[test]
    fn an_unreadable_mirror_is_not_success() {
        let mut valid = mirrors_with_one_unreadable();
        valid[0].verdict = MirrorVerdict::Valid;
        assert_eq!(exit_of(&report(valid.clone())), Exit::Success);
        assert_eq!(inspect_exit(&inspection(valid)), Exit::Success);
        // Bringup recovered from mirror 1, but mirror 0 may have held a newer checkpoint.
        assert_eq!(
            exit_of(&report(mirrors_with_one_unreadable())),
            Exit::Unreadable
        );
        assert_eq!(
            inspect_exit(&inspection(mirrors_with_one_unreadable())),
            Exit::DeviceError
        );
    }

    #[test]
    fn damage_specs_parse_or_say_why() {
        let plan = damage_plan(&["3:bad_magic".into(), "9:wrong_length".into()], 0).unwrap();
        assert_eq!(plan.damage_of(3), Some(Damage::BadMagic));
        assert_eq!(plan.damage_of(9), Some(Damage::WrongLength));
        assert_eq!(plan.damage_of(4), None);
        assert!(matches!(
            damage_plan(&["random:1000".into()], 0).unwrap(),
            DamagePlan::Random {
                per_million: 1000,
                ..
            }
        ));
        let error = damage_plan(&["3:melted".into()], 0).unwrap_err();
        assert!(error.to_string().contains("unknown kind"), "{error}");
        assert!(damage_plan(&["x".into()], 0).is_err());
    }

    #[test]
    fn random_damage_takes_the_seed_and_stands_alone() {
        assert_eq!(
            damage_plan(&["random:500".into()], 42).unwrap(),
            DamagePlan::Random {
                per_million: 500,
                seed: 42
            }
        );
        // Once random: returned early and the explicit item after it was lost.
        for items in [
            ["random:500", "7:bad_magic"],
            ["7:bad_magic", "random:500"],
            ["random:500", "random:9"],
        ] {
            let items: Vec<String> = items.map(str::to_owned).to_vec();
            let error = damage_plan(&items, 0).unwrap_err();
            assert!(error.to_string().contains("stands alone"), "{error}");
        }
    }
}
