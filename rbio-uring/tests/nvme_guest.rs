//! NVMe passthrough against a real controller: QEMU's emulated NVMe, inside the guest that
//! `scripts/nvme-vm/run` boots. Proves that the ABI structs, the encoder, Identify parsing and
//! status decoding agree with a real kernel and device, and (in `nvme_guest/engine.rs`) that
//! the passthrough engine `NvmeEngine` is correct on it.
//!
//! The rig sets `RBIO_NVME_DEVICES` (comma-separated `/dev/ngXnY` paths) and `RBIO_NVME_EXPECT`
//! (`nsid/lba_bytes/size_bytes` per device, same order), and fills every namespace so that the
//! 8-byte little-endian word at byte offset `o` holds `o`. Built only with the `nvme-guest`
//! feature; run anywhere else, every test fails and says where to run it.

use std::path::{Path, PathBuf};

use rbio_core::{IoError, NvmeStatus};
use rbio_uring::{check_nvme_char_device, NvmeNamespace, NvmeOpenError};

// The passthrough engine's tests, in this binary so the rig runs them with the rest.
#[path = "nvme_guest/engine.rs"]
mod engine;

// Flexible Data Placement on a controller without it.
#[path = "nvme_guest/fdp.rs"]
mod fdp;

const PAGE_BYTES: usize = 4096;

/// One device the rig made, with what it should report.
#[derive(Debug)]
struct Expected {
    path: PathBuf,
    nsid: u32,
    lba_bytes: u32,
    size_bytes: u64,
}

fn env_or_fail(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test runs inside the QEMU NVMe guest; use scripts/nvme-vm/run"
        )
    })
}

fn expected_devices() -> Vec<Expected> {
    let devices = env_or_fail("RBIO_NVME_DEVICES");
    let expect = env_or_fail("RBIO_NVME_EXPECT");
    let paths: Vec<&str> = devices.split(',').collect();
    let specs: Vec<&str> = expect.split(',').collect();
    assert_eq!(
        paths.len(),
        specs.len(),
        "RBIO_NVME_DEVICES={devices} and RBIO_NVME_EXPECT={expect} differ in length"
    );
    paths
        .iter()
        .zip(specs)
        .map(|(path, spec)| {
            let fields: Vec<u64> = spec
                .split('/')
                .map(|field| {
                    field
                        .parse()
                        .unwrap_or_else(|_| panic!("bad RBIO_NVME_EXPECT entry {spec}"))
                })
                .collect();
            assert_eq!(
                fields.len(),
                3,
                "RBIO_NVME_EXPECT entry {spec} is not nsid/lba_bytes/size_bytes"
            );
            Expected {
                path: PathBuf::from(path),
                nsid: fields[0] as u32,
                lba_bytes: fields[1] as u32,
                size_bytes: fields[2],
            }
        })
        .collect()
}

fn open(expected: &Expected) -> NvmeNamespace {
    NvmeNamespace::open(&expected.path)
        .unwrap_or_else(|error| panic!("{}: {error}", expected.path.display()))
}

/// Panics at the first 8-byte word of `buf` (read from `offset_bytes`) that is not its offset.
fn check_pattern(path: &Path, offset_bytes: u64, buf: &[u8]) {
    assert_eq!(buf.len() % 8, 0);
    for (index, word) in buf.chunks_exact(8).enumerate() {
        let at = offset_bytes + 8 * index as u64;
        let value = u64::from_le_bytes(word.try_into().unwrap());
        assert_eq!(
            value,
            at,
            "{}: word at byte {at} holds {value:#x}",
            path.display()
        );
    }
}

