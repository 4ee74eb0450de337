//! Dropping an engine never hangs and never frees memory the kernel may still write: with a
//! worker stuck inside a `pread` (a stalled buffer, see `common/stall.rs`) the drop returns
//! after its bounded join and detaches that worker, which keeps the buffer until its call
//! returns; with thousands of operations queued, the drop returns and every buffer is back.
//! A watchdog thread turns a hang into a loud failure.

mod common;

use std::time::{Duration, Instant};

use rbio_core::{BufferPool, Engine, Op};
use rbio_posix::{PosixEngine, DROP_JOIN_TIMEOUT};

use common::stall::Stall;

/// Far above the engine's own bound: only a real hang reaches it.
const WATCHDOG: Duration = Duration::from_secs(20);

#[test]
fn drop_with_a_worker_stuck_in_the_kernel_returns_and_detaches_it() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("userfaultfd"));
    let (_file, device) = common::image(16 * 4096);
    let pool = BufferPool::new(4096, 16, 4096).unwrap();
    let mut engine = PosixEngine::builder(device).workers(2).build().unwrap();
    let stalled = pool.take().unwrap();
    let mut stall = Stall::arm(&stalled);
    let mut batch = vec![Op::read(0, 0, stalled)];
    batch.extend((1..16u64).map(|i| Op::read(i, i * 4096, pool.take().unwrap())));
    engine.submit(&mut batch);
    assert!(
        stall.wait_until_hit(Duration::from_secs(30)),
        "no pread hit the stall"
    );

    let started = Instant::now();
    common::within(
        WATCHDOG,
        "dropping an engine with a stuck worker",
        move || drop(engine),
    );
    assert!(
        started.elapsed() >= DROP_JOIN_TIMEOUT,
        "drop returned before its join timeout although a worker could not return"
    );
    // The stuck worker still owns the buffer the kernel is writing into.
    assert!(
        pool.taken_count() >= 1,
        "the stalled buffer was freed under the kernel"
    );

    // Released, the detached worker's call returns, and it drops the buffer and its queue.
    // Nothing signals that moment to the test, so it looks, yielding, under a deadline.
    stall.release();
    let deadline = Instant::now() + WATCHDOG;
    while pool.taken_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the detached worker kept {} buffers",
            pool.taken_count()
        );
        std::thread::yield_now();
    }
}

#[test]
fn drop_with_thousands_queued_returns_every_buffer() {
    let (_file, device) = common::image(256 * 4096);
    let pool = BufferPool::new(4096, 4096, 4096).unwrap();
    let mut engine = PosixEngine::builder(device).workers(1).build().unwrap();
    let mut batch: Vec<Op> = (0..4096u64)
        .map(|i| Op::read(i, (i % 256) * 4096, pool.take().unwrap()))
        .collect();
    engine.submit(&mut batch);
    assert_eq!(engine.pending_count(), 4096);
    common::within(WATCHDOG, "dropping an engine with queued work", move || {
        drop(engine)
    });
    // Every thread was joined (none was stuck), so nothing can still hold a buffer.
    assert_eq!(pool.taken_count(), 0);
}

#[test]
fn drop_of_an_idle_engine_joins_at_once() {
    let (_file, device) = common::image(4096);
    let engine = PosixEngine::builder(device).workers(64).build().unwrap();
    common::within(WATCHDOG, "dropping an idle engine", move || drop(engine));
}
