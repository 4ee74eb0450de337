//! The readiness fd works with `polling`: one poller waits on two engines over two files and
//! wakes for the one with completions, and only while it has them.

mod common;

use std::time::Duration;

use polling::{Event, Events, Poller};
use rbio_core::{Buffer, Engine, Op, Wait};
use rbio_posix::PosixEngine;

fn read_batch(count: u64) -> Vec<Op> {
    (0..count)
        .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
        .collect()
}

/// Waits for the poller's next events and returns their keys, sorted.
fn wait_keys(poller: &Poller, events: &mut Events) -> Vec<usize> {
    events.clear();
    poller
        .wait(events, Some(Duration::from_secs(30)))
        .expect("poller wait");
    let mut keys: Vec<usize> = events.iter().map(|event| event.key).collect();
    keys.sort_unstable();
    keys
}

#[test]
fn one_poller_waits_on_two_engines() {
    let (_a_file, a_device) = common::image(8 * 4096);
    let (_b_file, b_device) = common::image(8 * 4096);
    let mut a = PosixEngine::builder(a_device).workers(2).build().unwrap();
    let mut b = PosixEngine::builder(b_device).workers(3).build().unwrap();
    let poller = Poller::new().unwrap();
    // SAFETY: both fds stay open until they are deleted from the poller at the end of this
    // test, before the engines that own them are dropped.
    #[allow(unsafe_code)]
    unsafe {
        poller.add(&a.readiness(), Event::readable(0)).unwrap();
        poller.add(&b.readiness(), Event::readable(1)).unwrap();
    }
    let mut events = Events::new();

    b.submit(&mut read_batch(8));
    assert_eq!(wait_keys(&poller, &mut events), [1]);
    let mut completions = common::reap_all(&mut b);
    assert!(completions.iter().all(common::holds_pattern));
    assert!(!rbio_core::poll_readable(b.readiness(), 0), "b is drained");

    a.submit(&mut read_batch(5));
    poller.modify(a.readiness(), Event::readable(0)).unwrap();
    poller.modify(b.readiness(), Event::readable(1)).unwrap();
    assert_eq!(wait_keys(&poller, &mut events), [0]);
    completions = common::reap_all(&mut a);
    assert_eq!(completions.len(), 5);
    assert!(completions.iter().all(common::holds_pattern));

    // Both at once: once each fd is readable, one wait reports both, and each reap drains
    // its own engine.
    a.submit(&mut read_batch(1));
    b.submit(&mut read_batch(1));
    assert!(rbio_core::poll_readable(a.readiness(), 30_000));
    assert!(rbio_core::poll_readable(b.readiness(), 30_000));
    poller.modify(a.readiness(), Event::readable(0)).unwrap();
    poller.modify(b.readiness(), Event::readable(1)).unwrap();
    assert_eq!(wait_keys(&poller, &mut events), [0, 1]);
    for engine in [&mut a, &mut b] {
        let mut one = Vec::new();
        assert_eq!(engine.reap(&mut one, Wait::Nothing), 1);
        assert!(!rbio_core::poll_readable(engine.readiness(), 0));
    }

    poller.delete(a.readiness()).unwrap();
    poller.delete(b.readiness()).unwrap();
}

/// Regression (the CI run of the several-issues merge): a completion announced while a reap
/// was clearing the fd left the fd cleared and its "signalled" mark set, so no later
/// completion made it readable again and a caller waiting on the fd waited forever. Many
/// rounds of completions racing reaps that only run when the fd says so must all finish.
#[test]
fn completions_racing_a_reap_never_leave_the_fd_silent() {
    let (_file, device) = common::image(8 * 4096);
    for workers in [1, 2, 4] {
        let mut engine = PosixEngine::builder(device.clone())
            .workers(workers)
            .build()
            .unwrap();
        for round in 0..2000 {
            engine.submit(&mut read_batch(8));
            let mut completions = Vec::new();
            while completions.len() < 8 {
                assert!(
                    rbio_core::poll_readable(engine.readiness(), 10_000),
                    "{workers} workers, round {round}: fd silent with {} of 8 pending",
                    8 - completions.len()
                );
                engine.reap(&mut completions, Wait::Nothing);
            }
        }
    }
}
