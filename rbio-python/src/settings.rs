//! The options of `rbio bringup` and `rbio inspect` as one plain struct, named after the
//! command's flags with the command's defaults, and the calls that run them. Python-free: the
//! Python layer only fills the fields from keywords.

use std::path::Path;

use rbio_core::{BufferPool, PAGE_BYTES};
use rbio_engines::{open_device_for, EngineConfig, EngineKind};
use rbio_recovery::{
    inspect, Bringup, BringupOptions, DevicePathPolicy, InspectOptions, Inspection, Layout,
    Recovered,
};

/// Any failure of a bringup or an inspection; its one-line text is
/// [`rbio_engines::error_line`], as the command prints it.
pub type Failure = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything `rbio bringup` takes besides the device, under the flags' names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BringupSettings {
    /// `--block-align`, `--header-bytes`, `--slot-bytes`, `--meta-total-bytes`,
    /// `--capacity-bytes`, `--meta-magic`, `--meta-version`, `--namespace`.
    pub layout: Layout,
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
    /// `--direct`.
    pub direct: bool,
    /// `--ignore-device-path`.
    pub ignore_device_path: bool,
    /// `--device-path`.
    pub device_path: Option<String>,
    /// Not `--no-verify`.
    pub verify: bool,
    /// `--drop-unreadable`.
    pub drop_unreadable: bool,
    /// `--entries`.
    pub entries: bool,
}

impl Default for BringupSettings {
    /// The command's defaults.
    fn default() -> Self {
        BringupSettings {
            layout: Layout::default(),
            engine: None,
            workers: None,
            window: 256,
            sqes_per_enter: None,
            fixed_buffers: true,
            direct: false,
            ignore_device_path: false,
            device_path: None,
            verify: true,
            drop_unreadable: false,
            entries: false,
        }
    }
}

impl BringupSettings {
    /// The engine these settings describe (`--engine` and its knobs).
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            kind: self.engine.unwrap_or_else(rbio_engines::best_available),
            workers: self.workers,
            window: self.window,
            fixed_buffers: self.fixed_buffers,
            sqes_per_enter: self.sqes_per_enter,
        }
    }

    fn path_policy(&self) -> DevicePathPolicy {
        if self.ignore_device_path {
            DevicePathPolicy::Ignore
        } else {
            DevicePathPolicy::Strict
        }
    }

    /// Brings the device at `path` up, as `rbio bringup` does. Reads only.
    ///
    /// # Errors
    /// The device, layout or engine error the command reports with exit code 2.
    pub fn bringup(&self, path: &Path) -> Result<Recovered, Failure> {
        let config = self.engine_config();
        let device = open_device_for(config.kind, path, self.direct)?;
        let options = BringupOptions {
            layout: self.layout.clone(),
            layout_source: rbio_recovery::LayoutSource::Configured,
            configured_device_path: self.device_path.clone(),
            device_path_policy: self.path_policy(),
            verify: self.verify,
            keep_unreadable: !self.drop_unreadable,
            window_ops_max: config.window.max(1),
            report_all_entries: self.entries,
        };
        let bringup = Bringup::new(device.clone(), options)?;
        let mut engine = config.build(&device, bringup.header_pool())?;
        Ok(bringup.run(&mut *engine, &mut |_| {})?)
    }

    /// Reads both checkpoint mirrors of the device at `path`, as `rbio inspect` does.
    ///
    /// # Errors
    /// The device, layout or engine error the command reports with exit code 2.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, Failure> {
        let config = EngineConfig {
            // The inspection reads through its own pool: no buffers to register.
            fixed_buffers: false,
            ..self.engine_config()
        };
        let device = open_device_for(config.kind, path, self.direct)?;
        let options = InspectOptions {
            layout: self.layout.clone(),
            layout_source: rbio_recovery::LayoutSource::Configured,
            configured_device_path: self.device_path.clone(),
            device_path_policy: self.path_policy(),
            list_entries: self.entries,
        };
        let pool = BufferPool::new(PAGE_BYTES, 1, PAGE_BYTES)?;
        let mut engine = config.build(&device, &pool)?;
        Ok(inspect(&device, &mut *engine, &options)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_image_is_a_layout_error_with_the_commands_words() {
        let image = tempfile::NamedTempFile::new().unwrap();
        let settings = BringupSettings {
            engine: Some(EngineKind::Serial),
            ..BringupSettings::default()
        };
        let error = settings.bringup(image.path()).unwrap_err();
        let line = rbio_engines::error_line(&*error);
        assert!(line.starts_with("layout does not fit the device"), "{line}");
    }

    #[test]
    fn a_missing_device_names_its_path() {
        let error = BringupSettings::default()
            .inspect(Path::new("/nonexistent/rbio-device"))
            .unwrap_err();
        let line = rbio_engines::error_line(&*error);
        assert!(line.contains("/nonexistent/rbio-device"), "{line}");
    }
}
