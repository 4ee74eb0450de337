//! Injected faults (`rbio_core::FaultyEngine` around the io_uring engine) come back per
//! operation exactly as they do around the serial engine, and the retry policy absorbs
//! transient ones; faults never disturb the other operations of a batch.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rbio_core::{
    Buffer, Completion, Device, Engine, Errno, Fault, FaultPlan, FaultTarget, FaultyEngine,
    IoError, Op, Retrying, SerialEngine,
};
use rbio_uring::UringEngine;
use support::{open, pattern_image, run};

fn reads(count: u64) -> Vec<Op> {
    (0..count)
        .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
        .collect()
}

fn outcomes(completions: &[Completion]) -> Vec<(Result<usize, IoError>, Vec<u8>)> {
    completions
        .iter()
        .map(|c| (c.result().clone(), c.data().to_vec()))
        .collect()
}

fn both(device: &Arc<Device>, plan: &FaultPlan, ops: impl Fn() -> Vec<Op>) -> [Vec<Completion>; 2] {
    let uring = UringEngine::builder(device.clone())
        .window(4)
        .build()
        .unwrap();
    let mut uring = FaultyEngine::new(uring, plan.clone()).unwrap();
    let serial = SerialEngine::new(device.clone()).unwrap();
    let mut serial = FaultyEngine::new(serial, plan.clone()).unwrap();
    [run(&mut uring, ops()), run(&mut serial, ops())]
}

#[test]
fn failures_short_transfers_and_stalls_match_the_serial_engine() {
    let image = pattern_image(1 << 20);
    let device = open(image.path(), true, false);
    let plan = FaultPlan::new(5)
        .with(
            FaultTarget::Offset(4096),
            Fault::Fail(IoError::Os(Errno::EIO)),
        )
        .with(FaultTarget::Offset(8192), Fault::Short { done_bytes: 100 })
        .with(FaultTarget::Offset(3 * 4096), Fault::Stall)
        .stall_timeout(Duration::from_millis(20));
    let [uring, serial] = both(&device, &plan, || reads(32));
    assert_eq!(outcomes(&uring), outcomes(&serial));
    assert_eq!(uring[1].result(), &Err(IoError::Os(Errno::EIO)));
    assert_eq!(
        uring[2].result(),
        &Err(IoError::ShortTransfer {
            done_bytes: 100,
            len_bytes: 4096
        })
    );
    assert!(matches!(uring[3].result(), Err(IoError::TimedOut { .. })));
    assert!(uring
        .iter()
        .enumerate()
        .filter(|(i, _)| ![1, 2, 3].contains(i))
        .all(|(_, c)| c.result() == &Ok(4096)));
}

#[test]
fn the_retry_policy_absorbs_transient_errors_over_the_ring() {
    let image = pattern_image(1 << 20);
    let device = open(image.path(), true, false);
    let plan = FaultPlan::new(9)
        .with(
            FaultTarget::Share {
                per_million: 500_000,
            },
            Fault::Transient {
                errno: Errno::EINTR,
                attempts: 2,
            },
        )
        .with(
            FaultTarget::All,
            Fault::Transient {
                errno: Errno::EAGAIN,
                attempts: 1,
            },
        );
    let uring = UringEngine::builder(device.clone())
        .window(8)
        .build()
        .unwrap();
    let mut engine = Retrying::new(FaultyEngine::new(uring, plan).unwrap(), 4);
    let completions = run(&mut engine, reads(64));
    assert!(completions.iter().all(|c| c.result() == &Ok(4096)));
    assert!(engine.retried_count() >= 64);
}

#[test]
fn a_failure_does_not_disturb_its_neighbours_at_any_window() {
    let image = pattern_image(1 << 20);
    let device = open(image.path(), false, false);
    let plan = FaultPlan::new(3).with(
        FaultTarget::Share {
            per_million: 250_000,
        },
        Fault::Fail(IoError::Os(Errno::EIO)),
    );
    for window in [1, 3, 64] {
        let uring = UringEngine::builder(device.clone())
            .window(window)
            .build()
            .unwrap();
        let mut uring = FaultyEngine::new(uring, plan.clone()).unwrap();
        let mut serial =
            FaultyEngine::new(SerialEngine::new(device.clone()).unwrap(), plan.clone()).unwrap();
        let got = run(&mut uring, reads(200));
        assert_eq!(
            outcomes(&got),
            outcomes(&run(&mut serial, reads(200))),
            "window {window}"
        );
        assert!(uring.counts().failed > 20);
        assert_eq!(uring.pending_count(), 0);
    }
}
