//! The streaming driver: pulls operations from an iterator of any length, keeps a bounded
//! window in flight on any engine, and hands each completion to a visitor.
//!
//! Memory is bounded by the pool (window × buffer size) whatever the number of operations:
//! a buffer returns to the pool as soon as the visitor has seen its completion.

use std::fmt;
use std::time::{Duration, Instant};

use crate::buffer::BufferPool;
use crate::completion::Completion;
use crate::engine::{Engine, Wait};
use crate::op::{Op, OpInfo, OpKind};

/// An operation to perform, before a buffer is attached to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpSpec {
    /// What to do, where, and the caller's tag; `len_bytes` must fit a pool buffer.
    pub info: OpInfo,
}

impl OpSpec {
    /// A read of `len_bytes` at `offset_bytes`.
    pub fn read(tag: u64, offset_bytes: u64, len_bytes: usize) -> OpSpec {
        OpSpec {
            info: OpInfo {
                kind: OpKind::Read,
                tag,
                offset_bytes,
                len_bytes,
            },
        }
    }

    /// A write of `len_bytes` at `offset_bytes`; the stream's fill function provides the bytes.
    pub fn write(tag: u64, offset_bytes: u64, len_bytes: usize) -> OpSpec {
        OpSpec {
            info: OpInfo {
                kind: OpKind::Write,
                tag,
                offset_bytes,
                len_bytes,
            },
        }
    }

    /// A flush.
    pub fn flush(tag: u64) -> OpSpec {
        OpSpec {
            info: OpInfo {
                kind: OpKind::Flush,
                tag,
                offset_bytes: 0,
                len_bytes: 0,
            },
        }
    }
}

/// Why a stream stopped before every operation completed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// An operation asked for more bytes than a pool buffer holds. Operations already in
    /// flight were completed and visited first.
    OpTooLarge {
        /// The operation.
        info: OpInfo,
        /// The pool's buffer size.
        buffer_bytes: usize,
    },
    /// The engine returned nothing for `waited` although operations were pending: it broke
    /// its deadline contract. The pending operations stay with the engine.
    Stalled {
        /// Operations submitted but never completed.
        pending_count: usize,
        /// How long the driver waited.
        waited: Duration,
    },
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::OpTooLarge { info, buffer_bytes } => {
                write!(f, "{info} does not fit a {buffer_bytes}-byte pool buffer")
            }
            StreamError::Stalled {
                pending_count,
                waited,
            } => write!(
                f,
                "engine stalled: {pending_count} operations pending, no completion for {waited:?}"
            ),
        }
    }
}

impl std::error::Error for StreamError {}

/// What a finished stream did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Operations completed and visited.
    pub op_count: u64,
    /// Of those, operations that completed with an error.
    pub error_count: u64,
    /// Bytes transferred by successful operations.
    pub transferred_bytes: u64,
    /// The most operations the stream had in flight at once.
    pub in_flight_max: usize,
}

/// A streaming run over one engine and one pool.
///
/// ```
/// use std::sync::Arc;
/// use rbio_core::{BufferPool, Device, OpSpec, SerialEngine, Stream};
///
/// let image = tempfile::NamedTempFile::new().unwrap();
/// std::fs::write(image.path(), vec![7u8; 1 << 20]).unwrap();
/// let device = Arc::new(Device::open(image.path()).unwrap());
/// let mut engine = SerialEngine::new(device).unwrap();
/// let pool = BufferPool::new(4096, 8, 4096).unwrap();
///
/// let specs = (0..256u64).map(|i| OpSpec::read(i, i * 4096, 4096));
/// let mut sevens = 0;
/// let stats = Stream::new(&mut engine, &pool)
///     .run_reads(specs, |completion| {
///         sevens += completion.data().iter().filter(|&&b| b == 7).count();
///     })
///     .unwrap();
/// assert_eq!(stats.op_count, 256);
/// assert_eq!(sevens, 1 << 20);
/// ```
pub struct Stream<'a, E: Engine + ?Sized> {
    engine: &'a mut E,
    pool: &'a BufferPool,
    window_ops_max: usize,
    stall_timeout: Duration,
}

/// How long a stream waits for a completion before it declares the engine stalled.
pub const STALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

impl<'a, E: Engine + ?Sized> Stream<'a, E> {
    /// A stream over `engine` with buffers from `pool`; the window defaults to the pool size.
    pub fn new(engine: &'a mut E, pool: &'a BufferPool) -> Self {
        let window_ops_max = pool.buffer_count();
        Stream {
            engine,
            pool,
            window_ops_max,
            stall_timeout: STALL_TIMEOUT_DEFAULT,
        }
    }

