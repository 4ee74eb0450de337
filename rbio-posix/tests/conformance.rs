//! The rbio-core conformance suite passes for the POSIX engine with 1, 2, 3, 8 and 64
//! workers: on a temporary file, buffered and with O_DIRECT, and on a loop device with 4 KiB
//! sectors (attached here with `losetup --direct-io=on --sector-size 4096`, detached by a
//! guard even when a case fails), where misaligned O_DIRECT requests must come back as typed
//! `Misaligned` errors. Without `losetup` or root the loop-device test fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbio_core::conformance::{run_all, Suite, Target};
use rbio_posix::PosixEngine;

const WORKER_COUNTS: [usize; 5] = [1, 2, 3, 8, 64];

fn posix(worker_count: usize) -> impl Fn(&Target) -> PosixEngine {
    move |target: &Target| {
        PosixEngine::builder(target.device.clone())
            .workers(worker_count)
            .build()
            .expect("build the posix engine")
    }
}

#[test]
fn conforms_on_a_file_buffered_and_direct() {
    for worker_count in WORKER_COUNTS {
        run_all(&format!("posix-{worker_count}"), posix(worker_count));
    }
}

/// A loop device attached for the life of the guard; detached on drop, also during a panic.
struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    /// Attaches `backing` with direct I/O and 4 KiB logical sectors.
    ///
    /// # Panics
    /// If `losetup` is missing or refuses (it needs root), with what to do about it.
    fn attach(backing: &Path) -> LoopDevice {
        let output = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on", "--sector-size", "4096"])
            .arg(backing)
            .output()
            .unwrap_or_else(|error| {
                panic!("losetup could not be run ({error}): install util-linux; this test needs a 4 KiB-sector loop device")
            });
        assert!(
            output.status.success(),
            "losetup refused ({}): {}; attaching a loop device needs root",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let path = String::from_utf8(output.stdout).expect("losetup prints a path");
        LoopDevice {
            path: PathBuf::from(path.trim()),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let detached = Command::new("losetup").arg("-d").arg(&self.path).status();
        if !matches!(detached, Ok(status) if status.success()) {
            eprintln!("could not detach {}: {detached:?}", self.path.display());
        }
    }
}

#[test]
fn conforms_on_a_4k_sector_loop_device() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("loop devices"));
    let backing = tempfile::NamedTempFile::new().expect("backing file");
    // Exactly the suite's own image size: its out-of-range slots start right after the 64
    // slots it patterns, so a larger target would read unpatterned bytes there.
    backing
        .as_file()
        .set_len(rbio_core::conformance::IMAGE_BYTES)
        .expect("size the backing file");
    let device = LoopDevice::attach(backing.path());
    let sector = rbio_core::Device::options()
        .direct(true)
        .open(&device.path)
        .expect("open the loop device");
    assert_eq!(
        sector.logical_block_bytes(),
        4096,
        "{}",
        device.path.display()
    );
    assert_eq!(sector.align_bytes(), 4096);
    drop(sector);
    for worker_count in WORKER_COUNTS {
        for direct in [true, false] {
            let mode = if direct { "direct" } else { "buffered" };
            Suite::new(format!("posix-{worker_count}/loop4k/{mode}"))
                .direct(direct)
                .on_path(&device.path)
                .run(posix(worker_count));
        }
    }
}
