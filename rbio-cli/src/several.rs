//! `rbio bringup DEV DEV...`: several devices brought up at once through the library's
//! `bringup_many`, one report (or error) each in the order given, and the most severe exit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rbio_recovery::Recovered;

use crate::args::BringupArgs;
use crate::commands::{exit_of, note_direct_refused_at};
use crate::exit::{Exit, Failure};
use crate::output::{note, out, outln, OutputError};
use crate::progress::{device_label, Bars};
use crate::render;

/// Several devices at once: a report or an error each, in the order given, then the total
/// time; the exit is the most severe of the devices'. A device's error is also one line on
/// stderr, naming it.
pub fn bringup_several(args: &BringupArgs, devices: &[PathBuf]) -> Result<Exit, Failure> {
    let started = Instant::now();
    let labels: Vec<String> = devices.iter().map(|d| device_label(d, 20)).collect();
    let bars = Bars::new(&labels);
    let results = args
        .settings()
        .bringup_many(devices, &mut |device_index, progress| {
            bars.bringup(device_index, progress)
        });
    bars.finish();
    let total = started.elapsed();
    let outcomes: Vec<DeviceOutcome<'_>> = devices
        .iter()
        .zip(&results)
        .map(|(path, result)| DeviceOutcome::of(path, result))
        .collect();
    for outcome in &outcomes {
        match &outcome.result {
            Ok(recovered) if recovered.report.settings.direct_refused => {
                note_direct_refused_at(outcome.path)
            }
            Ok(_) => {}
            Err(line) => note!("rbio: error: {}", naming(outcome.path, line)),
        }
    }
    if args.json {
        let devices: Vec<serde_json::Value> = outcomes.iter().map(DeviceOutcome::to_json).collect();
        let value = serde_json::json!({"devices": devices, "total_s": total.as_secs_f64()});
        outln!("{value}")?;
    } else {
        print_text(&outcomes, args.entries, total)?;
    }
    Ok(Exit::most_severe(
        outcomes.iter().map(|outcome| outcome.exit),
    ))
}

/// The reports for people, one after another, then the total time.
fn print_text(
    outcomes: &[DeviceOutcome<'_>],
    all_entries: bool,
    total: Duration,
) -> Result<(), OutputError> {
    for outcome in outcomes {
        outln!("== {} ==", outcome.path.display())?;
        match &outcome.result {
            Ok(recovered) => out!("{}", render::bringup_text(recovered, all_entries))?,
            Err(line) => outln!("error: {line}")?,
        }
        outln!()?;
    }
    outln!(
        "{} devices brought up at once in {:.3} s",
        outcomes.len(),
        total.as_secs_f64()
    )
}

/// `line`, led by `path` unless it names it already.
fn naming(path: &Path, line: &str) -> String {
    let path = path.display().to_string();
    if line.contains(&path) {
        line.to_owned()
    } else {
        format!("{path}: {line}")
    }
}

/// What became of one of several devices.
struct DeviceOutcome<'a> {
    path: &'a Path,
    /// What was recovered, or the error in one line.
    result: Result<&'a Recovered, String>,
    exit: Exit,
}

impl<'a> DeviceOutcome<'a> {
    fn of(path: &'a Path, result: &'a Result<Recovered, Failure>) -> DeviceOutcome<'a> {
        match result {
            Ok(recovered) => DeviceOutcome {
                path,
                result: Ok(recovered),
                exit: exit_of(&recovered.report),
            },
            Err(error) => DeviceOutcome {
                path,
                result: Err(rbio_engines::error_line(&**error)),
                exit: Exit::DeviceError,
            },
        }
    }

    /// The device's report with its `exit` added, or `{"device", "error", "exit"}`.
    fn to_json(&self) -> serde_json::Value {
        let exit = self.exit.number();
        match &self.result {
            Ok(recovered) => {
                let mut value = recovered.to_json();
                if let serde_json::Value::Object(object) = &mut value {
                    object.insert("exit".into(), exit.into());
                }
                value
            }
            Err(line) => serde_json::json!({
                "device": self.path.display().to_string(),
                "error": line,
                "exit": exit,
            }),
        }
    }
}
