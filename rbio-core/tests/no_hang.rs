//! No wait in rbio-core outlives its deadline, whatever the engine below does: a reap with a
//! deadline returns by it while an operation is stalled far longer, the streaming driver gives
//! up on an engine that never answers with `StreamError::Stalled` after its stall timeout
//! (and the retry policy passes both through), and dropping the stalled engine is immediate
//! and gives its buffers back. Each case runs under a watchdog thread that fails it loudly
//! instead of hanging the test run. (Issue #8.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{
    Buffer, BufferPool, Device, Engine, Fault, FaultPlan, FaultTarget, FaultyEngine, Op, OpSpec,
    Retrying, SerialEngine, Stream, StreamError, Wait,
};

/// Far above every bound below: only a hang reaches it.
const WATCHDOG: Duration = Duration::from_secs(20);
/// Longer than any test runs: a stall of this length is a device that never answers.
const FOREVER: Duration = Duration::from_secs(3600);

fn within<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    rbio_core::conformance::within(what, WATCHDOG, work)
}

/// A serial engine on a 64 KiB file whose every operation stalls for an hour.
fn silent_engine() -> (tempfile::NamedTempFile, FaultyEngine<SerialEngine>) {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(64 << 10).unwrap();
    let device = Arc::new(Device::open(file.path()).unwrap());
    let plan = FaultPlan::new(1)
        .with(FaultTarget::All, Fault::Stall)
        .stall_timeout(FOREVER);
    let engine = FaultyEngine::new(SerialEngine::new(device).unwrap(), plan).unwrap();
    (file, engine)
}

#[test]
fn reap_returns_by_its_deadline_while_an_operation_is_stalled() {
    within("reap with a deadline over a stalled operation", || {
        let (_file, faulty) = silent_engine();
        let mut engine = Retrying::new(faulty, 4);
        let buffer = Buffer::new_aligned(4096, 4096).unwrap();
        engine.submit(&mut vec![Op::read(0, 0, buffer)]);
        for wait in [Duration::ZERO, Duration::from_millis(50)] {
            let started = Instant::now();
            let reaped = engine.reap(&mut Vec::new(), Wait::Until(started + wait));
            let elapsed = started.elapsed();
            assert_eq!(reaped, 0);
            assert!(
                elapsed >= wait && elapsed < wait + Duration::from_secs(2),
                "{elapsed:?}"
            );
        }
        assert_eq!(engine.pending_count(), 1);
    });
}

#[test]
fn a_stream_over_an_engine_that_never_answers_stops_with_stalled() {
    within("a stream over a silent engine", || {
        let (_file, mut engine) = silent_engine();
        let pool = BufferPool::new(4096, 4, 4096).unwrap();
        let stall_timeout = Duration::from_millis(100);
        let specs = (0..16u64).map(|i| OpSpec::read(i, i * 4096, 4096));
        let started = Instant::now();
        let mut visited = 0;
        let error = Stream::new(&mut engine, &pool)
            .stall_timeout(stall_timeout)
            .run_reads(specs, |_| visited += 1)
            .unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(
            error,
            StreamError::Stalled {
                pending_count: 4,
                held_buffer_count: 0,
                unstarted_count: 12,
                waited: stall_timeout
            }
        );
        assert_eq!(visited, 0);
        assert!(
            elapsed < stall_timeout + Duration::from_secs(2),
            "{elapsed:?}"
        );
        // The stalled operations stay with the engine, buffers and all, until it goes.
        assert_eq!(pool.taken_count(), 4);
        let started = Instant::now();
        drop(engine);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            pool.taken_count(),
            0,
            "dropping the engine returns its buffers"
        );
    });
}
