//! How failures reach Python: LMCache's exception types and messages for its class, and
//! `rbio.RbioError` carrying the command's one-line error for bringup and inspect.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rbio_core::IoError;

use crate::OpFailure;
use rbio_engines::Failure;

create_exception!(
    rbio,
    RbioError,
    PyException,
    "A bringup or inspection failed; the message is the line `rbio` prints after `rbio: error:`."
);

/// "No space left on device".
const ENOSPC: i32 = 28;

/// `RbioError` with the command's one-line text for `failure`.
pub fn rbio_error(failure: &Failure) -> PyErr {
    RbioError::new_err(rbio_engines::error_line(&**failure))
}

/// `RuntimeError(message)`.
pub fn runtime(message: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(message.into())
}

/// `ValueError(message)`.
pub fn value(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// What kind of call an operation's failure is raised from: the synchronous calls name the
/// system call (`"pread failed"`), the io_uring ones the ring (`"io_uring I/O error"`).
#[derive(Clone, Copy, Debug)]
pub enum Surface {
    /// `pread_into`.
    Pread,
    /// `pwrite_from_buffer`.
    Pwrite,
    /// `flush`.
    Flush,
    /// `read_uring`, `write_uring`, `wait_iouring`.
    Uring,
}

/// The exception LMCache's class raises for this failure.
pub fn op_error(failure: &OpFailure, surface: Surface) -> PyErr {
    match failure {
        OpFailure::Stopped(why) => runtime(why.clone()),
        OpFailure::Io(IoError::Os(errno)) => {
            let what = match surface {
                Surface::Pread => "pread failed",
                Surface::Pwrite => "pwrite failed",
                Surface::Flush => "flush failed",
                Surface::Uring => "io_uring I/O error",
            };
            PyOSError::new_err((errno.0, what))
        }
        // Past the size read at open: LMCache would grow an image file; rbio refuses, as a
        // full device would.
        OpFailure::Io(IoError::OutOfRange { .. }) if matches!(surface, Surface::Pwrite) => {
            PyOSError::new_err((ENOSPC, "pwrite failed"))
        }
        OpFailure::Io(IoError::ShortTransfer { .. } | IoError::OutOfRange { .. }) => {
            match surface {
                Surface::Uring => runtime("Unexpected short I/O: internal error"),
                _ => runtime("unexpected EOF"),
            }
        }
        OpFailure::Io(error @ IoError::Misaligned { .. }) => value(error.to_string()),
        OpFailure::Io(error) => runtime(error.to_string()),
    }
}

/// `str(exception)` with its type in front, as `wait_iouring` reports each failed operation.
pub fn op_error_text(py: Python<'_>, failure: &OpFailure) -> String {
    let error = op_error(failure, Surface::Uring);
    let type_name = error
        .get_type(py)
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "Exception".to_owned());
    format!("{type_name}: {}", error.value(py))
}
