//! rbio's engines chosen by name: the one place that names a concrete engine type for the
//! `rbio` command and the Python package alike.
//!
//! [`EngineKind`] is what `--engine` (or Python's `engine=`) names; [`EngineConfig`] adds its
//! knobs (workers, window, fixed buffers, SQEs per enter) and [`EngineConfig::build`] turns it
//! into a `Box<dyn Engine>` that `rbio-recovery` (which names no engine) runs on.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use rbio_core::{BufferPool, Device, DeviceKind, Engine, SerialEngine};
use rbio_posix::PosixEngine;
use rbio_uring::{NvmeEngine, RingFeatures, SetupWarning, UringEngine};

/// The largest `--window`: the io_uring engine's (its submission queue's size).
pub const WINDOW_MAX: usize = rbio_uring::WINDOW_MAX;
/// The most `--workers`: the posix engine's bound on threads.
pub const WORKERS_MAX: usize = rbio_posix::WORKERS_MAX;

/// An engine, as `--engine` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// One synchronous pread after another: the reference.
    Serial,
    /// A pool of pread worker threads over contiguous ranges (--workers).
    Posix,
    /// io_uring with batched submission and a sliding window (--window, --fixed-buffers).
    Uring,
    /// NVMe passthrough through io_uring on an NVMe namespace's char device /dev/ngXnY
    /// (--window, --fixed-buffers).
    Nvme,
}

impl EngineKind {
    /// Every engine, in the order `--engine` lists them.
    pub const ALL: [EngineKind; 4] = [
        EngineKind::Serial,
        EngineKind::Posix,
        EngineKind::Uring,
        EngineKind::Nvme,
    ];

    /// What this engine is, in one line (for `--help`).
    pub fn about(self) -> &'static str {
        match self {
            EngineKind::Serial => "one synchronous pread after another: the reference",
            EngineKind::Posix => {
                "a pool of pread worker threads over contiguous ranges (--workers)"
            }
            EngineKind::Uring => {
                "io_uring with batched submission and a sliding window (--window, --fixed-buffers)"
            }
            EngineKind::Nvme => {
                "NVMe passthrough through io_uring on a namespace's char device /dev/ngXnY"
            }
        }
    }

    /// The name `--engine` takes.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Serial => "serial",
            EngineKind::Posix => "posix",
            EngineKind::Uring => "uring",
            EngineKind::Nvme => "nvme",
        }
    }
}

/// One engine with its settings: what `--engine` and its flags describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EngineConfig {
    /// Which engine.
    pub kind: EngineKind,
    /// posix: worker threads; `None`: the engine's default for the device.
    pub workers: Option<usize>,
    /// Operations in flight at once (uring's window and the validation window).
    pub window: usize,
    /// uring: registered buffers.
    pub fixed_buffers: bool,
    /// uring: most SQEs per io_uring_enter; `None`: a whole batch per enter.
    pub sqes_per_enter: Option<usize>,
}

impl EngineConfig {
    /// The serial engine (window 1: it performs one operation at a time anyway).
    pub fn serial() -> EngineConfig {
        EngineConfig {
            kind: EngineKind::Serial,
            workers: None,
            window: 1,
            fixed_buffers: false,
            sqes_per_enter: None,
        }
    }

    /// The posix engine with `workers` threads, and a window of eight operations per worker
    /// so each worker gets a range per batch, not a single read.
    pub fn posix(workers: Option<usize>) -> EngineConfig {
        EngineConfig {
            kind: EngineKind::Posix,
            workers,
            window: workers.map_or(128, |workers| (workers * 8).max(16)),
            fixed_buffers: false,
            sqes_per_enter: None,
        }
    }

    /// The io_uring engine with `window` operations in flight, a whole batch per enter.
    pub fn uring(window: usize, fixed_buffers: bool) -> EngineConfig {
        EngineConfig {
            kind: EngineKind::Uring,
            workers: None,
            window,
            fixed_buffers,
            sqes_per_enter: None,
        }
    }

    /// The same configuration handing the kernel at most `sqes_per_enter` SQEs per enter.
    pub fn with_sqes_per_enter(self, sqes_per_enter: usize) -> EngineConfig {
        EngineConfig {
            sqes_per_enter: Some(sqes_per_enter),
            ..self
        }
    }

