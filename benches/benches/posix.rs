//! The POSIX engine against the serial engine in the same run: 4 KiB random reads through the
//! streaming driver, window 4 × workers, with 1 to 16 workers; O_DIRECT on a 2 GiB file,
//! then buffered with the page cache hot. Prints a summary table (ops/s, × serial) at the end.
//!
//! Compare with fio by hand on the same file (`target/rbio-bench/data-2048m.bin`):
//! `fio --name=r --filename=FILE --ioengine=psync --direct=1 --rw=randread --bs=4k
//! --numjobs=N --group_reporting --time_based --runtime=10`.
#![allow(missing_docs)] // criterion_group! defines an undocumented public function.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rbio_benches::{
    data_file, print_summary, rate, Row, Workload, DIRECT_FILE_BYTES, HOT_FILE_BYTES, OP_COUNT,
};
use rbio_core::{BufferPool, Device, Engine, OpSpec, SerialEngine, Stream};
use rbio_posix::PosixEngine;

/// Reads in the timed run behind each summary row.
const SUMMARY_OP_COUNT: usize = 32 * 1024;
const WORKER_COUNTS: [usize; 5] = [1, 2, 4, 8, 16];
/// The serial engine's window: it performs one read at a time whatever the window, and a
/// larger window only spares driver round trips.
const SERIAL_WINDOW: usize = 16;

/// Streams `op_count` reads through `engine` with `window` in flight; returns the count.
fn run(workload: &mut Workload, engine: &mut dyn Engine, window: usize, op_count: usize) -> u64 {
    let pool = BufferPool::new(4096, window, 4096).expect("pool");
    let specs = (0..op_count).map(|index| OpSpec::read(index as u64, workload.next_offset(), 4096));
    let stats = Stream::new(engine, &pool)
        .window(window)
        .run_reads(specs, |completion| {
            assert_eq!(completion.result(), &Ok(4096), "{:?}", completion.info());
        })
        .expect("stream");
    stats.op_count
}

/// Measures one configuration: criterion's samples, then a longer timed run for the row.
fn measure(
    workload: &mut Workload,
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    engine: &mut dyn Engine,
    window: usize,
) -> Row {
    group.bench_function(name, |b| b.iter(|| run(workload, engine, window, OP_COUNT)));
    let started = Instant::now();
    let op_count = run(workload, engine, window, SUMMARY_OP_COUNT);
    Row {
        name: name.to_owned(),
        ops_per_second: rate(op_count, started.elapsed()),
    }
}

fn posix_engine(device: &Arc<Device>, worker_count: usize) -> PosixEngine {
    PosixEngine::builder(device.clone())
        .workers(worker_count)
        .build()
        .expect("posix engine")
}

/// Runs the serial engine and every worker count over `workload`; returns the summary rows.
fn compare(c: &mut Criterion, group_name: &str, workload: &mut Workload) -> Vec<Row> {
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(OP_COUNT as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    let mut serial = SerialEngine::new(workload.device.clone()).expect("serial engine");
    let mut rows = vec![measure(
        workload,
        &mut group,
        &format!("serial window={SERIAL_WINDOW}"),
        &mut serial,
        SERIAL_WINDOW,
    )];
    for worker_count in WORKER_COUNTS {
        let mut engine = posix_engine(&workload.device, worker_count);
        let window = 4 * worker_count;
        let name = format!("posix workers={worker_count} window={window}");
        rows.push(measure(workload, &mut group, &name, &mut engine, window));
    }
    group.finish();
    rows
}

fn posix_direct(c: &mut Criterion) {
    let path = data_file(DIRECT_FILE_BYTES);
    let device = Device::options()
        .direct(true)
        .open(&path)
        .expect("open the data file with O_DIRECT");
    let mut workload = Workload::new(device, DIRECT_FILE_BYTES);
    let rows = compare(c, "posix-direct-4k-randread", &mut workload);
    print_summary(
        &format!(
            "4 KiB random reads, O_DIRECT, {} (2 GiB), {} cores",
            path.display(),
            cores()
        ),
        rows[0].name.as_str(),
        rows[0].ops_per_second,
        &rows,
    );
}

fn posix_hot(c: &mut Criterion) {
    let path = data_file(HOT_FILE_BYTES);
    let device = Device::open(&path).expect("open the data file");
    // One sequential pass puts the whole file in the page cache.
    std::fs::read(&path).expect("warm the page cache");
    let mut workload = Workload::new(device, HOT_FILE_BYTES);
    let rows = compare(c, "posix-hot-4k-randread", &mut workload);
    print_summary(
        &format!(
            "4 KiB random reads, page cache hot, {} (256 MiB), {} cores",
            path.display(),
            cores()
        ),
        rows[0].name.as_str(),
        rows[0].ops_per_second,
        &rows,
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get())
}

criterion_group!(benches, posix_direct, posix_hot);
criterion_main!(benches);
