//! The streaming driver over the POSIX engine: thousands of reads through a sliding window of
//! four operations per worker come back with the right bytes, memory stays within the
//! window, and many small batches queue up on every worker at once.

mod common;

use std::collections::HashSet;

use rbio_core::{BufferPool, OpSpec, Stream};
use rbio_posix::PosixEngine;

#[test]
fn a_sliding_window_reads_everything_right() {
    const BLOCKS: u64 = 512;
    let (_file, device) = common::image(BLOCKS * 4096);
    for workers in [1, 3, 8] {
        let mut engine = PosixEngine::builder(device.clone())
            .workers(workers)
            .build()
            .unwrap();
        let window = 4 * workers;
        let pool = BufferPool::new(4096, window, 4096).unwrap();
        let specs = (0..4096u64).map(|i| OpSpec::read(i, (i * 97 % BLOCKS) * 4096, 4096));
        let mut seen = HashSet::new();
        let stats = Stream::new(&mut engine, &pool)
            .window(window)
            .run_reads(specs, |completion| {
                assert!(common::holds_pattern(completion), "{completion:?}");
                assert!(
                    seen.insert(completion.tag()),
                    "tag {} twice",
                    completion.tag()
                );
            })
            .unwrap();
        assert_eq!((stats.op_count, stats.error_count), (4096, 0));
        assert_eq!(seen.len(), 4096);
        assert!(pool.taken_max() <= window);
        let worker_stats = engine.worker_stats();
        assert_eq!(worker_stats.iter().map(|w| w.op_count).sum::<u64>(), 4096);
        assert!(
            worker_stats.iter().all(|w| w.range_count > 1),
            "{workers} workers: {worker_stats:?}"
        );
    }
}
