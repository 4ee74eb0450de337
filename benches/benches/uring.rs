//! The io_uring engine against the serial engine in the same run.
//!
//! - `uring-direct-4k-randread`: 4 KiB random O_DIRECT reads of a 2 GiB file
//!   (`target/rbio-bench/data-2048m.bin`, shared with the POSIX benchmark) at windows 1, 8,
//!   32, 64, 128 and 256, with plain and with fixed (registered) buffers, and with fixed
//!   buffers handed to the kernel one SQE per `io_uring_enter` (`sqes_per_enter(1)`).
//! - `uring-hot-4k-randread`: the same reads, buffered, on a 256 MiB file in the page cache.
//! - `uring-null`: every operation an `IORING_OP_NOP` (`UringBuilder::null_io`): the engine's
//!   own cost per operation; the summary gives operations per second of the thread's CPU
//!   time (`/proc/thread-self/schedstat`, user and kernel), i.e. per core, beside the same
//!   loop over an engine that answers at once without the kernel (the loop's own share).
//!
//! Each group prints a summary table (ops/s, × serial) at the end. Compare with fio by hand
//! on the same file, same depth:
//! `fio --name=r --filename=target/rbio-bench/data-2048m.bin --ioengine=io_uring --direct=1
//! --rw=randread --bs=4k --iodepth=N [--fixedbufs] --time_based --runtime=10`.
#![allow(missing_docs)] // criterion_group! defines an undocumented public function.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use rbio_benches::{
    data_file, print_against_goal, print_summary, rate, Row, Workload, DIRECT_FILE_BYTES,
    HOT_FILE_BYTES, OP_COUNT,
};
use rbio_core::{
    Buffer, BufferPool, Capabilities, Completion, Device, Engine, Op, SerialEngine, Wait,
};
use rbio_uring::UringEngine;

