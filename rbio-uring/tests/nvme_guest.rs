//! NVMe passthrough against a real controller: QEMU's emulated NVMe, inside the guest that
//! `scripts/nvme-vm/run` boots. Proves that the ABI structs, the encoder, Identify parsing and
//! status decoding agree with a real kernel and device, and that the passthrough engine
//! (`NvmeEngine`) is correct on it: the conformance suite against the serial engine, reads
//! checked byte for byte, writes read back, fixed and unfixed buffers, the controller's own
//! status for a read past the end, a batch far larger than the ring, split transfers, IOPOLL,
//! and drop with commands in flight. Tests that write put the fill pattern back.
//!
//! The rig sets `RBIO_NVME_DEVICES` (comma-separated `/dev/ngXnY` paths) and `RBIO_NVME_EXPECT`
//! (`nsid/lba_bytes/size_bytes` per device, same order), and fills every namespace so that the
//! 8-byte little-endian word at byte offset `o` holds `o`. Built only with the `nvme-guest`
//! feature; run anywhere else, every test fails and says where to run it.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rbio_core::{Buffer, BufferPool, Completion, Engine, IoError, NvmeStatus, Op, Wait};
use rbio_uring::{
    check_nvme_char_device, nvme_read_blocking, NvmeEngine, NvmeNamespaceInfo, NvmeOpenError,
    NvmeSetupError, RingFlags, DROP_DRAIN_TIMEOUT,
};

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

fn open(expected: &Expected) -> (std::fs::File, NvmeNamespaceInfo) {
    let file = check_nvme_char_device(&expected.path)
        .unwrap_or_else(|error| panic!("{}: {error}", expected.path.display()));
    let info = NvmeNamespaceInfo::query(file.as_fd())
        .unwrap_or_else(|error| panic!("{}: {error}", expected.path.display()));
    (file, info)
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
    let (file, info) = open(expected);
    let mut backing = vec![0xa5u8; len_bytes + 2 * PAGE_BYTES];
    let misalignment = backing.as_ptr() as usize % PAGE_BYTES;
    let start = (PAGE_BYTES - misalignment) % PAGE_BYTES + page_offset_bytes;
    let buf = &mut backing[start..start + len_bytes];
    assert_eq!(buf.as_ptr() as usize % PAGE_BYTES, page_offset_bytes);
    nvme_read_blocking(file.as_fd(), &info, offset_bytes, buf).unwrap_or_else(|error| {
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
        let (_file, info) = open(&expected);
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
            info.max_transfer_bytes <= max_hw_bytes,
            "{info:?} {limits:?}"
        );
        assert!(
            info.max_transfer_bytes <= max_segments * 4096,
            "{info:?} {limits:?}"
        );
        assert_eq!(info.nsid, expected.nsid, "{expected:?}");
        assert_eq!(
            info.lba_format.lba_bytes(),
            expected.lba_bytes,
            "{expected:?}"
        );
        assert_eq!(info.size_bytes(), expected.size_bytes, "{expected:?}");
        assert!(
            info.max_transfer_bytes >= info.lba_format.lba_bytes(),
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
        let (_file, info) = open(&expected);
        let len_bytes = 2 * u64::from(info.max_transfer_bytes) + 3 * u64::from(expected.lba_bytes);
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
        let (file, info) = open(&expected);
        let mut buf = vec![0u8; expected.lba_bytes as usize];
        let error =
            nvme_read_blocking(file.as_fd(), &info, info.size_bytes(), &mut buf).unwrap_err();
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
        let (file, info) = open(&expected);
        let mut buf = vec![0u8; expected.lba_bytes as usize];
        let error = nvme_read_blocking(file.as_fd(), &info, 8, &mut buf).unwrap_err();
        assert_eq!(
            error,
            IoError::Misaligned {
                align_bytes: expected.lba_bytes as usize
            }
        );
        let mut short = vec![0u8; 8];
        let error = nvme_read_blocking(file.as_fd(), &info, 0, &mut short).unwrap_err();
        assert_eq!(
            error,
            IoError::Misaligned {
                align_bytes: expected.lba_bytes as usize
            }
        );
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

// ---------------------------------------------------------------------------------------------
// The passthrough engine (`NvmeEngine`) on the same namespaces. Every test that writes puts the
// fill pattern back and checks it through the ioctl path, so the tests stay independent.

/// The longest any batch below may take in the guest (software emulation is slow).
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

/// The block device of the same namespace (`/dev/nvme0n1` for `/dev/ng0n1`).
fn block_path(expected: &Expected) -> PathBuf {
    let name = expected.path.file_name().unwrap().to_str().unwrap();
    let rest = name.strip_prefix("ng").expect("rig devices are /dev/ngXnY");
    PathBuf::from(format!("/dev/nvme{rest}"))
}

/// A writable engine on `expected`'s namespace; `pool` registered as fixed buffers if given.
fn writable_engine(expected: &Expected, window: usize, pool: Option<&BufferPool>) -> NvmeEngine {
    let mut builder = NvmeEngine::builder(&expected.path)
        .window(window)
        .write(true);
    if let Some(pool) = pool {
        builder = builder.fixed_buffers(pool);
    }
    builder
        .build()
        .unwrap_or_else(|error| panic!("{}: {error}: {:?}", expected.path.display(), error))
}

/// Submits `ops` as one batch and reaps until each completed once; sorted by tag.
fn run(engine: &mut NvmeEngine, mut ops: Vec<Op>) -> Vec<Completion> {
    let count = ops.len();
    engine.submit(&mut ops);
    let deadline = Instant::now() + BATCH_TIMEOUT;
    let mut completions = Vec::with_capacity(count);
    while completions.len() < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} operations pending after {BATCH_TIMEOUT:?}",
            count - completions.len()
        );
        engine.reap(&mut completions, Wait::Until(deadline));
    }
    completions.sort_by_key(Completion::tag);
    let tags: BTreeSet<u64> = completions.iter().map(Completion::tag).collect();
    assert_eq!(tags.len(), count, "an operation completed twice");
    assert_eq!(engine.pending_count(), 0);
    completions
}

