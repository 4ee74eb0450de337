//! `rbio.bringup()` and `rbio.inspect()`: keywords named after the command's flags fill
//! [`BringupSettings`], the work runs without the GIL, failures raise `rbio.RbioError`.

use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rbio_core::FAN_OUT_JOBS_MAX;
use rbio_engines::{EngineKind, WINDOW_MAX, WORKERS_MAX};
use rbio_recovery::KeyNamespace;

use super::errors::{rbio_error, value};
use super::report::{Inspection, Report};
use rbio_engines::BringupSettings;

/// Sets the one setting `keyword` names; one line per keyword (the flag's name with `_` for
/// `-`; only `--no-verify` is inverted, as `verify`).
fn apply(settings: &mut BringupSettings, keyword: &str, arg: &Bound<'_, PyAny>) -> PyResult<()> {
    let s = settings;
    match keyword {
        "block_align" => s.layout.block_align = arg.extract()?,
        "header_bytes" => s.layout.header_bytes = arg.extract()?,
        "slot_bytes" => s.layout.slot_bytes = arg.extract()?,
        "meta_total_bytes" => s.layout.meta_total_bytes = arg.extract()?,
        "capacity_bytes" => s.layout.capacity_bytes = arg.extract()?,
        "meta_magic" => s.layout.meta_magic = magic(arg)?,
        "meta_version" => s.layout.meta_version = arg.extract()?,
        "namespace" => s.layout.namespace = namespace(arg)?,
        "engine" => s.engine = arg.extract::<Option<String>>()?.map(engine).transpose()?,
        "workers" => s.workers = arg.extract::<Option<usize>>()?.map(workers).transpose()?,
        "window" => s.window = count_in("window", arg.extract()?, WINDOW_MAX)?,
        "sqes_per_enter" => s.sqes_per_enter = arg.extract()?,
        "fixed_buffers" => s.fixed_buffers = arg.extract()?,
        "op_timeout" => s.op_timeout = arg.extract::<Option<f64>>()?.map(seconds).transpose()?,
        // O_DIRECT is the default; `direct=True` is accepted as `--direct` is.
        "direct" => s.buffered &= !arg.extract::<bool>()?,
        "buffered" => s.buffered = arg.extract()?,
        "ignore_device_path" => s.ignore_device_path = arg.extract()?,
        "strict_device_path" => s.strict_device_path = arg.extract()?,
        "device_path" => s.device_path = arg.extract()?,
        "verify" => s.verify = arg.extract()?,
        "drop_unreadable" => s.drop_unreadable = arg.extract()?,
        "entries" => s.entries = arg.extract()?,
        _ => return Err(unexpected(keyword)),
    }
    Ok(())
}

/// Keywords of `bringup` that `inspect` (like `rbio inspect`) does not take.
const BRINGUP_ONLY: [&str; 3] = ["verify", "drop_unreadable", "op_timeout"];

fn unexpected(keyword: &str) -> PyErr {
    PyTypeError::new_err(format!("unexpected keyword argument '{keyword}'"))
}

fn settings_from(
    kwargs: Option<&Bound<'_, PyDict>>,
    refused: &[&str],
) -> PyResult<BringupSettings> {
    let mut settings = BringupSettings::default();
    for (keyword, arg) in kwargs.into_iter().flatten() {
        let keyword: String = keyword.extract()?;
        if refused.contains(&keyword.as_str()) {
            return Err(unexpected(&keyword));
        }
        apply(&mut settings, &keyword, &arg)?;
    }
    if settings.ignore_device_path && settings.strict_device_path {
        // As the command refuses --ignore-device-path with --strict-device-path.
        return Err(value(
            "ignore_device_path and strict_device_path cannot be used together",
        ));
    }
    Ok(settings)
}

fn magic(arg: &Bound<'_, PyAny>) -> PyResult<[u8; 8]> {
    let bytes: Vec<u8> = match arg.extract::<String>() {
        Ok(text) => text.into_bytes(),
        Err(_) => arg.extract()?,
    };
    match <[u8; 8]>::try_from(bytes.as_slice()) {
        Ok(magic) if magic.is_ascii() => Ok(magic),
        _ => Err(value(format!(
            "meta_magic must be exactly 8 ASCII bytes, got {bytes:?}"
        ))),
    }
}

fn namespace(arg: &Bound<'_, PyAny>) -> PyResult<KeyNamespace> {
    match arg.extract::<String>()?.as_str() {
        "object" => Ok(KeyNamespace::Object),
        "legacy" => Ok(KeyNamespace::Legacy),
        other => Err(value(format!(
            "namespace must be one of object, legacy; got {other:?}"
        ))),
    }
}

fn engine(name: String) -> PyResult<EngineKind> {
    name.parse().map_err(|error| value(format!("{error}")))
}

fn workers(count: usize) -> PyResult<usize> {
    count_in("workers", count, WORKERS_MAX)
}

/// `op_timeout`: a positive, finite number of seconds, as `--op-timeout` takes.
fn seconds(seconds: f64) -> PyResult<std::time::Duration> {
    match std::time::Duration::try_from_secs_f64(seconds) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(value(format!(
            "op_timeout must be a positive, finite number of seconds, got {seconds}"
        ))),
    }
}

fn count_in(keyword: &str, count: usize, max: usize) -> PyResult<usize> {
    if (1..=max).contains(&count) {
        Ok(count)
    } else {
        Err(value(format!("{keyword} must be 1 to {max}, got {count}")))
    }
}

/// Brings a raw_block device up, as `rbio bringup` does, with the GIL released.
#[pyfunction]
#[pyo3(signature = (path, **kwargs))]
pub fn bringup(
    py: Python<'_>,
    path: PathBuf,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Report> {
    let settings = settings_from(kwargs, &[])?;
    let recovered = py
        .detach(|| settings.bringup(&path))
        .map_err(|failure| rbio_error(&failure))?;
    Ok(Report::new(recovered))
}

/// Brings several raw_block devices up at once, as `rbio bringup DEV DEV...` does, with the
/// GIL released: one engine and one thread each. Returns a list in the order of `paths`: a
/// `Report` for each device brought up, an `RbioError` (returned, not raised) for each that
/// failed, so one failure does not hide the others.
#[pyfunction]
#[pyo3(signature = (paths, **kwargs))]
pub fn bringup_many(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Vec<Py<PyAny>>> {
    let settings = settings_from(kwargs, &[])?;
    if paths.len() > FAN_OUT_JOBS_MAX {
        return Err(value(format!(
            "at most {FAN_OUT_JOBS_MAX} devices at once, got {}",
            paths.len()
        )));
    }
    let results = py.detach(|| settings.bringup_many(&paths, &mut |_, _| {}));
    results
        .into_iter()
        .map(|result| match result {
            Ok(recovered) => Ok(Py::new(py, Report::new(recovered))?.into_any()),
            Err(failure) => Ok(rbio_error(&failure).into_value(py).into_any()),
        })
        .collect()
}

/// Reads both checkpoint mirrors, as `rbio inspect` does, with the GIL released.
#[pyfunction]
#[pyo3(signature = (path, **kwargs))]
pub fn inspect(
    py: Python<'_>,
    path: PathBuf,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Inspection> {
    let settings = settings_from(kwargs, &BRINGUP_ONLY)?;
    let inspection = py
        .detach(|| {
            settings
                .inspect(&path)
                .map(|(inspection, _device)| inspection)
        })
        .map_err(|failure| rbio_error(&failure))?;
    Ok(Inspection::new(&inspection))
}
