//! IOPOLL on files and devices without poll queues (all of them on these machines) fails
//! each operation with a typed `Unsupported` error instead of hanging, although polled waits
//! return early with no completion many times before the error arrives. Each run is under a
//! watchdog thread, so a hang fails the test instead of stalling the run.

mod support;

use std::time::Duration;

use rbio_core::{Buffer, BufferPool, Engine, IoError, Op, Wait};
use rbio_uring::{RingFlags, UringEngine};
use support::{open, pattern_image, run, within, LoopDevice};

const WATCHDOG: Duration = Duration::from_secs(30);

fn unsupported_everywhere(path: std::path::PathBuf, direct: bool, fixed: bool) {
    within(
        &format!("IOPOLL on {}", path.display()),
        WATCHDOG,
        move || {
            let device = open(&path, direct, false);
            let pool = BufferPool::new(4096, 64, 4096).unwrap();
            let mut builder = UringEngine::builder(device).window(8).iopoll(true);
            if fixed {
                builder = builder.fixed_buffers(&pool);
            }
            let mut engine = builder.build().unwrap();
            assert!(engine.flags().contains(RingFlags::IOPOLL));
            let ops = (0..64u64)
                .map(|i| Op::read(i, i * 4096, pool.take().unwrap()))
                .collect();
            for completion in run(&mut engine, ops) {
                assert!(
                    matches!(completion.result(), Err(IoError::Unsupported { .. })),
                    "{}: {:?}",
                    completion.info(),
                    completion.result()
                );
                assert!(
                    completion.buffer().is_some(),
                    "the kernel gave the buffer back"
                );
            }
            assert_eq!(pool.taken_count(), 0);
        },
    );
}

#[test]
fn iopoll_on_a_direct_file_fails_typed() {
    let image = pattern_image(1 << 20);
    unsupported_everywhere(image.path().to_path_buf(), true, false);
    unsupported_everywhere(image.path().to_path_buf(), true, true);
}

#[test]
fn iopoll_on_a_buffered_file_fails_typed() {
    let image = pattern_image(1 << 20);
    unsupported_everywhere(image.path().to_path_buf(), false, false);
}

#[test]
fn iopoll_on_a_loop_device_fails_typed() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("loop devices"));
    let loop_device = LoopDevice::attach(1 << 20, 4096);
    unsupported_everywhere(loop_device.path.clone(), true, true);
}

#[test]
fn a_polled_reap_without_waiting_returns() {
    let image = pattern_image(1 << 20);
    let path = image.path().to_path_buf();
    within("Wait::Nothing on an IOPOLL ring", WATCHDOG, move || {
        let device = open(&path, true, false);
        let mut engine = UringEngine::builder(device).iopoll(true).build().unwrap();
        let mut ops = vec![Op::read(0, 0, Buffer::new_aligned(4096, 4096).unwrap())];
        engine.submit(&mut ops);
        let mut completions = Vec::new();
        while completions.is_empty() {
            engine.reap(&mut completions, Wait::Nothing);
        }
        assert!(matches!(
            completions[0].result(),
            Err(IoError::Unsupported { .. })
        ));
    });
}