/// The fill pattern's bytes for `offset_bytes .. offset_bytes + len_bytes`.
fn fill_bytes(offset_bytes: u64, len_bytes: usize) -> Vec<u8> {
    (offset_bytes..offset_bytes + len_bytes as u64)
        .map(|at| (at & !7).to_le_bytes()[(at & 7) as usize])
        .collect()
}

/// Writes `bytes` at `offset_bytes` through the engine, in 1 MiB commands-worth of operations.
fn write_through_engine(expected: &Expected, offset_bytes: u64, bytes: &[u8]) {
    const CHUNK_BYTES: usize = 1 << 20;
    let mut engine = writable_engine(expected, 8, None);
    let ops = bytes
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(index, chunk)| {
            let mut buffer = Buffer::new_aligned(chunk.len(), PAGE_BYTES).unwrap();
            buffer.as_mut_slice().copy_from_slice(chunk);
            Op::write(
                index as u64,
                offset_bytes + (index * CHUNK_BYTES) as u64,
                buffer,
            )
        })
        .collect();
    for completion in run(&mut engine, ops) {
        let len_bytes = completion.info().len_bytes;
        assert_eq!(completion.result(), &Ok(len_bytes), "{}", completion.info());
    }
}

/// Puts the fill pattern back over `offset_bytes .. + len_bytes` and checks it with the
/// synchronous ioctl path.
fn restore_fill(expected: &Expected, offset_bytes: u64, len_bytes: usize) {
    write_through_engine(expected, offset_bytes, &fill_bytes(offset_bytes, len_bytes));
    let (file, info) = open(expected);
    let mut back = vec![0u8; len_bytes];
    nvme_read_blocking(file.as_fd(), &info, offset_bytes, &mut back).unwrap();
    check_pattern(&expected.path, offset_bytes, &back);
}