    /// A short label for tables: `serial`, `posix w=8`, `uring q=64 fixed`.
    pub fn label(&self) -> String {
        match self.kind {
            EngineKind::Serial => "serial".to_owned(),
            EngineKind::Posix => match self.workers {
                Some(workers) => format!("posix w={workers}"),
                None => "posix".to_owned(),
            },
            EngineKind::Uring | EngineKind::Nvme => format!(
                "{} q={}{}{}",
                self.kind.name(),
                self.window,
                if self.fixed_buffers { " fixed" } else { "" },
                match self.sqes_per_enter {
                    Some(sqes) => format!(" {sqes}/enter"),
                    None => String::new(),
                }
            ),
        }
    }

    /// How many operations this engine keeps at the device at once (fio's `iodepth` for the
    /// same work).
    pub fn depth(&self, device: &Device) -> usize {
        match self.kind {
            EngineKind::Serial => 1,
            EngineKind::Posix => self
                .workers
                .unwrap_or_else(|| rbio_posix::default_worker_count(device)),
            EngineKind::Uring | EngineKind::Nvme => self.window,
        }
    }

    /// Builds the engine on `device`; `pool` is registered where the engine uses fixed
    /// buffers (it must be the pool the work's buffers come from).
    ///
    /// # Errors
    /// [`EngineError::Unavailable`] for an engine that cannot run on `device` (nvme on
    /// anything but a namespace's char device), [`EngineError::Start`]
    /// when the engine could not be set up.
    pub fn build(
        &self,
        device: &Arc<Device>,
        pool: &BufferPool,
    ) -> Result<Box<dyn Engine>, EngineError> {
        self.build_with_features(device, pool)
            .map(|(engine, _)| engine)
    }

    /// As [`EngineConfig::build`], with the io_uring features the engine runs with (`None`
    /// for an engine without a ring).
    ///
    /// # Errors
    /// As [`EngineConfig::build`].
    pub fn build_with_features(
        &self,
        device: &Arc<Device>,
        pool: &BufferPool,
    ) -> Result<(Box<dyn Engine>, Option<EngineFeatures>), EngineError> {
        let start = |source: Box<dyn std::error::Error + Send + Sync>| EngineError::Start {
            engine: self.kind.name(),
            source,
        };
        match self.kind {
            EngineKind::Serial => SerialEngine::new(device.clone())
                .map(|engine| (Box::new(engine) as Box<dyn Engine>, None))
                .map_err(|error| start(error.into())),
            EngineKind::Posix => {
                let mut builder = PosixEngine::builder(device.clone());
                if let Some(workers) = self.workers {
                    builder = builder.workers(workers);
                }
                builder
                    .build()
                    .map(|engine| (Box::new(engine) as Box<dyn Engine>, None))
                    .map_err(|error| start(error.into()))
            }
            EngineKind::Uring => {
                let mut builder = UringEngine::builder(device.clone()).window(self.window);
                if self.fixed_buffers {
                    builder = builder.fixed_buffers(pool);
                }
                if let Some(sqes_per_enter) = self.sqes_per_enter {
                    builder = builder.sqes_per_enter(sqes_per_enter);
                }
                builder
                    .build()
                    .map(|engine| {
                        let features = EngineFeatures::of(engine.setup_report());
                        (Box::new(engine) as Box<dyn Engine>, Some(features))
                    })
                    .map_err(|error| start(error.into()))
            }
            EngineKind::Nvme if device.kind() != DeviceKind::Char => {
                Err(EngineError::Unavailable {
                    engine: "nvme",
                    why: "it needs an NVMe namespace's generic char device (/dev/ngXnY)",
                })
            }
            EngineKind::Nvme => {
                // The engine opens the namespace's char device itself and reads its geometry
                // from Identify; only the path and the write mode come from `device`.
                let mut builder = NvmeEngine::builder(device.path())
                    .window(self.window)
                    .write(device.is_writable());
                if self.fixed_buffers {
                    builder = builder.fixed_buffers(pool);
                }
                builder
                    .build()
                    .map(|engine| {
                        let features = EngineFeatures::of(engine.setup_report());
                        (Box::new(engine) as Box<dyn Engine>, Some(features))
                    })
                    .map_err(|error| start(error.into()))
            }
        }
    }
}

/// The io_uring features an engine runs with, and what it does without though asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineFeatures {
    /// The features in use.
    pub features: RingFeatures,
    /// What the engine does without, and why (e.g. fixed buffers over `RLIMIT_MEMLOCK`).
    pub warnings: Vec<SetupWarning>,
}

impl EngineFeatures {
    fn of(report: &rbio_uring::SetupReport) -> EngineFeatures {
        EngineFeatures {
            features: report.features,
            warnings: report.warnings.clone(),
        }
    }
}