/// Reads in the timed run behind each summary row.
const SUMMARY_OP_COUNT: usize = 64 * 1024;
const WINDOWS: [usize; 6] = [1, 8, 32, 64, 128, 256];
/// The serial engine performs one read at a time whatever the window; a larger window only
/// spares loop round trips.
const SERIAL_WINDOW: usize = 16;

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Keeps `buffers.len()` reads in flight until `op_count` have completed, reusing each
/// buffer as soon as its completion arrives; returns the count.
fn run(
    workload: &mut Workload,
    engine: &mut dyn Engine,
    buffers: &mut Vec<Buffer>,
    op_count: usize,
) -> u64 {
    let window = buffers.len();
    let mut batch: Vec<Op> = Vec::with_capacity(window);
    let mut completions: Vec<Completion> = Vec::with_capacity(window);
    let (mut submitted, mut done) = (0usize, 0usize);
    while done < op_count {
        while submitted < op_count {
            let Some(buffer) = buffers.pop() else { break };
            batch.push(Op::read(submitted as u64, workload.next_offset(), buffer));
            submitted += 1;
        }
        if !batch.is_empty() {
            engine.submit(&mut batch);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        assert!(
            engine.reap(&mut completions, Wait::Until(deadline)) > 0,
            "engine stalled"
        );
        for completion in completions.drain(..) {
            assert_eq!(completion.result(), &Ok(4096), "{}", completion.info());
            buffers.push(completion.into_buffer().expect("a completed read's buffer"));
            done += 1;
        }
    }
    done as u64
}

/// Criterion's samples, then a longer timed run for the summary row.
fn measure(
    workload: &mut Workload,
    group: &mut Group<'_>,
    name: &str,
    engine: &mut dyn Engine,
    pool: &BufferPool,
) -> Row {
    let mut buffers: Vec<Buffer> = std::iter::from_fn(|| pool.take()).collect();
    group.bench_function(name, |b| {
        b.iter(|| run(workload, engine, &mut buffers, OP_COUNT))
    });
    let started = Instant::now();
    let op_count = run(workload, engine, &mut buffers, SUMMARY_OP_COUNT);
    Row {
        name: name.to_owned(),
        ops_per_second: rate(op_count, started.elapsed()),
    }
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(OP_COUNT as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group
}

fn serial_row(group: &mut Group<'_>, workload: &mut Workload) -> Row {
    let mut serial = SerialEngine::new(workload.device.clone()).expect("serial engine");
    let pool = BufferPool::new(4096, SERIAL_WINDOW, 4096).expect("pool");
    measure(
        workload,
        group,
        &format!("serial window={SERIAL_WINDOW}"),
        &mut serial,
        &pool,
    )
}

/// The serial engine, then the io_uring engine at every window: plain buffers, fixed
/// buffers, and fixed buffers handed to the kernel one SQE per enter.
fn compare(c: &mut Criterion, name: &str, workload: &mut Workload, windows: &[usize]) -> Vec<Row> {
    let mut group = group(c, name);
    let mut rows = vec![serial_row(&mut group, workload)];
    for &window in windows {
        for (fixed, sqes_per_enter) in [(false, usize::MAX), (true, usize::MAX), (true, 1)] {
            let pool = BufferPool::new(4096, window, 4096).expect("pool");
            let mut builder = UringEngine::builder(workload.device.clone())
                .window(window)
                .sqes_per_enter(sqes_per_enter);
            if fixed {
                builder = builder.fixed_buffers(&pool);
            }
            let mut engine = builder.build().expect("io_uring engine");
            let label = format!(
                "uring window={window}{}{}",
                if fixed { " fixed" } else { "" },
                if sqes_per_enter == 1 { " 1/enter" } else { "" }
            );
            rows.push(measure(workload, &mut group, &label, &mut engine, &pool));
        }
    }
    group.finish();
    rows
}

fn uring_direct(c: &mut Criterion) {
    let path = data_file(DIRECT_FILE_BYTES);
    let device = Device::options()
        .direct(true)
        .open(&path)
        .expect("open the data file with O_DIRECT");
    let mut workload = Workload::new(device, DIRECT_FILE_BYTES);
    let rows = compare(c, "uring-direct-4k-randread", &mut workload, &WINDOWS);
    let title = format!(
        "4 KiB random reads, O_DIRECT, {} (2 GiB), {} cores",
        path.display(),
        cores()
    );
    print_summary(&title, &rows[0].name, rows[0].ops_per_second, &rows);
}

fn uring_hot(c: &mut Criterion) {
    let path = data_file(HOT_FILE_BYTES);
    let device = Device::open(&path).expect("open the data file");
    // One sequential pass puts the whole file in the page cache.
    std::fs::read(&path).expect("warm the page cache");
    let mut workload = Workload::new(device, HOT_FILE_BYTES);
    let rows = compare(c, "uring-hot-4k-randread", &mut workload, &[1, 64]);
    let title = format!(
        "4 KiB random reads, page cache hot, {} (256 MiB), {} cores",
        path.display(),
        cores()
    );
    print_summary(&title, &rows[0].name, rows[0].ops_per_second, &rows);
}

/// CPU time of the calling thread, user and kernel (`/proc/thread-self/schedstat`).
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("read schedstat");
    let nanos: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .expect("schedstat field");
    Duration::from_nanos(nanos)
}

/// Rounds of the per-core NOP measurement; configurations alternate within each round and
/// the summary gives each one's median.
const PER_CORE_ROUNDS: usize = 3;

/// Operations per second of this thread's CPU time for `op_count` operations through
/// `engine`.
fn per_core_rate(
    workload: &mut Workload,
    engine: &mut dyn Engine,
    buffers: &mut Vec<Buffer>,
    op_count: usize,
) -> f64 {
    let cpu_before = thread_cpu_time();
    let done = run(workload, engine, buffers, op_count);
    rate(done, thread_cpu_time() - cpu_before)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn uring_null(c: &mut Criterion) {
    let path = data_file(HOT_FILE_BYTES);
    let mut workload = Workload::new(
        Device::open(&path).expect("open the data file"),
        HOT_FILE_BYTES,
    );
    let mut group = group(c, "uring-null");
    let mut rows = vec![serial_row(&mut group, &mut workload)];
    // (label, engine, its buffers) for the per-core rounds; the loop alone comes first.
    let mut measured: Vec<(String, Box<dyn Engine>, Vec<Buffer>)> = Vec::new();
    let immediate_pool = BufferPool::new(4096, 256, 4096).expect("pool");
    measured.push((
        "loop alone (immediate engine) window=256".to_owned(),
        Box::new(ImmediateEngine::new()),
        std::iter::from_fn(|| immediate_pool.take()).collect(),
    ));
    let mut pools = Vec::new();
    for window in [1usize, 64, 256] {
        let pool = BufferPool::new(4096, window, 4096).expect("pool");
        let mut engine = UringEngine::builder(workload.device.clone())
            .window(window)
            .fixed_buffers(&pool)
            .null_io(true)
            .build()
            .expect("io_uring engine");
        let label = format!("uring null window={window}");
        rows.push(measure(
            &mut workload,
            &mut group,
            &label,
            &mut engine,
            &pool,
        ));
        let buffers = std::iter::from_fn(|| pool.take()).collect();
        measured.push((label, Box::new(engine), buffers));
        pools.push(pool);
    }
    group.finish();
    let mut samples = vec![Vec::new(); measured.len()];
    for _ in 0..PER_CORE_ROUNDS {
        for ((_, engine, buffers), samples) in measured.iter_mut().zip(&mut samples) {
            let op_count = 16 * SUMMARY_OP_COUNT;
            samples.push(per_core_rate(
                &mut workload,
                &mut **engine,
                buffers,
                op_count,
            ));
        }
    }
    let per_core: Vec<Row> = measured
        .iter()
        .zip(samples)
        .map(|((label, _, _), samples)| Row {
            name: label.clone(),
            ops_per_second: median(samples),
        })
        .collect();
    print_summary(
        "IORING_OP_NOP through the engine, wall clock",
        &rows[0].name,
        rows[0].ops_per_second,
        &rows,
    );
    print_against_goal(
        &format!(
            "IORING_OP_NOP through the engine, per second of this thread's CPU (one core), \
             median of {PER_CORE_ROUNDS} alternating rounds"
        ),
        "10 M ops/s per core, issue 16",
        10e6,
        &per_core,
    );
    let nanos = |row: &Row| 1e9 / row.ops_per_second;
    let loop_alone = nanos(&per_core[0]);
    println!("CPU time per operation (the loop alone is part of every row):");
    for row in &per_core[1..] {
        println!(
            "{:<40} {:>6.1} ns: the loop alone {:.1} ns, the engine with the kernel {:.1} ns",
            row.name,
            nanos(row),
            loop_alone,
            nanos(row) - loop_alone
        );
    }
}

/// An engine that completes every operation at once without touching the device: the cost
/// of the benchmark loop itself (building operations, handing out completions, recycling
/// buffers), which every NOP row includes.
struct ImmediateEngine {
    ready: Vec<Completion>,
    /// Never readable; the trait wants a descriptor.
    readiness: std::fs::File,
}

impl ImmediateEngine {
    fn new() -> ImmediateEngine {
        ImmediateEngine {
            ready: Vec::new(),
            readiness: std::fs::File::open("/dev/null").expect("open /dev/null"),
        }
    }
}

impl Engine for ImmediateEngine {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            name: "immediate",
            align_bytes: 1,
            in_flight_max: usize::MAX,
            fixed_buffers: false,
            passthrough: false,
        }
    }

    fn submit(&mut self, ops: &mut Vec<Op>) {
        for op in ops.drain(..) {
            let len_bytes = op.info().len_bytes;
            self.ready.push(op.complete(Ok(len_bytes)));
        }
    }

    fn reap(&mut self, completions: &mut Vec<Completion>, _wait: Wait) -> usize {
        let count = self.ready.len();
        completions.append(&mut self.ready);
        count
    }

    fn pending_count(&self) -> usize {
        self.ready.len()
    }

    fn readiness(&self) -> BorrowedFd<'_> {
        self.readiness.as_fd()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get())
}

criterion_group!(benches, uring_direct, uring_hot, uring_null);
criterion_main!(benches);
