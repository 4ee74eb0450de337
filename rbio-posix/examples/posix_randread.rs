//! 4 KiB random reads through the streaming driver for a fixed time, printed as IOPS: the
//! side-by-side counterpart of `fio --ioengine=psync --rw=randread --bs=4k --numjobs=N`, run
//! on the same file in alternation with it (the criterion benchmark is in `benches/`).
//!
//! `cargo run --release -p rbio-posix --example posix_randread -- FILE ENGINE WORKERS SECONDS [buffered]`
//! where ENGINE is `posix` (window 4 × WORKERS) or `serial` (window 16).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{BufferPool, Device, Engine, OpSpec, SerialEngine, Stream};
use rbio_posix::PosixEngine;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: posix_randread FILE posix|serial WORKERS SECONDS [buffered]";
    assert!(args.len() >= 4, "{usage}");
    let worker_count: usize = args[2].parse().expect(usage);
    let seconds: f64 = args[3].parse().expect(usage);
    let direct = args.get(4).map(String::as_str) != Some("buffered");
    let device = Device::options()
        .direct(direct)
        .open(&args[0])
        .expect("open the file");
    let device = Arc::new(device);
    let (mut engine, window): (Box<dyn Engine>, usize) = match args[1].as_str() {
        "serial" => (Box::new(SerialEngine::new(device.clone()).unwrap()), 16),
        "posix" => {
            let engine = PosixEngine::builder(device.clone())
                .workers(worker_count)
                .build()
                .expect("posix engine");
            (Box::new(engine), 4 * worker_count)
        }
        other => panic!("unknown engine {other}; {usage}"),
    };
    let pool = BufferPool::new(4096, window, 4096).expect("pool");
    let blocks = device.size_bytes() / 4096;
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut next_offset = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % blocks) * 4096
    };
    let run_for = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut op_count = 0u64;
    while started.elapsed() < run_for {
        let specs = (0..8192u64).map(|tag| OpSpec::read(tag, next_offset(), 4096));
        let stats = Stream::new(&mut engine, &pool)
            .window(window)
            .run_reads(specs, |completion| {
                assert_eq!(completion.result(), &Ok(4096), "{:?}", completion.info());
            })
            .expect("stream");
        op_count += stats.op_count;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{} workers={worker_count} window={window} {}: {:.0} IOPS",
        args[1],
        if direct { "direct" } else { "buffered" },
        op_count as f64 / elapsed
    );
}
