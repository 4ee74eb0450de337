//! The streaming driver keeps memory bounded by its pool whatever the number of operations,
//! visits every completion exactly once, and reports engines that stall or oversized ops.

use std::sync::Arc;
use std::time::Duration;

use rbio_core::{
    stall_timeout_for, BufferPool, Device, Engine, Fault, FaultPlan, FaultTarget, FaultyEngine,
    IoError, OpSpec, SerialEngine, Stream, StreamError, STALL_TIMEOUT_DEFAULT,
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
    // Five in flight, and at most five completed ones still being looked at.
    assert!(pool.taken_max() <= 10);
}

#[test]
fn the_next_operations_go_out_before_completions_are_visited_when_buffers_allow() {
    // Window 4: a pool of 8 has buffers to spare for the top-up, a pool of 4 has none.
    for pool_buffer_count in [8, 4] {
        let (_file, device) = image(1 << 20);
        let mut engine = SerialEngine::new(device).unwrap();
        let pool = BufferPool::new(4096, pool_buffer_count, 4096).unwrap();
        let specs = (0..64u64).map(|tag| OpSpec::read(tag, tag * 4096, 4096));
        let (mut visited, mut taken_while_visiting) = (0, 0);
        let stats = Stream::new(&mut engine, &pool)
            .window(4)
            .run_reads(specs, |completion| {
                assert_eq!(completion.result(), &Ok(4096));
                visited += 1;
                taken_while_visiting = taken_while_visiting.max(pool.taken_count());
            })
            .unwrap();
        assert_eq!((visited, stats.op_count), (64, 64));
        assert_eq!(pool.taken_count(), 0, "every buffer back");
        // More than the window's buffers taken during a visit: the reads after the
        // completion were already out, with buffers of their own.
        assert_eq!(
            taken_while_visiting > 4,
            pool_buffer_count > 4,
            "pool {pool_buffer_count}: {taken_while_visiting} taken while visiting"
        );
    }
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

/// Every buffer stays with the engine after its operation timed out, for longer than the
/// stall timeout: the stream ends with `Stalled`, having visited the timed-out operations
/// once and counted every operation it never started; nothing is lost or reported twice.
#[test]
fn buffers_held_past_the_stall_timeout_end_the_stream_with_every_operation_accounted() {
    const OP_COUNT: u64 = 40;
    let (_file, device) = image(1 << 20);
    let serial = SerialEngine::new(device).unwrap();
    let plan = (0..4u64).fold(
        FaultPlan::new(1).stall_timeout(Duration::from_millis(20)),
        |plan, index| {
            plan.with(
                FaultTarget::Offset(index * 4096),
                Fault::StallHolding {
                    held: Duration::from_secs(3600),
                },
            )
        },
    );
    let mut engine = FaultyEngine::new(serial, plan).unwrap();
    assert_eq!(engine.op_timeout(), Some(Duration::from_millis(20)));
    let pool = BufferPool::new(4096, 4, 4096).unwrap();
    let mut visited = Vec::new();
    let specs = (0..OP_COUNT).map(|tag| OpSpec::read(tag, tag * 4096, 4096));
    let error = Stream::new(&mut engine, &pool)
        .run_reads(specs, |c| {
            assert!(matches!(c.result(), Err(IoError::TimedOut { .. })));
            visited.push(c.tag());
        })
        .unwrap_err();
    let StreamError::Stalled {
        pending_count,
        held_buffer_count,
        unstarted_count,
        waited,
    } = error
    else {
        panic!("expected a stall, got {error}");
    };
    visited.sort_unstable();
    assert_eq!(visited, [0, 1, 2, 3]);
    assert_eq!((pending_count, held_buffer_count), (0, 4));
    assert_eq!(visited.len() + unstarted_count, OP_COUNT as usize);
    assert!(
        waited >= stall_timeout_for(Some(Duration::from_millis(20))),
        "gave up after {waited:?}"
    );
    drop(engine);
    assert_eq!(
        pool.taken_count(),
        0,
        "the engine's drop gives held buffers back"
    );
}

/// With buffers held and a reserve, the stream goes on with the other operations at once;
/// once the held buffers are back it needs no reserve.
#[test]
fn a_reserve_keeps_the_stream_going_while_buffers_are_held() {
    const OP_COUNT: u64 = 40;
    let (_file, device) = image(1 << 20);
    let serial = SerialEngine::new(device).unwrap();
    let plan = FaultPlan::new(1)
        .with(
            FaultTarget::Offset(0),
            Fault::StallHolding {
                held: Duration::from_secs(3600),
            },
        )
        .stall_timeout(Duration::from_millis(5));
    let mut engine = FaultyEngine::new(serial, plan).unwrap();
    let pool = BufferPool::new(4096, 1, 4096).unwrap();
    let reserve = BufferPool::new(4096, 1, 4096).unwrap();
    let mut ok_count = 0;
    let stats = Stream::new(&mut engine, &pool)
        .reserve(&reserve)
        .run_reads(
            (0..OP_COUNT).map(|tag| OpSpec::read(tag, tag * 4096, 4096)),
            |c| {
                ok_count += usize::from(c.result().is_ok());
            },
        )
        .unwrap();
    assert_eq!(stats.op_count, OP_COUNT);
    assert_eq!(ok_count, OP_COUNT as usize - 1);
    assert_eq!(engine.held_buffer_count(), 1);
    assert_eq!((pool.taken_count(), reserve.taken_count()), (1, 0));
}

#[test]
fn the_stall_timeout_is_twice_the_engines_operation_timeout() {
    assert_eq!(
        stall_timeout_for(Some(Duration::from_millis(300))),
        Duration::from_millis(600)
    );
    assert_eq!(stall_timeout_for(None), STALL_TIMEOUT_DEFAULT);
}
