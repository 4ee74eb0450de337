//! Fixed buffers: the pool's arena is registered once; its buffers and buffers from anywhere
//! else can share one engine and one batch, and both read and write the right bytes.

mod support;

use rbio_core::{Buffer, BufferPool, Engine, Op};
use rbio_uring::UringEngine;
use support::{open, pattern_byte, pattern_image, run};

#[test]
fn registered_and_foreign_buffers_share_a_batch() {
    let image = pattern_image(4 << 20);
    let device = open(image.path(), true, false);
    let registered = BufferPool::new(8192, 64, 4096).unwrap();
    let foreign = BufferPool::new(8192, 64, 4096).unwrap();
    let mut engine = UringEngine::builder(device)
        .window(16)
        .fixed_buffers(&registered)
        .build()
        .unwrap();
    assert!(engine.capabilities().fixed_buffers);
    assert_eq!(engine.setup_report().fixed_buffer_count, 1);
    let ops = (0..128u64)
        .map(|i| {
            let pool = if i % 2 == 0 { &registered } else { &foreign };
            Op::read(i, i * 8192, pool.take().unwrap())
        })
        .collect();
    for completion in run(&mut engine, ops) {
        let offset_bytes = completion.info().offset_bytes;
        assert_eq!(completion.result(), &Ok(8192));
        assert!(completion
            .data()
            .iter()
            .enumerate()
            .all(|(i, &byte)| byte == pattern_byte(offset_bytes + i as u64)));
    }
    assert_eq!(
        registered.taken_count(),
        0,
        "every buffer came back to its pool"
    );
    assert_eq!(foreign.taken_count(), 0);
}

#[test]
fn fixed_writes_reach_the_file_without_a_registered_file() {
    let image = pattern_image(1 << 20);
    let device = open(image.path(), true, true);
    let pool = BufferPool::new(4096, 8, 4096).unwrap();
    let mut engine = UringEngine::builder(device)
        .fixed_buffers(&pool)
        .register_file(false)
        .build()
        .unwrap();
    assert!(!engine.setup_report().fixed_file);
    let ops = (0..8u64)
        .map(|i| {
            let mut buffer = pool.take().unwrap();
            buffer.as_mut_slice().fill(0xa0 + i as u8);
            Op::write(i, i * 4096, buffer)
        })
        .collect();
    assert!(run(&mut engine, ops)
        .iter()
        .all(|c| c.result() == &Ok(4096)));
    let bytes = std::fs::read(image.path()).unwrap();
    for i in 0..8usize {
        assert!(bytes[i * 4096..(i + 1) * 4096]
            .iter()
            .all(|&b| b == 0xa0 + i as u8));
    }
}

#[test]
fn the_engine_keeps_the_registered_arena_alive() {
    let image = pattern_image(1 << 20);
    let device = open(image.path(), true, false);
    let pool = BufferPool::new(4096, 4, 4096).unwrap();
    let buffer = pool.take().unwrap();
    let mut engine = UringEngine::builder(device)
        .fixed_buffers(&pool)
        .build()
        .unwrap();
    drop(pool);
    let completions = run(&mut engine, vec![Op::read(0, 4096, buffer)]);
    assert_eq!(completions[0].data()[0], pattern_byte(4096));
    let unaligned_tail = Buffer::new_aligned(4096, 4096).unwrap();
    assert_eq!(
        run(&mut engine, vec![Op::read(1, 0, unaligned_tail)])[0].result(),
        &Ok(4096)
    );
}
