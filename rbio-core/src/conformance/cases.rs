//! The suite's cases, each comparing the engine under test with the reference.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use super::image::{pattern_byte, read_back, write_pattern};
use super::plan::{self, PlannedOp, SLOT_BYTES};
use super::Target;
use crate::buffer::{Buffer, BufferPool};
use crate::completion::Completion;
use crate::driver::{OpSpec, Stream};
use crate::engine::{Engine, Wait};
use crate::error::IoError;
use crate::fault::{Fault, FaultPlan, FaultTarget, FaultyEngine};
use crate::op::{Op, OpInfo};
use crate::ready::poll_readable;
use crate::serial::SerialEngine;

/// How long any one batch may take before the suite calls the engine hung.
const BATCH_DEADLINE: Duration = Duration::from_secs(60);

/// State shared by the cases of one suite run.
pub(super) struct Context<'a> {
    pub(super) label: &'a str,
    pub(super) target: &'a Target,
    pub(super) reference: SerialEngine,
    pub(super) reference_pool: BufferPool,
    pub(super) slot_count: u64,
    pub(super) cases: u32,
}

type Case = fn(&mut Context<'_>, &mut dyn Engine);

/// Every case, by label.
pub(super) const ALL: [(&str, Case); 9] = [
    ("empty-batch", empty_batch),
    ("random-batches", random_batches),
    ("large-batch", large_batch),
    ("out-of-range", out_of_range),
    ("misaligned", misaligned),
    ("flush", flush),
    ("readiness", readiness),
    ("swapped-buffer", swapped_buffer),
    ("held-buffers", held_buffers),
];

/// What a completion said, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    info: OpInfo,
    result: Result<usize, IoError>,
    data: Vec<u8>,
}

/// Submits `ops` as one batch and reaps until each has completed exactly once.
fn execute(label: &str, engine: &mut dyn Engine, mut ops: Vec<Op>) -> BTreeMap<u64, Outcome> {
    let submitted: BTreeMap<u64, OpInfo> = ops.iter().map(|op| (op.tag(), op.info())).collect();
    assert_eq!(
        submitted.len(),
        ops.len(),
        "conformance[{label}]: suite built duplicate tags"
    );
    let pending_before = engine.pending_count();
    engine.submit(&mut ops);
    assert!(
        ops.is_empty(),
        "conformance[{label}]: submit left {} ops in the batch",
        ops.len()
    );
    let deadline = Instant::now() + BATCH_DEADLINE;
    let mut completions: Vec<Completion> = Vec::new();
    let mut outcomes = BTreeMap::new();
    while outcomes.len() < submitted.len() {
        assert!(
            Instant::now() < deadline,
            "conformance[{label}]: {} of {} ops not completed after {BATCH_DEADLINE:?}",
            submitted.len() - outcomes.len(),
            submitted.len()
        );
        engine.reap(&mut completions, Wait::Until(deadline));
        for completion in completions.drain(..) {
            let tag = completion.tag();
            let info = submitted.get(&tag).unwrap_or_else(|| {
                panic!("conformance[{label}]: completion for unknown tag {tag}")
            });
            assert_eq!(
                &completion.info(),
                info,
                "conformance[{label}]: tag {tag} info changed"
            );
            let outcome = Outcome {
                info: completion.info(),
                result: completion.result().clone(),
                data: completion.data().to_vec(),
            };
            let repeated = outcomes.insert(tag, outcome).is_some();
            assert!(!repeated, "conformance[{label}]: tag {tag} completed twice");
        }
    }
    assert_eq!(
        engine.pending_count(),
        pending_before,
        "conformance[{label}]: pending count did not return after every op completed"
    );
    outcomes
}

