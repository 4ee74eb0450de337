//! A completion reaches a reaper blocked in `reap` even when its worker is stuck in the next
//! operation: the engine batches wake-ups (a worker with more work queued may defer waking
//! the reaper), and the timer's tick bounds that deferral, so a finished read never waits
//! behind a stalled one (`pread`s into stalled buffers, see `common/stall.rs`).

mod common;

use std::time::Duration;

use rbio_core::{BufferPool, Engine, Op};
use rbio_posix::PosixEngine;

use common::stall::Stall;

#[test]
fn a_finished_read_is_not_held_behind_a_stuck_one() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("userfaultfd"));
    let (_file, device) = common::image(4 * 4096);
    let pool = BufferPool::new(4096, 4, 4096).unwrap();
    let mut engine = PosixEngine::builder(device).workers(1).build().unwrap();
    let (first, second) = (pool.take().unwrap(), pool.take().unwrap());
    let (mut first_stall, mut second_stall) = (Stall::arm(&first), Stall::arm(&second));
    // One worker, one range: 0 and 1 block in the kernel in turn, 2 waits behind them.
    let mut batch = vec![
        Op::read(0, 0, first),
        Op::read(1, 4096, second),
        Op::read(2, 2 * 4096, pool.take().unwrap()),
    ];
    engine.submit(&mut batch);
    assert!(
        first_stall.wait_until_hit(Duration::from_secs(30)),
        "0 never started"
    );

    // The reaper blocks; releasing 0 then completes it while the worker still has 1 and 2
    // queued (so it may defer the wake), and the worker blocks on 1 at once.
    let (tid_sender, tid_receiver) = std::sync::mpsc::channel();
    let reaper = std::thread::spawn(move || {
        tid_sender.send(thread_id()).unwrap();
        let first = common::reap_count(&mut engine, 1);
        (engine, first)
    });
    wait_until_blocked(tid_receiver.recv().unwrap());
    first_stall.release();
    assert!(
        second_stall.wait_until_hit(Duration::from_secs(30)),
        "1 never started"
    );
    let (mut engine, done) = common::within(Duration::from_secs(60), "reaping 0", move || {
        reaper.join().unwrap()
    });
    let tags: Vec<u64> = done.iter().map(|c| c.tag()).collect();
    assert_eq!(tags, [0], "only 0 can have completed");
    assert_eq!(engine.pending_count(), 2);

    second_stall.release();
    let rest = common::reap_all(&mut engine);
    let tags: Vec<u64> = rest.iter().map(|c| c.tag()).collect();
    assert_eq!(tags, [1, 2]);
}

/// This thread's kernel id, from `/proc/thread-self` ("PID/task/TID").
fn thread_id() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = link.file_name().expect("a thread id");
    tid.to_string_lossy().into_owned()
}

/// Waits until thread `tid` sleeps in a futex (the reaper's condvar wait). Nothing signals
/// that moment, so it looks, yielding, under a deadline.
fn wait_until_blocked(tid: String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let syscall = format!("/proc/self/task/{tid}/syscall");
    loop {
        let current = std::fs::read_to_string(&syscall).unwrap_or_default();
        if current.split(' ').next() == Some(&libc::SYS_futex.to_string()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reaper never blocked: {current}"
        );
        std::thread::yield_now();
    }
}
