//! Bringup of a 100k-entry raw_block image (headers only, 1 MiB slots) with the serial engine
//! and the others in the same run, page cache hot: this measures rbio's own cost per entry
//! (checkpoint parse, apply, one header read and check each). The device-bound comparison,
//! cache dropped and against fio, is `rbio bench`.
#![allow(missing_docs)] // criterion_group! defines an undocumented public function.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rbio_benches::{bench_dir, print_summary, rate, Row};
use rbio_core::{Device, Engine, SerialEngine};
use rbio_posix::PosixEngine;
use rbio_recovery::{
    open_device, prepare, Bringup, BringupOptions, DevicePathPolicy, Layout, PrepareSpec,
};
use rbio_uring::UringEngine;

const ENTRY_COUNT: u64 = 100_000;

/// The image, prepared on first use and kept in `target/rbio-bench/` (marked complete by a
/// stamp file written last).
fn image() -> std::path::PathBuf {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("create target/rbio-bench");
    let path = dir.join(format!("criterion-bringup-{ENTRY_COUNT}.img"));
    let stamp = path.with_extension("done");
    if stamp.exists() {
        return path;
    }
    eprintln!("rbio-bench: preparing {}", path.display());
    let spec = PrepareSpec::new(Layout::default(), ENTRY_COUNT);
    let file = std::fs::File::create(&path).expect("create image");
    file.set_len(spec.required_device_bytes())
        .expect("size image");
    let device = Arc::new(Device::options().write(true).open(&path).expect("open"));
    let mut engine = PosixEngine::builder(device.clone())
        .build()
        .expect("engine");
    prepare(&device, &mut engine, &spec, &mut |_, _| {}).expect("prepare image");
    std::fs::write(&stamp, b"").expect("stamp");
    path
}

type Factory = fn(&Arc<Device>, &Bringup) -> Box<dyn Engine>;

fn engines() -> Vec<(&'static str, usize, Factory)> {
    vec![
        ("serial", 1, |device, _| {
            Box::new(SerialEngine::new(device.clone()).expect("serial"))
        }),
        ("posix workers=8", 64, |device, _| {
            Box::new(
                PosixEngine::builder(device.clone())
                    .workers(8)
                    .build()
                    .expect("posix"),
            )
        }),
        ("uring window=64 fixed", 64, |device, bringup| {
            let engine = UringEngine::builder(device.clone())
                .window(64)
                .fixed_buffers(bringup.header_pool())
                .build();
            Box::new(engine.expect("uring"))
        }),
        ("uring window=256 fixed", 256, |device, bringup| {
            let engine = UringEngine::builder(device.clone())
                .window(256)
                .fixed_buffers(bringup.header_pool())
                .build();
            Box::new(engine.expect("uring"))
        }),
    ]
}

fn bringup_hot(c: &mut Criterion) {
    let path = image();
    let device = open_device(&path, false).expect("open image");
    let mut group = c.benchmark_group("bringup-100k-hot");
    group.throughput(Throughput::Elements(ENTRY_COUNT));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let mut rows = Vec::new();
    for (name, window, factory) in engines() {
        let options = BringupOptions {
            device_path_policy: DevicePathPolicy::Ignore,
            window_ops_max: window,
            ..BringupOptions::default()
        };
        let bringup = Bringup::new(device.clone(), options).expect("bringup");
        let mut engine = factory(&device, &bringup);
        let mut run = || {
            let recovered = bringup.run(&mut *engine, &mut |_| {}).expect("run");
            assert_eq!(recovered.index.len() as u64, ENTRY_COUNT);
        };
        run(); // warms the page cache and the engine
        group.bench_function(name, |b| b.iter(&mut run));
        let started = Instant::now();
        run();
        rows.push(Row {
            name: name.to_owned(),
            ops_per_second: rate(ENTRY_COUNT, started.elapsed()),
        });
    }
    group.finish();
    let baseline = rows[0].ops_per_second;
    print_summary(
        "bringup of 100k entries, page cache hot (entries/s)",
        "serial",
        baseline,
        &rows,
    );
}

criterion_group!(benches, bringup_hot);
criterion_main!(benches);