/// Reads at `(offset_bytes, len_bytes)` into buffers from `pool` (registered or not) and
/// checks every byte against the fill pattern.
fn read_and_check_through_engine(
    expected: &Expected,
    engine: &mut NvmeEngine,
    pool: &BufferPool,
    ranges: &[(u64, usize)],
) {
    let ops = ranges
        .iter()
        .enumerate()
        .map(|(index, &(offset_bytes, len_bytes))| {
            let mut buffer = pool.take().expect("a buffer per range");
            buffer.set_len(len_bytes);
            buffer.as_mut_slice().fill(0xa5);
            Op::read(index as u64, offset_bytes, buffer)
        })
        .collect();
    for completion in run(engine, ops) {
        let info = completion.info();
        assert_eq!(completion.result(), &Ok(info.len_bytes), "{info}");
        check_pattern(&expected.path, info.offset_bytes, completion.data());
    }
}

#[test]
fn engine_identifies_the_namespace_like_the_ioctl_path() {
    for expected in expected_devices() {
        let (_file, info) = open(&expected);
        let engine = NvmeEngine::open(&expected.path).unwrap();
        println!("{}: {}", expected.path.display(), engine.setup_report());
        assert_eq!(engine.namespace(), &info);
        assert_eq!(engine.device().size_bytes(), expected.size_bytes);
        assert_eq!(engine.device().logical_block_bytes(), expected.lba_bytes);
        let capabilities = engine.capabilities();
        assert_eq!(capabilities.name, "nvme");
        assert!(capabilities.passthrough);
        assert!(!capabilities.fixed_buffers);
        assert_eq!(capabilities.align_bytes, expected.lba_bytes as usize);
    }
}

#[test]
fn engine_refuses_the_block_device_and_the_controller() {
    for expected in expected_devices() {
        let error = NvmeEngine::open(block_path(&expected)).unwrap_err();
        assert!(
            matches!(
                error,
                NvmeSetupError::Namespace(NvmeOpenError::IsBlockDevice { .. })
            ),
            "{error:?}"
        );
        let error = NvmeEngine::open("/dev/nvme0").unwrap_err();
        assert!(
            matches!(
                error,
                NvmeSetupError::Namespace(NvmeOpenError::NotNvmeNamespace { .. })
            ),
            "{error:?}"
        );
    }
}

/// The conformance suite with the serial reference on the namespace's block device (O_DIRECT,
/// so no page cache hides what the engine wrote) and the engine under test on its char
/// device: the same blocks, reached two ways.
#[test]
fn engine_passes_the_conformance_suite_on_both_namespaces() {
    use rbio_core::conformance::{pattern_byte, Suite, Target};
    // The suite patterns 64 slots of 64 KiB and its batches also touch the 3 slots after them,
    // which are past the end of its own 4 MiB image but inside a 64 MiB namespace: give them
    // the suite's pattern too. Everything is put back to the rig's fill pattern afterwards.
    const SUITE_BYTES: u64 = (64 + 3) * (64 << 10);
    for expected in expected_devices() {
        let tail: Vec<u8> = (4 << 20..SUITE_BYTES).map(pattern_byte).collect();
        write_through_engine(&expected, 4 << 20, &tail);
        let name = expected.path.file_name().unwrap().to_str().unwrap();
        for (window, fixed) in [(64, true), (7, false)] {
            let started = Instant::now();
            let label = format!(
                "nvme/{name}/window-{window}/{}",
                if fixed { "fixed" } else { "unfixed" }
            );
            Suite::new(&label)
                .direct(true)
                .on_path(block_path(&expected))
                .cases(12)
                .run(|target: &Target| {
                    let engine = writable_engine(&expected, window, fixed.then_some(&target.pool));
                    assert_eq!(engine.capabilities().fixed_buffers, fixed);
                    engine
                });
            println!("conformance[{label}]: passed in {:?}", started.elapsed());
        }
        restore_fill(&expected, 0, SUITE_BYTES as usize);
    }
}

