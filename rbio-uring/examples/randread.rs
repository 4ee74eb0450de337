//! 4 KiB random reads through the io_uring engine for a fixed time, printing IOPS: the
//! side-by-side partner of `fio --ioengine=io_uring --rw=randread --bs=4k --iodepth=N`.
//!
//! `cargo run --release -p rbio-uring --example randread -- FILE WINDOW [fixed] [buffered]
//! [coop|plain] [sqes=N] [SECONDS]` (`coop`, `plain`: start the flag ladder there; `sqes=N`:
//! at most N SQEs per `io_uring_enter`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rbio_core::{Buffer, BufferPool, Completion, Device, Engine, Op, Wait};
use rbio_uring::{RingFlags, UringEngine};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: randread FILE WINDOW [fixed] [buffered] [SECONDS]";
    let path = args.first().expect(usage);
    let window: usize = args.get(1).expect(usage).parse().expect(usage);
    let fixed = args.iter().any(|a| a == "fixed");
    let direct = !args.iter().any(|a| a == "buffered");
    let seconds: u64 = args
        .iter()
        .filter_map(|a| a.parse().ok())
        .nth(1)
        .unwrap_or(10);
    let device = Arc::new(Device::options().direct(direct).open(path).expect("open"));
    let blocks = device.size_bytes() / 4096;
    let pool = BufferPool::new(4096, window, 4096).expect("pool");
    let ladder_start = if args.iter().any(|a| a == "plain") {
        2
    } else {
        usize::from(args.iter().any(|a| a == "coop"))
    };
    let ladder = RingFlags::LADDER[ladder_start..].to_vec();
    let sqes_per_enter = args
        .iter()
        .find_map(|a| a.strip_prefix("sqes=")?.parse().ok())
        .unwrap_or(usize::MAX);
    let mut builder = UringEngine::builder(device)
        .window(window)
        .flag_ladder(ladder)
        .sqes_per_enter(sqes_per_enter);
    if fixed {
        builder = builder.fixed_buffers(&pool);
    }
    let mut engine = builder.build().expect("engine");
    let mut buffers: Vec<Buffer> = std::iter::from_fn(|| pool.take()).collect();
    let (mut batch, mut completions) = (Vec::with_capacity(window), Vec::<Completion>::new());
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let (started, mut done) = (Instant::now(), 0u64);
    let end = started + Duration::from_secs(seconds);
    while Instant::now() < end {
        while let Some(buffer) = buffers.pop() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            batch.push(Op::read(done, (state % blocks) * 4096, buffer));
        }
        engine.submit(&mut batch);
        engine.reap(
            &mut completions,
            Wait::Until(Instant::now() + Duration::from_secs(10)),
        );
        for completion in completions.drain(..) {
            assert_eq!(completion.result(), &Ok(4096));
            buffers.push(completion.into_buffer().expect("buffer"));
            done += 1;
        }
    }
    let iops = done as f64 / started.elapsed().as_secs_f64();
    println!(
        "rbio-uring window={window} fixed={fixed} direct={direct} sqes/enter={sqes_per_enter}: \
         {iops:.0} IOPS ({})",
        engine.flags()
    );
}
