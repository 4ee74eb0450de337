//! Ring set-up tries the fast flag sets first and falls back, recording each refusal with
//! its errno; the engine reports the flags it runs with, and works with each of them.

mod support;

use std::sync::Arc;

use rbio_core::{Buffer, Device, Errno, Op};
use rbio_uring::{RingFlags, SetupError, UringEngine};
use support::{open, pattern_byte, pattern_image, run};

fn reads_work(engine: &mut UringEngine) {
    let ops = (0..32u64)
        .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
        .collect();
    for completion in run(engine, ops) {
        assert_eq!(completion.result(), &Ok(4096));
        assert_eq!(
            completion.data()[1],
            pattern_byte(completion.info().offset_bytes + 1)
        );
    }
}

fn device() -> (tempfile::NamedTempFile, Arc<Device>) {
    let image = pattern_image(1 << 20);
    let device = open(image.path(), true, false);
    (image, device)
}

#[test]
fn the_first_accepted_set_is_reported_and_used() {
    let (_image, device) = device();
    let mut engine = UringEngine::builder(device).build().unwrap();
    let report = engine.setup_report().clone();
    eprintln!("{report}");
    let accepted = report.attempts.last().unwrap();
    assert_eq!(accepted.refused, None);
    assert_eq!(accepted.flags, engine.flags());
    assert!(engine.flags().contains(RingFlags::SUBMIT_ALL));
    assert!(report.cq_entries >= 2 * 64, "{report}");
    // Every attempt before the accepted one was refused, in ladder order.
    for (attempt, set) in report.attempts.iter().zip(RingFlags::LADDER) {
        assert!(attempt.flags.contains(set));
    }
    reads_work(&mut engine);
}

#[test]
fn a_refused_set_is_recorded_with_its_errno_and_the_next_one_runs() {
    let (_image, device) = device();
    // DEFER_TASKRUN without SINGLE_ISSUER is invalid on every kernel that knows it.
    let ladder = vec![RingFlags::DEFER_TASKRUN, RingFlags::COOP_TASKRUN];
    let mut engine = UringEngine::builder(device)
        .flag_ladder(ladder)
        .build()
        .unwrap();
    let report = engine.setup_report().clone();
    assert_eq!(report.attempts.len(), 2, "{report}");
    assert_eq!(report.attempts[0].refused, Some(Errno::EINVAL), "{report}");
    assert!(report.attempts[0].flags.contains(RingFlags::DEFER_TASKRUN));
    assert_eq!(report.refusals().count(), 1);
    assert!(engine
        .flags()
        .contains(RingFlags::COOP_TASKRUN.union(RingFlags::TASKRUN_FLAG)));
    assert!(report.to_string().contains("refused"), "{report}");
    reads_work(&mut engine);
}

#[test]
fn sqpoll_falls_back_past_the_task_run_sets() {
    let (_image, device) = device();
    let mut engine = UringEngine::builder(device).sqpoll(true).build().unwrap();
    let report = engine.setup_report().clone();
    eprintln!("{report}");
    assert!(engine.flags().contains(RingFlags::SQPOLL), "{report}");
    for refusal in report.refusals() {
        assert!(refusal.flags.contains(RingFlags::SQPOLL));
        assert!(refusal.refused.is_some());
    }
    reads_work(&mut engine);
}

#[test]
fn every_set_refused_is_a_typed_error_listing_each_attempt() {
    let (_image, device) = device();
    let error = UringEngine::builder(device)
        .flag_ladder(vec![RingFlags::DEFER_TASKRUN])
        .build()
        .unwrap_err();
    let SetupError::RingRefused { attempts } = &error else {
        panic!("expected RingRefused, got {error}");
    };
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].refused, Some(Errno::EINVAL));
    let message = error.to_string();
    assert!(
        message.starts_with("io_uring_setup refused every flag set; "),
        "{message}"
    );
    assert!(message.contains("kernel.io_uring_disabled"), "{message}");
}

#[test]
fn window_out_of_range_is_refused() {
    let (_image, device) = device();
    let error = UringEngine::builder(device.clone())
        .window(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(error, SetupError::Window { window: 0, .. }),
        "{error}"
    );
    let error = UringEngine::builder(device)
        .window(1 << 20)
        .build()
        .unwrap_err();
    assert_eq!(error.to_string(), "window 1048576 is outside 1..=32768");
}
