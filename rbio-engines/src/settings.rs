//! `rbio bringup` and `rbio inspect` as one plain struct: every option under its flag's name,
//! with the command's defaults, and the calls that run them. The command fills it from its
//! arguments and the Python package from keywords, so both run the same bringup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rbio_core::{fan_out, BufferPool, Device, Engine, PAGE_BYTES};
use rbio_recovery::{
    inspect, read_layout, Bringup, BringupOptions, DevicePathPolicy, InspectOptions, Inspection,
    KeyNamespace, Layout, LayoutSource, Progress, Recovered,
};

use rbio_uring::SetupWarning;

use crate::{open_device_for, EngineConfig, EngineFeatures, EngineKind};

/// Any failure of a bringup or an inspection; [`crate::error_line`] gives its one-line text,
/// as the command prints it.
pub type Failure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The layout flags. The geometry ones are `None` when not given: bringup then reads the
/// layout the device records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutFlags {
    /// `--block-align`.
    pub block_align: Option<u64>,
    /// `--header-bytes`.
    pub header_bytes: Option<u64>,
    /// `--slot-bytes`.
    pub slot_bytes: Option<u64>,
    /// `--meta-total-bytes`.
    pub meta_total_bytes: Option<u64>,
    /// `--capacity-bytes`.
    pub capacity_bytes: Option<u64>,
    /// `--meta-magic`.
    pub meta_magic: [u8; 8],
    /// `--meta-version`.
    pub meta_version: u32,
    /// `--namespace`.
    pub namespace: KeyNamespace,
}

impl Default for LayoutFlags {
    /// No geometry given; LMCache's magic, version and namespace.
    fn default() -> Self {
        let defaults = Layout::default();
        LayoutFlags {
            block_align: None,
            header_bytes: None,
            slot_bytes: None,
            meta_total_bytes: None,
            capacity_bytes: None,
            meta_magic: defaults.meta_magic,
            meta_version: defaults.meta_version,
            namespace: defaults.namespace,
        }
    }
}

impl LayoutFlags {
    /// The layout the flags give, LMCache's defaults for those not given.
    pub fn layout(&self) -> Layout {
        let defaults = Layout::default();
        Layout {
            block_align: self.block_align.unwrap_or(defaults.block_align),
            header_bytes: self.header_bytes.unwrap_or(defaults.header_bytes),
            slot_bytes: self.slot_bytes.unwrap_or(defaults.slot_bytes),
            meta_total_bytes: self.meta_total_bytes.unwrap_or(defaults.meta_total_bytes),
            meta_magic: self.meta_magic,
            meta_version: self.meta_version,
            capacity_bytes: self.capacity_bytes.unwrap_or(defaults.capacity_bytes),
            namespace: self.namespace,
        }
    }

    /// Whether any geometry flag was given: bringup and inspect then use the flags; else they
    /// read the layout from the device.
    pub fn geometry_given(&self) -> bool {
        [
            self.block_align,
            self.header_bytes,
            self.slot_bytes,
            self.meta_total_bytes,
            self.capacity_bytes,
        ]
        .iter()
        .any(Option::is_some)
    }
}

