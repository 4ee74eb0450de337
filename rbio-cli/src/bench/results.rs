//! The benchmark's results: rows of medians and spreads, rendered as a table and as JSON, and
//! compared with a saved baseline by speed-up over serial (a ratio, so it survives a noisy
//! machine).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::runner::Sample;
use crate::exit::Failure;
use crate::render::{self, Table};

/// The median and extremes of repeated measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (not empty).
    pub fn of(values: &[f64]) -> Spread {
        assert!(!values.is_empty(), "a spread of no values");
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Spread {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }

    /// Half the range as a percentage of the median.
    pub fn plus_minus_percent(&self) -> f64 {
        (self.max - self.min) / 2.0 / self.median * 100.0
    }
}

/// One engine configuration at one entry count.
#[derive(Clone, Debug)]
pub struct Row {
    /// The engine's label (`serial`, `posix w=8`, `uring q=64 fixed`).
    pub engine: String,
    /// Entries in the image.
    pub entries: u64,
    /// Operations at the device at once (fio's iodepth for the comparison).
    pub depth: usize,
    /// Runs measured.
    pub runs: usize,
    /// Bringup seconds.
    pub total_secs: Spread,
    /// Validation seconds.
    pub validate_secs: Spread,
    /// Median seconds of select, parse, apply, validate.
    pub phase_secs: [f64; 4],
    /// The largest peak resident memory of any run.
    pub peak_rss_bytes: u64,
    /// The largest peak of header buffers in use.
    pub header_buffer_bytes_max: u64,
    /// Serial's median bringup time over this row's (same entry count, same run).
    pub speedup: f64,
    /// fio's reads per second for the same header reads at the same depth, if measured.
    pub fio_iops: Option<f64>,
    /// Reads per second of the same header reads through the engine alone (no parsing, no
    /// judging), if measured.
    pub engine_only_iops: Option<f64>,
}

impl Row {
    /// A row from its samples; `speedup` and `fio_iops` are filled in later.
    pub fn from_samples(engine: String, entries: u64, depth: usize, samples: &[Sample]) -> Row {
        let totals: Vec<f64> = samples.iter().map(|s| s.total_secs).collect();
        let validates: Vec<f64> = samples.iter().map(|s| s.phase_secs[3]).collect();
        let phase_secs = std::array::from_fn(|phase| {
            Spread::of(
                &samples
                    .iter()
                    .map(|s| s.phase_secs[phase])
                    .collect::<Vec<_>>(),
            )
            .median
        });
        Row {
            engine,
            entries,
            depth,
            runs: samples.len(),
            total_secs: Spread::of(&totals),
            validate_secs: Spread::of(&validates),
            phase_secs,
            peak_rss_bytes: samples.iter().map(|s| s.peak_rss_bytes).max().unwrap_or(0),
            header_buffer_bytes_max: samples
                .iter()
                .map(|s| s.header_buffer_bytes_max)
                .max()
                .unwrap_or(0),
            speedup: f64::NAN,
            fio_iops: None,
            engine_only_iops: None,
        }
    }

    /// Entries brought up per second (median).
    pub fn entries_per_sec(&self) -> f64 {
        self.entries as f64 / self.total_secs.median
    }

    /// Slot headers validated per second (median validation time).
    pub fn headers_per_sec(&self) -> f64 {
        self.entries as f64 / self.validate_secs.median
    }

    /// Peak resident memory per entry of the image (whole bytes).
    pub fn peak_rss_bytes_per_entry(&self) -> u64 {
        self.peak_rss_bytes / self.entries.max(1)
    }

    /// Validation's header rate as a fraction of fio's for the same reads.
    pub fn fio_fraction(&self) -> Option<f64> {
        self.fio_iops.map(|iops| self.headers_per_sec() / iops)
    }

    /// The engine alone's rate for the same reads as a fraction of fio's.
    pub fn engine_only_fio_fraction(&self) -> Option<f64> {
        Some(self.engine_only_iops? / self.fio_iops?)
    }

    fn to_json(&self) -> Value {
        let spread = |s: &Spread| json!({"median": s.median, "min": s.min, "max": s.max});
        json!({
            "engine": self.engine,
            "entries": self.entries,
            "depth": self.depth,
            "runs": self.runs,
            "total_secs": spread(&self.total_secs),
            "validate_secs": spread(&self.validate_secs),
            "phase_secs": {
                "select": self.phase_secs[0],
                "parse": self.phase_secs[1],
                "apply": self.phase_secs[2],
                "validate": self.phase_secs[3],
            },
            "entries_per_sec": self.entries_per_sec(),
            "headers_per_sec": self.headers_per_sec(),
            "speedup_vs_serial": self.speedup,
            "fio_iops": self.fio_iops,
            "engine_only_iops": self.engine_only_iops,
            "fio_fraction": self.fio_fraction(),
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_rss_bytes_per_entry": self.peak_rss_bytes_per_entry(),
            "header_buffer_bytes_max": self.header_buffer_bytes_max,
        })
    }
}

