//! The Python buffer protocol, the one place rbio-python touches raw memory: a held export of
//! a caller's buffer, and copies between it and rbio's own aligned buffers.
//!
//! The kernel never sees a caller's memory: reads land in rbio's buffers and are copied out
//! when the caller waits, writes are copied in before submission. An [`Export`] keeps the
//! caller's buffer exported (a `bytearray` cannot be resized, memory cannot be freed) for as
//! long as a copy may touch it.
#![allow(unsafe_code)]

use std::marker::PhantomData;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// A caller's contiguous buffer, exported with `PyBUF_ANY_CONTIGUOUS` (plus `PyBUF_WRITABLE`
/// for a read's destination), as LMCache's class asks for it.
pub struct Export {
    view: Box<ffi::Py_buffer>,
    writable: bool,
}

// SAFETY: a `Py_buffer` is plain data naming memory that stays valid until
// `PyBuffer_Release`; it carries no thread affinity. It is released in `Drop` with the GIL
// held, whichever thread drops it.
unsafe impl Send for Export {}
// SAFETY: shared access only reads the view's fields; the memory it names is copied through
// `Span`, whose users uphold its own contract.
unsafe impl Sync for Export {}

impl Export {
    /// Exports `object`'s buffer: `BufferError` for a non-contiguous or (when `writable`)
    /// read-only exporter, `TypeError` for an object without the buffer protocol.
    pub fn get(object: &Bound<'_, PyAny>, writable: bool) -> PyResult<Export> {
        let mut view = Box::new(ffi::Py_buffer::new());
        let mut flags = ffi::PyBUF_ANY_CONTIGUOUS;
        if writable {
            flags |= ffi::PyBUF_WRITABLE;
        }
        // SAFETY: `object` is a live object (we hold a `Bound`, hence the GIL) and `view`
        // points to a writable, boxed `Py_buffer` that outlives the call.
        let rc = unsafe { ffi::PyObject_GetBuffer(object.as_ptr(), &mut *view, flags) };
        if rc != 0 {
            return Err(PyErr::take(object.py()).unwrap_or_else(|| {
                PyBufferError::new_err("the object could not export its buffer")
            }));
        }
        Ok(Export { view, writable })
    }

    /// The exported bytes, for copies without the GIL; the borrow keeps the export alive.
    pub fn span(&self) -> Span<'_> {
        Span {
            addr: self.view.buf as usize,
            len_bytes: self.view.len.max(0) as usize,
            writable: self.writable,
            _export: PhantomData,
        }
    }

    /// Length in bytes.
    pub fn len_bytes(&self) -> usize {
        self.span().len_bytes
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        Python::attach(|_| {
            // SAFETY: the view was filled by a successful `PyObject_GetBuffer` and is released
            // exactly once, here, with the GIL held.
            unsafe { ffi::PyBuffer_Release(&mut *self.view) };
        });
    }
}

/// The bytes of a live [`Export`]: an address and a length, borrowed from the export so the
/// export outlives every copy, and `Send` so closures that run without the GIL can use it.
#[derive(Clone, Copy, Debug)]
pub struct Span<'export> {
    /// The first byte.
    pub addr: usize,
    /// Bytes exported.
    pub len_bytes: usize,
    writable: bool,
    _export: PhantomData<&'export Export>,
}

impl Span<'_> {
    /// Copies the first `dst.len()` bytes of the span into `dst`.
    ///
    /// # Panics
    /// If `dst` is longer than the span.
    pub fn copy_to(self, dst: &mut [u8]) {
        assert!(
            dst.len() <= self.len_bytes,
            "copy of {} bytes from an export of {}",
            dst.len(),
            self.len_bytes
        );
        // SAFETY: the span borrows its export, so `[addr, addr + len_bytes)` stays exported
        // (valid for reads) for the whole copy; `dst` is rbio's own buffer and cannot overlap
        // a caller's memory. Another Python thread writing the same buffer meanwhile races as
        // with any GIL-free reader (file.readinto) and only changes which bytes are copied.
        unsafe {
            std::ptr::copy_nonoverlapping(self.addr as *const u8, dst.as_mut_ptr(), dst.len())
        };
    }

    /// Copies `src` to the start of the span.
    ///
    /// # Panics
    /// If `src` is longer than the span or the export is read-only.
    pub fn copy_from(self, src: &[u8]) {
        assert!(self.writable, "copy into a read-only export");
        assert!(
            src.len() <= self.len_bytes,
            "copy of {} bytes into an export of {}",
            src.len(),
            self.len_bytes
        );
        // SAFETY: the span borrows a writable export, so `[addr, addr + len_bytes)` stays
        // valid for writes for the whole copy; `src` is rbio's own buffer, which the kernel is
        // done with (its completion was reaped), and cannot overlap a caller's memory.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.addr as *mut u8, src.len()) };
    }
}
