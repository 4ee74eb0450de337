//! Batches much larger than the ring complete with every result and every byte correct: the
//! engine queues what does not fit the window, refills it as completions arrive, and submits
//! each batch with one `io_uring_enter`.

mod support;

use rbio_core::{Buffer, BufferPool, Engine, Op, Wait};
use rbio_uring::UringEngine;
use support::{open, pattern_byte, pattern_image, run};

const IMAGE_BYTES: u64 = 8 << 20;

fn check_reads(completions: &[rbio_core::Completion]) {
    for completion in completions {
        let offset_bytes = completion.info().offset_bytes;
        assert_eq!(completion.result(), &Ok(4096), "{}", completion.info());
        let wrong = completion
            .data()
            .iter()
            .enumerate()
            .position(|(i, &byte)| byte != pattern_byte(offset_bytes + i as u64));
        assert_eq!(wrong, None, "{}: wrong byte", completion.info());
    }
}

fn batch_sixteen_times_the_ring(direct: bool, fixed: bool) {
    let image = pattern_image(IMAGE_BYTES);
    let device = open(image.path(), direct, false);
    for window in [1usize, 8, 32] {
        let probe = UringEngine::builder(device.clone())
            .window(window)
            .build()
            .unwrap();
        let sq_entries = probe.setup_report().sq_entries as usize;
        drop(probe);
        let op_count = 16 * sq_entries;
        let pool = BufferPool::new(4096, op_count, 4096).unwrap();
        let mut builder = UringEngine::builder(device.clone()).window(window);
        if fixed {
            builder = builder.fixed_buffers(&pool);
        }
        let mut engine = builder.build().unwrap();
        let ops: Vec<Op> = (0..op_count as u64)
            .map(|i| Op::read(i, (i * 7919 % 2048) * 4096, pool.take().unwrap()))
            .collect();
        let completions = run(&mut engine, ops);
        assert_eq!(completions.len(), op_count, "window {window}");
        check_reads(&completions);
        assert_eq!(engine.pending_count(), 0);
    }
}

#[test]
fn buffered_batch_sixteen_times_the_ring_completes() {
    batch_sixteen_times_the_ring(false, false);
}

#[test]
fn direct_batch_sixteen_times_the_ring_completes() {
    batch_sixteen_times_the_ring(true, false);
}

#[test]
fn direct_fixed_batch_sixteen_times_the_ring_completes() {
    batch_sixteen_times_the_ring(true, true);
}

#[test]
fn a_batch_that_fits_the_window_takes_one_enter() {
    let image = pattern_image(IMAGE_BYTES);
    let device = open(image.path(), true, false);
    let mut engine = UringEngine::builder(device).window(64).build().unwrap();
    let mut ops: Vec<Op> = (0..64u64)
        .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
        .collect();
    let before = engine.stats();
    engine.submit(&mut ops);
    let after = engine.stats();
    assert_eq!(after.sqe_count - before.sqe_count, 64);
    assert_eq!(after.enter_count - before.enter_count, 1, "{after:?}");
    let mut completions = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while completions.len() < 64 {
        engine.reap(&mut completions, Wait::Until(deadline));
    }
    check_reads(&completions);
}

#[test]
fn writes_and_flush_reach_the_file() {
    let image = pattern_image(1 << 20);
    let device = open(image.path(), true, true);
    let pool = BufferPool::new(4096, 64, 4096).unwrap();
    let mut engine = UringEngine::builder(device)
        .window(4)
        .fixed_buffers(&pool)
        .build()
        .unwrap();
    let mut ops: Vec<Op> = (0..64u64)
        .map(|i| {
            let mut buffer = pool.take().unwrap();
            buffer.as_mut_slice().fill(i as u8);
            Op::write(i, i * 4096, buffer)
        })
        .collect();
    ops.push(Op::flush(64));
    let completions = run(&mut engine, ops);
    assert!(completions[..64].iter().all(|c| c.result() == &Ok(4096)));
    assert_eq!(completions[64].result(), &Ok(0));
    let bytes = std::fs::read(image.path()).unwrap();
    for i in 0..64usize {
        assert!(
            bytes[i * 4096..(i + 1) * 4096]
                .iter()
                .all(|&b| b == i as u8),
            "block {i}"
        );
    }
}