/// Everything `rbio bringup` takes besides the device, under the flags' names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BringupSettings {
    /// The layout flags.
    pub layout: LayoutFlags,
    /// `--engine`; `None`: io_uring where the kernel allows it, else posix.
    pub engine: Option<EngineKind>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--window`.
    pub window: usize,
    /// `--sqes-per-enter`.
    pub sqes_per_enter: Option<usize>,
    /// `--fixed-buffers on|off`.
    pub fixed_buffers: bool,
    /// `--op-timeout`; `None`: the engine's default.
    pub op_timeout: Option<Duration>,
    /// `--buffered`: read through the page cache (else O_DIRECT where the device takes it).
    pub buffered: bool,
    /// `--ignore-device-path`.
    pub ignore_device_path: bool,
    /// `--strict-device-path`.
    pub strict_device_path: bool,
    /// `--device-path`.
    pub device_path: Option<String>,
    /// Not `--no-verify`.
    pub verify: bool,
    /// `--drop-unreadable`.
    pub drop_unreadable: bool,
    /// `--entries`.
    pub entries: bool,
}

/// The command's default window: header reads in flight at once.
pub const WINDOW_DEFAULT: usize = 256;

impl Default for BringupSettings {
    /// The command's defaults.
    fn default() -> Self {
        BringupSettings {
            layout: LayoutFlags::default(),
            engine: None,
            workers: None,
            window: WINDOW_DEFAULT,
            sqes_per_enter: None,
            fixed_buffers: true,
            op_timeout: None,
            buffered: false,
            ignore_device_path: false,
            strict_device_path: false,
            device_path: None,
            verify: true,
            drop_unreadable: false,
            entries: false,
        }
    }
}

/// A bringup ready to run: the device open, its layout found, the engine built.
pub struct ReadyBringup {
    device: Arc<Device>,
    bringup: Bringup,
    engine: Box<dyn Engine>,
    /// The io_uring features the engine runs with; `None` for an engine without a ring.
    features: Option<EngineFeatures>,
}

impl ReadyBringup {
    /// The device, as opened (whether O_DIRECT was refused, for one).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// What the engine does without though asked for, and why (fixed buffers refused for
    /// lack of locked memory, for one): a person should see these.
    pub fn engine_warnings(&self) -> &[SetupWarning] {
        self.features
            .as_ref()
            .map_or(&[], |features| features.warnings.as_slice())
    }

    /// Brings the device up, calling `progress` as it advances; the report names the io_uring
    /// features the engine ran with. Reads only.
    ///
    /// # Errors
    /// As [`Bringup::run`].
    pub fn run(mut self, progress: &mut dyn FnMut(Progress)) -> Result<Recovered, Failure> {
        let mut recovered = self.bringup.run(&mut *self.engine, progress)?;
        recovered.report.engine_features = self.features.map(|features| {
            let names = features.features.names();
            names.into_iter().map(str::to_owned).collect()
        });
        Ok(recovered)
    }
}

impl BringupSettings {
    /// The engine these settings describe (`--engine` and its knobs).
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            kind: self.engine.unwrap_or_else(crate::best_available),
            workers: self.workers,
            window: self.window,
            fixed_buffers: self.fixed_buffers,
            sqes_per_enter: self.sqes_per_enter,
            op_timeout: self.op_timeout,
        }
    }

    /// How the checkpoint's recorded device path is checked.
    pub fn device_path_policy(&self) -> DevicePathPolicy {
        if self.ignore_device_path {
            DevicePathPolicy::Ignore
        } else if self.strict_device_path {
            DevicePathPolicy::Strict
        } else {
            DevicePathPolicy::SameDevice
        }
    }

    /// Opens the device at `path` (O_DIRECT unless `buffered`, falling back where refused),
    /// finds its layout and builds the engine: everything before the first header read.
    ///
    /// # Errors
    /// The device, layout or engine error the command reports with exit code 2.
    pub fn prepare(&self, path: &Path) -> Result<ReadyBringup, Failure> {
        let config = self.engine_config();
        let device = open_device_for(config.kind, path, !self.buffered)?;
        let (layout, layout_source) = self.find_layout(&device, config)?;
        let options = BringupOptions {
            layout,
            layout_source,
            configured_device_path: self.device_path.clone(),
            device_path_policy: self.device_path_policy(),
            verify: self.verify,
            keep_unreadable: !self.drop_unreadable,
            window_ops_max: config.window.max(1),
            op_timeout: self.op_timeout,
            report_all_entries: self.entries,
        };
        let bringup = Bringup::new(device.clone(), options)?;
        let (engine, features) = config.build_with_features(&device, bringup.header_pool())?;
        Ok(ReadyBringup {
            device,
            bringup,
            engine,
            features,
        })
    }

    /// Brings the device at `path` up, as `rbio bringup` does. Reads only.
    ///
    /// # Errors
    /// The device, layout or engine error the command reports with exit code 2.
    pub fn bringup(&self, path: &Path) -> Result<Recovered, Failure> {
        self.prepare(path)?.run(&mut |_| {})
    }

    /// Brings every device in `paths` up at once, as `rbio bringup DEV DEV...` does: one
    /// thread and one engine per device, each as [`BringupSettings::prepare`] then
    /// [`ReadyBringup::run`]. `progress` gets each device's progress with its index in
    /// `paths`, on the caller's thread. The results are in the order of `paths`; a device
    /// that fails has its error in its place and does not stop the others. Reads only.
    ///
    /// # Panics
    /// With more than [`rbio_core::FAN_OUT_JOBS_MAX`] paths.
    pub fn bringup_many(
        &self,
        paths: &[PathBuf],
        progress: &mut dyn FnMut(usize, Progress),
    ) -> Vec<Result<Recovered, Failure>> {
        fan_out(
            paths,
            |path, progress| self.prepare(path)?.run(progress),
            progress,
        )
        .into_iter()
        .map(|result| {
            result
                .map_err(Failure::from)
                .and_then(|recovered| recovered)
        })
        .collect()
    }

    /// Reads both checkpoint mirrors of the device at `path`, as `rbio inspect` does, and
    /// returns the inspection with the device as opened.
    ///
    /// # Errors
    /// The device, layout or engine error the command reports with exit code 2.
    pub fn inspect(&self, path: &Path) -> Result<(Inspection, Arc<Device>), Failure> {
        let config = self.engine_config();
        let device = open_device_for(config.kind, path, !self.buffered)?;
        let (layout, layout_source) = self.find_layout(&device, config)?;
        let options = InspectOptions {
            layout,
            layout_source,
            configured_device_path: self.device_path.clone(),
            device_path_policy: self.device_path_policy(),
            list_entries: self.entries,
        };
        let mut engine = own_buffers(config).build(&device, &tiny_pool()?)?;
        let inspection = inspect(&device, &mut *engine, &options)?;
        Ok((inspection, device))
    }

    /// The layout the geometry flags give, or when none is given, the one the device records
    /// (read through an engine like `config` that brings its own buffers).
    fn find_layout(
        &self,
        device: &Arc<Device>,
        config: EngineConfig,
    ) -> Result<(Layout, LayoutSource), Failure> {
        if self.layout.geometry_given() {
            return Ok((self.layout.layout(), LayoutSource::Configured));
        }
        let mut engine = own_buffers(config).build(device, &tiny_pool()?)?;
        let found = read_layout(device, &mut *engine, &self.layout.layout())?;
        let source = LayoutSource::Device {
            mirror_index: found.mirror_index,
        };
        Ok((found.layout, source))
    }
}

/// `config` without registered buffers: for work that brings its own.
fn own_buffers(config: EngineConfig) -> EngineConfig {
    EngineConfig {
        fixed_buffers: false,
        ..config
    }
}

/// A one-buffer pool for engines whose work brings its own buffers.
///
/// # Errors
/// When even one page cannot be allocated.
pub fn tiny_pool() -> Result<BufferPool, Failure> {
    Ok(BufferPool::new(PAGE_BYTES, 1, PAGE_BYTES)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_image_asks_for_the_layout_flags() {
        let image = tempfile::NamedTempFile::new().unwrap();
        let settings = BringupSettings {
            engine: Some(EngineKind::Serial),
            ..BringupSettings::default()
        };
        let error = settings.bringup(image.path()).unwrap_err();
        let line = crate::error_line(&*error);
        assert!(line.contains("layout"), "{line}");
    }

    #[test]
    fn a_missing_device_names_its_path() {
        let error = BringupSettings::default()
            .inspect(Path::new("/nonexistent/rbio-device"))
            .unwrap_err();
        let line = crate::error_line(&*error);
        assert!(line.contains("/nonexistent/rbio-device"), "{line}");
    }

    #[test]
    fn several_devices_come_back_in_order_each_with_its_own_outcome() {
        let (image, layout) = prepared_image(40);
        let paths = [
            image.path().to_path_buf(),
            PathBuf::from("/nonexistent/rbio-device"),
            image.path().to_path_buf(),
        ];
        let settings = BringupSettings {
            engine: Some(EngineKind::Posix),
            layout: LayoutFlags {
                slot_bytes: Some(layout.slot_bytes),
                meta_total_bytes: Some(layout.meta_total_bytes),
                ..LayoutFlags::default()
            },
            ignore_device_path: true,
            ..BringupSettings::default()
        };
        let mut validated = [0u64; 3];
        let results = settings.bringup_many(&paths, &mut |device_index, progress| {
            if progress.phase == rbio_recovery::Phase::Validate {
                validated[device_index] = validated[device_index].max(progress.done);
            }
        });
        assert_eq!(results.len(), 3);
        for device_index in [0, 2] {
            let recovered = results[device_index].as_ref().unwrap();
            assert_eq!(recovered.index.len(), 40, "device {device_index}");
        }
        let line = crate::error_line(&**results[1].as_ref().unwrap_err());
        assert!(line.contains("/nonexistent/rbio-device"), "{line}");
        assert_eq!(validated[1], 0, "the missing device validated nothing");
    }

    /// An image with `entries` entries in 64 KiB slots, and its layout.
    fn prepared_image(entries: u64) -> (tempfile::NamedTempFile, Layout) {
        let layout = Layout {
            slot_bytes: 64 << 10,
            meta_total_bytes: 1 << 20,
            ..Layout::default()
        };
        let spec = rbio_recovery::PrepareSpec::new(layout.clone(), entries);
        let image = tempfile::NamedTempFile::new().unwrap();
        image
            .as_file()
            .set_len(spec.required_device_bytes())
            .unwrap();
        let device = Arc::new(Device::options().write(true).open(image.path()).unwrap());
        let mut engine = crate::EngineConfig::serial()
            .build(&device, &tiny_pool().unwrap())
            .unwrap();
        rbio_recovery::prepare(&device, &mut *engine, &spec, &mut |_, _| {}).unwrap();
        (image, layout)
    }

    #[test]
    fn geometry_flags_decide_where_the_layout_comes_from() {
        let mut flags = LayoutFlags::default();
        assert!(!flags.geometry_given());
        assert_eq!(flags.layout(), Layout::default());
        flags.slot_bytes = Some(65536);
        assert!(flags.geometry_given());
        assert_eq!(flags.layout().slot_bytes, 65536);
    }
}