/// Fills in each row's speed-up over the serial row of the same entry count.
pub fn set_speedups(rows: &mut [Row]) {
    let serial: Vec<(u64, f64)> = rows
        .iter()
        .filter(|row| row.engine == "serial")
        .map(|row| (row.entries, row.total_secs.median))
        .collect();
    for row in rows {
        if let Some(&(_, secs)) = serial.iter().find(|(entries, _)| *entries == row.entries) {
            row.speedup = secs / row.total_secs.median;
        }
    }
}

/// What the whole run was, for the table's head and the JSON.
pub struct Context {
    /// The command line that produced the results.
    pub command: String,
    /// The disk under the images.
    pub disk: String,
    /// Kernel release.
    pub kernel: String,
    /// CPUs.
    pub cpu: String,
    /// Whether reads bypassed the page cache.
    pub direct: bool,
    /// Whether the page cache was dropped before each run, or why not.
    pub page_cache: Result<(), String>,
    /// fio's version, or why it was not run.
    pub fio: Result<String, String>,
}

/// The results as a table with the context above it and the goals below.
pub fn table(context: &Context, rows: &[Row]) -> String {
    let mut out = format!(
        "device: {} ({}); kernel {}; CPU {}\n",
        context.disk,
        if context.direct {
            "O_DIRECT"
        } else {
            "buffered"
        },
        context.kernel,
        context.cpu
    );
    match &context.page_cache {
        Ok(()) => out.push_str("page cache dropped before each run\n"),
        Err(why) => {
            let _ = writeln!(out, "page cache NOT dropped: {why}");
        }
    }
    match &context.fio {
        Ok(version) => {
            let _ = writeln!(
                out,
                "fio: {version}, strided read of the same headers, io_uring, same depth; \
                 \"engine alone\": the same reads through the row's engine without bringup's \
                 work, as a % of fio"
            );
        }
        Err(why) => {
            let _ = writeln!(out, "fio: not run ({why})");
        }
    }
    out.push('\n');
    let mut table = Table::new(&[
        "engine",
        "entries",
        "s",
        "±",
        "entries/s",
        "× serial",
        "% of fio",
        "engine alone",
        "validate",
        "peak mem",
        "B/entry",
    ]);
    for row in rows {
        table.row(vec![
            row.engine.clone(),
            render::count(row.entries),
            format!("{:.3}", row.total_secs.median),
            format!("{:.0}%", row.total_secs.plus_minus_percent()),
            render::count(row.entries_per_sec() as u64),
            format!("{:.2}", row.speedup),
            percent(row.fio_fraction()),
            percent(row.engine_only_fio_fraction()),
            format!("{:.0}%", row.phase_secs[3] / row.total_secs.median * 100.0),
            render::bytes(row.peak_rss_bytes),
            render::count(row.peak_rss_bytes_per_entry()),
        ]);
    }
    out.push_str(&table.render());
    out.push_str(&goals(rows));
    out
}

/// A fraction as a whole percentage, or `-` where it was not measured.
fn percent(fraction: Option<f64>) -> String {
    fraction.map_or_else(|| "-".to_owned(), |f| format!("{:.0}%", f * 100.0))
}

/// The closing note: the goals, each with the numbers that decide it.
fn goals(rows: &[Row]) -> String {
    let mut out = String::from("\n");
    let best = rows
        .iter()
        .filter_map(|row| row.fio_fraction().map(|f| (f, row)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((fraction, row)) = best {
        let _ = writeln!(
            out,
            "goal: validation >= 90% of fio's IOPS at the same depth: best {:.0}% ({} at {} entries)",
            fraction * 100.0,
            row.engine,
            render::count(row.entries)
        );
    }
    out.push_str(&default_settings_goal(rows));
    if let Some(largest) = rows.iter().map(|row| row.entries).max() {
        let at_largest: Vec<&Row> = rows.iter().filter(|r| r.entries == largest).collect();
        let share = |row: &&Row| row.phase_secs[3] / row.total_secs.median;
        let least = at_largest.iter().map(share).fold(f64::INFINITY, f64::min);
        let parse = at_largest
            .iter()
            .map(|r| r.phase_secs[1])
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "goal: bringup at {} entries dominated by validation: validation is at least {:.0}% of \
             total in every row (parsing at most {:.3} s, on its own thread)",
            render::count(largest),
            least * 100.0,
            parse
        );
        let peak = at_largest
            .iter()
            .map(|r| r.peak_rss_bytes)
            .max()
            .unwrap_or(0);
        let buffers = at_largest
            .iter()
            .map(|r| r.header_buffer_bytes_max)
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "goal: bounded memory: header buffers at most {} (2 x window x read size, whatever the \
             entry count); peak process memory {} at {} entries (the parsed checkpoint and index)",
            render::bytes(buffers),
            render::bytes(peak),
            render::count(largest)
        );
    }
    out
}

