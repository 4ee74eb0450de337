//! Flexible Data Placement on the rig's controller, which has none (QEMU 7.2's emulated NVMe
//! gained FDP only in QEMU 8.0): the Reclaim Unit Handle Status command comes back as a typed
//! NVMe status, promptly and without a panic, and a write carrying a placement identifier
//! goes through the passthrough engine and reads back as written.

use rbio_core::{Buffer, Op};
use rbio_uring::{FdpStatusError, NVME_SC_INVALID_OPCODE};

use super::engine::{fill_bytes, restore_fill, run, writable_engine};
use super::{expected_devices, open, PAGE_BYTES};

/// I/O Management Receive (opcode 0x12) is not an opcode QEMU 7.2 supports, so the
/// controller answers Invalid Command Opcode with do-not-retry, which the kernel returns as
/// the ioctl's value (0x4001) and rbio as `FdpStatusError::Nvme`.
#[test]
fn fdp_status_without_fdp_is_a_typed_nvme_status() {
    for expected in expected_devices() {
        let namespace = open(&expected);
        let error = namespace.reclaim_unit_handle_status().unwrap_err();
        println!("{}: fdp status: {error}", expected.path.display());
        let FdpStatusError::Nvme {
            status,
            status_field,
        } = error
        else {
            panic!(
                "{}: expected an NVMe status, got {error}",
                expected.path.display()
            );
        };
        assert_eq!((status.sct, status.sc), NVME_SC_INVALID_OPCODE, "{status}");
        assert!(status.dnr, "{status}");
        assert_eq!(status_field, 0x4001, "{status}");
    }
}

/// The data placement directive (DTYPE 2, DSPEC = placement id) on a namespace whose
/// controller has no FDP: QEMU 7.2 does not look at a write's directive fields and writes the
/// blocks, so the write succeeds and reads back. (A controller with FDP disabled may instead
/// refuse it with Invalid Field in Command; that would fail this test and say so.)
#[test]
fn a_write_with_a_placement_id_succeeds_where_the_controller_ignores_it() {
    for expected in expected_devices() {
        let offset_bytes = 3 * PAGE_BYTES as u64;
        let len_bytes = 2 * PAGE_BYTES;
        let mut engine = writable_engine(&expected, 4, None);
        let mut buffer = Buffer::new_aligned(len_bytes, PAGE_BYTES).unwrap();
        buffer.as_mut_slice().fill(0x5c);
        let op = Op::write(0, offset_bytes, buffer).with_placement_id(Some(1));
        let completions = run(&mut engine, vec![op]);
        let completion = &completions[0];
        println!(
            "{}: {}: {:?}",
            expected.path.display(),
            completion.info(),
            completion.result()
        );
        assert_eq!(completion.info().placement_id, Some(1));
        assert_eq!(completion.result(), &Ok(len_bytes), "{}", completion.info());
        drop(engine);
        let mut back = vec![0u8; len_bytes];
        open(&expected)
            .read_blocking(offset_bytes, &mut back)
            .unwrap();
        assert!(
            back.iter().all(|&byte| byte == 0x5c),
            "placed write read back"
        );
        assert_ne!(back, fill_bytes(offset_bytes, len_bytes));
        restore_fill(&expected, offset_bytes, len_bytes);
    }
}
