//! The engine-generic conformance suite passes for the io_uring engine: same completions,
//! bytes and errors as the serial engine, at windows 1, 2, 7, 64, 256 and 4096, with and
//! without fixed buffers, with and without O_DIRECT, on a file and on a 4 KiB-sector loop
//! device (which needs root and `losetup`; the test fails and says so without them); and
//! through every fallback of `support::FALLBACKS` (issue 12: features a kernel before 6.1
//! lacks, masked on this one).

mod support;

use rbio_core::conformance::{Suite, Target};
use rbio_core::privilege::{available, Need};
use rbio_uring::UringEngine;
use support::{LoopDevice, FALLBACKS};

const WINDOWS: [usize; 6] = [1, 2, 7, 64, 256, 4096];

/// Runs the suite for every window, with and without fixed buffers, on `path` (or a
/// temporary file).
fn run_matrix(place: &str, path: Option<&std::path::Path>, direct: bool) {
    let with_fixed = available(Need::LockedMemory {
        bytes: rbio_core::conformance::POOL_BYTES,
        what: "fixed buffers; the unfixed half ran",
    });
    for window in WINDOWS {
        for fixed in [false, true] {
            if fixed && !with_fixed {
                continue;
            }
            let label = format!(
                "uring/{place}/{}/window-{window}/{}",
                if direct { "direct" } else { "buffered" },
                if fixed { "fixed" } else { "unfixed" }
            );
            let mut suite = Suite::new(label).direct(direct).cases(8);
            if let Some(path) = path {
                suite = suite.on_path(path);
            }
            suite.run(|target: &Target| {
                let mut builder = UringEngine::builder(target.device.clone()).window(window);
                if fixed {
                    builder = builder.fixed_buffers(&target.pool);
                }
                let engine = builder.build().expect("io_uring engine");
                assert_eq!(
                    engine.setup_report().fixed_buffer_count,
                    usize::from(fixed),
                    "{}",
                    engine.setup_report()
                );
                engine
            });
        }
    }
}

#[test]
fn conforms_on_a_file_buffered() {
    run_matrix("file", None, false);
}

#[test]
fn conforms_on_a_file_with_o_direct() {
    run_matrix("file", None, true);
}

#[test]
fn conforms_on_a_4k_loop_device_buffered() {
    rbio_core::skip_without!(Need::Root("loop devices"));
    let device = LoopDevice::attach(rbio_core::conformance::IMAGE_BYTES, 4096);
    run_matrix("loop4k", Some(&device.path), false);
}

#[test]
fn conforms_on_a_4k_loop_device_with_o_direct() {
    rbio_core::skip_without!(Need::Root("loop devices"));
    let device = LoopDevice::attach(rbio_core::conformance::IMAGE_BYTES, 4096);
    run_matrix("loop4k", Some(&device.path), true);
}

#[test]
fn conforms_with_the_default_suite() {
    rbio_core::skip_without!(Need::LockedMemory {
        bytes: rbio_core::conformance::POOL_BYTES,
        what: "fixed buffers"
    });
    rbio_core::conformance::run_all("uring-default", |target: &Target| {
        UringEngine::builder(target.device.clone())
            .fixed_buffers(&target.pool)
            .build()
            .expect("io_uring engine")
    });
}

#[test]
fn conforms_through_every_fallback() {
    for (fallback, masked) in FALLBACKS {
        for window in [1, 7, 64] {
            for direct in [false, true] {
                let label = format!(
                    "uring/{fallback}/{}/window-{window}",
                    if direct { "direct" } else { "buffered" }
                );
                Suite::new(label)
                    .direct(direct)
                    .cases(8)
                    .run(|target: &Target| {
                        let engine = UringEngine::builder(target.device.clone())
                            .window(window)
                            .fixed_buffers(&target.pool)
                            .without_features(masked)
                            .build()
                            .expect("io_uring engine");
                        let features = engine.features();
                        assert_eq!(
                            features.intersect(masked),
                            rbio_uring::RingFeatures::NONE,
                            "{fallback}: runs with masked features {features}"
                        );
                        engine
                    });
            }
        }
    }
}
