//! One measured bringup: `rbio bringup --json` in a child process, so each run starts with
//! fresh memory and its peak resident size is its own.

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use super::images::Image;
use crate::exit::Failure;
use rbio_engines::EngineConfig;

/// What one bringup run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Seconds from open to the recovered index.
    pub total_secs: f64,
    /// Seconds per phase: select, parse, apply, validate.
    pub phase_secs: [f64; 4],
    /// Entries kept (a check that every run found the same).
    pub kept: u64,
    /// The child's peak resident memory.
    pub peak_rss_bytes: u64,
    /// Peak bytes of header buffers in use.
    pub header_buffer_bytes_max: u64,
}

/// Brings `image` up with `config` in a child process and returns what it measured.
pub fn run(image: &Image, config: &EngineConfig, direct: bool) -> Result<Sample, Failure> {
    let report = run_json(std::slice::from_ref(image), config, direct)?;
    Ok(sample_of(&report))
}

/// What one bringup of several devices at once measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct DevicesSample {
    /// Seconds the whole command took, from start to exit.
    pub wall_secs: f64,
    /// Entries kept on all devices together.
    pub kept: u64,
}

/// Brings every image up at once (one device alone too) with `config` in one child process,
/// timed from its start to its exit, so one device and several are measured alike.
pub fn run_devices(
    images: &[Image],
    config: &EngineConfig,
    direct: bool,
) -> Result<DevicesSample, Failure> {
    let started = Instant::now();
    let value = run_json(images, config, direct)?;
    let wall_secs = started.elapsed().as_secs_f64();
    let kept = |report: &Value| report["counts"]["kept"].as_u64().unwrap_or(0);
    let kept = match value["devices"].as_array() {
        Some(reports) => reports.iter().map(kept).sum(),
        None => kept(&value),
    };
    Ok(DevicesSample { wall_secs, kept })
}

/// Runs `rbio bringup IMAGES... --json` with `config` and returns its JSON (all images share
/// the first one's layout).
fn run_json(images: &[Image], config: &EngineConfig, direct: bool) -> Result<Value, Failure> {
    let exe = std::env::current_exe()
        .map_err(|error| format!("cannot find the rbio executable: {error}"))?;
    let layout = &images[0].layout;
    let mut command = Command::new(exe);
    command
        .arg("bringup")
        .args(images.iter().map(|image| &image.path))
        .arg("--json")
        .arg("--ignore-device-path")
        .args(["--engine", config.kind.name()])
        .args(["--window", &config.window.to_string()])
        .args([
            "--fixed-buffers",
            if config.fixed_buffers { "on" } else { "off" },
        ])
        .args(["--slot-bytes", &layout.slot_bytes.to_string()])
        .args(["--meta-total-bytes", &layout.meta_total_bytes.to_string()]);
    if let Some(workers) = config.workers {
        command.args(["--workers", &workers.to_string()]);
    }
    if let Some(sqes_per_enter) = config.sqes_per_enter {
        command.args(["--sqes-per-enter", &sqes_per_enter.to_string()]);
    }
    if direct {
        command.arg("--direct");
    }
    let output = command
        .output()
        .map_err(|error| format!("cannot run rbio bringup: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "rbio bringup with {} failed ({}): {}",
            config.label(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("rbio bringup printed no JSON report: {error}").into())
}

fn sample_of(report: &Value) -> Sample {
    let secs = |phase: &str| report["phases"][phase].as_f64().unwrap_or(f64::NAN);
    Sample {
        total_secs: secs("total"),
        phase_secs: [
            secs("select"),
            secs("parse"),
            secs("apply"),
            secs("validate"),
        ],
        kept: report["counts"]["kept"].as_u64().unwrap_or(0),
        peak_rss_bytes: report["peak_rss_bytes"].as_u64().unwrap_or(0),
        header_buffer_bytes_max: report["header_buffer_bytes_max"].as_u64().unwrap_or(0),
    }
}
