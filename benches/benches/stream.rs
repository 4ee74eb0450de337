//! The streaming driver over the serial engine: 4 KiB random reads of a page-cache-hot file,
//! at several windows, to measure the driver's own overhead per operation.
#![allow(missing_docs)] // criterion_group! defines an undocumented public function.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rbio_benches::{data_file, print_summary, random_offsets, rate, Row};
use rbio_core::{BufferPool, Device, OpSpec, SerialEngine, Stream};

const FILE_BYTES: u64 = 64 << 20;
const OP_COUNT: usize = 4096;

fn stream_serial(c: &mut Criterion) {
    let path = data_file(FILE_BYTES);
    let device = Arc::new(Device::open(&path).expect("open data file"));
    let offsets = random_offsets(OP_COUNT, FILE_BYTES, 4096, 7);
    let mut group = c.benchmark_group("stream-serial-hot");
    group.throughput(Throughput::Elements(OP_COUNT as u64));
    let mut rows = Vec::new();
    for window in [1usize, 8, 64] {
        let pool = BufferPool::new(4096, window, 4096).expect("pool");
        let mut engine = SerialEngine::new(device.clone()).expect("engine");
        let mut run = || {
            let specs = offsets
                .iter()
                .enumerate()
                .map(|(tag, &offset)| OpSpec::read(tag as u64, offset, 4096));
            Stream::new(&mut engine, &pool)
                .window(window)
                .run_reads(specs, |_| {})
                .expect("stream")
        };
        group.bench_function(format!("window={window}"), |b| b.iter(&mut run));
        let started = Instant::now();
        let stats = run();
        rows.push(Row {
            name: format!("stream window={window}"),
            ops_per_second: rate(stats.op_count, started.elapsed()),
        });
    }
    group.finish();
    let baseline = rows[0].ops_per_second;
    print_summary(
        "streaming driver over the serial engine, hot page cache",
        "window=1",
        baseline,
        &rows,
    );
}

criterion_group!(benches, stream_serial);
criterion_main!(benches);
