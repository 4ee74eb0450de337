//! An operation the device never answers completes as `TimedOut` when its deadline passes,
//! whether it is in the kernel or still queued behind the window; the kernel's cancel then
//! gives its buffer back to the pool. The stuck device is the master side of a fresh
//! pseudo-terminal (`/dev/ptmx`): nobody ever writes to it, so reads block for real. Each
//! test runs through every fallback of `support::FALLBACKS` (without `EXT_ARG` the waits are
//! bounded by timeout SQEs).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{BufferPool, Device, Engine, IoError, Op, Wait};
use rbio_uring::UringEngine;
use support::{open, pattern_image, run, FALLBACKS};

const OP_TIMEOUT: Duration = Duration::from_millis(100);

fn stuck_device() -> Arc<Device> {
    Arc::new(Device::open("/dev/ptmx").expect("open /dev/ptmx, a read that never completes"))
}

#[test]
fn stuck_reads_time_out_and_their_buffers_come_back() {
    for (fallback, masked) in FALLBACKS {
        let pool = BufferPool::new(4096, 8, 4096).unwrap();
        let mut engine = UringEngine::builder(stuck_device())
            .without_features(masked)
            .window(2)
            .op_timeout(OP_TIMEOUT)
            .fixed_buffers(&pool)
            .build()
            .unwrap();
        let started = Instant::now();
        // Two reads in the kernel, three queued behind the window.
        let ops = (0..5u64)
            .map(|i| Op::read(i, 0, pool.take().unwrap()))
            .collect();
        let completions = run(&mut engine, ops);
        let elapsed = started.elapsed();
        assert!(elapsed >= OP_TIMEOUT, "completed after {elapsed:?}");
        assert!(elapsed < 20 * OP_TIMEOUT, "took {elapsed:?}");
        for completion in &completions {
            assert_eq!(
                completion.result(),
                &Err(IoError::TimedOut {
                    timeout: OP_TIMEOUT
                })
            );
        }
        assert_eq!(engine.pending_count(), 0);
        assert_eq!(engine.stats().timed_out_count, 5);
        drop(completions);
        // The kernel's cancel completions free the zombies' buffers at the next reaps.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.taken_count() > 0 && Instant::now() < deadline {
            engine.reap(
                &mut Vec::new(),
                Wait::Until(Instant::now() + Duration::from_millis(10)),
            );
        }
        assert_eq!(
            pool.taken_count(),
            0,
            "buffers of canceled reads returned to the pool"
        );
        eprintln!("{fallback}: ok");
    }
}

#[test]
fn reap_returns_at_its_own_deadline_when_nothing_completes() {
    for (fallback, masked) in FALLBACKS {
        let mut engine = UringEngine::builder(stuck_device())
            .without_features(masked)
            .no_op_timeout()
            .build()
            .unwrap();
        let pool = BufferPool::new(4096, 1, 4096).unwrap();
        engine.submit(&mut vec![Op::read(0, 0, pool.take().unwrap())]);
        let started = Instant::now();
        let reaped = engine.reap(
            &mut Vec::new(),
            Wait::Until(started + Duration::from_millis(50)),
        );
        let elapsed = started.elapsed();
        assert_eq!(reaped, 0);
        assert!(
            elapsed >= Duration::from_millis(50) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        assert_eq!(engine.reap(&mut Vec::new(), Wait::Nothing), 0);
        assert_eq!(engine.pending_count(), 1);
        eprintln!("{fallback}: ok");
    }
}

#[test]
fn healthy_reads_finish_well_inside_a_short_timeout() {
    for (fallback, masked) in FALLBACKS {
        let image = pattern_image(1 << 20);
        let device = open(image.path(), true, false);
        let pool = BufferPool::new(4096, 256, 4096).unwrap();
        let mut engine = UringEngine::builder(device)
            .without_features(masked)
            .window(16)
            .op_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let ops = (0..256u64)
            .map(|i| Op::read(i, i * 4096, pool.take().unwrap()))
            .collect();
        assert!(run(&mut engine, ops)
            .iter()
            .all(|c| c.result() == &Ok(4096)));
        assert_eq!(engine.stats().timed_out_count, 0);
        eprintln!("{fallback}: ok");
    }
}