/// Reads `len_bytes` at `offset_bytes` into a buffer whose address is `page_offset_bytes`
/// past a 4096-byte boundary, and checks the pattern.
fn read_and_check(
    expected: &Expected,
    offset_bytes: u64,
    len_bytes: usize,
    page_offset_bytes: usize,
) {
    let namespace = open(expected);
    let mut backing = vec![0xa5u8; len_bytes + 2 * PAGE_BYTES];
    let misalignment = backing.as_ptr() as usize % PAGE_BYTES;
    let start = (PAGE_BYTES - misalignment) % PAGE_BYTES + page_offset_bytes;
    let buf = &mut backing[start..start + len_bytes];
    assert_eq!(buf.as_ptr() as usize % PAGE_BYTES, page_offset_bytes);
    namespace.read_blocking(offset_bytes, buf).unwrap_or_else(|error| {
        panic!(
            "{}: read {len_bytes} at {offset_bytes} into a buffer {page_offset_bytes} bytes past a page: {error}",
            expected.path.display()
        )
    });
    check_pattern(&expected.path, offset_bytes, buf);
}

#[test]
fn identify_reports_nsid_lba_size_and_size() {
    for expected in expected_devices() {
        let namespace = open(&expected);
        let info = namespace.info();
        let name = expected.path.file_name().unwrap().to_str().unwrap();
        let limits = rbio_uring::KernelQueueLimits::read(name);
        let queue_dirs: Vec<String> = rbio_uring::sysfs_queue_dirs(name)
            .iter()
            .map(|dir| {
                format!(
                    "{} {}",
                    dir.display(),
                    if dir.exists() { "present" } else { "absent" }
                )
            })
            .collect();
        println!(
            "{}: {info:?}; {limits:?}; {}",
            expected.path.display(),
            queue_dirs.join(", ")
        );
        let (Some(max_hw_bytes), Some(max_segments)) = (limits.max_hw_bytes, limits.max_segments)
        else {
            panic!(
                "{}: sysfs shows no queue limits: {limits:?}",
                expected.path.display()
            );
        };
        assert!(
            info.max_transfer_bytes() <= max_hw_bytes,
            "{info:?} {limits:?}"
        );
        assert!(
            info.max_transfer_bytes() <= max_segments * 4096,
            "{info:?} {limits:?}"
        );
        assert_eq!(info.nsid(), expected.nsid, "{expected:?}");
        assert_eq!(
            info.lba_format().lba_bytes(),
            expected.lba_bytes,
            "{expected:?}"
        );
        assert_eq!(info.size_bytes(), expected.size_bytes, "{expected:?}");
        assert!(
            info.max_transfer_bytes() >= info.lba_format().lba_bytes(),
            "{info:?}"
        );
    }
}

#[test]
fn ioctl_read_of_lbas_0_to_8_matches_the_fill_pattern() {
    for expected in expected_devices() {
        read_and_check(&expected, 0, 8 * expected.lba_bytes as usize, 0);
    }
}

#[test]
fn ioctl_read_of_the_last_blocks_matches_the_fill_pattern() {
    for expected in expected_devices() {
        let len_bytes = 4 * u64::from(expected.lba_bytes);
        read_and_check(
            &expected,
            expected.size_bytes - len_bytes,
            len_bytes as usize,
            0,
        );
    }
}

#[test]
fn ioctl_read_larger_than_the_transfer_limit_is_split_and_matches() {
    for expected in expected_devices() {
        let namespace = open(&expected);
        let len_bytes = 2 * u64::from(namespace.info().max_transfer_bytes())
            + 3 * u64::from(expected.lba_bytes);
        let offset_bytes = 5 * u64::from(expected.lba_bytes);
        assert!(
            offset_bytes + len_bytes <= expected.size_bytes,
            "image too small for {len_bytes}"
        );
        // Page aligned (full-size pieces) and not (pieces one page smaller, or the kernel
        // refuses them for spanning one page too many).
        for page_offset_bytes in [0, 16, 512] {
            read_and_check(
                &expected,
                offset_bytes,
                len_bytes as usize,
                page_offset_bytes,
            );
        }
    }
}

