//! `rbio demo`: prepare an example device with a few damaged slot headers in a temporary
//! directory, bring it up with every engine available here, and show what each found.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rbio_core::Device;
use rbio_recovery::{
    open_device, prepare, Bringup, BringupOptions, Damage, DamagePlan, DevicePathPolicy,
    ExpectedState, Layout, PrepareSpec, Prepared, Recovered,
};
use serde_json::json;
use tempfile::TempDir;

use crate::args::DemoArgs;
use crate::exit::{Exit, Failure, UsageError};
use crate::output::{note, out, outln, OutputError};
use crate::progress::Bar;
use crate::render::{self, Table};
use crate::system::{self, CacheDropper};
use rbio_engines::tiny_pool;
use rbio_engines::EngineConfig;

/// The damage the demo does, at these fractions of the entry count.
const DAMAGE: [(f64, Damage); 5] = [
    (0.07, Damage::BadMagic),
    (0.29, Damage::WrongIdentity),
    (0.51, Damage::WrongLength),
    (0.73, Damage::Zeroed),
    (0.97, Damage::OtherKeysIdentity),
];

/// The io_uring window and the validation window the demo uses.
const DEMO_WINDOW: usize = 128;

/// One engine's bringup in the demo.
struct Run {
    config: EngineConfig,
    recovered: Recovered,
}

/// `rbio demo`.
pub fn demo(args: &DemoArgs) -> Result<Exit, Failure> {
    let dir = demo_dir()?;
    let image = dir.path().join("demo.img");
    let prepared = prepare_image(&image, args.entries)?;
    // Cold reads without touching the rest of the machine: O_DIRECT bypasses the page cache
    // for this process alone. Dropping the whole cache is only done when asked.
    let direct = !args.buffered && direct_or_note(dir.path(), &image)?;
    let (configs, missing) = rbio_engines::demo_set(DEMO_WINDOW);
    let mut cache = args.drop_caches.then(|| CacheDropper::new("rbio demo"));
    let mut runs = Vec::new();
    for config in configs {
        if let Some(cache) = &mut cache {
            cache.drop_now();
        }
        let recovered = bring_up(&image, &prepared.spec.layout, direct, config)?;
        runs.push(Run { config, recovered });
    }
    let reads = Reads {
        direct,
        page_cache: match cache.map(|cache| cache.outcome()) {
            None => "untouched".to_owned(),
            Some(Ok(())) => "dropped before each engine".to_owned(),
            Some(Err(why)) => format!("not dropped: {why}"),
        },
    };
    let verdict = verdict(&prepared, &runs);
    if args.json {
        print_json(args, &reads, &runs, &verdict)?;
    } else {
        print_text(&image, args, &reads, &runs, &missing, &verdict)?;
    }
    if !verdict.all_match {
        return Err("an engine's bringup differs from the damage done to the image".into());
    }
    Ok(Exit::Success)
}

/// Checkpoint bytes per entry, with room to spare (both mirrors share the metadata region).
const CHECKPOINT_BYTES_PER_ENTRY: u64 = 400;

/// The LMCache layout with a metadata region large enough for `entries` (LMCache's 256 MiB
/// default holds about 700k of them).
///
/// # Errors
/// A usage error when that region's size does not fit in 64 bits.
pub fn layout_for(entries: u64) -> Result<Layout, UsageError> {
    let needed_bytes = entries
        .checked_mul(CHECKPOINT_BYTES_PER_ENTRY)
        .and_then(u64::checked_next_power_of_two)
        .ok_or_else(|| {
            UsageError::new(format!(
                "--entries {entries}: the metadata region for that many entries does not fit \
                 in 64 bits"
            ))
        })?;
    Ok(Layout {
        meta_total_bytes: needed_bytes.max(Layout::default().meta_total_bytes),
        ..Layout::default()
    })
}

