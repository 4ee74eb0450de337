//! An operation that outlives its timeout completes as `TimedOut`, without its buffer, exactly
//! once: the worker stuck in the kernel (a `pread` into a stalled buffer, see
//! `common/stall.rs`) keeps the buffer until its call returns, then drops the late result,
//! and the buffer goes back to its pool only then. Operations queued behind it time out too
//! and are never performed; the readiness fd wakes a poller when the deadline passes.

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use rbio_core::{BufferPool, Engine, IoError, Op, Wait};
use rbio_posix::{PosixEngine, TimeoutStats};

use common::stall::Stall;

const OP_TIMEOUT: Duration = Duration::from_millis(200);

#[test]
fn a_stuck_operation_times_out_once_and_its_buffer_waits_for_the_kernel() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("userfaultfd"));
    let (_file, device) = common::image(4 * 4096);
    let pool = BufferPool::new(4096, 4, 4096).unwrap();
    let mut engine = PosixEngine::builder(device)
        .workers(1)
        .op_timeout(OP_TIMEOUT)
        .build()
        .unwrap();
    let stalled = pool.take().unwrap();
    let mut stall = Stall::arm(&stalled);
    let mut batch = vec![
        Op::read(0, 0, stalled),
        Op::read(1, 4096, pool.take().unwrap()),
    ];
    engine.submit(&mut batch);
    assert!(
        stall.wait_until_hit(Duration::from_secs(30)),
        "no pread hit the stall"
    );

    // Nothing is reapable until the timer completes both (the second waits behind the first).
    assert!(rbio_core::poll_readable(engine.readiness().as_fd(), 30_000));
    let mut timed_out = Vec::new();
    engine.reap(&mut timed_out, Wait::Nothing);
    timed_out.extend(common::reap_all(&mut engine));
    assert_eq!(timed_out.len(), 2, "{timed_out:?}");
    for completion in &timed_out {
        assert_eq!(
            completion.result(),
            &Err(IoError::TimedOut {
                timeout: OP_TIMEOUT
            })
        );
        assert!(
            completion.buffer().is_none(),
            "a timed-out op keeps its buffer"
        );
    }
    assert_eq!(pool.taken_count(), 2, "the worker still owns both buffers");
    assert_eq!(engine.pending_count(), 0);

    // Released, the late result is discarded; the queued operation is skipped, unperformed.
    // The next operation on the same worker completes normally, and by then (the worker goes
    // in order) both buffers are back in the pool.
    stall.release();
    engine.submit(&mut vec![Op::read(2, 2 * 4096, pool.take().unwrap())]);
    let next = common::reap_all(&mut engine);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].tag(), 2);
    assert!(common::holds_pattern(&next[0]));
    drop(next);
    assert_eq!(pool.taken_count(), 0);
    let mut none = Vec::new();
    assert_eq!(engine.reap(&mut none, Wait::Nothing), 0, "{none:?}");
    assert_eq!(
        engine.timeout_stats(),
        TimeoutStats {
            timed_out_count: 2,
            late_result_count: 1
        }
    );
    let worker = engine.worker_stats()[0];
    assert_eq!((worker.performed_count, worker.skipped_count), (2, 1));
}

#[test]
fn other_workers_complete_normally_while_one_is_stuck() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("userfaultfd"));
    let (_file, device) = common::image(8 * 4096);
    let pool = BufferPool::new(4096, 8, 4096).unwrap();
    // Long enough for the healthy range on a loaded machine.
    let mut engine = PosixEngine::builder(device)
        .workers(2)
        .op_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let stalled = pool.take().unwrap();
    let mut stall = Stall::arm(&stalled);
    let mut batch = vec![Op::read(0, 0, stalled)];
    batch.extend((1..6u64).map(|i| Op::read(i, i * 4096, pool.take().unwrap())));
    engine.submit(&mut batch);

    // Ranges 0..3 and 3..6: the second completes, the first times out whole.
    let completions = common::reap_all(&mut engine);
    assert_eq!(completions.len(), 6);
    for completion in &completions {
        if completion.tag() < 3 {
            assert!(matches!(completion.result(), Err(IoError::TimedOut { .. })));
        } else {
            assert!(common::holds_pattern(completion), "{completion:?}");
        }
    }
    stall.release();
}
