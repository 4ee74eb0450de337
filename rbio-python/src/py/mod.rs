//! The extension module `rbio._rbio`: everything that touches Python.

mod bringup;
mod buffer;
mod device;
mod errors;
mod fixed;
mod report;

use pyo3::prelude::*;

/// rbio's Python extension: bringup, inspect, and LMCache's RawBlockDevice on rbio's engines.
#[pymodule]
fn _rbio(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("RbioError", m.py().get_type::<errors::RbioError>())?;
    m.add_class::<report::Report>()?;
    m.add_class::<report::Inspection>()?;
    m.add_class::<device::RawBlockDevice>()?;
    m.add_function(wrap_pyfunction!(bringup::bringup, m)?)?;
    m.add_function(wrap_pyfunction!(bringup::bringup_many, m)?)?;
    m.add_function(wrap_pyfunction!(bringup::inspect, m)?)?;
    Ok(())
}
