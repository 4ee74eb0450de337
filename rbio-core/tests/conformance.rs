//! The conformance suite passes for the serial engine and for engines wrapped in the fault
//! injector and the retry policy when their faults are absorbed, and catches an engine that
//! is wrong.

use rbio_core::conformance::{run_all, Suite};
use rbio_core::{
    Errno, Fault, FaultPlan, FaultTarget, FaultyEngine, IoError, Retrying, SerialEngine,
};

#[test]
fn serial_engine_conforms() {
    run_all("serial", |target| {
        SerialEngine::new(target.device.clone()).unwrap()
    });
}

#[test]
fn fault_injector_with_an_empty_plan_conforms() {
    run_all("faulty-empty", |target| {
        let serial = SerialEngine::new(target.device.clone()).unwrap();
        FaultyEngine::new(serial, FaultPlan::new(7)).unwrap()
    });
}

#[test]
fn retry_policy_absorbs_a_storm_of_transient_errors() {
    run_all("retry-over-transient", |target| {
        let serial = SerialEngine::new(target.device.clone()).unwrap();
        let storm = FaultPlan::new(11)
            .with(
                FaultTarget::Share {
                    per_million: 500_000,
                },
                Fault::Transient {
                    errno: Errno::EINTR,
                    attempts: 3,
                },
            )
            .with(
                FaultTarget::All,
                Fault::Transient {
                    errno: Errno::EAGAIN,
                    attempts: 1,
                },
            );
        Retrying::new(FaultyEngine::new(serial, storm).unwrap(), 8)
    });
}

#[test]
fn suite_catches_an_engine_that_fails_reads() {
    let caught = std::panic::catch_unwind(|| {
        Suite::new("faulty-eio").cases(4).run(|target| {
            let serial = SerialEngine::new(target.device.clone()).unwrap();
            let plan =
                FaultPlan::new(3).with(FaultTarget::All, Fault::Fail(IoError::Os(Errno::EIO)));
            FaultyEngine::new(serial, plan).unwrap()
        })
    });
    let message = *caught
        .expect_err("suite accepted an engine that fails everything")
        .downcast::<String>()
        .unwrap();
    assert!(message.starts_with("conformance[faulty-eio/"), "{message}");
}

#[test]
fn suite_catches_an_engine_that_returns_short_reads() {
    let caught = std::panic::catch_unwind(|| {
        Suite::new("faulty-short").cases(8).run(|target| {
            let serial = SerialEngine::new(target.device.clone()).unwrap();
            let plan = FaultPlan::new(3).with(FaultTarget::All, Fault::Short { done_bytes: 100 });
            FaultyEngine::new(serial, plan).unwrap()
        })
    });
    assert!(
        caught.is_err(),
        "suite accepted an engine that cuts every transfer short"
    );
}