#[test]
fn engine_reads_match_the_fill_pattern_with_and_without_fixed_buffers() {
    for expected in expected_devices() {
        let lba_bytes = u64::from(expected.lba_bytes);
        let blocks = expected.size_bytes / lba_bytes;
        // Scattered reads of 1 to 64 blocks (at most 256 KiB), and the namespace's last block.
        let mut ranges: Vec<(u64, usize)> = (0..200u64)
            .map(|index| {
                let block_count = 1 + (index * 37) % 64;
                let start = (index * 7919 * 13) % (blocks - block_count);
                (start * lba_bytes, (block_count * lba_bytes) as usize)
            })
            .collect();
        ranges.push((expected.size_bytes - lba_bytes, lba_bytes as usize));
        for fixed in [false, true] {
            let pool = BufferPool::new(64 * 4096, ranges.len(), PAGE_BYTES).unwrap();
            let mut engine = writable_engine(&expected, 16, fixed.then_some(&pool));
            read_and_check_through_engine(&expected, &mut engine, &pool, &ranges);
            assert_eq!(engine.capabilities().fixed_buffers, fixed);
        }
    }
}

#[test]
fn engine_reads_the_whole_namespace() {
    const READ_BYTES: usize = 128 << 10;
    for expected in expected_devices() {
        let pool = BufferPool::new(READ_BYTES, 64, PAGE_BYTES).unwrap();
        let mut engine = writable_engine(&expected, 32, Some(&pool));
        let op_count = expected.size_bytes / READ_BYTES as u64;
        let started = Instant::now();
        let mut next = 0u64;
        let mut completions = Vec::new();
        let mut done = 0u64;
        let deadline = Instant::now() + BATCH_TIMEOUT;
        while done < op_count {
            let mut batch = Vec::new();
            while next < op_count {
                let Some(buffer) = pool.take() else { break };
                batch.push(Op::read(next, next * READ_BYTES as u64, buffer));
                next += 1;
            }
            engine.submit(&mut batch);
            engine.reap(&mut completions, Wait::Until(deadline));
            assert!(Instant::now() < deadline, "whole-namespace read hung");
            for completion in completions.drain(..) {
                let info = completion.info();
                assert_eq!(completion.result(), &Ok(READ_BYTES), "{info}");
                check_pattern(&expected.path, info.offset_bytes, completion.data());
                done += 1;
            }
        }
        let elapsed = started.elapsed();
        println!(
            "{}: read and checked {} MiB in {op_count} reads of {} KiB, window 32, fixed, in {elapsed:?} ({:.0} MiB/s under emulation); {:?}",
            expected.path.display(),
            expected.size_bytes >> 20,
            READ_BYTES >> 10,
            (expected.size_bytes >> 20) as f64 / elapsed.as_secs_f64(),
            engine.stats()
        );
    }
}