/// Builds the ops of a plan with buffers from `pool`; tags are spread over the u64 range.
fn build_ops(plan: &[PlannedOp], with_flush: bool, pool: &BufferPool) -> Vec<Op> {
    let mut ops: Vec<Op> = plan
        .iter()
        .enumerate()
        .map(|(index, planned)| {
            let mut buffer = pool.take().expect("suite pool has a buffer per op");
            buffer.set_len(planned.len_bytes);
            let tag = spread_tag(index);
            if planned.write {
                for (position, byte) in buffer.as_mut_slice().iter_mut().enumerate() {
                    *byte = plan::write_byte(planned, position);
                }
                Op::write(tag, planned.offset_bytes(), buffer)
            } else {
                buffer.as_mut_slice().fill(0xee);
                Op::read(tag, planned.offset_bytes(), buffer)
            }
        })
        .collect();
    if with_flush {
        ops.push(Op::flush(spread_tag(plan.len())));
    }
    ops
}

fn spread_tag(index: usize) -> u64 {
    (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef
}

/// Runs `plan` on the reference, then on the engine, from the same image; checks both.
fn compare_plan(
    context: &mut Context<'_>,
    engine: &mut dyn Engine,
    case: &str,
    plan: &[PlannedOp],
    with_flush: bool,
) -> Result<(), String> {
    let label = format!("{}/{case}", context.label);
    let reference_ops = build_ops(plan, with_flush, &context.reference_pool);
    let expected = execute(&label, &mut context.reference, reference_ops);
    check_against_image(context, plan, &expected, "serial")?;
    let actual = execute(
        &label,
        engine,
        build_ops(plan, with_flush, &context.target.pool),
    );
    check_against_image(context, plan, &actual, engine.capabilities().name)?;
    for (tag, want) in &expected {
        let got = &actual[tag];
        if got != want {
            return Err(format!(
                "{} (tag {tag}): serial gave {:?} with {} bytes, {} gave {:?} with {} bytes{}",
                want.info,
                want.result,
                want.data.len(),
                engine.capabilities().name,
                got.result,
                got.data.len(),
                if got.result == want.result {
                    " (data differs)"
                } else {
                    ""
                },
            ));
        }
    }
    Ok(())
}

/// Reads must show the pattern; successful writes must read back, and are then undone.
fn check_against_image(
    context: &Context<'_>,
    plan: &[PlannedOp],
    outcomes: &BTreeMap<u64, Outcome>,
    engine_name: &str,
) -> Result<(), String> {
    let device = &context.target.device;
    for (index, planned) in plan.iter().enumerate() {
        let outcome = &outcomes[&spread_tag(index)];
        let offset_bytes = planned.offset_bytes();
        if !planned.write {
            let wrong =
                outcome.data.iter().enumerate().find(|(position, byte)| {
                    **byte != pattern_byte(offset_bytes + *position as u64)
                });
            if let Some((position, byte)) = wrong {
                return Err(format!(
                    "{engine_name}: {} returned {byte:#04x} at byte {position}, image has {:#04x}",
                    outcome.info,
                    pattern_byte(offset_bytes + position as u64)
                ));
            }
        } else if let Ok(done_bytes) = outcome.result {
            let on_device = read_back(device, offset_bytes, done_bytes);
            let expected: Vec<u8> = (0..done_bytes)
                .map(|i| plan::write_byte(planned, i))
                .collect();
            write_pattern(device, offset_bytes, done_bytes as u64);
            if on_device != expected {
                return Err(format!(
                    "{engine_name}: {} did not reach the device",
                    outcome.info
                ));
            }
        }
    }
    Ok(())
}

fn empty_batch(context: &mut Context<'_>, engine: &mut dyn Engine) {
    let label = context.label;
    engine.submit(&mut Vec::new());
    assert_eq!(
        engine.pending_count(),
        0,
        "conformance[{label}/empty-batch]: pending after nothing"
    );
    let mut completions = Vec::new();
    let far = Instant::now() + Duration::from_secs(30);
    assert_eq!(engine.reap(&mut completions, Wait::Until(far)), 0);
    assert!(
        Instant::now() < far,
        "conformance[{label}/empty-batch]: reap with nothing pending blocked until its deadline"
    );
}

fn random_batches(context: &mut Context<'_>, engine: &mut dyn Engine) {
    let config = Config {
        cases: context.cases,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = plan::batch(context.slot_count, 64);
    let context = std::cell::RefCell::new(context);
    let engine = std::cell::RefCell::new(engine);
    let result = runner.run(&strategy, |(plan, with_flush)| {
        let mut context = context.borrow_mut();
        let mut engine = engine.borrow_mut();
        compare_plan(&mut context, *engine, "random-batches", &plan, with_flush)
            .map_err(TestCaseError::fail)
    });
    if let Err(failure) = result {
        panic!(
            "conformance[{}/random-batches]: {failure}",
            context.borrow().label
        );
    }
}

fn large_batch(context: &mut Context<'_>, engine: &mut dyn Engine) {
    let in_flight_max = engine.capabilities().in_flight_max;
    let op_count = (4 * in_flight_max + 7).min(context.target.pool.buffer_count());
    let blocks = context.slot_count * SLOT_BYTES / 4096;
    let plan: Vec<PlannedOp> = (0..op_count as u64)
        .map(|index| {
            let block = (index * 7919) % blocks;
            PlannedOp {
                write: false,
                slot_index: block * 4096 / SLOT_BYTES,
                offset_in_slot: block * 4096 % SLOT_BYTES,
                len_bytes: 4096,
                fill: 0,
            }
        })
        .collect();
    let verdict = compare_plan(context, engine, "large-batch", &plan, false);
    if let Err(difference) = verdict {
        panic!(
            "conformance[{}/large-batch] ({op_count} ops): {difference}",
            context.label
        );
    }
}

fn out_of_range(context: &mut Context<'_>, engine: &mut dyn Engine) {
    let size_bytes = context.target.device.size_bytes();
    let cases = [
        (size_bytes, 4096),
        (size_bytes - 4096, 8192),
        (u64::MAX - 4095, 4096),
    ];
    let label = format!("{}/out-of-range", context.label);
    let pools = [&context.reference_pool, &context.target.pool];
    let mut results = Vec::new();
    for (engine, pool) in [
        (&mut context.reference as &mut dyn Engine, pools[0]),
        (engine, pools[1]),
    ] {
        let ops = cases
            .iter()
            .enumerate()
            .map(|(index, &(offset_bytes, len_bytes))| {
                let mut buffer = pool.take().expect("suite buffer");
                buffer.set_len(len_bytes);
                Op::read(index as u64, offset_bytes, buffer)
            })
            .collect();
        results.push(execute(&label, engine, ops));
    }
    for outcome in results[1].values() {
        let expected = Err(IoError::OutOfRange { size_bytes });
        assert_eq!(
            outcome.result, expected,
            "conformance[{label}]: {}",
            outcome.info
        );
    }
    assert_eq!(
        results[0], results[1],
        "conformance[{label}]: differs from serial"
    );
}

fn misaligned(context: &mut Context<'_>, engine: &mut dyn Engine) {
    let device = &context.target.device;
    let align = device.align_bytes() as u64;
    let label = format!("{}/misaligned", context.label);
    let shapes: [(u64, usize); 3] = [(1, 4096), (4096, 4095), (align / 2, align as usize)];
    let plan: Vec<PlannedOp> = shapes
        .iter()
        .enumerate()
        .map(|(index, &(offset_in_slot, len_bytes))| PlannedOp {
            write: index == 0,
            slot_index: index as u64,
            offset_in_slot,
            len_bytes,
            fill: 1,
        })
        .collect();
    let verdict = compare_plan(context, engine, "misaligned", &plan, false);
    assert_eq!(verdict, Ok(()), "conformance[{label}]");
    if device.is_direct() {
        let buffer = Buffer::new_aligned(4096, 4096).expect("buffer");
        let outcomes = execute(&label, engine, vec![Op::read(0, 1, buffer)]);
        assert!(
            matches!(outcomes[&0].result, Err(IoError::Misaligned { .. })),
            "conformance[{label}]: O_DIRECT read at offset 1 gave {:?}",
            outcomes[&0].result
        );
    }
}

fn flush(context: &mut Context<'_>, engine: &mut dyn Engine) {
    let label = format!("{}/flush", context.label);
    let plan = [PlannedOp {
        write: true,
        slot_index: 0,
        offset_in_slot: 0,
        len_bytes: 4096,
        fill: 3,
    }];
    assert_eq!(
        compare_plan(context, engine, "flush", &plan, true),
        Ok(()),
        "conformance[{label}]"
    );
    let outcomes = execute(&label, engine, vec![Op::flush(77)]);
    assert_eq!(
        outcomes[&77].result,
        Ok(0),
        "conformance[{label}]: flush alone"
    );
}

fn readiness(context: &mut Context<'_>, engine: &mut dyn Engine) {
    let label = format!("{}/readiness", context.label);
    let mut ops: Vec<Op> = (0..8u64)
        .map(|index| {
            let mut buffer = context.target.pool.take().expect("suite buffer");
            buffer.set_len(4096);
            Op::read(index, index * 4096, buffer)
        })
        .collect();
    engine.submit(&mut ops);
    let mut completions = Vec::new();
    let deadline = Instant::now() + BATCH_DEADLINE;
    while completions.len() < 8 {
        let remaining_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as i32;
        assert!(
            poll_readable(engine.readiness().as_fd(), remaining_ms.max(1)),
            "conformance[{label}]: readiness fd not readable with {} ops pending",
            8 - completions.len()
        );
        engine.reap(&mut completions, Wait::Nothing);
    }
    for completion in &completions {
        let expected: Vec<u8> = (0..4096)
            .map(|i| pattern_byte(completion.info().offset_bytes + i))
            .collect();
        assert_eq!(
            completion.data(),
            &expected[..],
            "conformance[{label}]: {}",
            completion.info()
        );
    }
}

/// A read whose buffer was swapped for a smaller one (or shrunk) after it was built must be
/// refused: the kernel would transfer the operation's length into whatever buffer it holds.
fn swapped_buffer(context: &mut Context<'_>, engine: &mut dyn Engine) {
    let label = format!("{}/swapped-buffer", context.label);
    let pools = [&context.reference_pool, &context.target.pool];
    let engines: [&mut dyn Engine; 2] = [&mut context.reference, engine];
    for (engine, pool) in engines.into_iter().zip(pools) {
        let mut swapped = Op::read(1, 0, pool.take().expect("suite buffer"));
        let mut small = pool.take().expect("suite buffer");
        small.set_len(4096);
        small.as_mut_slice().fill(0x5a);
        std::mem::swap(
            swapped.buffer_mut().expect("a read has a buffer"),
            &mut small,
        );
        let mut shrunk = Op::read(2, 0, pool.take().expect("suite buffer"));
        shrunk
            .buffer_mut()
            .expect("a read has a buffer")
            .set_len(100);
        let mut ops = vec![swapped, shrunk];
        engine.submit(&mut ops);
        let mut completions = Vec::new();
        let deadline = Instant::now() + BATCH_DEADLINE;
        while completions.len() < 2 && Instant::now() < deadline {
            engine.reap(&mut completions, Wait::Until(deadline));
        }
        completions.sort_by_key(Completion::tag);
        let name = engine.capabilities().name;
        assert_eq!(
            completions.len(),
            2,
            "conformance[{label}]: {name} lost an operation"
        );
        let len_bytes = plan::OP_BYTES_MAX;
        assert_eq!(
            completions[0].result(),
            &Err(IoError::BufferLength {
                buffer_bytes: 4096,
                len_bytes
            }),
            "conformance[{label}]: {name} accepted a swapped buffer"
        );
        let returned = completions[0]
            .buffer()
            .expect("a refused read gives its buffer back");
        assert!(
            returned.as_slice().iter().all(|&byte| byte == 0x5a),
            "conformance[{label}]: {name} wrote into a swapped buffer"
        );
        assert_eq!(
            completions[1].result(),
            &Err(IoError::BufferLength {
                buffer_bytes: 100,
                len_bytes
            }),
            "conformance[{label}]: {name} accepted a shrunk buffer"
        );
    }
}

/// Every operation of the first window times out at once and the engine keeps their buffers
/// past the timeout (as the kernel does for reads stuck in a device): the stream goes on with
/// the other reads, from a reserve and then from the buffers as they come back, and visits
/// each read exactly once; the held buffers all return to their pool.
fn held_buffers(context: &mut Context<'_>, engine: &mut dyn Engine) {
    const WINDOW: usize = 8;
    const READ_COUNT: u64 = 64;
    const STALL_TIMEOUT: Duration = Duration::from_millis(40);
    const HELD: Duration = Duration::from_millis(120);
    let label = format!("{}/held-buffers", context.label);
    for with_reserve in [true, false] {
        let plan = (0..WINDOW as u64).fold(
            FaultPlan::new(7).stall_timeout(STALL_TIMEOUT),
            |plan, index| {
                plan.with(
                    FaultTarget::Offset(index * 4096),
                    Fault::StallHolding { held: HELD },
                )
            },
        );
        let mut faulty = FaultyEngine::new(&mut *engine, plan).expect("fault injector");
        let pool = BufferPool::new(4096, WINDOW, 4096).expect("held-buffers pool");
        let reserve = BufferPool::new(4096, WINDOW, 4096).expect("held-buffers reserve");
        let specs = (0..READ_COUNT).map(|index| OpSpec::read(index, index * 4096, 4096));
        let mut visits = vec![0u32; READ_COUNT as usize];
        let mut wrong = Vec::new();
        // Far longer than the hold, so that a slow machine never turns it into a stall.
        let mut stream = Stream::new(&mut faulty, &pool)
            .window(WINDOW)
            .stall_timeout(BATCH_DEADLINE);
        if with_reserve {
            stream = stream.reserve(&reserve);
        }
        let stats = stream
            .run_reads(specs, |completion| {
                let index = completion.tag();
                visits[index as usize] += 1;
                let good = if index < WINDOW as u64 {
                    matches!(completion.result(), Err(IoError::TimedOut { .. }))
                        && completion.buffer().is_none()
                } else {
                    completion.result() == &Ok(4096)
                        && completion
                            .data()
                            .iter()
                            .enumerate()
                            .all(|(i, &byte)| byte == pattern_byte(index * 4096 + i as u64))
                };
                if !good {
                    wrong.push(format!("{}: {:?}", completion.info(), completion.result()));
                }
            })
            .unwrap_or_else(|error| panic!("conformance[{label}]: stream failed: {error}"));
        assert!(
            visits.iter().all(|&count| count == 1),
            "conformance[{label}]: visits per read (reserve {with_reserve}): {visits:?}"
        );
        assert!(wrong.is_empty(), "conformance[{label}]: {wrong:?}");
        assert_eq!(stats.op_count, READ_COUNT);
        assert_eq!(faulty.counts().stalled, WINDOW as u64);
        if !with_reserve {
            assert_eq!(
                faulty.counts().held_returned,
                WINDOW as u64,
                "conformance[{label}]: without a reserve the stream ran on returned buffers"
            );
        }
        // What is still held comes back, announced on the readiness fd.
        let deadline = Instant::now() + BATCH_DEADLINE;
        while faulty.held_buffer_count() > 0 {
            let left_ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as i32;
            assert!(
                poll_readable(faulty.readiness(), left_ms.max(1)),
                "conformance[{label}]: {} held buffers never announced",
                faulty.held_buffer_count()
            );
            assert_eq!(faulty.reap(&mut Vec::new(), Wait::Nothing), 0);
        }
        assert_eq!(faulty.counts().held_returned, WINDOW as u64);
        assert_eq!(
            (pool.taken_count(), reserve.taken_count()),
            (0, 0),
            "conformance[{label}]: buffers not back in their pools"
        );
    }
}
