//! No wait outlives its deadline while a worker is stuck inside the kernel (a `pread` into a
//! stalled buffer, see `common/stall.rs`) and the operation timeout is far off: the streaming
//! driver's reaps return by their deadlines and it stops with `StreamError::Stalled`, dropping
//! the engine then returns after its bounded join, and the stuck worker gives the buffer back
//! only once its call returns. Under a watchdog, so a hang fails loudly. (Issue #8.)
//!
//! Already covered elsewhere: a stuck operation timing out (`timeout.rs`), drop with a stuck
//! worker or thousands queued (`drop.rs`), a transfer that panics failing only its operation
//! and a dead worker's operations completing as canceled (unit tests in `pool.rs` and
//! `ledger.rs`).

mod common;

use std::time::{Duration, Instant};

use rbio_core::{BufferPool, OpSpec, Stream, StreamError};
use rbio_posix::{PosixEngine, DROP_JOIN_TIMEOUT, OP_TIMEOUT_DEFAULT};

use common::stall::Stall;

const WATCHDOG: Duration = Duration::from_secs(20);

#[test]
fn a_stream_over_a_stuck_worker_stops_by_its_stall_timeout_and_drop_returns() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("userfaultfd"));
    let (_file, device) = common::image(16 * 4096);
    // One buffer, stalled before the stream takes it: its first read sticks in the kernel.
    let pool = BufferPool::new(4096, 1, 4096).unwrap();
    let buffer = pool.take().unwrap();
    let mut stall = Stall::arm(&buffer);
    drop(buffer);

    let stream_pool = pool.clone();
    let stall_timeout = Duration::from_millis(200);
    let (error, elapsed) = common::within(WATCHDOG, "a stream over a stuck worker", move || {
        let mut engine = PosixEngine::builder(device).workers(2).build().unwrap();
        let specs = (0..8u64).map(|i| OpSpec::read(i, i * 4096, 4096));
        let started = Instant::now();
        let error = Stream::new(&mut engine, &stream_pool)
            .stall_timeout(stall_timeout)
            .run_reads(specs, |_| {})
            .unwrap_err();
        let elapsed = started.elapsed();
        let dropped = Instant::now();
        drop(engine);
        (error, (elapsed, dropped.elapsed()))
    });
    assert!(stall_timeout < OP_TIMEOUT_DEFAULT);
    assert_eq!(
        error,
        StreamError::Stalled {
            pending_count: 1,
            held_buffer_count: 0,
            unstarted_count: 7,
            waited: stall_timeout
        }
    );
    let (stream_elapsed, drop_elapsed) = elapsed;
    assert!(
        stream_elapsed < stall_timeout + Duration::from_secs(2),
        "{stream_elapsed:?}"
    );
    assert!(
        drop_elapsed < DROP_JOIN_TIMEOUT + Duration::from_secs(2),
        "{drop_elapsed:?}"
    );
    assert_eq!(
        pool.taken_count(),
        1,
        "the detached worker still owns the stalled buffer"
    );

    // Released, the call returns and the worker drops the buffer. Nothing signals that moment
    // to the test, so it looks, yielding, under a deadline.
    stall.release();
    let deadline = Instant::now() + WATCHDOG;
    while pool.taken_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the detached worker kept its buffer"
        );
        std::thread::yield_now();
    }
}
