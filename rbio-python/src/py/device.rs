//! `rbio.lmcache.RawBlockDevice`: LMCache's native raw_block class (constructor, methods,
//! results, exception types and messages) on rbio's engines. Every transfer goes through
//! the [`IoWorker`] into rbio's own aligned buffers, reused from a [`BufferCache`]; callers'
//! buffers are only copied.

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyDeprecationWarning, PyOSError};
use pyo3::prelude::*;
use rbio_core::{Buffer, BufferPool, Device, Op, PAGE_BYTES};
use rbio_engines::{EngineConfig, EngineKind, WINDOW_MAX};

use super::buffer::{Export, Span};
use super::errors::{op_error, op_error_text, runtime, value, Surface};
use super::fixed::FixedRegions;
use crate::{BufferCache, IoWorker, OpFailure, OpOutcome, WorkerOptions};

/// What `wait_iouring` returns: success per operation, and `(index, message)` per failure.
type BatchResult = (Vec<bool>, Vec<(usize, String)>);

/// Synchronous calls use batch ids from their own range, apart from `batched_*`'s.
const SYNC_BATCH_ID_BASE: u64 = 1 << 63;

/// The most bytes of transfer buffers a device keeps for reuse: two of LMCache's batches of
/// 64 one-MiB slots.
const KEPT_BUFFER_BYTES_MAX: usize = 128 << 20;

/// The NVMe namespace behind a `use_uring_cmd` device.
#[derive(Clone, Copy, Debug)]
struct Namespace {
    nsid: u32,
    lba_bytes: u32,
}

/// A read's destination, held exported until its batch is waited for.
struct ReadTarget {
    op_index: usize,
    export: Export,
    copy_bytes: usize,
}

/// Raw block device I/O interface for Python. Synchronous I/O (pread/pwrite) is always
/// available. Asynchronous I/O via io_uring is optional, enabled with use_iouring flag.
/// Higher-level policies (slotting, manifests, etc.) live in Python.
///
/// rbio's version of LMCache's class: same constructor, methods and errors, on rbio's
/// engines (posix pool, io_uring, NVMe passthrough). Buffers are copied to and from rbio's
/// own aligned buffers; the kernel never holds a caller's memory.
#[pyclass(module = "rbio.lmcache", name = "RawBlockDevice", frozen)]
pub struct RawBlockDevice {
    worker: IoWorker,
    closed: AtomicBool,
    uring: bool,
    namespace: Option<Namespace>,
    /// The namespace handle `fetch_fdp_status` asks (`use_uring_cmd` only).
    fdp: Option<rbio_uring::NvmeNamespace>,
    direct: bool,
    alignment: u64,
    buffers: BufferCache,
    size_bytes: u64,
    next_batch_id: AtomicU64,
    next_sync_id: AtomicU64,
    reads: Mutex<HashMap<u64, Vec<ReadTarget>>>,
    fixed: Mutex<Option<FixedRegions>>,
}

/// A write's bytes: the caller's payload, then zeros up to the total.
struct WriteSpec<'export> {
    offset: u64,
    span: Span<'export>,
    payload_bytes: usize,
    total_bytes: usize,
}

