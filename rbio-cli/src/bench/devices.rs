//! Several devices at once: for each kind of engine, 1, 2 and 4 copies of the benchmark image
//! brought up by one `rbio bringup` command, against the same images brought up one by one in
//! the same round (the sum of their times). Rounds alternate the one-by-one runs and the runs
//! together, so a noisy moment hurts one sample of each.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::images::{self, Image};
use super::results::Spread;
use super::runner;
use crate::exit::Failure;
use crate::output::note;
use crate::render::{self, Table};
use crate::system::CacheDropper;
use rbio_engines::EngineConfig;

/// How many devices the rows bring up at once.
pub const DEVICE_COUNTS: [usize; 3] = [1, 2, 4];

/// One engine configuration bringing `devices` images up at once.
#[derive(Clone, Debug)]
pub struct DevicesRow {
    /// The engine's label.
    pub engine: String,
    /// Devices brought up at once.
    pub devices: usize,
    /// Entries on all of them together.
    pub entries_total: u64,
    /// Seconds of the command bringing them all up.
    pub together_secs: Spread,
    /// Seconds of the same devices brought up one by one, summed.
    pub one_by_one_secs: Spread,
}

impl DevicesRow {
    /// Entries brought up per second, all devices together (median).
    pub fn entries_per_sec(&self) -> f64 {
        self.entries_total as f64 / self.together_secs.median
    }

    /// How many times faster than one by one.
    pub fn gain(&self) -> f64 {
        self.one_by_one_secs.median / self.together_secs.median
    }

    fn to_json(&self) -> Value {
        let spread = |s: &Spread| json!({"median": s.median, "min": s.min, "max": s.max});
        json!({
            "engine": self.engine,
            "devices": self.devices,
            "entries_total": self.entries_total,
            "together_secs": spread(&self.together_secs),
            "one_by_one_secs": spread(&self.one_by_one_secs),
            "entries_per_sec": self.entries_per_sec(),
            "gain_vs_one_by_one": self.gain(),
        })
    }
}

/// One engine of each kind: serial, posix, and io_uring with fixed buffers where usable.
pub fn configurations(quick: bool) -> Vec<EngineConfig> {
    let mut configs = vec![
        EngineConfig::serial(),
        EngineConfig::posix(Some(if quick { 4 } else { 8 })),
    ];
    if rbio_engines::uring_usable() {
        configs.push(EngineConfig::uring(if quick { 64 } else { 256 }, true));
    }
    configs
}

/// Times for one configuration: per device count, the runs together and the one-by-one sums.
#[derive(Default)]
struct Times {
    together_secs: [Vec<f64>; DEVICE_COUNTS.len()],
    one_by_one_secs: [Vec<f64>; DEVICE_COUNTS.len()],
}

/// Measures every configuration with 1, 2 and 4 copies of the image of `entries` entries.
pub fn measure(
    dir: &Path,
    entries: u64,
    configs: &[EngineConfig],
    repeat: usize,
    direct: bool,
    cache: &mut CacheDropper,
) -> Result<Vec<DevicesRow>, Failure> {
    if configs.is_empty() {
        return Ok(Vec::new());
    }
    let copies = DEVICE_COUNTS[DEVICE_COUNTS.len() - 1];
    let images: Vec<Image> = (0..copies)
        .map(|copy_index| images::ensure_copy(dir, entries, copy_index))
        .collect::<Result<_, _>>()?;
    let mut times: Vec<Times> = configs.iter().map(|_| Times::default()).collect();
    for round in 0..repeat {
        note!(
            "rbio bench: {entries} entries on 1, 2 and 4 devices, round {} of {repeat}",
            round + 1
        );
        for (config, times) in configs.iter().zip(&mut times) {
            let mut singles = Vec::with_capacity(images.len());
            for image in &images {
                cache.drop_now();
                singles.push(run_checked(
                    std::slice::from_ref(image),
                    config,
                    direct,
                    entries,
                )?);
            }
            for (count_index, &count) in DEVICE_COUNTS.iter().enumerate() {
                let together = if count == 1 {
                    singles[0]
                } else {
                    cache.drop_now();
                    run_checked(&images[..count], config, direct, entries)?
                };
                times.together_secs[count_index].push(together);
                times.one_by_one_secs[count_index].push(singles[..count].iter().sum());
            }
        }
    }
    let mut rows = Vec::new();
    for (config, times) in configs.iter().zip(&times) {
        for (count_index, &devices) in DEVICE_COUNTS.iter().enumerate() {
            rows.push(DevicesRow {
                engine: config.label(),
                devices,
                entries_total: entries * devices as u64,
                together_secs: Spread::of(&times.together_secs[count_index]),
                one_by_one_secs: Spread::of(&times.one_by_one_secs[count_index]),
            });
        }
    }
    Ok(rows)
}