#[test]
fn engine_writes_read_back_then_flush() {
    for expected in expected_devices() {
        let lba_bytes = expected.lba_bytes as usize;
        for fixed in [false, true] {
            let pool = BufferPool::new(16 * 4096, 8, PAGE_BYTES).unwrap();
            let mut engine = writable_engine(&expected, 4, fixed.then_some(&pool));
            let region_offset_bytes = (8 << 20) + u64::from(fixed) * (1 << 20);
            let writes: Vec<(u64, usize)> = (0..8u64)
                .map(|index| {
                    let len_bytes = (1 + index as usize * 5) * lba_bytes;
                    (
                        region_offset_bytes + index * (64 << 10),
                        len_bytes.min(64 << 10),
                    )
                })
                .collect();
            let content =
                |tag: usize, at: usize| (tag as u8).wrapping_mul(59) ^ (at as u8) ^ (at >> 9) as u8;
            let ops = writes
                .iter()
                .enumerate()
                .map(|(tag, &(offset_bytes, len_bytes))| {
                    let mut buffer = pool.take().unwrap();
                    buffer.set_len(len_bytes);
                    for (at, byte) in buffer.as_mut_slice().iter_mut().enumerate() {
                        *byte = content(tag, at);
                    }
                    Op::write(tag as u64, offset_bytes, buffer)
                })
                .collect();
            for completion in run(&mut engine, ops) {
                let info = completion.info();
                assert_eq!(completion.result(), &Ok(info.len_bytes), "{info}");
            }
            let flushed = run(&mut engine, vec![Op::flush(99)]);
            assert_eq!(flushed[0].result(), &Ok(0), "flush");
            let (file, info) = open(&expected);
            for (tag, &(offset_bytes, len_bytes)) in writes.iter().enumerate() {
                let mut back = vec![0u8; len_bytes];
                nvme_read_blocking(file.as_fd(), &info, offset_bytes, &mut back).unwrap();
                let wanted: Vec<u8> = (0..len_bytes).map(|at| content(tag, at)).collect();
                assert!(
                    back == wanted,
                    "{}: write {tag} at {offset_bytes} ({}) did not read back",
                    expected.path.display(),
                    if fixed { "fixed" } else { "unfixed" }
                );
            }
            drop(engine);
            restore_fill(&expected, region_offset_bytes, 8 * (64 << 10));
        }
    }
}

#[test]
fn engine_read_past_the_end_is_out_of_range_or_the_controllers_status() {
    for expected in expected_devices() {
        let lba_bytes = expected.lba_bytes as usize;
        let ops = || {
            vec![
                Op::read(
                    0,
                    expected.size_bytes,
                    Buffer::new_aligned(lba_bytes, PAGE_BYTES).unwrap(),
                ),
                Op::read(
                    1,
                    expected.size_bytes - lba_bytes as u64,
                    Buffer::new_aligned(2 * lba_bytes, PAGE_BYTES).unwrap(),
                ),
            ]
        };
        let mut checked = writable_engine(&expected, 4, None);
        for completion in run(&mut checked, ops()) {
            assert_eq!(
                completion.result(),
                &Err(IoError::OutOfRange {
                    size_bytes: expected.size_bytes
                }),
                "{}",
                completion.info()
            );
        }
        let mut unchecked = NvmeEngine::builder(&expected.path)
            .check_range(false)
            .build()
            .unwrap();
        assert_eq!(unchecked.device().size_bytes(), 0);
        assert_eq!(unchecked.namespace().size_bytes(), expected.size_bytes);
        for completion in run(&mut unchecked, ops()) {
            let Err(IoError::Nvme(status)) = completion.result() else {
                panic!(
                    "{}: {} gave {:?}, not an NVMe status",
                    expected.path.display(),
                    completion.info(),
                    completion.result()
                );
            };
            println!(
                "{}: {}: {status}",
                expected.path.display(),
                completion.info()
            );
            assert_eq!(
                (status.sct, status.sc),
                NvmeStatus::LBA_OUT_OF_RANGE,
                "{status}"
            );
            assert!(status.dnr, "{status}");
            assert!(completion.buffer().is_some(), "the buffer comes back");
        }
    }
}

#[test]
fn engine_runs_a_batch_far_larger_than_the_ring() {
    const OP_COUNT: usize = 5000;
    for expected in expected_devices() {
        let pool = BufferPool::new(4096, OP_COUNT, PAGE_BYTES).unwrap();
        let mut engine = writable_engine(&expected, 4, Some(&pool));
        assert_eq!(engine.setup_report().sq_entries, 4);
        let blocks_4k = expected.size_bytes / 4096;
        let ranges: Vec<(u64, usize)> = (0..OP_COUNT as u64)
            .map(|index| ((index * 7919) % blocks_4k * 4096, 4096))
            .collect();
        let started = Instant::now();
        read_and_check_through_engine(&expected, &mut engine, &pool, &ranges);
        let stats = engine.stats();
        println!(
            "{}: {OP_COUNT} reads through a 4-entry ring in {:?}; {stats:?}",
            expected.path.display(),
            started.elapsed()
        );
        assert_eq!(stats.sqe_count, OP_COUNT as u64);
    }
}

