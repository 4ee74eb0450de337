//! The streaming driver: pulls operations from an iterator of any length, keeps a bounded
//! window in flight on any engine, and hands each completion to a visitor.
//!
//! Memory is bounded by the pool (window × buffer size) whatever the number of operations:
//! a buffer returns to the pool as soon as the visitor has seen its completion.

use std::fmt;
use std::time::{Duration, Instant};

use crate::buffer::{Buffer, BufferPool};
use crate::completion::Completion;
use crate::engine::{Engine, Wait};
use crate::op::{Op, OpInfo, OpKind};
use crate::ready::poll_readable;

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
                placement_id: None,
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
                placement_id: None,
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
                placement_id: None,
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
    /// Nothing came back for the stall timeout: no completion although operations were
    /// pending (the engine broke its deadline contract), or no buffer although the engine
    /// held some (the device kept them). The operations the iterator had not yielded were
    /// drained from it, never started, and counted in `unstarted_count`; the pending ones stay
    /// with the engine. A caller learns which operations were never answered as those it
    /// did not visit.
    Stalled {
        /// Operations submitted but never completed.
        pending_count: usize,
        /// Buffers the engine still held for operations it had completed without them.
        held_buffer_count: usize,
        /// Operations never submitted.
        unstarted_count: usize,
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
                held_buffer_count,
                unstarted_count,
                waited,
            } => write!(
                f,
                "engine stalled: nothing came back for {waited:?} with {pending_count} operations \
                 pending and {held_buffer_count} buffers held; {unstarted_count} operations not started"
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
    reserve: Option<&'a BufferPool>,
    window_ops_max: usize,
    stall_timeout: Duration,
}

/// How long a stream waits for a completion before it declares an engine without an
/// operation timeout stalled.
pub const STALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// The stall timeout for an engine whose [`Engine::op_timeout`] is `op_timeout` (retries
/// included): twice that, so that every operation the device answers late has timed out,
/// and every buffer it answers for has come back, well before the stream gives up;
/// [`STALL_TIMEOUT_DEFAULT`] for an engine without a timeout.
pub fn stall_timeout_for(op_timeout: Option<Duration>) -> Duration {
    op_timeout.map_or(STALL_TIMEOUT_DEFAULT, |timeout| timeout.saturating_mul(2))
}

/// Where one [`Stream::run`] stands.
struct RunState {
    /// Operations with buffers, not yet submitted.
    batch: Vec<Op>,
    stats: StreamStats,
    in_flight_count: usize,
    /// An operation larger than a pool buffer: nothing more is submitted.
    too_large: Option<StreamError>,
    /// The spec that found no buffer free.
    waiting: Option<OpSpec>,
    /// Since when the stream has waited for a buffer with nothing in flight.
    starved_since: Option<Instant>,
}

/// An operation spec with or without the buffer it needs.
enum Attached {
    Op(Op),
    /// No buffer is free: the spec waits for one.
    NoBuffer(OpSpec),
    TooLarge(StreamError),
}

impl<'a, E: Engine + ?Sized> Stream<'a, E> {
    /// A stream over `engine` with buffers from `pool`; the window defaults to the pool size
    /// and the stall timeout to [`stall_timeout_for`] the engine's operation timeout.
    pub fn new(engine: &'a mut E, pool: &'a BufferPool) -> Self {
        let window_ops_max = pool.buffer_count();
        let stall_timeout = stall_timeout_for(engine.op_timeout());
        Stream {
            engine,
            pool,
            reserve: None,
            window_ops_max,
            stall_timeout,
        }
    }

    /// Keeps at most `window_ops_max` operations in flight (never more than the pool holds,
    /// plus the reserve while the engine holds buffers). The next operations go out before
    /// the completions just reaped are visited, with buffers of their own: a pool of twice
    /// the window lets `visit` overlap the device's work; a smaller one only delays them.
    pub fn window(mut self, window_ops_max: usize) -> Self {
        self.window_ops_max = window_ops_max.max(1);
        self
    }

    /// How long to wait for any completion, or for a held buffer to come back, before
    /// giving up on the engine.
    pub fn stall_timeout(mut self, stall_timeout: Duration) -> Self {
        self.stall_timeout = stall_timeout;
        self
    }

