//! No wait outlives its deadline on a device that never answers (a fresh `/dev/ptmx` master,
//! whose reads block until canceled) when the engine has no operation timeout: the streaming
//! driver's reaps return by their deadlines and it stops with `StreamError::Stalled`, and
//! dropping the engine then cancels the reads within `DROP_DRAIN_TIMEOUT` and gives every
//! buffer back. Under a watchdog, so a hang fails loudly. (Issue #8.) It runs through every
//! fallback of `support::FALLBACKS` (issue 12: without `EXT_ARG`, timeout SQEs bound the waits).
//!
//! Already covered elsewhere: operation timeouts and a reap's own deadline (`deadlines.rs`),
//! drop with reads stuck or in flight and forgetting an engine (`drop.rs`, `safety.rs`),
//! IOPOLL without poll queues (`iopoll.rs`), an engine moved across threads (`threads.rs`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{BufferPool, Device, OpSpec, Stream, StreamError};
use rbio_uring::{UringEngine, DROP_DRAIN_TIMEOUT};
use support::{within, FALLBACKS};

#[test]
fn a_stream_over_a_silent_device_stops_by_its_stall_timeout_and_drop_returns() {
    for (fallback, masked) in FALLBACKS {
        let pool = BufferPool::new(4096, 8, 4096).unwrap();
        let stream_pool = pool.clone();
        let stall_timeout = Duration::from_millis(200);
        let (error, stream_elapsed, drop_elapsed) = within(
            &format!("a stream over a silent device, {fallback}"),
            Duration::from_secs(20),
            move || {
                let device = Arc::new(Device::open("/dev/ptmx").expect("open /dev/ptmx"));
                let mut engine = UringEngine::builder(device)
                    .without_features(masked)
                    .window(4)
                    .fixed_buffers(&stream_pool)
                    .no_op_timeout()
                    .build()
                    .unwrap();
                let specs = (0..32u64).map(|i| OpSpec::read(i, 0, 4096));
                let started = Instant::now();
                let error = Stream::new(&mut engine, &stream_pool)
                    .stall_timeout(stall_timeout)
                    .run_reads(specs, |_| {})
                    .unwrap_err();
                let stream_elapsed = started.elapsed();
                let dropped = Instant::now();
                drop(engine); // on the thread that used it: the ring is canceled, not leaked
                (error, stream_elapsed, dropped.elapsed())
            },
        );
        assert_eq!(
            error,
            StreamError::Stalled {
                pending_count: 8,
                waited: stall_timeout
            }
        );
        assert!(
            stream_elapsed < stall_timeout + Duration::from_secs(2),
            "{fallback}: {stream_elapsed:?}"
        );
        assert!(
            drop_elapsed < DROP_DRAIN_TIMEOUT,
            "{fallback}: {drop_elapsed:?}"
        );
        assert_eq!(
            pool.taken_count(),
            0,
            "canceled reads give every buffer back"
        );
    }
}
