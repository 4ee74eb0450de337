//! One thread drives several engines (several devices) through `polling`, woken by their
//! readiness fds.
#![allow(unsafe_code)] // polling 3 makes registering an fd unsafe: the caller promises to delete it first.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use polling::{Event, Events, Poller};
use rbio_core::{Buffer, Device, Engine, Op, SerialEngine, Wait};

#[test]
fn one_poller_drives_two_engines_to_completion() {
    let files: Vec<tempfile::NamedTempFile> = (0..2)
        .map(|_| tempfile::NamedTempFile::new().unwrap())
        .collect();
    for (index, file) in files.iter().enumerate() {
        std::fs::write(file.path(), vec![index as u8 + 1; 1 << 20]).unwrap();
    }
    let mut engines: Vec<SerialEngine> = files
        .iter()
        .map(|file| SerialEngine::new(Arc::new(Device::open(file.path()).unwrap())).unwrap())
        .collect();
    let poller = Poller::new().unwrap();
    for (key, engine) in engines.iter().enumerate() {
        // SAFETY: each fd is removed from the poller below, before its engine is dropped.
        unsafe {
            poller
                .add(engine.readiness().as_raw_fd(), Event::readable(key))
                .unwrap()
        };
    }
    for engine in &mut engines {
        let mut ops: Vec<Op> = (0..100u64)
            .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
            .collect();
        engine.submit(&mut ops);
    }
    let mut done = [0usize; 2];
    let mut events = Events::new();
    while done.iter().sum::<usize>() < 200 {
        events.clear();
        let woken = poller
            .wait(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(
            woken > 0,
            "no engine signalled readiness with {done:?} of 100 each done"
        );
        for event in events.iter() {
            let mut completions = Vec::new();
            engines[event.key].reap(&mut completions, Wait::Nothing);
            for completion in &completions {
                assert!(completion.data().iter().all(|&b| b == event.key as u8 + 1));
            }
            done[event.key] += completions.len();
            poller
                .modify(engines[event.key].readiness(), Event::readable(event.key))
                .unwrap();
        }
    }
    assert_eq!(done, [100, 100]);
    for engine in &engines {
        poller.delete(engine.readiness()).unwrap();
    }
}
