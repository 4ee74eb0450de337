//! A batch is split into contiguous ranges, one per worker, each performed in order. Proved
//! two ways: the per-worker counters of `worker_stats`, and a first operation whose buffer
//! really blocks inside the kernel, which holds back exactly the rest of its own range while
//! every other range completes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use rbio_core::{BufferPool, Engine, Op, Wait};
use rbio_posix::PosixEngine;

use common::stall::Stall;

#[test]
fn ten_operations_over_three_workers_run_as_ranges_of_four_three_three() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("userfaultfd"));
    let (_file, device) = common::image(10 * 4096);
    let pool = BufferPool::new(4096, 10, 4096).unwrap();
    let mut engine = PosixEngine::builder(device).workers(3).build().unwrap();
    let buffers: Vec<_> = (0..10).map(|_| pool.take().unwrap()).collect();
    let mut stall = Stall::arm(&buffers[0]);
    let mut batch: Vec<Op> = buffers
        .into_iter()
        .zip(0u64..)
        .map(|(buffer, i)| Op::read(i, i * 4096, buffer))
        .collect();
    engine.submit(&mut batch);

    // Operation 0 blocks in the kernel, so its worker cannot reach 1, 2 and 3; the other two
    // ranges, 4..7 and 7..10, complete.
    let first = common::reap_count(&mut engine, 6);
    let tags: BTreeSet<u64> = first.iter().map(|c| c.tag()).collect();
    assert_eq!(tags, (4..10).collect(), "completed before the stall ended");
    assert!(first.iter().all(common::holds_pattern));
    assert!(
        stall.wait_until_hit(Duration::from_secs(30)),
        "no pread hit the stall"
    );
    let mut more = Vec::new();
    assert_eq!(engine.reap(&mut more, Wait::Nothing), 0, "{more:?}");

    let stats = engine.worker_stats();
    let ops: Vec<u64> = stats.iter().map(|w| w.op_count).collect();
    let ranges: Vec<u64> = stats.iter().map(|w| w.range_count).collect();
    assert_eq!(ops, [4, 3, 3]);
    assert_eq!(ranges, [1, 1, 1]);
    assert_eq!(
        stats[0].queued_count, 4,
        "worker 0 still holds its whole range"
    );

    // Released, the stalled read completes (zeroes where it faulted) and the worker goes on
    // with 1, 2 and 3, in order.
    stall.release();
    let rest = common::reap_all(&mut engine);
    let tags: Vec<u64> = rest.iter().map(|c| c.tag()).collect();
    assert_eq!(tags, [0, 1, 2, 3]);
    assert_eq!(rest[0].result(), &Ok(4096));
    assert!(rest[1..].iter().all(common::holds_pattern));
}

#[test]
fn every_batch_gives_each_worker_one_range() {
    let (_file, device) = common::image(64 * 4096);
    let pool = BufferPool::new(4096, 64, 4096).unwrap();
    let mut engine = PosixEngine::builder(device).workers(3).build().unwrap();
    for round in 0..5u64 {
        let mut batch: Vec<Op> = (0..10u64)
            .map(|i| {
                Op::read(
                    round * 10 + i,
                    (round * 10 + i) * 4096,
                    pool.take().unwrap(),
                )
            })
            .collect();
        engine.submit(&mut batch);
    }
    let completions = common::reap_all(&mut engine);
    assert_eq!(completions.len(), 50);
    assert!(completions.iter().all(common::holds_pattern));
    for (index, worker) in engine.worker_stats().iter().enumerate() {
        assert_eq!(worker.range_count, 5, "worker {index}: {worker:?}");
        assert!(
            (15..=20).contains(&worker.op_count),
            "worker {index}: {worker:?}"
        );
        assert_eq!(worker.performed_count, worker.op_count);
    }
}

#[test]
fn a_batch_smaller_than_the_pool_uses_the_least_loaded_workers() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("userfaultfd"));
    let (_file, device) = common::image(8 * 4096);
    let pool = BufferPool::new(4096, 8, 4096).unwrap();
    let mut engine = PosixEngine::builder(device).workers(4).build().unwrap();
    let stalled = pool.take().unwrap();
    let mut stall = Stall::arm(&stalled);
    engine.submit(&mut vec![Op::read(0, 0, stalled)]);
    assert!(
        stall.wait_until_hit(Duration::from_secs(30)),
        "no pread hit the stall"
    );

    // Worker 0 is busy with one operation: three single operations go to the idle three.
    for i in 1..4u64 {
        engine.submit(&mut vec![Op::read(i, i * 4096, pool.take().unwrap())]);
    }
    let done = common::reap_count(&mut engine, 3);
    assert!(done.iter().all(common::holds_pattern));
    let ops: Vec<u64> = engine.worker_stats().iter().map(|w| w.op_count).collect();
    assert_eq!(ops, [1, 1, 1, 1]);
    stall.release();
    assert_eq!(common::reap_all(&mut engine).len(), 1);
}