fn prepare_image(image: &Path, entries: u64) -> Result<Prepared, Failure> {
    let damage = DAMAGE.map(|(fraction, kind)| ((entries as f64 * fraction) as u64, kind));
    let spec = PrepareSpec {
        damage: DamagePlan::explicit(damage.into_iter().filter(|(k, _)| *k < entries)),
        ..PrepareSpec::new(layout_for(entries)?, entries)
    };
    let file = std::fs::File::create(image)
        .map_err(|error| format!("{}: cannot create: {error}", image.display()))?;
    file.set_len(spec.required_device_bytes())
        .map_err(|error| format!("{}: cannot size: {error}", image.display()))?;
    let device = Arc::new(Device::options().write(true).open(image)?);
    // Serial: its flush (fsync of every dirty page) has no operation timeout to outlast.
    let mut engine = EngineConfig::serial().build(&device, &tiny_pool()?)?;
    let bar = Bar::new("prepare");
    let prepared = prepare(&device, &mut *engine, &spec, &mut |done, total| {
        bar.set(done, total)
    })?;
    Ok(prepared)
}

/// How the demo read the image.
struct Reads {
    /// With O_DIRECT; else through the page cache.
    direct: bool,
    /// What was done to the page cache: `untouched`, `dropped before each engine`, or
    /// `not dropped: why`.
    page_cache: String,
}

/// Whether the file system under `image` takes O_DIRECT (tmpfs before Linux 6.6 does not),
/// probed as bringup opens the image. When it does not, says so in one line on stderr: the
/// demo then reads through the page cache.
fn direct_or_note(dir: &Path, image: &Path) -> Result<bool, Failure> {
    let device = open_device(image, true)?;
    if device.direct_refused() {
        note!(
            "rbio demo: note: the file system of {} does not take O_DIRECT: reading through \
             the page cache, which still holds the image (TMPDIR=DIR on a disk reads cold)",
            dir.display()
        );
    }
    Ok(device.is_direct())
}

fn bring_up(
    image: &Path,
    layout: &Layout,
    direct: bool,
    config: EngineConfig,
) -> Result<Recovered, Failure> {
    let device = open_device(image, direct)?;
    let options = BringupOptions {
        layout: layout.clone(),
        device_path_policy: DevicePathPolicy::Ignore,
        window_ops_max: config.window,
        ..BringupOptions::default()
    };
    let bringup = Bringup::new(device.clone(), options)?;
    let mut engine = config.build(&device, bringup.header_pool())?;
    let bar = Bar::new(&config.label());
    let recovered = bringup.run(&mut *engine, &mut |progress| bar.bringup(progress))?;
    Ok(recovered)
}

/// Whether every engine found exactly the damage that was done.
struct Verdict {
    damaged: Vec<String>,
    expected_stale: BTreeSet<String>,
    all_match: bool,
}

fn verdict(prepared: &Prepared, runs: &[Run]) -> Verdict {
    let mut damaged = Vec::new();
    let mut expected_stale = BTreeSet::new();
    for entry in prepared.entries().filter(|entry| entry.damage.is_some()) {
        damaged.push(format!(
            "entry {} {}",
            entry.entry_index,
            entry.damage.map_or("", Damage::name)
        ));
        if matches!(entry.state, ExpectedState::Dropped(_)) {
            expected_stale.insert(entry.key.clone());
        }
    }
    let expected_kept = prepared.expected_index_len();
    let all_match = runs.iter().all(|run| {
        let report = &run.recovered.report;
        let stale: BTreeSet<String> = report
            .entries
            .iter()
            .filter(|entry| entry.state.name() == "stale")
            .map(|entry| entry.key.clone())
            .collect();
        stale == expected_stale && report.counts.kept == expected_kept
    });
    Verdict {
        damaged,
        expected_stale,
        all_match,
    }
}