#[test]
fn a_file_that_shrank_gives_short_transfers_like_the_serial_engine() {
    let image = pattern_image(10_000);
    let device = open(image.path(), false, false);
    // The device recorded 10 000 bytes at open, so `Device::check` admits reads up to there;
    // the kernel sees a 9 500-byte file: the first piece moves 500 bytes, the continuation 0.
    image.as_file().set_len(9_500).unwrap();
    let mut engine = UringEngine::builder(device.clone()).build().unwrap();
    let mut serial = rbio_core::SerialEngine::new(device).unwrap();
    let ops = || {
        vec![
            Op::read(0, 9000, Buffer::new_aligned(1000, 512).unwrap()),
            Op::read(1, 0, Buffer::new_aligned(0, 512).unwrap()),
            Op::read(2, 9600, Buffer::new_aligned(100, 512).unwrap()),
        ]
    };
    let uring = run(&mut engine, ops());
    let reference = run(&mut serial, ops());
    assert_eq!(
        uring[0].result(),
        &Err(rbio_core::IoError::ShortTransfer {
            done_bytes: 500,
            len_bytes: 1000
        })
    );
    assert!(engine.stats().continuation_count >= 1);
    for (got, want) in uring.iter().zip(&reference) {
        assert_eq!(got.result(), want.result(), "{}", got.info());
        assert_eq!(got.data(), want.data());
    }
}

#[test]
fn a_limit_on_sqes_per_enter_splits_the_submission() {
    let image = pattern_image(IMAGE_BYTES);
    let device = open(image.path(), true, false);
    let mut engine = UringEngine::builder(device)
        .window(64)
        .sqes_per_enter(4)
        .build()
        .unwrap();
    let ops: Vec<Op> = (0..64u64)
        .map(|i| Op::read(i, i * 4096, Buffer::new_aligned(4096, 4096).unwrap()))
        .collect();
    let mut batch = ops;
    let before = engine.stats();
    engine.submit(&mut batch);
    let after = engine.stats();
    assert_eq!(after.enter_count - before.enter_count, 16, "{after:?}");
    let mut completions = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while completions.len() < 64 {
        engine.reap(&mut completions, Wait::Until(deadline));
    }
    check_reads(&completions);
}

/// Issue 16.2: in a steady stream, the SQEs a reap refills and the caller's next batch reach
/// the kernel with the next wait, in the same `io_uring_enter`, so a refill cycle (one submit,
/// one reap) costs about one enter, not a submit and then a wait.
#[test]
fn a_steady_stream_enters_the_kernel_about_once_per_cycle() {
    let image = pattern_image(IMAGE_BYTES);
    let device = open(image.path(), true, false);
    let window = 32;
    let pool = BufferPool::new(4096, window, 4096).unwrap();
    let mut engine = UringEngine::builder(device)
        .window(window)
        .fixed_buffers(&pool)
        .build()
        .unwrap();
    let block_count = IMAGE_BYTES / 4096;
    let (mut submitted, mut done, mut cycle_count) = (0u64, 0u64, 0u64);
    let mut buffers: Vec<Buffer> = std::iter::from_fn(|| pool.take()).collect();
    let mut completions = Vec::new();
    let before = engine.stats();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while done < 2048 {
        let mut batch: Vec<Op> = buffers
            .drain(..)
            .map(|buffer| {
                submitted += 1;
                Op::read(submitted, (submitted * 7 % block_count) * 4096, buffer)
            })
            .collect();
        engine.submit(&mut batch);
        engine.reap(&mut completions, Wait::Until(deadline));
        cycle_count += 1;
        for completion in completions.drain(..) {
            assert_eq!(completion.result(), &Ok(4096), "{}", completion.info());
            buffers.push(completion.into_buffer().unwrap());
            done += 1;
        }
    }
    let enter_count = engine.stats().enter_count - before.enter_count;
    eprintln!("{enter_count} enters in {cycle_count} cycles");
    assert!(
        enter_count * 4 <= cycle_count * 5,
        "{enter_count} enters in {cycle_count} cycles"
    );
}