    /// Buffers to use in place of those the engine holds after timeouts, so that the device
    /// keeps working on other operations while it sits on a stuck one. Taken only while
    /// [`Engine::held_buffer_count`] is not zero; memory stays bounded by both pools.
    pub fn reserve(mut self, reserve: &'a BufferPool) -> Self {
        self.reserve = Some(reserve);
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
    /// When every buffer is with the engine (held after timeouts) and none is in flight, the
    /// stream waits on the engine's readiness fd for one to come back, taking buffers from
    /// the [`reserve`](Stream::reserve) meanwhile. It returns `Ok` only once every operation
    /// has been visited.
    ///
    /// # Errors
    /// [`StreamError::OpTooLarge`] for an operation larger than a pool buffer (after the
    /// operations in flight have completed), [`StreamError::Stalled`] if nothing comes back
    /// for the stall timeout while operations are pending or buffers held.
    pub fn run(
        mut self,
        specs: impl IntoIterator<Item = OpSpec>,
        mut fill: impl FnMut(&OpInfo, &mut [u8]),
        mut visit: impl FnMut(&Completion),
    ) -> Result<StreamStats, StreamError> {
        let mut specs = specs.into_iter();
        let mut run = RunState {
            batch: Vec::with_capacity(self.window_ops_max),
            stats: StreamStats::default(),
            in_flight_count: 0,
            too_large: None,
            waiting: None,
            starved_since: None,
        };
        let mut completions: Vec<Completion> = Vec::with_capacity(self.window_ops_max);
        loop {
            self.top_up(&mut run, &mut specs, &mut fill);
            if run.in_flight_count == 0 {
                if let Some(error) = run.too_large {
                    return Err(error);
                }
                if run.waiting.is_none() {
                    return Ok(run.stats);
                }
                let since = *run.starved_since.get_or_insert_with(Instant::now);
                if !self.await_buffer(since + self.stall_timeout) {
                    return Err(self.stalled(run.waiting, &mut specs, since.elapsed()));
                }
                continue;
            }
            let deadline = Instant::now() + self.stall_timeout;
            if self.engine.reap(&mut completions, Wait::Until(deadline)) == 0 {
                return Err(self.stalled(run.waiting, &mut specs, self.stall_timeout));
            }
            run.in_flight_count -= completions.len();
            // The device gets its next operations before the caller looks at these
            // completions, where the pool has buffers to spare: what `visit` costs then
            // overlaps the device's work instead of leaving its queue short.
            self.top_up(&mut run, &mut specs, &mut fill);
            for completion in completions.drain(..) {
                count(&mut run.stats, &completion);
                visit(&completion);
            }
        }
    }

    /// Attaches buffers to specs until the window is full, no buffer is free or the specs
    /// run out, and submits them.
    fn top_up(
        &mut self,
        run: &mut RunState,
        specs: &mut impl Iterator<Item = OpSpec>,
        fill: &mut impl FnMut(&OpInfo, &mut [u8]),
    ) {
        while run.too_large.is_none() && run.in_flight_count + run.batch.len() < self.window_ops_max
        {
            let Some(spec) = run.waiting.take().or_else(|| specs.next()) else {
                break;
            };
            match self.attach(spec, fill) {
                Attached::Op(op) => run.batch.push(op),
                Attached::NoBuffer(spec) => {
                    run.waiting = Some(spec);
                    break;
                }
                Attached::TooLarge(error) => run.too_large = Some(error),
            }
        }
        if run.batch.is_empty() {
            return;
        }
        run.in_flight_count += run.batch.len();
        run.stats.in_flight_max = run.stats.in_flight_max.max(run.in_flight_count);
        run.starved_since = None;
        self.engine.submit(&mut run.batch);
    }

    /// `spec` with a buffer attached (none for a flush), or back if no buffer is free.
    fn attach(&self, spec: OpSpec, fill: &mut impl FnMut(&OpInfo, &mut [u8])) -> Attached {
        let info = spec.info;
        if info.kind == OpKind::Flush {
            return Attached::Op(Op::flush(info.tag));
        }
        let Some(mut buffer) = self.take_buffer() else {
            return Attached::NoBuffer(spec);
        };
        if info.len_bytes > buffer.capacity_bytes() {
            let buffer_bytes = buffer.capacity_bytes();
            return Attached::TooLarge(StreamError::OpTooLarge { info, buffer_bytes });
        }
        buffer.set_len(info.len_bytes);
        Attached::Op(match info.kind {
            OpKind::Write => {
                fill(&info, buffer.as_mut_slice());
                Op::write(info.tag, info.offset_bytes, buffer)
            }
            _ => Op::read(info.tag, info.offset_bytes, buffer),
        })
    }

    /// A free buffer from the pool, or from the reserve while the engine holds buffers.
    fn take_buffer(&self) -> Option<Buffer> {
        self.pool.take().or_else(|| {
            let reserve = self
                .reserve
                .filter(|_| self.engine.held_buffer_count() > 0)?;
            reserve.take()
        })
    }

    /// Whether a buffer could be taken now.
    fn buffer_free(&self) -> bool {
        let free = |pool: &BufferPool| pool.taken_count() < pool.buffer_count();
        free(self.pool) || (self.engine.held_buffer_count() > 0 && self.reserve.is_some_and(free))
    }

    /// Waits, on the engine's readiness fd, until a buffer is free; `false` if none is by
    /// `deadline`, or none can come back because the engine holds none.
    fn await_buffer(&mut self, deadline: Instant) -> bool {
        // Asked for first: an engine may keep its fd accurate only once someone holds it
        // (io_uring registers it with the ring at the next reap).
        let _ = self.engine.readiness();
        let mut nothing = Vec::new();
        loop {
            // Lets go of the buffers the device has given back, and clears the fd.
            self.engine.reap(&mut nothing, Wait::Nothing);
            debug_assert!(nothing.is_empty(), "a completion with nothing in flight");
            if self.buffer_free() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.engine.held_buffer_count() == 0 || left.is_zero() {
                return false;
            }
            let left_ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            poll_readable(self.engine.readiness(), left_ms);
        }
    }

    /// The error for a stream that got nothing back for `waited`: drains and counts the
    /// operations not started.
    fn stalled(
        &mut self,
        waiting: Option<OpSpec>,
        specs: &mut impl Iterator<Item = OpSpec>,
        waited: Duration,
    ) -> StreamError {
        StreamError::Stalled {
            pending_count: self.engine.pending_count(),
            held_buffer_count: self.engine.held_buffer_count(),
            unstarted_count: usize::from(waiting.is_some()) + specs.count(),
            waited,
        }
    }
}

fn count(stats: &mut StreamStats, completion: &Completion) {
    stats.op_count += 1;
    match completion.result() {
        Ok(done_bytes) => stats.transferred_bytes += *done_bytes as u64,
        Err(_) => stats.error_count += 1,
    }
}
