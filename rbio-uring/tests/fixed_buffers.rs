//! Fixed buffers: the pool's arena is registered once; its buffers and buffers from anywhere
//! else can share one engine and one batch, and both read and write the right bytes; where
//! locked memory is too short to register the arena, the engine runs without fixed buffers
//! and says so.

mod support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use rbio_core::{Buffer, BufferPool, Engine, Errno, Op};
use rbio_uring::{RingFeatures, SetupWarning, UringEngine};
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

/// The user the refusal test runs as when started by root, who is not bound by
/// `RLIMIT_MEMLOCK` (`nobody`).
const UNPRIVILEGED_ID: u32 = 65534;
const CHILD_ENV: &str = "RBIO_TEST_MEMLOCK_CHILD";

/// Issue 12.3: registering an arena larger than `RLIMIT_MEMLOCK` fails with `ENOMEM` for a
/// user without `CAP_IPC_LOCK` (8 MiB here, see notes/machine-facts.md); the engine then runs
/// without fixed buffers and says so. The refusal is real: the test reruns itself in a child
/// process, as `nobody` when started by root, with an arena 1 MiB above the limit.
#[test]
fn an_arena_over_the_locked_memory_limit_runs_unfixed_and_says_so() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return refused_arena_in_child();
    }
    let name = "an_arena_over_the_locked_memory_limit_runs_unfixed_and_says_so";
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1");
    let root = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
    if root {
        command.uid(UNPRIVILEGED_ID).gid(UNPRIVILEGED_ID);
    }
    let output = command.output().expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("ran without fixed buffers"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The soft `RLIMIT_MEMLOCK` of this process, from `/proc/self/limits`.
fn memlock_limit_bytes() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn refused_arena_in_child() {
    let limit_bytes = memlock_limit_bytes()
        .expect("this test needs a finite RLIMIT_MEMLOCK (`ulimit -l`) to exceed");
    let buffer_count = limit_bytes / 4096 + 256;
    let pool = BufferPool::new(4096, buffer_count, 4096).unwrap();
    let image = pattern_image(1 << 20);
    let device = open(image.path(), false, false);
    let mut engine = UringEngine::builder(device)
        .window(8)
        .fixed_buffers(&pool)
        .build()
        .expect("the engine goes on without fixed buffers");
    let report = engine.setup_report().clone();
    assert!(
        !engine.features().contains(RingFeatures::FIXED_BUFFERS),
        "{report}"
    );
    assert!(!engine.capabilities().fixed_buffers);
    assert_eq!(report.fixed_buffer_count, 0);
    assert_eq!(
        report.warnings,
        vec![SetupWarning::FixedBuffersRefused {
            arena_bytes: buffer_count * 4096,
            errno: Errno(libc::ENOMEM),
        }],
        "{report}"
    );
    let ops = (0..16u64)
        .map(|i| Op::read(i, i * 4096, pool.take().unwrap()))
        .collect();
    for completion in run(&mut engine, ops) {
        assert_eq!(completion.result(), &Ok(4096));
        assert_eq!(
            completion.data()[0],
            pattern_byte(completion.info().offset_bytes)
        );
    }
    println!("ran without fixed buffers: {}", report.warnings[0]);
}
