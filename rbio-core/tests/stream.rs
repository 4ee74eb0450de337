//! The streaming driver keeps memory bounded by its pool whatever the number of operations,
//! visits every completion exactly once, and reports engines that stall or oversized ops.

use std::sync::Arc;
use std::time::Duration;

use rbio_core::{
    BufferPool, Device, Fault, FaultPlan, FaultTarget, FaultyEngine, OpSpec, SerialEngine, Stream,
    StreamError,
};

fn image(len_bytes: usize) -> (tempfile::NamedTempFile, Arc<Device>) {
    let file = tempfile::NamedTempFile::new().unwrap();
    let bytes: Vec<u8> = (0..len_bytes).map(|i| (i / 512) as u8).collect();
    std::fs::write(file.path(), bytes).unwrap();
    let device = Arc::new(Device::open(file.path()).unwrap());
    (file, device)
}

#[test]
fn a_million_operations_through_eight_buffers() {
    const OP_COUNT: u64 = 1_000_000;
    let (_file, device) = image(1 << 20);
    let mut engine = SerialEngine::new(device).unwrap();
    let pool = BufferPool::new(512, 8, 512).unwrap();
    let mut seen = vec![false; OP_COUNT as usize];
    let mut wrong_bytes = 0u64;
    let specs = (0..OP_COUNT).map(|tag| OpSpec::read(tag, (tag % 2048) * 512, 512));
    let stats = Stream::new(&mut engine, &pool)
        .run_reads(specs, |completion| {
            let tag = completion.tag() as usize;
            assert!(!seen[tag], "tag {tag} visited twice");
            seen[tag] = true;
            let expected = ((tag as u64 % 2048) * 512 / 512) as u8;
            wrong_bytes += completion.data().iter().filter(|&&b| b != expected).count() as u64;
        })
        .unwrap();
    assert_eq!(stats.op_count, OP_COUNT);
    assert_eq!(stats.error_count, 0);
    assert_eq!(stats.transferred_bytes, OP_COUNT * 512);
    assert_eq!(wrong_bytes, 0);
    assert!(
        seen.iter().all(|&visited| visited),
        "some operation was never visited"
    );
    assert!(
        pool.taken_max() <= 8,
        "pool high-water {} exceeds its 8 buffers",
        pool.taken_max()
    );
    assert!(stats.in_flight_max <= 8);
    assert_eq!(
        pool.taken_count(),
        0,
        "buffers not returned after the stream"
    );
}

#[test]
fn window_limits_operations_in_flight() {
    let (_file, device) = image(1 << 20);
    let mut engine = SerialEngine::new(device).unwrap();
    let pool = BufferPool::new(4096, 64, 4096).unwrap();
    let specs = (0..1000u64).map(|tag| OpSpec::read(tag, (tag % 256) * 4096, 4096));
    let stats = Stream::new(&mut engine, &pool)
        .window(5)
        .run_reads(specs, |_| {})
        .unwrap();
    assert_eq!(stats.in_flight_max, 5);
    assert!(pool.taken_max() <= 5);
}

#[test]
fn writes_are_filled_then_visible_to_reads() {
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().set_len(64 << 10).unwrap();
    let device = Arc::new(Device::options().write(true).open(file.path()).unwrap());
    let mut engine = SerialEngine::new(device).unwrap();
    let pool = BufferPool::new(4096, 4, 4096).unwrap();
    let writes = (0..16u64).map(|tag| OpSpec::write(tag, tag * 4096, 4096));
    Stream::new(&mut engine, &pool)
        .run(
            writes,
            |info, bytes| bytes.fill(info.tag as u8 + 1),
            |c| assert_eq!(c.result(), &Ok(4096)),
        )
        .unwrap();
    let on_disk = std::fs::read(file.path()).unwrap();
    assert!(on_disk
        .chunks(4096)
        .enumerate()
        .all(|(i, chunk)| chunk.iter().all(|&b| b == i as u8 + 1)));
}

#[test]
fn errors_are_visited_not_dropped() {
    let (_file, device) = image(1 << 20);
    let serial = SerialEngine::new(device).unwrap();
    let plan = FaultPlan::new(1)
        .with(FaultTarget::Offset(8192), Fault::Stall)
        .stall_timeout(Duration::from_millis(5));
    let mut engine = FaultyEngine::new(serial, plan).unwrap();
    let pool = BufferPool::new(4096, 4, 4096).unwrap();
    let mut failed = Vec::new();
    let specs = (0..32u64).map(|tag| OpSpec::read(tag, tag * 4096, 4096));
    let stats = Stream::new(&mut engine, &pool)
        .run_reads(specs, |c| {
            if c.result().is_err() {
                failed.push(c.tag());
            }
        })
        .unwrap();
    assert_eq!(stats.op_count, 32);
    assert_eq!(failed, vec![2]);
}

#[test]
fn an_operation_larger_than_a_buffer_is_refused_after_draining() {
    let (_file, device) = image(1 << 20);
    let mut engine = SerialEngine::new(device).unwrap();
    let pool = BufferPool::new(4096, 4, 4096).unwrap();
    let specs = (0..10u64).map(|tag| OpSpec::read(tag, 0, if tag == 6 { 8192 } else { 4096 }));
    let mut visited = 0;
    let error = Stream::new(&mut engine, &pool)
        .run_reads(specs, |_| visited += 1)
        .unwrap_err();
    assert!(
        matches!(
            error,
            StreamError::OpTooLarge {
                buffer_bytes: 4096,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        visited, 6,
        "the operations before the oversized one all completed"
    );
    assert_eq!(pool.taken_count(), 0);
}