    /// Keeps at most `window_ops_max` operations in flight (never more than the pool holds).
    pub fn window(mut self, window_ops_max: usize) -> Self {
        self.window_ops_max = window_ops_max.max(1);
        self
    }

    /// How long to wait for any completion before giving up on the engine.
    pub fn stall_timeout(mut self, stall_timeout: Duration) -> Self {
        self.stall_timeout = stall_timeout;
        self
    }

    /// Runs reads (and flushes): `visit` sees each completion, its data in `data()`.
    ///
    /// # Errors
    /// As [`Stream::run`].
    pub fn run_reads(
        self,
        specs: impl IntoIterator<Item = OpSpec>,
        visit: impl FnMut(&Completion),
    ) -> Result<StreamStats, StreamError> {
        self.run(specs, |_, _| {}, visit)
    }

    /// Runs any operations: `fill` writes each write's bytes into its buffer before
    /// submission, `visit` sees each completion. Completions arrive in the engine's order.
    ///
    /// # Errors
    /// [`StreamError::OpTooLarge`] for an operation larger than a pool buffer (after the
    /// operations in flight have completed), [`StreamError::Stalled`] if the engine returns
    /// nothing for the stall timeout while operations are pending.
    pub fn run(
        self,
        specs: impl IntoIterator<Item = OpSpec>,
        mut fill: impl FnMut(&OpInfo, &mut [u8]),
        mut visit: impl FnMut(&Completion),
    ) -> Result<StreamStats, StreamError> {
        let mut specs = specs.into_iter();
        let window_ops_max = self.window_ops_max;
        let mut batch: Vec<Op> = Vec::with_capacity(window_ops_max);
        let mut completions: Vec<Completion> = Vec::with_capacity(window_ops_max);
        let mut stats = StreamStats::default();
        let mut in_flight_count = 0usize;
        let mut too_large = None;
        loop {
            while too_large.is_none() && in_flight_count + batch.len() < window_ops_max {
                match self.next_op(&mut specs, &mut fill) {
                    Some(Ok(op)) => batch.push(op),
                    Some(Err(error)) => too_large = Some(error),
                    None => break,
                }
            }
            in_flight_count += batch.len();
            stats.in_flight_max = stats.in_flight_max.max(in_flight_count);
            if !batch.is_empty() {
                self.engine.submit(&mut batch);
            }
            if in_flight_count == 0 {
                return too_large.map_or(Ok(stats), Err);
            }
            let deadline = Instant::now() + self.stall_timeout;
            if self.engine.reap(&mut completions, Wait::Until(deadline)) == 0 {
                return Err(StreamError::Stalled {
                    pending_count: self.engine.pending_count(),
                    waited: self.stall_timeout,
                });
            }
            in_flight_count -= completions.len();
            for completion in completions.drain(..) {
                count(&mut stats, &completion);
                visit(&completion);
            }
        }
    }

    /// The next operation with a buffer attached, `None` when the specs are exhausted or no
    /// buffer is free (the caller reaps, which returns buffers).
    fn next_op(
        &self,
        specs: &mut impl Iterator<Item = OpSpec>,
        fill: &mut impl FnMut(&OpInfo, &mut [u8]),
    ) -> Option<Result<Op, StreamError>> {
        let buffer = self.pool.take()?;
        let spec = specs.next()?;
        let info = spec.info;
        if info.kind == OpKind::Flush {
            return Some(Ok(Op::flush(info.tag)));
        }
        if info.len_bytes > buffer.capacity_bytes() {
            let buffer_bytes = buffer.capacity_bytes();
            return Some(Err(StreamError::OpTooLarge { info, buffer_bytes }));
        }
        let mut buffer = buffer;
        buffer.set_len(info.len_bytes);
        Some(Ok(match info.kind {
            OpKind::Write => {
                fill(&info, buffer.as_mut_slice());
                Op::write(info.tag, info.offset_bytes, buffer)
            }
            _ => Op::read(info.tag, info.offset_bytes, buffer),
        }))
    }
}

fn count(stats: &mut StreamStats, completion: &Completion) {
    stats.op_count += 1;
    match completion.result() {
        Ok(done_bytes) => stats.transferred_bytes += *done_bytes as u64,
        Err(_) => stats.error_count += 1,
    }
}