/// Opens `path` for reading with `kind`: as a plain device for most engines; for nvme through
/// the namespace itself, so the device carries its size and LBA size from Identify (the
/// kernel reports neither for a generic char device) and the layout can be checked against it.
///
/// # Errors
/// [`EngineError::Open`] when the path cannot be opened, [`EngineError::Start`] when the NVMe
/// namespace could not be identified.
pub fn open_device_for(
    kind: EngineKind,
    path: &std::path::Path,
    direct: bool,
) -> Result<Arc<Device>, EngineError> {
    let device = rbio_recovery::open_device(path, direct).map_err(EngineError::Open)?;
    if kind != EngineKind::Nvme || device.kind() != DeviceKind::Char {
        return Ok(device);
    }
    let probe = NvmeEngine::open(path).map_err(|error| EngineError::Start {
        engine: "nvme",
        source: error.into(),
    })?;
    Ok(probe.device().clone())
}

/// The engine used when `--engine` is not given: io_uring where the kernel allows it, else
/// the posix pool.
pub fn best_available() -> EngineKind {
    if uring_usable() {
        EngineKind::Uring
    } else {
        EngineKind::Posix
    }
}

/// Whether an io_uring engine can be set up here (the kernel may have it disabled).
pub fn uring_usable() -> bool {
    uring_features().is_some()
}

/// The features an io_uring engine set up here runs with (without fixed buffers, which
/// depend on the pool), or `None` where no io_uring engine can be set up.
pub fn uring_features() -> Option<RingFeatures> {
    let probe = Device::open("/dev/null").ok()?;
    UringEngine::builder(Arc::new(probe))
        .window(1)
        .build()
        .ok()
        .map(|engine| engine.features())
}

/// Every engine configuration the demo shows: each engine available here once, with its
/// usual settings. Engines not available are returned apart, with the reason.
pub fn demo_set(window: usize) -> (Vec<EngineConfig>, Vec<(EngineKind, &'static str)>) {
    let mut configs = vec![EngineConfig::serial(), EngineConfig::posix(None)];
    let mut missing = vec![(
        EngineKind::Nvme,
        "needs an NVMe namespace's generic char device (/dev/ngXnY), not an image file",
    )];
    if uring_usable() {
        configs.push(EngineConfig::uring(window, false));
        configs.push(EngineConfig::uring(window, true));
    } else {
        missing.push((
            EngineKind::Uring,
            "io_uring is not permitted on this kernel",
        ));
    }
    (configs, missing)
}

/// Why an engine could not be had.
#[derive(Debug)]
pub enum EngineError {
    /// The engine is not in this build or not usable on this machine.
    Unavailable {
        /// Its name.
        engine: &'static str,
        /// Why.
        why: &'static str,
    },
    /// The device could not be opened.
    Open(rbio_core::OpenError),
    /// Setting the engine up failed.
    Start {
        /// Its name.
        engine: &'static str,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unavailable { engine, why } => {
                write!(f, "engine {engine} is unavailable: {why}")
            }
            EngineError::Start { engine, .. } => write!(f, "engine {engine} could not start"),
            EngineError::Open(_) => f.write_str("the device could not be opened"),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Unavailable { .. } => None,
            EngineError::Start { source, .. } => Some(&**source),
            EngineError::Open(error) => Some(error),
        }
    }
}

impl std::str::FromStr for EngineKind {
    type Err = UnknownEngine;

    fn from_str(name: &str) -> Result<EngineKind, UnknownEngine> {
        EngineKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| UnknownEngine(name.to_owned()))
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`EngineKind::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownEngine(pub String);

impl fmt::Display for UnknownEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = EngineKind::ALL.iter().map(|kind| kind.name()).collect();
        write!(
            f,
            "unknown engine {:?}: expected one of {}",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownEngine {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_parses_from_its_own_name_and_nothing_else_does() {
        for kind in EngineKind::ALL {
            assert_eq!(kind.name().parse::<EngineKind>(), Ok(kind));
        }
        let error = "io_uring".parse::<EngineKind>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown engine \"io_uring\": expected one of serial, posix, uring, nvme"
        );
    }

    #[test]
    fn labels_name_the_knobs_that_differ() {
        assert_eq!(EngineConfig::serial().label(), "serial");
        assert_eq!(EngineConfig::posix(Some(8)).label(), "posix w=8");
        assert_eq!(EngineConfig::uring(64, true).label(), "uring q=64 fixed");
        assert_eq!(
            EngineConfig::uring(64, false)
                .with_sqes_per_enter(1)
                .label(),
            "uring q=64 1/enter"
        );
    }
}
