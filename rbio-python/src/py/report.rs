//! `rbio.Report` and `rbio.Inspection`: what bringup and inspect found, as Python objects, and
//! the JSON `rbio bringup --json` / `rbio inspect --json` print.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use rbio_recovery::{IndexEntry, Inspection as Inspected, Recovered};
use serde_json::Value;

/// What `rbio.bringup()` recovered: the report's parts as Python objects, the index for
/// LMCache, and `to_json()`.
#[pyclass(module = "rbio", frozen)]
pub struct Report {
    recovered: Recovered,
    /// The report's JSON (without the process's peak RSS, which `to_json` reads anew).
    summary: Value,
}

impl Report {
    /// Wraps what bringup recovered.
    pub fn new(recovered: Recovered) -> Report {
        let summary = recovered.report.to_json();
        Report { recovered, summary }
    }

    fn part<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, self.summary.get(key).unwrap_or(&Value::Null))
    }
}

#[pymethods]
impl Report {
    /// Entries per state and reason: `in_checkpoint`, `kept`, `stale`, `unreadable`, ...
    #[getter]
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "counts")
    }

    /// The chosen checkpoint (`mirror`, `seq`, `payload_len_bytes`), or `None`.
    #[getter]
    fn checkpoint<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "checkpoint")
    }

    /// Seconds spent in each phase: `select`, `parse`, `apply`, `validate`, `total`.
    #[getter]
    fn phases<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "phases")
    }

    /// The entries not simply kept (every entry with `entries=True`), each a dict with `key`,
    /// `offset`, `size`, `state` and `reason`.
    #[getter]
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "entries")
    }

    /// Both checkpoint mirrors as found.
    #[getter]
    fn mirrors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "mirrors")
    }

    /// Why the checkpoint was ignored as a whole (the index then starts empty), or `None`.
    #[getter]
    fn ignored<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "ignored")
    }

    /// Warnings, one line each.
    #[getter]
    fn warnings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "warnings")
    }

    /// The recovered index in checkpoint order: `(key, offset, size, shape, dtype, fmt,
    /// cached_positions)` per entry, the tensor metadata as Python objects (`None` where the
    /// checkpoint had none).
    #[getter]
    fn index<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut metadata = MetadataCache::default();
        let mut tuples = Vec::with_capacity(self.recovered.index.len());
        for entry in &self.recovered.index {
            tuples.push(index_tuple(py, &entry, &mut metadata)?);
        }
        PyList::new(py, tuples)
    }

    /// Slots below `next_slot` that no index entry owns, ascending.
    #[getter]
    fn free_slots<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, &self.recovered.free_slots)
    }

    /// The first slot never allocated.
    #[getter]
    fn next_slot(&self) -> u64 {
        self.recovered.next_slot
    }

    /// The whole bringup as JSON text: what `rbio bringup --json` prints for the same device
    /// and options (`phases` and `peak_rss_bytes` are this run's and this process's).
    fn to_json(&self) -> String {
        self.recovered.to_json().to_string()
    }

    /// `to_json()` as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.recovered.to_json())
    }

    fn __repr__(&self) -> String {
        let counts = &self.recovered.report.counts;
        format!(
            "<rbio.Report in_checkpoint={} in_index={} free_slots={} next_slot={}>",
            counts.in_checkpoint,
            self.recovered.index.len(),
            self.recovered.free_slots.len(),
            self.recovered.next_slot
        )
    }
}

/// Tensor metadata already converted: most entries share their dtype and format, so each
/// distinct immutable result (string, number, `None`) is made once and shared. Lists and
/// dicts are built anew per entry, since callers may mutate them.
#[derive(Default)]
struct MetadataCache<'py> {
    shared: HashMap<String, Bound<'py, PyAny>>,
}

impl<'py> MetadataCache<'py> {
    fn get(&mut self, py: Python<'py>, text: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let Some(text) = text else {
            return Ok(py.None().into_bound(py));
        };
        if let Some(object) = self.shared.get(text) {
            return Ok(object.clone());
        }
        let value: Value = serde_json::from_str(text).map_err(|error| {
            super::errors::runtime(format!("tensor metadata {text:?}: {error}"))
        })?;
        let object = to_python(py, &value)?;
        if !value.is_array() && !value.is_object() {
            self.shared.insert(text.to_owned(), object.clone());
        }
        Ok(object)
    }
}

/// One index entry as LMCache's tuple.
fn index_tuple<'py>(
    py: Python<'py>,
    entry: &IndexEntry<'_>,
    metadata: &mut MetadataCache<'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    let [shape, dtype, fmt, cached_positions] = entry.tensor_texts;
    PyTuple::new(
        py,
        [
            entry.key.into_pyobject(py)?.into_any(),
            entry.offset_bytes.into_pyobject(py)?.into_any(),
            entry.size_bytes.into_pyobject(py)?.into_any(),
            metadata.get(py, shape)?,
            metadata.get(py, dtype)?,
            metadata.get(py, fmt)?,
            metadata.get(py, cached_positions)?,
        ],
    )
}

/// A JSON value as the Python object `json.loads` would give.
pub fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(flag) => flag.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(number) => {
            if let Some(unsigned) = number.as_u64() {
                unsigned.into_pyobject(py)?.into_any()
            } else if let Some(signed) = number.as_i64() {
                signed.into_pyobject(py)?.into_any()
            } else {
                number
                    .as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
            }
        }
        Value::String(text) => text.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let items: PyResult<Vec<_>> = items.iter().map(|item| to_python(py, item)).collect();
            PyList::new(py, items?)?.into_any()
        }
        Value::Object(fields) => {
            let dict = PyDict::new(py);
            for (key, item) in fields {
                dict.set_item(key, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// What `rbio.inspect()` found: both mirrors, the chosen checkpoint, its entries.
#[pyclass(module = "rbio", frozen)]
pub struct Inspection {
    json: Value,
}

impl Inspection {
    /// Wraps an inspection.
    pub fn new(inspection: &Inspected) -> Inspection {
        Inspection {
            json: inspection.to_json(),
        }
    }
}

#[pymethods]
impl Inspection {
    /// What `rbio inspect --json` prints for the same device and options.
    fn to_json(&self) -> String {
        self.json.to_string()
    }

    /// `to_json()` as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.json)
    }
}
