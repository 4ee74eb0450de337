//! `rbio bench`: bringup of prepared images with every engine and setting, against the serial
//! engine and against fio's strided read of the very same headers, in the same run.
//!
//! Each run is a child `rbio bringup --json` (fresh memory, its own peak), preceded by a drop
//! of the page cache when permitted (a refusal is said on stderr and above the table).
//! Configurations are interleaved within each repetition, so a noisy
//! moment hurts one sample of each rather than every sample of one. A second table brings 1,
//! 2 and 4 copies of each image up at once, against the same copies one by one.

mod devices;
mod engine_only;
mod fio;
mod images;
mod plot;
mod results;
mod runner;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::args::BenchArgs;
use crate::exit::{Exit, Failure, UsageError};
use crate::output::{note, out, outln};
use crate::system::{self, CacheDropper};
use rbio_engines::{BringupSettings, EngineConfig, EngineKind};

use self::fio::Fio;
use self::results::{Context, Row};
use self::runner::Sample;

/// Entry counts of the reference run.
const ENTRIES_DEFAULT: [u64; 3] = [10_000, 100_000, 1_000_000];
/// Entry counts of `--quick`.
const ENTRIES_QUICK: [u64; 1] = [10_000];

/// `rbio bench`.
pub fn bench(args: &BenchArgs) -> Result<Exit, Failure> {
    let entry_counts = entry_counts(args)?;
    let repeat = args.repeat.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let configs = if args.default_settings {
        default_configurations()
    } else {
        configurations(args.quick)
    };
    let direct = !args.buffered;
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    let fio = if args.no_fio {
        Err("--no-fio".to_owned())
    } else {
        Fio::find()
    };
    if let Err(why) = &fio {
        note!("rbio bench: {why}; the % of fio column stays empty");
    }
    // A cold start for every run is what the benchmark measures: the page cache is dropped
    // before each (once up front too, so a refusal is said before the long runs), and the
    // table says whether every drop worked.
    let mut cache = CacheDropper::new("rbio bench");
    cache.drop_now();
    let mut rows = Vec::new();
    let mut device_rows = Vec::new();
    let device_configs = if args.default_settings {
        Vec::new()
    } else {
        devices::configurations(args.quick)
    };
    for &entries in &entry_counts {
        rows.extend(measure(
            &dir,
            entries,
            &configs,
            repeat,
            direct,
            fio.as_ref().ok(),
            &mut cache,
        )?);
        device_rows.extend(devices::measure(
            &dir,
            entries,
            &device_configs,
            repeat,
            direct,
            &mut cache,
        )?);
    }
    results::set_speedups(&mut rows);
    let context = Context {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        disk: system::disk_of(&dir),
        kernel: system::kernel(),
        cpu: system::cpu(),
        direct,
        page_cache: cache.outcome(),
        fio: fio.map(|fio| fio.version),
    };
    // The files first: they keep the measurements even if stdout's reader has left.
    write_outputs(args, &context, &rows, &device_rows)?;
    out!("{}", results::table(&context, &rows))?;
    if !device_rows.is_empty() {
        out!("{}", devices::table(&device_rows))?;
    }
    compare_with_baseline(args, &rows)
}

fn entry_counts(args: &BenchArgs) -> Result<Vec<u64>, Failure> {
    let counts = match (&args.entries[..], args.quick) {
        ([], true) => ENTRIES_QUICK.to_vec(),
        ([], false) => ENTRIES_DEFAULT.to_vec(),
        (counts, _) => counts.to_vec(),
    };
    if counts.contains(&0) {
        return Err(UsageError::new("--entries: every count must be at least 1").into());
    }
    Ok(counts)
}

/// The configurations measured: serial; posix with 1 to 16 workers; io_uring at windows 32 to
/// 256 with fixed buffers on and off, and with fixed buffers one SQE per enter (see
/// `--sqes-per-enter`). `--quick` keeps one of each kind.
fn configurations(quick: bool) -> Vec<EngineConfig> {
    let uring = rbio_engines::uring_usable();
    if !uring {
        note!("rbio bench: io_uring is not usable here; its rows are left out");
    }
    let mut configs = vec![EngineConfig::serial()];
    if quick {
        configs.push(EngineConfig::posix(Some(4)));
        if uring {
            configs.push(EngineConfig::uring(64, false));
            configs.push(EngineConfig::uring(64, true));
        }
        return configs;
    }
    configs.extend([1, 2, 4, 8, 16].map(|workers| EngineConfig::posix(Some(workers))));
    if uring {
        for window in [32, 64, 128, 256] {
            configs.push(EngineConfig::uring(window, false));
            configs.push(EngineConfig::uring(window, true));
            configs.push(EngineConfig::uring(window, true).with_sqes_per_enter(1));
        }
    }
    configs
}

/// The windows at which `--default-settings` measures io_uring (issue 16 asks for 95% of fio
/// at both).
pub const DEFAULT_SETTINGS_WINDOWS: [usize; 2] = [64, 256];

/// `--default-settings`: serial, posix with its default workers, and the command's default
/// engine at [`DEFAULT_SETTINGS_WINDOWS`], each otherwise as `rbio bringup` sets it.
fn default_configurations() -> Vec<EngineConfig> {
    let mut configs = vec![
        EngineConfig::serial(),
        BringupSettings {
            engine: Some(EngineKind::Posix),
            ..BringupSettings::default()
        }
        .engine_config(),
    ];
    configs
        .extend(DEFAULT_SETTINGS_WINDOWS.map(|window| default_settings_at(window).engine_config()));
    configs.dedup_by_key(|config| config.label());
    configs
}

