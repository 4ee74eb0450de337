//! The fault injector does what its plan says: failures, short transfers, transient errors
//! that the retry policy absorbs, stalls that end as timeouts; and its readiness fd works.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{
    poll_readable, Buffer, Completion, Device, Engine, Errno, Fault, FaultPlan, FaultTarget,
    FaultyEngine, IoError, NvmeStatus, Op, Retrying, SerialEngine, Wait,
};

fn device() -> (tempfile::NamedTempFile, Arc<Device>) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), vec![0x42u8; 64 << 10]).unwrap();
    let device = Arc::new(Device::open(file.path()).unwrap());
    (file, device)
}

fn reads(offsets: &[u64]) -> Vec<Op> {
    offsets
        .iter()
        .map(|&offset| Op::read(offset, offset, Buffer::new_aligned(4096, 4096).unwrap()))
        .collect()
}

fn run(engine: &mut impl Engine, mut ops: Vec<Op>) -> Vec<Completion> {
    let count = ops.len();
    engine.submit(&mut ops);
    let mut completions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while completions.len() < count && Instant::now() < deadline {
        engine.reap(&mut completions, Wait::Until(deadline));
    }
    completions.sort_by_key(|c| c.tag());
    completions
}

#[test]
fn failures_hit_only_their_operation() {
    let (_file, device) = device();
    let nvme = NvmeStatus {
        sct: 2,
        sc: 0x81,
        dnr: true,
    };
    let plan = FaultPlan::new(1)
        .with(
            FaultTarget::Offset(4096),
            Fault::Fail(IoError::Os(Errno::EIO)),
        )
        .with(FaultTarget::Offset(8192), Fault::Fail(IoError::Nvme(nvme)))
        .with(
            FaultTarget::Offset(12288),
            Fault::Fail(IoError::Os(Errno::ENOSPC)),
        );
    let mut engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
    let completions = run(&mut engine, reads(&[0, 4096, 8192, 12288, 16384]));
    let results: Vec<_> = completions.iter().map(|c| c.result().clone()).collect();
    assert_eq!(
        results,
        vec![
            Ok(4096),
            Err(IoError::Os(Errno::EIO)),
            Err(IoError::Nvme(nvme)),
            Err(IoError::Os(Errno::ENOSPC)),
            Ok(4096)
        ]
    );
    assert_eq!(completions[0].data(), &[0x42; 4096][..]);
    assert_eq!(engine.counts().failed, 3);
}

#[test]
fn short_transfer_keeps_the_bytes_that_arrived() {
    let (_file, device) = device();
    let plan = FaultPlan::new(1).with(FaultTarget::Offset(0), Fault::Short { done_bytes: 1000 });
    let mut engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
    let completions = run(&mut engine, reads(&[0]));
    assert_eq!(
        completions[0].result(),
        &Err(IoError::ShortTransfer {
            done_bytes: 1000,
            len_bytes: 4096
        })
    );
    assert_eq!(completions[0].data(), &[0x42; 1000][..]);
}

#[test]
fn transient_errors_reach_the_caller_without_a_retry_policy_and_not_with_one() {
    let (_file, device) = device();
    let plan = FaultPlan::new(1).with(
        FaultTarget::All,
        Fault::Transient {
            errno: Errno::EAGAIN,
            attempts: 2,
        },
    );
    let mut bare =
        FaultyEngine::new(SerialEngine::new(device.clone()).unwrap(), plan.clone()).unwrap();
    assert_eq!(
        run(&mut bare, reads(&[0]))[0].result(),
        &Err(IoError::Os(Errno::EAGAIN))
    );

    let faulty =
        FaultyEngine::new(SerialEngine::new(device.clone()).unwrap(), plan.clone()).unwrap();
    let mut retrying = Retrying::new(faulty, 4);
    let completions = run(&mut retrying, reads(&[0, 4096]));
    assert!(completions.iter().all(|c| c.result() == &Ok(4096)));
    assert_eq!(
        retrying.retried_count(),
        4,
        "two retries for each of two operations"
    );

    let faulty = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
    let mut impatient = Retrying::new(faulty, 1);
    assert_eq!(
        run(&mut impatient, reads(&[0]))[0].result(),
        &Err(IoError::Os(Errno::EAGAIN))
    );
}

#[test]
fn stall_completes_as_timed_out_by_its_deadline() {
    let (_file, device) = device();
    let timeout = Duration::from_millis(30);
    let plan = FaultPlan::new(1)
        .with(FaultTarget::Offset(0), Fault::Stall)
        .stall_timeout(timeout);
    let mut engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
    let started = Instant::now();
    let completions = run(&mut engine, reads(&[0, 4096]));
    assert_eq!(completions.len(), 2);
    assert_eq!(completions[0].result(), &Err(IoError::TimedOut { timeout }));
    assert!(!completions[0]
        .result()
        .as_ref()
        .unwrap_err()
        .is_device_answer());
    assert_eq!(completions[1].result(), &Ok(4096));
    assert!(
        started.elapsed() >= timeout,
        "a stall cannot end before its timeout"
    );
}

#[test]
fn non_blocking_reap_does_not_wait_for_a_stall() {
    let (_file, device) = device();
    let plan = FaultPlan::new(1)
        .with(FaultTarget::All, Fault::Stall)
        .stall_timeout(Duration::from_secs(3600));
    let mut engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
    engine.submit(&mut reads(&[0]));
    let mut completions = Vec::new();
    assert_eq!(engine.reap(&mut completions, Wait::Nothing), 0);
    assert_eq!(engine.pending_count(), 1);
}

#[test]
fn readiness_of_the_wrapper_covers_injected_and_inner_completions() {
    let (_file, device) = device();
    let plan = FaultPlan::new(1).with(FaultTarget::Offset(0), Fault::Fail(IoError::Os(Errno::EIO)));
    let mut engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
    assert!(!poll_readable(engine.readiness().as_fd(), 0));
    engine.submit(&mut reads(&[0]));
    assert!(
        poll_readable(engine.readiness().as_fd(), 0),
        "injected failure not signalled"
    );
    let mut completions = Vec::new();
    engine.reap(&mut completions, Wait::Nothing);
    assert!(!poll_readable(engine.readiness().as_fd(), 0));
    engine.submit(&mut reads(&[4096]));
    assert!(
        poll_readable(engine.readiness().as_fd(), 0),
        "inner engine's work not signalled"
    );
}
