//! Errors stay with their own operation. An EIO injected by `FaultyEngine` into one operation
//! of a batch, a short transfer injected into another that reaches the workers, and a real
//! end-of-file inside a worker's range each fail only their operation: the rest of the range
//! and of the batch complete with the right bytes. Transient faults are absorbed by
//! `Retrying` above the engine.

mod common;

use std::sync::Arc;

use rbio_core::{
    Buffer, Device, Engine, Errno, Fault, FaultPlan, FaultTarget, FaultyEngine, IoError, Op,
    Retrying,
};
use rbio_posix::PosixEngine;

fn read_batch(offsets: impl IntoIterator<Item = u64>) -> Vec<Op> {
    offsets
        .into_iter()
        .zip(0u64..)
        .map(|(block, tag)| Op::read(tag, block * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
        .collect()
}

#[test]
fn an_injected_eio_leaves_the_rest_of_the_batch_correct() {
    let (_file, device) = common::image(12 * 4096);
    let posix = PosixEngine::builder(device).workers(3).build().unwrap();
    let plan = FaultPlan::new(7)
        .with(
            FaultTarget::Offset(5 * 4096),
            Fault::Fail(IoError::Os(Errno::EIO)),
        )
        .with(
            FaultTarget::Offset(2 * 4096),
            Fault::Short { done_bytes: 100 },
        );
    let mut engine = FaultyEngine::new(posix, plan).unwrap();
    engine.submit(&mut read_batch(0..12));
    let completions = common::reap_all(&mut engine);
    assert_eq!(completions.len(), 12);
    for completion in &completions {
        match completion.tag() {
            5 => assert_eq!(completion.result(), &Err(IoError::Os(Errno::EIO))),
            2 => {
                assert_eq!(
                    completion.result(),
                    &Err(IoError::ShortTransfer {
                        done_bytes: 100,
                        len_bytes: 4096
                    })
                );
                let expected: Vec<u8> = (2 * 4096..2 * 4096 + 100)
                    .map(common::pattern_byte)
                    .collect();
                assert_eq!(completion.data(), &expected[..]);
            }
            tag => assert!(
                common::holds_pattern(completion),
                "tag {tag}: {completion:?}"
            ),
        }
    }
    assert_eq!(engine.counts().failed, 1);
    assert_eq!(engine.counts().shortened, 1);
}

#[test]
fn a_device_error_inside_a_range_fails_only_its_operation() {
    let (file, _) = common::image(12 * 4096);
    let device = Arc::new(Device::open(file.path()).unwrap());
    // The device was measured at 12 blocks; now the file ends at 10, so block 11 passes the
    // engine's range check and fails in the kernel, in the middle of worker 1's range 4..8.
    file.as_file().set_len(10 * 4096).unwrap();
    let mut engine = PosixEngine::builder(device).workers(3).build().unwrap();
    let offsets = [0, 1, 2, 3, 4, 11, 5, 6, 7, 8, 9, 0];
    engine.submit(&mut read_batch(offsets));
    let completions = common::reap_all(&mut engine);
    assert_eq!(completions.len(), 12);
    for completion in &completions {
        if completion.tag() == 5 {
            assert_eq!(
                completion.result(),
                &Err(IoError::ShortTransfer {
                    done_bytes: 0,
                    len_bytes: 4096
                })
            );
        } else {
            assert!(common::holds_pattern(completion), "{completion:?}");
        }
    }
    let ops: Vec<u64> = engine.worker_stats().iter().map(|w| w.op_count).collect();
    assert_eq!(ops, [4, 4, 4]);
}

#[test]
fn transient_faults_are_absorbed_by_retrying() {
    let (_file, device) = common::image(32 * 4096);
    let posix = PosixEngine::builder(device).workers(4).build().unwrap();
    let plan = FaultPlan::new(11).with(
        FaultTarget::Share {
            per_million: 300_000,
        },
        Fault::Transient {
            errno: Errno::EAGAIN,
            attempts: 2,
        },
    );
    let faulty = FaultyEngine::new(posix, plan).unwrap();
    let mut engine = Retrying::new(faulty, 4);
    engine.submit(&mut read_batch(0..32));
    let completions = common::reap_all(&mut engine);
    assert_eq!(completions.len(), 32);
    assert!(completions.iter().all(common::holds_pattern));
    assert!(engine.retried_count() > 0, "the plan picked no operation");
    assert_eq!(engine.retried_count(), engine.inner().counts().transient);
}