/// The command's defaults with `--window window`.
pub fn default_settings_at(window: usize) -> BringupSettings {
    BringupSettings {
        window,
        ..BringupSettings::default()
    }
}

/// Where images live unless `--dir` says: `target/rbio-bench` under the current directory when
/// there is a `target` (a checkout), else the system's temporary directory.
fn default_dir() -> PathBuf {
    let target = PathBuf::from("target");
    if target.is_dir() {
        target.join("rbio-bench")
    } else {
        std::env::temp_dir().join("rbio-bench")
    }
}

/// Measures every configuration (and fio at each depth) on the image with `entries` entries.
fn measure(
    dir: &std::path::Path,
    entries: u64,
    configs: &[EngineConfig],
    repeat: usize,
    direct: bool,
    fio: Option<&Fio>,
    cache: &mut CacheDropper,
) -> Result<Vec<Row>, Failure> {
    let image = images::ensure(dir, entries)?;
    let probe = rbio_recovery::open_device(&image.path, direct)?;
    let depths: Vec<usize> = configs.iter().map(|config| config.depth(&probe)).collect();
    let headers = match fio {
        Some(_) => Some(images::header_reads(&image, direct)?),
        None => None,
    };
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configs.len()];
    let mut fio_samples: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut engine_only_samples: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for round in 0..repeat {
        note!(
            "rbio bench: {entries} entries, round {} of {repeat}",
            round + 1
        );
        for (index, config) in configs.iter().enumerate() {
            cache.drop_now();
            let sample = runner::run(&image, config, direct)?;
            samples[index].push(sample);
        }
        if let (Some(fio), Some(headers)) = (fio, &headers) {
            // The engine alone beside fio: every configuration that keeps several reads in
            // flight (serial's row is fio at depth 1 already).
            for ((config, &depth), samples) in
                configs.iter().zip(&depths).zip(&mut engine_only_samples)
            {
                if depth > 1 {
                    cache.drop_now();
                    samples.push(engine_only::read_headers(headers, config, direct)?);
                }
            }
            for &depth in &depths {
                if fio_samples.get(&depth).is_some_and(|s| s.len() > round) {
                    continue;
                }
                cache.drop_now();
                let iops = fio.read_headers(headers, depth, direct)?;
                fio_samples.entry(depth).or_default().push(iops);
            }
        }
    }
    check_agreement(entries, configs, &samples)?;
    Ok(configs
        .iter()
        .zip(&samples)
        .zip(&depths)
        .zip(&engine_only_samples)
        .map(|(((config, samples), &depth), engine_only)| {
            let mut row = Row::from_samples(config.label(), entries, depth, samples);
            row.fio_iops = fio_samples
                .get(&depth)
                .map(|iops| results::Spread::of(iops).median);
            row.engine_only_iops =
                (!engine_only.is_empty()).then(|| results::Spread::of(engine_only).median);
            row
        })
        .collect())
}

/// Every run must have kept the same entries: a benchmark of different results is no
/// benchmark.
fn check_agreement(
    entries: u64,
    configs: &[EngineConfig],
    samples: &[Vec<Sample>],
) -> Result<(), Failure> {
    let expected = samples[0][0].kept;
    for (config, samples) in configs.iter().zip(samples) {
        if let Some(sample) = samples.iter().find(|s| s.kept != expected) {
            return Err(format!(
                "at {entries} entries {} kept {} entries, serial kept {expected}",
                config.label(),
                sample.kept
            )
            .into());
        }
    }
    Ok(())
}

fn write_outputs(
    args: &BenchArgs,
    context: &Context,
    rows: &[Row],
    device_rows: &[devices::DevicesRow],
) -> Result<(), Failure> {
    if let Some(path) = &args.json {
        let mut value = results::to_json(context, rows);
        if let serde_json::Value::Object(object) = &mut value {
            object.insert("device_rows".into(), devices::to_json(device_rows));
        }
        let text = serde_json::to_string_pretty(&value)?;
        std::fs::write(path, text + "\n")
            .map_err(|error| format!("{}: cannot write: {error}", path.display()))?;
        note!("rbio bench: results written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        let title = format!("rbio bringup, {} ({})", context.disk, context.kernel);
        std::fs::write(path, plot::svg(rows, &title))
            .map_err(|error| format!("{}: cannot write: {error}", path.display()))?;
        note!("rbio bench: plot written to {}", path.display());
    }
    Ok(())
}

fn compare_with_baseline(args: &BenchArgs, rows: &[Row]) -> Result<Exit, Failure> {
    let Some(path) = &args.baseline else {
        return Ok(Exit::Success);
    };
    let comparisons = results::compare(path, rows, args.margin)?;
    outln!(
        "\nagainst the baseline {} (speed-up over serial, margin {}%):",
        path.display(),
        args.margin
    )?;
    out!("{}", results::comparison_table(&comparisons, args.margin))?;
    if comparisons.is_empty() {
        return Err(format!(
            "{}: no row of the baseline matches this run (same engines and entry counts)",
            path.display()
        )
        .into());
    }
    let regressed = comparisons.iter().filter(|c| c.regressed).count();
    if regressed > 0 {
        note!("rbio bench: {regressed} row(s) regressed against the baseline");
        return Ok(Exit::Regression);
    }
    Ok(Exit::Success)
}