/// Issue 16's goal: the command's default engine settings at >= 95% of fio's IOPS at depths
/// 64 and 256, at every entry count measured.
fn default_settings_goal(rows: &[Row]) -> String {
    let mut out = String::new();
    for window in super::DEFAULT_SETTINGS_WINDOWS {
        let label = super::default_settings_at(window).engine_config().label();
        for row in rows.iter().filter(|row| row.engine == label) {
            let Some(fraction) = row.fio_fraction() else {
                continue;
            };
            let _ = writeln!(
                out,
                "goal: default settings >= 95% of fio's IOPS at depth {window}: {:.0}% ({} at {} \
                 entries, {})",
                fraction * 100.0,
                label,
                render::count(row.entries),
                if fraction >= 0.95 { "met" } else { "NOT met" }
            );
        }
    }
    out
}

/// The results as one JSON object, usable as a later `--baseline`.
pub fn to_json(context: &Context, rows: &[Row]) -> Value {
    json!({
        "command": context.command,
        "machine": {
            "disk": context.disk,
            "kernel": context.kernel,
            "cpu": context.cpu,
        },
        "direct": context.direct,
        "page_cache_dropped": context.page_cache.is_ok(),
        "fio": context.fio.as_ref().ok(),
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    })
}

/// A row of the baseline comparison.
pub struct Comparison {
    /// Engine label.
    pub engine: String,
    /// Entry count.
    pub entries: u64,
    /// Speed-up over serial in the baseline.
    pub before: f64,
    /// Speed-up over serial now.
    pub now: f64,
    /// Whether it fell by more than the margin.
    pub regressed: bool,
}

/// Compares `rows` with the results saved in `path`: a row regresses when its speed-up over
/// serial fell by more than `margin_percent`.
pub fn compare(path: &Path, rows: &[Row], margin_percent: f64) -> Result<Vec<Comparison>, Failure> {
    let text = std::fs::read(path)
        .map_err(|error| format!("{}: cannot read the baseline: {error}", path.display()))?;
    let baseline: Value = serde_json::from_slice(&text)
        .map_err(|error| format!("{}: not a bench JSON result: {error}", path.display()))?;
    let saved = baseline["rows"]
        .as_array()
        .ok_or_else(|| format!("{}: no \"rows\" in the baseline", path.display()))?;
    let mut comparisons = Vec::new();
    for row in rows {
        let matching = saved.iter().find(|saved| {
            saved["engine"].as_str() == Some(&row.engine)
                && saved["entries"].as_u64() == Some(row.entries)
        });
        let Some(before) = matching.and_then(|saved| saved["speedup_vs_serial"].as_f64()) else {
            continue;
        };
        comparisons.push(Comparison {
            engine: row.engine.clone(),
            entries: row.entries,
            before,
            now: row.speedup,
            regressed: row.speedup < before * (1.0 - margin_percent / 100.0),
        });
    }
    Ok(comparisons)
}

/// The comparison as a table.
pub fn comparison_table(comparisons: &[Comparison], margin_percent: f64) -> String {
    let mut table = Table::new(&[
        "engine",
        "entries",
        "baseline ×",
        "now ×",
        "change",
        "verdict",
    ]);
    for c in comparisons {
        table.row(vec![
            c.engine.clone(),
            render::count(c.entries),
            format!("{:.2}", c.before),
            format!("{:.2}", c.now),
            format!("{:+.0}%", (c.now / c.before - 1.0) * 100.0),
            if c.regressed {
                format!("REGRESSED (> {margin_percent}% slower)")
            } else {
                "ok".to_owned()
            },
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_take_the_median() {
        let odd = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert_eq!(Spread::of(&[2.0, 2.0]).plus_minus_percent(), 0.0);
    }

    #[test]
    fn speedups_are_against_serial_at_the_same_count() {
        let sample = |secs| Sample {
            total_secs: secs,
            phase_secs: [0.0, 0.0, 0.0, secs],
            ..Sample::default()
        };
        let mut rows = vec![
            Row::from_samples("serial".into(), 10, 1, &[sample(4.0)]),
            Row::from_samples("uring q=64".into(), 10, 64, &[sample(1.0)]),
            Row::from_samples("serial".into(), 20, 1, &[sample(8.0)]),
            Row::from_samples("uring q=64".into(), 20, 64, &[sample(4.0)]),
        ];
        set_speedups(&mut rows);
        let speedups: Vec<f64> = rows.iter().map(|r| r.speedup).collect();
        assert_eq!(speedups, [1.0, 4.0, 1.0, 2.0]);
    }
}