#[test]
fn ioctl_read_past_the_end_is_lba_out_of_range_with_dnr() {
    for expected in expected_devices() {
        let namespace = open(&expected);
        let mut buf = vec![0u8; expected.lba_bytes as usize];
        let error = namespace
            .read_blocking(namespace.info().size_bytes(), &mut buf)
            .unwrap_err();
        let IoError::Nvme(status) = error else {
            panic!(
                "{}: expected an NVMe status, got {error}",
                expected.path.display()
            );
        };
        println!("{}: read past the end: {status}", expected.path.display());
        assert_eq!(
            (status.sct, status.sc),
            NvmeStatus::LBA_OUT_OF_RANGE,
            "{status}"
        );
        assert!(
            status.dnr,
            "QEMU sets do-not-retry on LBA out of range: {status}"
        );
    }
}

#[test]
fn misaligned_reads_are_refused_before_the_device() {
    for expected in expected_devices() {
        let namespace = open(&expected);
        let mut buf = vec![0u8; expected.lba_bytes as usize];
        let error = namespace.read_blocking(8, &mut buf).unwrap_err();
        assert_eq!(
            error,
            IoError::Misaligned {
                align_bytes: expected.lba_bytes as usize
            }
        );
        let mut short = vec![0u8; 8];
        let error = namespace.read_blocking(0, &mut short).unwrap_err();
        assert_eq!(
            error,
            IoError::Misaligned {
                align_bytes: expected.lba_bytes as usize
            }
        );
    }
}

/// Review finding (HIGH, nvme/ioctl.rs): `nvme_read_blocking(fd, info, ..)` took any
/// `NvmeNamespaceInfo`, so a caller could pass another namespace's (a smaller LBA size) and
/// the controller would move blocks × the real LBA size past the mapped buffer. A handle now
/// carries the Identify answer of its own descriptor: with the rig's 512-byte and 4096-byte
/// namespaces side by side, each handle sizes its commands by its own namespace, so 512
/// bytes are one block on the first and refused, before any command, on the second.
#[test]
fn each_handle_sizes_its_commands_by_its_own_namespace() {
    let devices = expected_devices();
    let namespaces: Vec<NvmeNamespace> = devices.iter().map(open).collect();
    let lba_sizes: Vec<u32> = namespaces
        .iter()
        .map(|namespace| namespace.info().lba_format().lba_bytes())
        .collect();
    assert!(
        lba_sizes.contains(&512) && lba_sizes.contains(&4096),
        "the rig has a 512-byte and a 4096-byte namespace: {lba_sizes:?}"
    );
    for (expected, namespace) in devices.iter().zip(&namespaces) {
        assert_eq!(namespace.info().nsid(), expected.nsid, "{expected:?}");
        let lba_bytes = expected.lba_bytes as usize;
        let mut block = vec![0xa5u8; 4096];
        for len_bytes in [512, 4096] {
            let result = namespace.read_blocking(0, &mut block[..len_bytes]);
            if len_bytes % lba_bytes == 0 {
                result.unwrap_or_else(|error| panic!("{expected:?}: {len_bytes}: {error}"));
                check_pattern(&expected.path, 0, &block[..len_bytes]);
            } else {
                assert_eq!(
                    result,
                    Err(IoError::Misaligned {
                        align_bytes: lba_bytes
                    }),
                    "{expected:?}: {len_bytes} bytes"
                );
            }
        }
    }
}

#[test]
fn block_device_and_controller_device_are_refused() {
    for expected in expected_devices() {
        let name = expected.path.file_name().unwrap().to_str().unwrap();
        let rest = name.strip_prefix("ng").expect("rig devices are /dev/ngXnY");
        let block_path = PathBuf::from(format!("/dev/nvme{rest}"));
        let error = check_nvme_char_device(&block_path).unwrap_err();
        assert!(
            matches!(error, NvmeOpenError::IsBlockDevice { .. }),
            "{error}"
        );
        let controller = rest.split('n').next().unwrap();
        let controller_path = PathBuf::from(format!("/dev/nvme{controller}"));
        let error = check_nvme_char_device(&controller_path).unwrap_err();
        assert!(
            matches!(error, NvmeOpenError::NotNvmeNamespace { .. }),
            "{error}"
        );
    }
}
