//! The readiness fd (the ring's registered eventfd) wakes a `polling::Poller` that drives two
//! engines from one thread, under every task-run mode, and is not readable while nothing is
//! reapable.
#![allow(unsafe_code)] // polling 3 makes registering an fd unsafe: the caller promises to delete it first.

mod support;

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use polling::{Event, Events, Poller};
use rbio_core::{poll_readable, Buffer, Engine, Op, Wait};
use rbio_uring::{RingFlags, UringEngine};
use support::{open, pattern_byte, pattern_image};

const OPS_PER_ENGINE: usize = 300;

fn two_engines_one_poller(ladder: Vec<RingFlags>) {
    let images: Vec<_> = (0..2).map(|_| pattern_image(2 << 20)).collect();
    let mut engines: Vec<UringEngine> = images
        .iter()
        .map(|image| {
            UringEngine::builder(open(image.path(), true, false))
                .window(16)
                .flag_ladder(ladder.clone())
                .build()
                .unwrap()
        })
        .collect();
    let poller = Poller::new().unwrap();
    for (key, engine) in engines.iter().enumerate() {
        // SAFETY: each fd is deleted from the poller below, before its engine is dropped.
        unsafe {
            poller
                .add(engine.readiness().as_raw_fd(), Event::readable(key))
                .unwrap()
        };
    }
    for engine in &mut engines {
        assert!(
            !poll_readable(engine.readiness(), 0),
            "readable with nothing submitted"
        );
        let mut ops: Vec<Op> = (0..OPS_PER_ENGINE as u64)
            .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
            .collect();
        engine.submit(&mut ops);
    }
    let mut done = [0usize; 2];
    let mut events = Events::new();
    while done.iter().sum::<usize>() < 2 * OPS_PER_ENGINE {
        events.clear();
        let woken = poller
            .wait(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(
            woken > 0,
            "no readiness with {done:?} of {OPS_PER_ENGINE} each done"
        );
        for event in events.iter() {
            let mut completions = Vec::new();
            engines[event.key].reap(&mut completions, Wait::Nothing);
            for completion in &completions {
                let offset_bytes = completion.info().offset_bytes;
                assert_eq!(completion.data()[7], pattern_byte(offset_bytes + 7));
            }
            done[event.key] += completions.len();
            poller
                .modify(engines[event.key].readiness(), Event::readable(event.key))
                .unwrap();
        }
    }
    assert_eq!(done, [OPS_PER_ENGINE; 2]);
    for engine in &engines {
        assert_eq!(engine.pending_count(), 0);
        assert!(
            !poll_readable(engine.readiness().as_fd(), 0),
            "readable after the last reap"
        );
        poller.delete(engine.readiness()).unwrap();
    }
}

#[test]
fn poller_drives_two_engines_with_deferred_task_run() {
    two_engines_one_poller(vec![RingFlags::LADDER[0]]);
}

#[test]
fn poller_drives_two_engines_with_cooperative_task_run() {
    two_engines_one_poller(vec![RingFlags::LADDER[1]]);
}

#[test]
fn poller_drives_two_engines_on_a_plain_ring() {
    two_engines_one_poller(vec![RingFlags::NONE]);
}

#[test]
fn refused_operations_make_the_fd_readable() {
    let image = pattern_image(1 << 20);
    let mut engine = UringEngine::builder(open(image.path(), true, false))
        .build()
        .unwrap();
    engine.submit(&mut vec![Op::read(
        0,
        1 << 30,
        Buffer::new_aligned(4096, 4096).unwrap(),
    )]);
    assert!(poll_readable(engine.readiness(), 0));
    assert_eq!(engine.reap(&mut Vec::new(), Wait::Nothing), 1);
    assert!(!poll_readable(engine.readiness(), 0));
}

#[test]
fn readiness_asked_for_after_submission_still_wakes_the_caller() {
    let image = pattern_image(1 << 20);
    let mut engine = UringEngine::builder(open(image.path(), true, false))
        .build()
        .unwrap();
    let mut ops: Vec<Op> = (0..16u64)
        .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
        .collect();
    engine.submit(&mut ops);
    let mut completions = Vec::new();
    while completions.len() < 16 {
        assert!(
            poll_readable(engine.readiness(), 10_000),
            "not readable with {} of 16 reads pending",
            16 - completions.len()
        );
        engine.reap(&mut completions, Wait::Nothing);
    }
    assert!(!poll_readable(engine.readiness(), 0));
}
