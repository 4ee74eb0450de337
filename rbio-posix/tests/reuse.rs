//! Workers are created once per engine and reused: the process gains exactly `workers + 1`
//! threads (the workers and the timer) when the engine is built, no more across hundreds of
//! batches, and loses them all when it is dropped. Alone in its file so that no other test's
//! threads come and go meanwhile.

mod common;

use rbio_core::{Buffer, Engine, Op};
use rbio_posix::PosixEngine;

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists this process's threads")
        .count()
}

#[test]
fn threads_are_started_once_and_reused_for_every_batch() {
    let (_file, device) = common::image(64 * 4096);
    let before = thread_count();
    let mut engine = PosixEngine::builder(device).workers(5).build().unwrap();
    assert_eq!(thread_count(), before + 5 + 1, "five workers and the timer");

    for round in 0..300u64 {
        let mut batch: Vec<Op> = (0..1 + round % 12)
            .map(|i| {
                Op::read(
                    i,
                    (round + i) % 64 * 4096,
                    Buffer::new_aligned(4096, 4096).unwrap(),
                )
            })
            .collect();
        engine.submit(&mut batch);
        assert!(common::reap_all(&mut engine)
            .iter()
            .all(common::holds_pattern));
        assert_eq!(thread_count(), before + 6, "round {round}");
    }
    let ranges: u64 = engine.worker_stats().iter().map(|w| w.range_count).sum();
    assert!(ranges >= 300, "{ranges} ranges for 300 batches");
    assert!(engine.worker_stats().iter().all(|w| w.range_count > 10));

    drop(engine);
    assert_eq!(thread_count(), before, "every thread joined on drop");
}