impl RawBlockDevice {
    fn live(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(runtime("device is closed"));
        }
        Ok(())
    }

    fn live_uring(&self) -> PyResult<()> {
        self.live()?;
        if !self.uring {
            return Err(runtime("io_uring not enabled"));
        }
        if !self.worker.is_accepting() {
            return Err(runtime("io_uring worker stopped"));
        }
        Ok(())
    }

    fn check_direct(&self, offset: u64, total_bytes: usize) -> PyResult<()> {
        if self.direct && offset % self.alignment != 0 {
            return Err(value("O_DIRECT requires aligned offset"));
        }
        if self.direct && total_bytes as u64 % self.alignment != 0 {
            return Err(value("O_DIRECT requires aligned total_len"));
        }
        Ok(())
    }

    fn buffer(&self, len_bytes: usize) -> Result<Buffer, OpFailure> {
        self.buffers
            .take(len_bytes)
            .map_err(|error| OpFailure::Stopped(format!("bounce buffer: {error}")))
    }

    /// A write op holding `spec`'s payload and zero padding. Runs without the GIL.
    fn write_op(&self, op_index: usize, spec: &WriteSpec<'_>) -> Result<Op, OpFailure> {
        let mut buffer = self.buffer(spec.total_bytes)?;
        let bytes = buffer.as_mut_slice();
        spec.span.copy_to(&mut bytes[..spec.payload_bytes]);
        bytes[spec.payload_bytes..].fill(0);
        Ok(Op::write(op_index as u64, spec.offset, buffer))
    }

    /// Submits `ops` as batch `batch_id`, or files them as failed if the worker refuses.
    fn submit(&self, batch_id: u64, ops: Vec<Op>) -> PyResult<()> {
        self.worker
            .submit(batch_id, ops)
            .map_err(|_| runtime("io_uring worker stopped"))
    }

    /// Runs one operation and waits for it (without the GIL).
    fn run_one(
        &self,
        py: Python<'_>,
        op: impl FnOnce() -> Result<Op, OpFailure> + Send,
    ) -> PyResult<OpOutcome> {
        let batch_id = SYNC_BATCH_ID_BASE + self.next_sync_id.fetch_add(1, Ordering::Relaxed);
        py.detach(|| {
            let op = match op() {
                Ok(op) => op,
                Err(failure) => return Ok(Err(failure)),
            };
            self.submit(batch_id, vec![op])?;
            let mut outcomes = self.worker.wait(batch_id).unwrap_or_default();
            Ok(outcomes
                .pop()
                .unwrap_or_else(|| Err(OpFailure::Stopped("lost".into()))))
        })
    }

    /// Validates one write and makes its spec (with the GIL, which the export needs).
    fn write_spec<'export>(
        &self,
        offset: u64,
        export: &'export Export,
        payload_bytes: usize,
        total_bytes: usize,
    ) -> PyResult<WriteSpec<'export>> {
        if total_bytes < payload_bytes {
            return Err(value("total_len must be >= payload_len"));
        }
        self.check_direct(offset, total_bytes)?;
        let span = export.span();
        if span.len_bytes < payload_bytes {
            return Err(value(format!(
                "input buffer too small: cap={} need={payload_bytes}",
                span.len_bytes
            )));
        }
        if span.addr == 0 && payload_bytes > 0 {
            return Err(value("null buffer pointer"));
        }
        Ok(WriteSpec {
            offset,
            span,
            payload_bytes,
            total_bytes,
        })
    }

    fn read_batch(
        &self,
        py: Python<'_>,
        batch_id: u64,
        reads: Vec<(u64, usize)>,
        targets: Vec<ReadTarget>,
    ) -> PyResult<()> {
        py.detach(|| {
            let mut ops = Vec::with_capacity(reads.len());
            for (op_index, &(offset, total_bytes)) in reads.iter().enumerate() {
                let buffer = self
                    .buffer(total_bytes)
                    .map_err(|f| op_error(&f, Surface::Uring))?;
                ops.push(Op::read(op_index as u64, offset, buffer));
            }
            self.submit(batch_id, ops)
        })?;
        lock(&self.reads).insert(batch_id, targets);
        Ok(())
    }

    /// The placement id a write sends: only the uring_cmd path sends one (LMCache ignores
    /// them on every other path).
    fn placement(&self, placement_id: Option<u16>) -> Option<u16> {
        self.namespace.and(placement_id)
    }

    /// An outcome without its buffer, which goes back to the cache.
    fn finish(&self, outcome: OpOutcome) -> Result<(), OpFailure> {
        outcome.map(|buffer| buffer.map_or((), |buffer| self.buffers.give_back(buffer)))
    }

    fn new_batch_id(&self) -> u64 {
        self.next_batch_id.fetch_add(1, Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Copies a completed read out of rbio's buffer into the caller's export.
fn copy_out(target: &ReadTarget, buffer: &Buffer) {
    let bytes = &buffer.as_slice()[..target.copy_bytes.min(buffer.len_bytes())];
    target.export.span().copy_from(bytes);
}

/// Which engine the constructor's flags ask for.
fn engine_kind(io_engine: Option<&str>, use_iouring: bool) -> PyResult<bool> {
    match io_engine {
        None | Some("") => Ok(use_iouring),
        Some("posix") => Ok(false),
        Some("io_uring") => Ok(true),
        Some(other) => Err(value(format!(
            "io_engine must be one of posix, io_uring; got {other}"
        ))),
    }
}

fn os_error(error: &std::io::Error, what: &str) -> PyErr {
    PyOSError::new_err((error.raw_os_error().unwrap_or(libc_eio()), what.to_owned()))
}

fn libc_eio() -> i32 {
    5
}

fn open_failed(error: &rbio_core::OpenError) -> PyErr {
    use rbio_core::OpenError;
    let errno = match error {
        OpenError::NotFound { .. } => 2,
        OpenError::IsDirectory { .. } => 21,
        OpenError::DirectUnsupported { .. } => 22,
        OpenError::Io { source, .. } => source.raw_os_error().unwrap_or(libc_eio()),
        _ => libc_eio(),
    };
    PyOSError::new_err((errno, "open failed"))
}

#[pymethods]
impl RawBlockDevice {
    #[new]
    #[pyo3(signature = (path, writable, use_odirect=false, use_iouring=false, use_uring_cmd=false,
                        alignment=4096, io_engine=None, iouring_queue_depth=256))]
    #[allow(clippy::too_many_arguments)] // LMCache's constructor, keyword for keyword
    fn new(
        path: std::path::PathBuf,
        writable: bool,
        use_odirect: bool,
        use_iouring: bool,
        use_uring_cmd: bool,
        alignment: u64,
        io_engine: Option<&str>,
        iouring_queue_depth: i64,
    ) -> PyResult<RawBlockDevice> {
        let uring = engine_kind(io_engine, use_iouring)?;
        if use_uring_cmd && !uring {
            return Err(value("use_uring_cmd requires use_iouring to be enabled"));
        }
        if alignment == 0 {
            return Err(value("alignment must be non-zero"));
        }
        let metadata = std::fs::metadata(&path).map_err(|error| os_error(&error, "open failed"))?;
        if use_uring_cmd && !metadata.file_type().is_char_device() {
            return Err(value(
                "use_uring_cmd requires an NVMe namespace character device (e.g., /dev/ng0n1)",
            ));
        }
        let direct = use_odirect && !use_uring_cmd;
        let device = Device::options()
            .write(writable)
            .direct(direct)
            .open(&path)
            .map_err(|error| open_failed(&error))?;
        let (namespace, fdp, size_bytes) = if use_uring_cmd {
            let opened = rbio_uring::NvmeNamespace::open(&path).map_err(|error| {
                runtime(format!(
                    "NVMe identify failed: {}",
                    rbio_engines::error_line(&error)
                ))
            })?;
            let info = opened.info();
            let namespace = Namespace {
                nsid: info.nsid(),
                lba_bytes: info.lba_format().lba_bytes(),
            };
            if alignment % u64::from(namespace.lba_bytes) != 0 {
                return Err(value(format!(
                    "alignment must be a non-zero multiple of the LBA size ({})",
                    namespace.lba_bytes
                )));
            }
            let size_bytes = info.size_bytes();
            (Some(namespace), Some(opened), size_bytes)
        } else {
            (None, None, device.size_bytes())
        };
        let window = iouring_queue_depth.clamp(1, WINDOW_MAX as i64) as usize;
        let kind = match (uring, use_uring_cmd) {
            (false, _) => EngineKind::Posix,
            (true, false) => EngineKind::Uring,
            (true, true) => EngineKind::Nvme,
        };
        let config = EngineConfig {
            kind,
            workers: None,
            window,
            fixed_buffers: false,
            sqes_per_enter: None,
            op_timeout: None,
        };
        let device = Arc::new(device);
        let pool = BufferPool::new(PAGE_BYTES, 1, PAGE_BYTES)
            .map_err(|error| runtime(error.to_string()))?;
        let engine = config.build(&device, &pool).map_err(|error| {
            runtime(format!(
                "io_uring init failed: {}",
                rbio_engines::error_line(&error)
            ))
        })?;
        let worker = IoWorker::start(engine, WorkerOptions::default())
            .map_err(|error| runtime(format!("io_uring init failed: {error}")))?;
        let buffer_align_bytes = (alignment.next_power_of_two() as usize).max(PAGE_BYTES);
        let buffers = BufferCache::new(buffer_align_bytes, KEPT_BUFFER_BYTES_MAX);
        Ok(RawBlockDevice {
            worker,
            closed: AtomicBool::new(false),
            uring,
            namespace,
            fdp,
            direct,
            alignment,
            buffers,
            size_bytes,
            next_batch_id: AtomicU64::new(1),
            next_sync_id: AtomicU64::new(0),
            reads: Mutex::new(HashMap::new()),
            fixed: Mutex::new(None),
        })
    }

    /// The device's size in bytes, read once when it was opened. Works after close.
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Why the I/O worker stopped on its own (the engine stopped answering), or `None`.
    fn worker_error(&self) -> Option<String> {
        self.worker.worker_error()
    }

    /// The NVMe namespace id (`use_uring_cmd` only).
    fn nvme_nsid(&self) -> PyResult<u32> {
        self.namespace
            .map(|ns| ns.nsid)
            .ok_or_else(|| runtime("NVMe nsid not available (use_uring_cmd not enabled)"))
    }

    /// log2 of the NVMe LBA size (`use_uring_cmd` only).
    fn nvme_lba_shift(&self) -> PyResult<u32> {
        self.namespace
            .map(|ns| ns.lba_bytes.trailing_zeros())
            .ok_or_else(|| runtime("NVMe LBA shift not available (use_uring_cmd not enabled)"))
    }

    /// The NVMe LBA size in bytes (`use_uring_cmd` only).
    fn nvme_lba_size(&self) -> PyResult<u32> {
        self.namespace
            .map(|ns| ns.lba_bytes)
            .ok_or_else(|| runtime("NVMe LBA size not available (use_uring_cmd not enabled)"))
    }

    /// FDP reclaim unit handle status (`use_uring_cmd` only): `(placement_id, ruh_id)` per
    /// reclaim unit handle, from NVMe I/O Management Receive. Runs without the GIL.
    fn fetch_fdp_status(&self, py: Python<'_>) -> PyResult<Vec<(u16, u16)>> {
        let Some(namespace) = &self.fdp else {
            return Err(runtime(
                "fetch_fdp_status requires use_uring_cmd to be enabled",
            ));
        };
        self.live()?;
        let descriptors = py
            .detach(|| namespace.reclaim_unit_handle_status())
            .map_err(|error| fdp_status_error(&error))?;
        Ok(descriptors
            .iter()
            .map(|descriptor| (descriptor.placement_id, descriptor.ruh_id))
            .collect())
    }

    /// `(registered, total bytes)` of the regions given to `register_fixed_buffers`.
    fn fixed_buffer_status(&self) -> (bool, u64) {
        match &*lock(&self.fixed) {
            Some(regions) if !self.closed.load(Ordering::Acquire) => (true, regions.total_bytes()),
            _ => (false, 0),
        }
    }

    /// Validates and records the caller's buffer regions, with LMCache's checks and errors.
    /// rbio does not pin them or hand them to the kernel: its transfers go through its own
    /// aligned buffers (the kernel never holds caller memory), so registration changes no
    /// transfer; `fixed_buffer_status()` reports what was registered.
    fn register_fixed_buffers(
        &self,
        py: Python<'_>,
        buffer_ptrs: Vec<u64>,
        buffer_sizes: Vec<u64>,
    ) -> PyResult<()> {
        self.live()?;
        if !self.uring {
            return Err(runtime("io_uring not enabled"));
        }
        let mut fixed = lock(&self.fixed);
        if fixed.is_some() {
            return Err(runtime("fixed buffers are already registered"));
        }
        let regions = py.detach(|| FixedRegions::new(&buffer_ptrs, &buffer_sizes))?;
        *fixed = Some(regions);
        Ok(())
    }

    /// Writes `data[:payload_len]` at `offset`, zero padded to `total_len`, and waits.
    #[pyo3(signature = (offset, data, payload_len=None, total_len=None))]
    fn pwrite_from_buffer(
        &self,
        py: Python<'_>,
        offset: u64,
        data: &Bound<'_, PyAny>,
        payload_len: Option<usize>,
        total_len: Option<usize>,
    ) -> PyResult<()> {
        self.live()?;
        let export = Export::get(data, false)?;
        let payload_bytes = payload_len.unwrap_or(export.len_bytes());
        if payload_bytes > export.len_bytes() {
            return Err(value("payload_len exceeds buffer length"));
        }
        let total_bytes = total_len.unwrap_or(payload_bytes);
        let spec = self.write_spec(offset, &export, payload_bytes, total_bytes)?;
        if total_bytes == 0 {
            return Ok(());
        }
        let outcome = self.run_one(py, || self.write_op(0, &spec))?;
        self.finish(outcome)
            .map_err(|failure| op_error(&failure, Surface::Pwrite))
    }

    /// Reads `total_len` bytes at `offset` and copies `payload_len` of them into `out`.
    #[pyo3(signature = (offset, out, payload_len, total_len=None))]
    fn pread_into(
        &self,
        py: Python<'_>,
        offset: u64,
        out: &Bound<'_, PyAny>,
        payload_len: usize,
        total_len: Option<usize>,
    ) -> PyResult<()> {
        self.live()?;
        let export = Export::get(out, true)?;
        let cap = export.len_bytes();
        let total_bytes = total_len.unwrap_or(payload_len);
        if total_bytes < payload_len {
            return Err(value("total_len must be >= payload_len"));
        }
        if cap < payload_len {
            return Err(value(format!(
                "output buffer too small: cap={cap} need={payload_len}"
            )));
        }
        self.check_direct(offset, total_bytes)?;
        if total_bytes == 0 {
            return Ok(());
        }
        // LMCache reads straight into an aligned `out` under O_DIRECT, so the bytes up to
        // total_len land there too; the copy gives the same result.
        let aligned = export.span().addr as u64 % self.alignment == 0;
        let copy_bytes = if self.direct && aligned && cap >= total_bytes {
            total_bytes
        } else {
            payload_len
        };
        let outcome = self.run_one(py, || Ok(Op::read(0, offset, self.buffer(total_bytes)?)))?;
        let buffer = outcome.map_err(|failure| op_error(&failure, Surface::Pread))?;
        if let Some(buffer) = buffer {
            let target = ReadTarget {
                op_index: 0,
                export,
                copy_bytes,
            };
            copy_out(&target, &buffer);
            self.buffers.give_back(buffer);
        }
        Ok(())
    }

    /// Queues one write per entry and returns the batch id for `wait_iouring`.
    #[pyo3(signature = (offsets, buffers, total_lens, placement_ids=None, payload_lens=None))]
    fn batched_write(
        &self,
        py: Python<'_>,
        offsets: Vec<u64>,
        buffers: Vec<Bound<'_, PyAny>>,
        total_lens: Vec<usize>,
        placement_ids: Option<Vec<Option<u64>>>,
        payload_lens: Option<Vec<usize>>,
    ) -> PyResult<u64> {
        self.live_uring()?;
        let count = offsets.len();
        if buffers.len() != count || total_lens.len() != count {
            return Err(value("All vectors must have same length"));
        }
        if placement_ids.as_ref().is_some_and(|ids| ids.len() != count) {
            return Err(value("placement_ids must have same length as offsets"));
        }
        if payload_lens
            .as_ref()
            .is_some_and(|lens| lens.len() != count)
        {
            return Err(value("payload_lens must have same length as offsets"));
        }
        let placement_ids = placement_ids
            .unwrap_or_default()
            .into_iter()
            .map(|id| id.map(check_placement_id).transpose())
            .collect::<PyResult<Vec<_>>>()?;
        let exports = buffers
            .iter()
            .map(|buffer| Export::get(buffer, false))
            .collect::<PyResult<Vec<_>>>()?;
        let mut specs = Vec::with_capacity(count);
        for (op_index, export) in exports.iter().enumerate() {
            let total_bytes = total_lens[op_index];
            let payload_bytes = payload_lens
                .as_ref()
                .map_or(total_bytes, |lens| lens[op_index]);
            specs.push(self.write_spec(offsets[op_index], export, payload_bytes, total_bytes)?);
        }
        let batch_id = self.new_batch_id();
        py.detach(|| {
            let mut ops = Vec::with_capacity(count);
            for (op_index, spec) in specs.iter().enumerate() {
                let placement_id = self.placement(placement_ids.get(op_index).copied().flatten());
                let op = self.write_op(op_index, spec);
                let op = op.map_err(|failure| op_error(&failure, Surface::Uring))?;
                ops.push(op.with_placement_id(placement_id));
            }
            self.submit(batch_id, ops)
        })?;
        drop(specs);
        drop(exports);
        Ok(batch_id)
    }

    /// Queues one read per entry; the bytes reach the buffers when the batch is waited for.
    fn batched_read(
        &self,
        py: Python<'_>,
        offsets: Vec<u64>,
        buffers: Vec<Bound<'_, PyAny>>,
        total_lens: Vec<usize>,
    ) -> PyResult<u64> {
        self.live_uring()?;
        let count = offsets.len();
        if buffers.len() != count || total_lens.len() != count {
            return Err(value("All vectors must have same length"));
        }
        let mut targets = Vec::with_capacity(count);
        let mut reads = Vec::with_capacity(count);
        for op_index in 0..count {
            let export = Export::get(&buffers[op_index], true)?;
            let (offset, total_bytes) = (offsets[op_index], total_lens[op_index]);
            let cap = export.len_bytes();
            if cap == 0 {
                return Err(value(format!(
                    "output buffer too small: cap=0 need={total_bytes}"
                )));
            }
            self.check_direct(offset, total_bytes)?;
            targets.push(ReadTarget {
                op_index,
                export,
                copy_bytes: cap.min(total_bytes),
            });
            reads.push((offset, total_bytes));
        }
        let batch_id = self.new_batch_id();
        self.read_batch(py, batch_id, reads, targets)?;
        Ok(batch_id)
    }

    /// Waits for a batch: `(ok per operation, [(index, "Type: message")])`; `([], [])` for a
    /// posix device or an unknown or already waited id; `RuntimeError` once the device is
    /// closed, also when a close forgot the batch while this call waited.
    fn wait_iouring(&self, py: Python<'_>, batch_id: u64) -> PyResult<BatchResult> {
        self.live()?;
        if !self.uring {
            return Ok((Vec::new(), Vec::new()));
        }
        let targets = lock(&self.reads).remove(&batch_id).unwrap_or_default();
        // A read batch has a target per operation, in order; a write batch none.
        debug_assert!(targets.iter().enumerate().all(|(i, t)| t.op_index == i));
        let mut ok = Vec::new();
        let mut failures = Vec::new();
        // Each read is copied out as it completes, while the device works on the others.
        let waited = py.detach(|| {
            self.worker.wait_each(batch_id, |op_index, outcome| {
                if ok.len() <= op_index {
                    ok.resize(op_index + 1, false);
                }
                match outcome {
                    Ok(buffer) => {
                        ok[op_index] = true;
                        if let Some(buffer) = buffer {
                            if let Some(target) = targets.get(op_index) {
                                copy_out(target, &buffer);
                            }
                            self.buffers.give_back(buffer);
                        }
                    }
                    Err(failure) => failures.push((op_index, failure)),
                }
            })
        });
        drop(targets);
        if waited.is_none() {
            // A close that ran while this call waited forgot the batch: say so, rather than
            // answer as for an unknown id.
            self.live()?;
            return Ok((Vec::new(), Vec::new()));
        }
        failures.sort_by_key(|(op_index, _)| *op_index);
        let errors = failures
            .iter()
            .map(|(op_index, failure)| (*op_index, op_error_text(py, failure)))
            .collect();
        Ok((ok, errors))
    }

    /// A synchronous read through the ring. Deprecated as in LMCache: use batched_read()
    /// followed by wait_iouring().
    #[pyo3(signature = (offset, data, payload_len, total_len=None))]
    fn read_uring(
        &self,
        py: Python<'_>,
        offset: u64,
        data: &Bound<'_, PyAny>,
        payload_len: usize,
        total_len: Option<usize>,
    ) -> PyResult<()> {
        let category = py.get_type::<PyDeprecationWarning>();
        PyErr::warn(
            py,
            &category,
            c"use batched_read() followed by wait_iouring()",
            1,
        )?;
        self.live_uring()?;
        let export = Export::get(data, true)?;
        let cap = export.len_bytes();
        let total_bytes = total_len.unwrap_or(payload_len);
        if total_bytes < payload_len {
            return Err(value("total_len must be >= payload_len"));
        }
        if cap < payload_len || cap == 0 {
            return Err(value(format!(
                "output buffer too small: cap={cap} need={payload_len}"
            )));
        }
        self.check_direct(offset, total_bytes)?;
        let target = ReadTarget {
            op_index: 0,
            export,
            copy_bytes: cap.min(total_bytes),
        };
        let outcome = self.run_one(py, || Ok(Op::read(0, offset, self.buffer(total_bytes)?)))?;
        if let Some(buffer) = outcome.map_err(|failure| op_error(&failure, Surface::Uring))? {
            copy_out(&target, &buffer);
            self.buffers.give_back(buffer);
        }
        Ok(())
    }

    /// A synchronous write through the ring, zero padded to `total_len`.
    #[pyo3(signature = (offset, data, payload_len, total_len=None, placement_id=None))]
    fn write_uring(
        &self,
        py: Python<'_>,
        offset: u64,
        data: &Bound<'_, PyAny>,
        payload_len: usize,
        total_len: Option<usize>,
        placement_id: Option<u64>,
    ) -> PyResult<()> {
        self.live_uring()?;
        let placement_id = self.placement(placement_id.map(check_placement_id).transpose()?);
        let export = Export::get(data, false)?;
        let total_bytes = total_len.unwrap_or(payload_len);
        let spec = self.write_spec(offset, &export, payload_len, total_bytes)?;
        let outcome = self.run_one(py, || {
            Ok(self.write_op(0, &spec)?.with_placement_id(placement_id))
        })?;
        self.finish(outcome)
            .map_err(|failure| op_error(&failure, Surface::Uring))
    }

    /// Makes completed writes durable: fdatasync, or an NVMe flush on passthrough.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.live()?;
        let outcome = self.run_one(py, || Ok(Op::flush(0)))?;
        self.finish(outcome)
            .map_err(|failure| op_error(&failure, Surface::Flush))
    }

    /// Completes everything queued before it (bounded by the engine's operation timeout),
    /// then stops the worker and closes the device. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Release);
        py.detach(|| self.worker.close());
        let unwaited = std::mem::take(&mut *lock(&self.reads));
        drop(unwaited);
        *lock(&self.fixed) = None;
    }
}

/// A caller's placement id as NVMe's 16 bits, with LMCache's errors (0 is refused: `None`
/// omits the directive).
fn check_placement_id(id: u64) -> PyResult<u16> {
    match u16::try_from(id) {
        Ok(0) => Err(value(
            "placement_id must not be 0; use None to omit the FDP directive",
        )),
        Ok(id) => Ok(id),
        Err(_) => Err(value(format!("placement_id {id} out of range 1..=65535"))),
    }
}

/// LMCache's exceptions for a failed FDP status: the syscall's `OSError`, or a
/// `RuntimeError` with the controller's status field.
fn fdp_status_error(error: &rbio_uring::FdpStatusError) -> PyErr {
    const WHAT: &str = "NVMe FDP reclaim unit handle status ioctl failed";
    match error {
        rbio_uring::FdpStatusError::Os(errno) => PyOSError::new_err((errno.0, WHAT)),
        rbio_uring::FdpStatusError::Nvme { status_field, .. } => {
            runtime(format!("{WHAT}: NVMe status {status_field:#x}"))
        }
        other => runtime(format!("{WHAT}: {other}")),
    }
}