/// Brings `images` up at once and returns the seconds it took; every entry of every image
/// must have been kept (the benchmark's images are undamaged).
fn run_checked(
    images: &[Image],
    config: &EngineConfig,
    direct: bool,
    entries: u64,
) -> Result<f64, Failure> {
    let sample = runner::run_devices(images, config, direct)?;
    let expected = entries * images.len() as u64;
    if sample.kept != expected {
        return Err(format!(
            "{} on {} devices kept {} entries, expected {expected}",
            config.label(),
            images.len(),
            sample.kept
        )
        .into());
    }
    Ok(sample.wall_secs)
}

/// The rows as a table, with the goal below: several devices at once bring up at least as
/// many entries per second as one.
pub fn table(rows: &[DevicesRow]) -> String {
    let mut out = String::from(
        "\nseveral devices at once (copies of the image; wall time of one rbio bringup with all \
         of them, against the same devices one by one in the same round):\n",
    );
    let mut table = Table::new(&[
        "engine",
        "devices",
        "entries",
        "s",
        "±",
        "entries/s",
        "one by one s",
        "× one by one",
    ]);
    for row in rows {
        table.row(vec![
            row.engine.clone(),
            row.devices.to_string(),
            render::count(row.entries_total),
            format!("{:.3}", row.together_secs.median),
            format!("{:.0}%", row.together_secs.plus_minus_percent()),
            render::count(row.entries_per_sec() as u64),
            format!("{:.3}", row.one_by_one_secs.median),
            format!("{:.2}", row.gain()),
        ]);
    }
    out.push_str(&table.render());
    let least = rows
        .iter()
        .filter(|row| row.devices > 1)
        .filter_map(|row| {
            let one = rows.iter().find(|one| {
                one.engine == row.engine
                    && one.devices == 1
                    && one.entries_total * row.devices as u64 == row.entries_total
            })?;
            Some((row.entries_per_sec() / one.entries_per_sec(), row))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((ratio, row)) = least {
        let _ = writeln!(
            out,
            "\ngoal: several devices at once reach at least one device's entries/s: least {:.2}x \
             ({}, {} devices)",
            ratio, row.engine, row.devices
        );
    }
    out
}

/// The rows as JSON.
pub fn to_json(rows: &[DevicesRow]) -> Value {
    Value::Array(rows.iter().map(DevicesRow::to_json).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(devices: usize, together: f64, one_by_one: f64) -> DevicesRow {
        let spread = |secs| Spread::of(&[secs]);
        DevicesRow {
            engine: "posix w=4".into(),
            devices,
            entries_total: 1000 * devices as u64,
            together_secs: spread(together),
            one_by_one_secs: spread(one_by_one),
        }
    }

    #[test]
    fn rows_give_total_throughput_and_the_gain_over_one_by_one() {
        let two = row(2, 1.0, 1.6);
        assert_eq!(two.entries_per_sec(), 2000.0);
        assert!((two.gain() - 1.6).abs() < 1e-12);
    }

    #[test]
    fn the_goal_names_the_least_ratio_to_one_device() {
        // One device: 1000 entries/s; two: 1600/s (1.6x); four: 3200/s (3.2x).
        let rows = [row(1, 1.0, 1.0), row(2, 1.25, 2.0), row(4, 1.25, 4.0)];
        let text = table(&rows);
        assert!(
            text.contains("least 1.60x (posix w=4, 2 devices)"),
            "{text}"
        );
    }
}
