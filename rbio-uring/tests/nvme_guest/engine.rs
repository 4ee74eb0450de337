//! The passthrough engine (`NvmeEngine`) on the rig's namespaces: conformance with the serial
//! engine, reads checked against the fill pattern, writes read back, fixed and unfixed
//! buffers, the controller's status past the end, a batch far larger than the ring, split
//! transfers, buffer alignment, IOPOLL and drop. Every test that writes puts the fill pattern
//! back and checks it through the ioctl path, so the tests stay independent.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rbio_core::{Buffer, BufferPool, Completion, Engine, IoError, NvmeStatus, Op, Wait};
use rbio_uring::{NvmeEngine, NvmeOpenError, NvmeSetupError, RingFlags, DROP_DRAIN_TIMEOUT};

use super::{check_pattern, expected_devices, open, Expected, PAGE_BYTES};

/// The longest any batch below may take in the guest (software emulation is slow).
const BATCH_TIMEOUT: Duration = Duration::from_secs(120);

/// The block device of the same namespace (`/dev/nvme0n1` for `/dev/ng0n1`).
fn block_path(expected: &Expected) -> PathBuf {
    let name = expected.path.file_name().unwrap().to_str().unwrap();
    let rest = name.strip_prefix("ng").expect("rig devices are /dev/ngXnY");
    PathBuf::from(format!("/dev/nvme{rest}"))
}

/// A writable engine on `expected`'s namespace; `pool` registered as fixed buffers if given.
pub(super) fn writable_engine(
    expected: &Expected,
    window: usize,
    pool: Option<&BufferPool>,
) -> NvmeEngine {
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
pub(super) fn run(engine: &mut NvmeEngine, mut ops: Vec<Op>) -> Vec<Completion> {
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
pub(super) fn fill_bytes(offset_bytes: u64, len_bytes: usize) -> Vec<u8> {
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
pub(super) fn restore_fill(expected: &Expected, offset_bytes: u64, len_bytes: usize) {
    write_through_engine(expected, offset_bytes, &fill_bytes(offset_bytes, len_bytes));
    let mut back = vec![0u8; len_bytes];
    open(expected)
        .read_blocking(offset_bytes, &mut back)
        .unwrap();
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
fn identifies_the_namespace_like_the_ioctl_path() {
    for expected in expected_devices() {
        let namespace = open(&expected);
        let engine = NvmeEngine::open(&expected.path).unwrap();
        println!("{}: {}", expected.path.display(), engine.setup_report());
        assert_eq!(engine.namespace(), namespace.info());
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
fn refuses_the_block_device_and_the_controller() {
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
fn passes_the_conformance_suite_on_both_namespaces() {
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
fn reads_match_the_fill_pattern_with_and_without_fixed_buffers() {
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
fn reads_the_whole_namespace() {
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
fn writes_read_back_then_flush() {
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
            let namespace = open(&expected);
            for (tag, &(offset_bytes, len_bytes)) in writes.iter().enumerate() {
                let mut back = vec![0u8; len_bytes];
                namespace.read_blocking(offset_bytes, &mut back).unwrap();
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
fn read_past_the_end_is_out_of_range_or_the_controllers_status() {
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
fn runs_a_batch_far_larger_than_the_ring() {
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
fn splits_a_transfer_larger_than_the_limit() {
    for expected in expected_devices() {
        let namespace = open(&expected);
        let lba_bytes = u64::from(expected.lba_bytes);
        let len_bytes = 2 * u64::from(namespace.info().max_transfer_bytes()) + 3 * lba_bytes;
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
            let mut back = vec![0u8; len_bytes as usize];
            namespace.read_blocking(offset_bytes, &mut back).unwrap();
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
fn takes_buffers_off_a_page_and_refuses_odd_addresses() {
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
fn refuses_misaligned_operations_alone() {
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
fn polls_for_completions_with_iopoll() {
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
fn drop_with_commands_in_flight_returns_promptly() {
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