#[test]
fn engine_splits_a_transfer_larger_than_the_limit() {
    for expected in expected_devices() {
        let (_file, info) = open(&expected);
        let lba_bytes = u64::from(expected.lba_bytes);
        let len_bytes = 2 * u64::from(info.max_transfer_bytes) + 3 * lba_bytes;
        let offset_bytes = 5 * lba_bytes;
        let buffer_bytes = (len_bytes as usize).next_multiple_of(PAGE_BYTES);
        for fixed in [false, true] {
            let pool = BufferPool::new(buffer_bytes, 2, PAGE_BYTES).unwrap();
            let mut engine = writable_engine(&expected, 4, fixed.then_some(&pool));
            read_and_check_through_engine(
                &expected,
                &mut engine,
                &pool,
                &[(offset_bytes, len_bytes as usize)],
            );
            let commands = engine.stats().sqe_count;
            assert!(commands >= 3, "{len_bytes} bytes in {commands} commands");
            // A split write, read back through the ioctl path.
            let mut buffer = pool.take().unwrap();
            buffer.set_len(len_bytes as usize);
            for (at, byte) in buffer.as_mut_slice().iter_mut().enumerate() {
                *byte = (at as u8).wrapping_mul(3) ^ (at >> 12) as u8 ^ u8::from(fixed);
            }
            let wanted = buffer.as_slice().to_vec();
            let written = run(&mut engine, vec![Op::write(0, offset_bytes, buffer)]);
            assert_eq!(written[0].result(), &Ok(len_bytes as usize));
            let (file, _) = open(&expected);
            let mut back = vec![0u8; len_bytes as usize];
            nvme_read_blocking(file.as_fd(), &info, offset_bytes, &mut back).unwrap();
            assert!(
                back == wanted,
                "{}: split write did not read back",
                expected.path.display()
            );
            println!(
                "{}: {len_bytes} bytes ({}) read and written in {} commands",
                expected.path.display(),
                if fixed { "fixed" } else { "unfixed" },
                engine.stats().sqe_count
            );
            drop(engine);
            restore_fill(&expected, offset_bytes, len_bytes as usize);
        }
    }
}

/// Buffers need not be page aligned (the kernel maps their pages and builds the PRPs), only
/// dword aligned; an odd address is refused for that operation alone.
#[test]
fn engine_takes_buffers_off_a_page_and_refuses_odd_addresses() {
    for expected in expected_devices() {
        let lba_bytes = expected.lba_bytes as usize;
        for fixed in [false, true] {
            // Buffers of 9 × 512 bytes, 512-aligned: all but every eighth start inside a page.
            let pool = BufferPool::new(9 * 512, 16, 512).unwrap();
            let buffers: Vec<Buffer> = std::iter::from_fn(|| pool.take()).collect();
            let mut engine = writable_engine(&expected, 8, fixed.then_some(&pool));
            let ops = buffers
                .into_iter()
                .enumerate()
                .map(|(index, mut buffer)| {
                    buffer.set_len(4096);
                    Op::read(index as u64, index as u64 * 8192, buffer)
                })
                .collect();
            let completions = run(&mut engine, ops);
            let off_page = completions
                .iter()
                .filter(|c| c.buffer().unwrap().as_slice().as_ptr() as usize % PAGE_BYTES != 0)
                .count();
            assert!(off_page >= 8, "only {off_page} buffers off a page boundary");
            for completion in &completions {
                assert_eq!(completion.result(), &Ok(4096), "{}", completion.info());
                check_pattern(
                    &expected.path,
                    completion.info().offset_bytes,
                    completion.data(),
                );
            }
            // Buffers of 4097 bytes, byte-aligned: every other one starts at an odd address.
            let odd_pool = BufferPool::new(lba_bytes + 1, 2, 1).unwrap();
            let mut odd_engine = writable_engine(&expected, 8, fixed.then_some(&odd_pool));
            let ops = std::iter::from_fn(|| odd_pool.take())
                .enumerate()
                .map(|(index, mut buffer)| {
                    buffer.set_len(lba_bytes);
                    Op::read(index as u64, 0, buffer)
                })
                .collect();
            let mut refused_count = 0;
            for completion in run(&mut odd_engine, ops) {
                let address = completion.buffer().unwrap().as_slice().as_ptr() as usize;
                if address % 4 == 0 {
                    assert_eq!(completion.result(), &Ok(lba_bytes));
                } else {
                    assert_eq!(
                        completion.result(),
                        &Err(IoError::Misaligned {
                            align_bytes: lba_bytes
                        }),
                        "buffer at {address:#x}"
                    );
                    refused_count += 1;
                }
            }
            assert_eq!(
                refused_count, 1,
                "one of the two buffers starts at an odd address"
            );
        }
    }
}

