//! Errors the kernel itself returns come back per operation, the same as from the serial
//! engine. On a 4 KiB-sector loop device (root and `losetup` needed; the test fails and says
//! so without them):
//!
//! - A read past the end is refused by `Device::check` before any kernel call
//!   (`OutOfRange`): that path is rbio's, not the kernel's.
//! - With the device's geometry deliberately overstated (`Device::with_geometry`), the check
//!   admits reads past the real end and the kernel answers: end of device, so the engine's
//!   continuation moves 0 bytes and the read ends as `ShortTransfer`.
//! - With the offset alignment deliberately understated (512 on a 4096-byte-sector device
//!   opened with O_DIRECT), the check admits a 512-byte read and the kernel refuses it with
//!   `EINVAL`.

mod support;

use std::sync::Arc;

use rbio_core::{Buffer, Completion, Device, Errno, IoError, Op, SerialEngine};
use rbio_uring::UringEngine;
use support::{pattern_byte, run, LoopDevice};

const DEVICE_BYTES: u64 = 1 << 20;

fn both(device: &Arc<Device>, ops: impl Fn() -> Vec<Op>) -> [Vec<Completion>; 2] {
    let mut uring = UringEngine::builder(device.clone())
        .window(8)
        .build()
        .unwrap();
    let mut serial = SerialEngine::new(device.clone()).unwrap();
    [run(&mut uring, ops()), run(&mut serial, ops())]
}

fn same(uring: &[Completion], serial: &[Completion]) {
    for (got, want) in uring.iter().zip(serial) {
        assert_eq!(got.result(), want.result(), "{}", got.info());
        assert_eq!(got.data(), want.data(), "{}", got.info());
    }
}

fn read(tag: u64, offset_bytes: u64, len_bytes: usize) -> Op {
    Op::read(
        tag,
        offset_bytes,
        Buffer::new_aligned(len_bytes, 4096).unwrap(),
    )
}

#[test]
fn the_device_check_refuses_reads_past_the_end() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("loop devices"));
    let loop_device = LoopDevice::attach(DEVICE_BYTES, 4096);
    let device = Arc::new(
        Device::options()
            .direct(true)
            .open(&loop_device.path)
            .unwrap(),
    );
    assert_eq!(device.size_bytes(), DEVICE_BYTES);
    let [uring, serial] = both(&device, || {
        vec![
            read(0, DEVICE_BYTES, 4096),
            read(1, DEVICE_BYTES - 4096, 8192),
        ]
    });
    for completion in &uring {
        assert_eq!(
            completion.result(),
            &Err(IoError::OutOfRange {
                size_bytes: DEVICE_BYTES
            })
        );
    }
    same(&uring, &serial);
}

#[test]
fn the_kernel_ends_reads_at_the_real_end_of_the_device() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("loop devices"));
    let loop_device = LoopDevice::attach(DEVICE_BYTES, 4096);
    let device = Device::options()
        .direct(true)
        .open(&loop_device.path)
        .unwrap();
    let device = Arc::new(device.with_geometry(2 * DEVICE_BYTES, 4096));
    let ops = || {
        vec![
            read(0, DEVICE_BYTES, 4096),
            read(1, DEVICE_BYTES - 4096, 8192),
            read(2, 0, 4096),
        ]
    };
    let [uring, serial] = both(&device, ops);
    assert_eq!(
        uring[0].result(),
        &Err(IoError::ShortTransfer {
            done_bytes: 0,
            len_bytes: 4096
        })
    );
    assert_eq!(
        uring[1].result(),
        &Err(IoError::ShortTransfer {
            done_bytes: 4096,
            len_bytes: 8192
        })
    );
    assert_eq!(uring[1].data()[5], pattern_byte(DEVICE_BYTES - 4096 + 5));
    assert_eq!(uring[2].result(), &Ok(4096));
    same(&uring, &serial);
}

#[test]
fn the_kernel_refuses_misaligned_direct_io() {
    rbio_core::skip_without!(rbio_core::privilege::Need::Root("loop devices"));
    let loop_device = LoopDevice::attach(DEVICE_BYTES, 4096);
    let device = Device::options()
        .direct(true)
        .open(&loop_device.path)
        .unwrap();
    assert_eq!(device.logical_block_bytes(), 4096);
    let device = Arc::new(device.with_geometry(DEVICE_BYTES, 512));
    assert_eq!(
        device.dio_align_bytes().1,
        512,
        "the check now admits 512-byte offsets"
    );
    let ops = || vec![read(0, 512, 512), read(1, 4096, 4096), read(2, 8192, 1536)];
    let [uring, serial] = both(&device, ops);
    assert_eq!(uring[0].result(), &Err(IoError::Os(Errno::EINVAL)));
    assert_eq!(uring[1].result(), &Ok(4096), "a neighbour is not disturbed");
    assert_eq!(uring[2].result(), &Err(IoError::Os(Errno::EINVAL)));
    same(&uring, &serial);
}