fn print_text(
    image: &Path,
    args: &DemoArgs,
    reads: &Reads,
    runs: &[Run],
    missing: &[(rbio_engines::EngineKind, &str)],
    verdict: &Verdict,
) -> Result<(), OutputError> {
    let serial_secs = runs[0].recovered.report.phases.total.as_secs_f64();
    outln!(
        "rbio demo: {} entries (headers only, 1 MiB slots) in {}, read {}, page cache {}",
        render::count(args.entries),
        image.display(),
        match (reads.direct, args.buffered) {
            (true, _) => "with O_DIRECT",
            (false, true) => "through the page cache (--buffered)",
            (false, false) => "through the page cache (no O_DIRECT here)",
        },
        reads.page_cache
    )?;
    outln!(
        "{}, kernel {}, {}",
        system::disk_of(image),
        system::kernel(),
        system::cpu()
    )?;
    match rbio_engines::uring_features() {
        Some(features) => outln!("io_uring features: {features}\n")?,
        None => outln!("io_uring features: none (io_uring unavailable)\n")?,
    }
    let mut table = Table::new(&[
        "engine",
        "kept",
        "stale",
        "unreadable",
        "bringup",
        "validate",
        "× serial",
    ]);
    for run in runs {
        let report = &run.recovered.report;
        let secs = report.phases.total.as_secs_f64();
        table.row(vec![
            run.config.label(),
            render::count(report.counts.kept),
            render::count(report.counts.stale()),
            render::count(report.counts.unreadable()),
            render::seconds(secs),
            render::seconds(report.phases.validate.as_secs_f64()),
            format!("{:.1}", serial_secs / secs),
        ]);
    }
    out!("{}", table.render())?;
    for (kind, why) in missing {
        outln!("not shown: {} ({why})", kind.name())?;
    }
    outln!()?;
    let outcome = if verdict.all_match {
        format!(
            "and every engine found exactly those {} stale and kept the other {}",
            verdict.expected_stale.len(),
            render::count(runs[0].recovered.report.counts.kept)
        )
    } else {
        "but not every engine found exactly those: see the counts above".to_owned()
    };
    outln!(
        "damaged {} slot headers after the last checkpoint ({}), {outcome}",
        verdict.damaged.len(),
        verdict.damaged.join(", ")
    )
}

fn print_json(
    args: &DemoArgs,
    reads: &Reads,
    runs: &[Run],
    verdict: &Verdict,
) -> Result<(), OutputError> {
    let value = json!({
        "entries": args.entries,
        "direct": reads.direct,
        "page_cache": reads.page_cache,
        "damaged": verdict.damaged,
        "all_match": verdict.all_match,
        "runs": runs.iter().map(|run| json!({
            "engine": run.config.label(),
            "report": run.recovered.report.to_json(),
        })).collect::<Vec<_>>(),
    });
    outln!("{value}")
}

/// A new private directory (mode 0700, a name no one can guess) under the system's temporary
/// directory (`TMPDIR`), removed with everything in it on drop.
fn demo_dir() -> Result<TempDir, Failure> {
    tempfile::Builder::new()
        .prefix("rbio-demo-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(|error| {
            let parent = std::env::temp_dir();
            format!("{}: cannot create a directory: {error}", parent.display()).into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_dirs_are_private_and_distinct() {
        let dirs: Vec<TempDir> = (0..16).map(|_| demo_dir().unwrap()).collect();
        let paths: BTreeSet<&Path> = dirs.iter().map(TempDir::path).collect();
        assert_eq!(paths.len(), dirs.len(), "{paths:?}");
        for dir in &dirs {
            let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}: {mode:o}", dir.path().display());
        }
        let kept = dirs[0].path().to_owned();
        drop(dirs);
        assert!(!kept.exists(), "{} left behind", kept.display());
    }

    #[test]
    fn layouts_grow_with_entries_and_refuse_overflow() {
        let default_bytes = Layout::default().meta_total_bytes;
        assert_eq!(layout_for(1000).unwrap().meta_total_bytes, default_bytes);
        let big = layout_for(10_000_000).unwrap().meta_total_bytes;
        assert_eq!(big, 4 << 30, "400 bytes each, rounded up to a power of two");
        // The product overflows; then only the rounding up does.
        for entries in [u64::MAX, 1 << 61, 1 << 55] {
            let error = layout_for(entries).unwrap_err();
            assert!(error.to_string().contains("does not fit"), "{error}");
        }
    }
}
