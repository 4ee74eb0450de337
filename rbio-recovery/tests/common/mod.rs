//! Shared by recovery's integration tests: unpacking the LMCache fixtures and the list of
//! engines every bringup test runs on.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::PathBuf;
use std::sync::Arc;

use rbio_core::{BufferPool, Device, Engine, SerialEngine};
use rbio_posix::PosixEngine;
use rbio_uring::UringEngine;

/// Unpacks fixture `name` (`c1000` or `c2000kv`) into a new temporary directory and returns
/// it with the image path and the manifest.
///
/// # Panics
/// With the reason if the fixture cannot be unpacked: the test cannot run without it.
pub fn unpack_fixture(name: &str) -> (tempfile::TempDir, PathBuf, serde_json::Value) {
    let fixture = rbio_recovery::testing::unpack_fixture(name)
        .unwrap_or_else(|error| panic!("fixture {name}: {error}"));
    (fixture.dir, fixture.image, fixture.manifest)
}

/// Builds an engine for a device, registering the pool where the engine can.
pub type EngineFactory = fn(&Arc<Device>, &BufferPool) -> Box<dyn Engine>;

/// Every engine available on this machine, by name; only those named in `RBIO_TEST_ENGINES`
/// (comma-separated, e.g. `uring,uring-fixed` in the QEMU rig's 5.10 guest) when it is set.
pub fn engines() -> Vec<(&'static str, EngineFactory)> {
    let chosen = std::env::var("RBIO_TEST_ENGINES").ok();
    let mut engines = every_engine();
    if let Some(chosen) = chosen {
        engines.retain(|(name, _)| chosen.split(',').any(|wanted| wanted.trim() == *name));
        assert!(
            !engines.is_empty(),
            "RBIO_TEST_ENGINES={chosen} names no engine"
        );
    }
    engines
}

fn every_engine() -> Vec<(&'static str, EngineFactory)> {
    vec![
        ("serial", |device, _pool| {
            Box::new(SerialEngine::new(device.clone()).expect("serial engine"))
        }),
        ("posix-1", |device, _pool| posix(device, 1)),
        ("posix-3", |device, _pool| posix(device, 3)),
        ("posix-8", |device, _pool| posix(device, 8)),
        ("uring", |device, _pool| {
            let builder = UringEngine::builder(device.clone()).window(32);
            Box::new(builder.build().expect("uring engine"))
        }),
        ("uring-fixed", |device, pool| {
            let builder = UringEngine::builder(device.clone())
                .window(32)
                .fixed_buffers(pool);
            Box::new(builder.build().expect("uring engine with fixed buffers"))
        }),
    ]
}

fn posix(device: &Arc<Device>, worker_count: usize) -> Box<dyn Engine> {
    let builder = PosixEngine::builder(device.clone()).workers(worker_count);
    Box::new(builder.build().expect("posix engine"))
}