#[test]
fn engine_refuses_misaligned_operations_alone() {
    for expected in expected_devices() {
        let lba_bytes = expected.lba_bytes as usize;
        let pool = BufferPool::new(8192, 4, PAGE_BYTES).unwrap();
        let mut engine = writable_engine(&expected, 4, Some(&pool));
        let shapes = [
            (0, lba_bytes),
            (8, lba_bytes),
            (0, lba_bytes - 8),
            (lba_bytes as u64, lba_bytes),
        ];
        let ops = shapes
            .iter()
            .enumerate()
            .map(|(tag, &(offset_bytes, len_bytes))| {
                let mut buffer = pool.take().unwrap();
                buffer.set_len(len_bytes);
                Op::read(tag as u64, offset_bytes, buffer)
            })
            .collect();
        let results: Vec<Result<usize, IoError>> = run(&mut engine, ops)
            .iter()
            .map(|c| c.result().clone())
            .collect();
        let misaligned = Err(IoError::Misaligned {
            align_bytes: lba_bytes,
        });
        assert_eq!(
            results,
            vec![Ok(lba_bytes), misaligned.clone(), misaligned, Ok(lba_bytes)]
        );
    }
}

#[test]
fn engine_polls_for_completions_with_iopoll() {
    for expected in expected_devices() {
        let pool = BufferPool::new(16 << 10, 64, PAGE_BYTES).unwrap();
        let mut engine = NvmeEngine::builder(&expected.path)
            .window(16)
            .iopoll(true)
            .fixed_buffers(&pool)
            .build()
            .unwrap();
        assert!(
            engine.flags().contains(RingFlags::IOPOLL),
            "{}",
            engine.setup_report()
        );
        let ranges: Vec<(u64, usize)> = (0..64u64)
            .map(|index| (index * (96 << 10), 16 << 10))
            .collect();
        read_and_check_through_engine(&expected, &mut engine, &pool, &ranges);
    }
}

#[test]
fn engine_drop_with_commands_in_flight_returns_promptly() {
    for expected in expected_devices() {
        let pool = BufferPool::new(128 << 10, 64, PAGE_BYTES).unwrap();
        let mut engine = writable_engine(&expected, 64, Some(&pool));
        let mut ops: Vec<Op> = (0..64u64)
            .map(|index| Op::read(index, index * (128 << 10), pool.take().unwrap()))
            .collect();
        engine.submit(&mut ops);
        let started = Instant::now();
        drop(engine);
        let elapsed = started.elapsed();
        assert!(
            elapsed < DROP_DRAIN_TIMEOUT + Duration::from_secs(1),
            "drop took {elapsed:?}"
        );
        // Every buffer came back to the pool: the kernel had finished with all of them.
        assert_eq!(pool.taken_count(), 0, "buffers still out after drop");
    }
}
