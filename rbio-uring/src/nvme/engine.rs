//! `NvmeEngine`, NVMe passthrough through io_uring on a namespace's generic char device
//! (`/dev/ngXnY`), its builder and its set-up error.

use std::fmt;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbio_core::{Device, OpenError};

use super::codec::{registered_chunk_bytes_max, NvmeCodec};
use super::identify::NvmeNamespaceInfo;
use super::open::{check_nvme_char_device, NvmeOpenError};
use crate::error::SetupError;
use crate::features::RingFeatures;
use crate::fixed::FixedBuffers;
use crate::flags::RingFlags;
use crate::options::{ring_engine_by_core, ring_option_setters, RingOptions};
use crate::ring::Ring;

/// Reads, writes and flushes an NVMe namespace with NVMe commands through io_uring
/// (`IORING_OP_URING_CMD` with `NVME_URING_CMD_IO` on `/dev/ngXnY`, 128-byte SQEs, 32-byte
/// CQEs), bypassing the block layer.
///
/// It shares the ring core of [`UringEngine`](crate::UringEngine): the same window, batching
/// into one `io_uring_enter`, deadlines, readiness, fixed buffers and drop behaviour. What
/// differs:
///
/// - Offsets and lengths must be multiples of the namespace's LBA size and buffer addresses
///   multiples of 4 bytes; anything else completes as [`IoError::Misaligned`] with the LBA
///   size, for that operation alone.
///   [`Capabilities::align_bytes`](rbio_core::Capabilities::align_bytes) is the LBA size.
/// - An operation longer than one command may move (the controller's MDTS and the kernel's
///   segment limit, [`NvmeNamespaceInfo::max_transfer_bytes_at`]) is sent as several commands
///   one after another and completes once, with its full length.
/// - A flush is an NVMe Flush of the namespace.
/// - A write whose [`OpInfo::placement_id`](rbio_core::OpInfo::placement_id) is set carries
///   the Flexible Data Placement directive (DTYPE 2, DSPEC the placement id); a controller
///   without FDP may ignore it (QEMU 7.2 does) or refuse the write with its status.
/// - The controller's refusals come back as [`IoError::Nvme`] with status type, code and
///   do-not-retry bit; the engine refuses operations past the namespace's end itself
///   ([`IoError::OutOfRange`], as every engine does) unless built with
///   [`NvmeBuilder::check_range`]`(false)`.
///
/// Opening checks that the path is an NVMe namespace's char device, asks its namespace id
/// and reads Identify Namespace and Identify Controller (admin passthrough: on Linux before
/// 6.2 this needs `CAP_SYS_ADMIN`), and refuses formats with metadata. [`NvmeEngine::device`]
/// is the open device with the geometry Identify gave.
///
/// [`IoError::Misaligned`]: rbio_core::IoError::Misaligned
/// [`IoError::Nvme`]: rbio_core::IoError::Nvme
/// [`IoError::OutOfRange`]: rbio_core::IoError::OutOfRange
pub struct NvmeEngine {
    core: Ring<NvmeCodec>,
}

impl NvmeEngine {
    /// An engine on the namespace at `path` with the default settings (read-only).
    ///
    /// # Errors
    /// As [`NvmeBuilder::build`].
    pub fn open(path: impl AsRef<Path>) -> Result<NvmeEngine, NvmeSetupError> {
        NvmeEngine::builder(path).build()
    }

    /// A builder for an engine on the namespace at `path` (`/dev/ngXnY`).
    pub fn builder(path: impl AsRef<Path>) -> NvmeBuilder {
        NvmeBuilder {
            path: path.as_ref().to_path_buf(),
            options: RingOptions::default(),
            write: false,
            check_range: true,
        }
    }

    /// The open namespace device, with its size and LBA size from Identify (its size reads 0,
    /// unknown, when built with [`NvmeBuilder::check_range`]`(false)`).
    pub fn device(&self) -> &Arc<Device> {
        &self.core.device
    }

    /// What Identify said: namespace id, LBA format, size and transfer limit.
    pub fn namespace(&self) -> &NvmeNamespaceInfo {
        &self.core.codec.namespace
    }
}

ring_engine_by_core!(NvmeEngine);

impl fmt::Debug for NvmeEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvmeEngine")
            .field("device", &self.core.device.path())
            .field("namespace", self.namespace())
            .field("setup", &self.core.report.to_string())
            .field("pending_count", &self.core.pending_count())
            .finish()
    }
}

/// Configures an [`NvmeEngine`]; [`NvmeEngine::builder`] makes one.
#[derive(Debug)]
pub struct NvmeBuilder {
    path: PathBuf,
    options: RingOptions,
    write: bool,
    check_range: bool,
}

impl NvmeBuilder {
    ring_option_setters!();

    /// Opens the device for writing as well (default read-only: writes complete as
    /// [`IoError::Unsupported`](rbio_core::IoError::Unsupported)).
    pub fn write(mut self, write: bool) -> Self {
        self.write = write;
        self
    }

    /// Whether the engine refuses operations past the namespace's end itself, with
    /// [`IoError::OutOfRange`](rbio_core::IoError::OutOfRange) as every engine does (default
    /// on). Off, they go to the controller, which answers with its own status (LBA out of
    /// range, as [`IoError::Nvme`](rbio_core::IoError::Nvme)); [`NvmeEngine::device`] then
    /// reports size 0 (unknown) and [`NvmeEngine::namespace`] keeps the size.
    pub fn check_range(mut self, check_range: bool) -> Self {
        self.check_range = check_range;
        self
    }

    /// Opens and identifies the namespace, creates the ring and makes the registrations.
    ///
    /// # Errors
    /// [`NvmeSetupError`]: the path is not an NVMe namespace's char device or Identify failed
    /// or describes a format rbio cannot use; the device could not be opened; or the ring
    /// could not be set up (including a window out of range).
    pub fn build(self) -> Result<NvmeEngine, NvmeSetupError> {
        self.options.check_window()?;
        if !self.options.usable().contains(RingFeatures::URING_CMD) {
            return Err(NvmeSetupError::NoUringCmd);
        }
        let (device, namespace) = self.open_device()?;
        let fixed = self
            .options
            .fixed_pool()
            .map(|pool| {
                let base_addr = pool.arena_region().0 as usize;
                let chunk_bytes_max =
                    registered_chunk_bytes_max(namespace.max_transfer_bytes(), base_addr);
                FixedBuffers::with_chunk_bytes_max(pool, chunk_bytes_max)
            })
            .transpose()?;
        let codec = NvmeCodec {
            target: self.options.file_target(&device),
            namespace,
            iopoll: self.options.iopoll,
            fixed_layout: fixed.as_ref().map(FixedBuffers::layout),
        };
        let config = self
            .options
            .core_config(Arc::new(device), fixed, RingFlags::NONE);
        Ok(NvmeEngine {
            core: Ring::new(codec, config)?,
        })
    }

    /// Checks the path, opens it and asks the namespace on the open descriptor what it is.
    fn open_device(&self) -> Result<(Device, NvmeNamespaceInfo), NvmeSetupError> {
        drop(check_nvme_char_device(&self.path)?);
        let device = Device::options()
            .write(self.write)
            .open(&self.path)
            .map_err(NvmeSetupError::Device)?;
        let namespace = NvmeNamespaceInfo::query(device.as_fd())?;
        let size_bytes = if self.check_range {
            namespace.size_bytes()
        } else {
            0
        };
        let device = device.with_geometry(size_bytes, namespace.lba_format().lba_bytes());
        Ok((device, namespace))
    }
}

/// Why [`NvmeBuilder::build`] failed.
#[non_exhaustive]
#[derive(Debug)]
pub enum NvmeSetupError {
    /// The path is not a usable NVMe namespace (not a char device, not NVMe, Identify failed
    /// or describes a format with metadata).
    Namespace(NvmeOpenError),
    /// The device could not be opened (for writing, when asked).
    Device(OpenError),
    /// The ring could not be set up.
    Ring(SetupError),
    /// The kernel has no `IORING_OP_URING_CMD` (it came in Linux 5.19), or it was masked.
    NoUringCmd,
}

impl fmt::Display for NvmeSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeSetupError::Namespace(_) => write!(f, "not a usable nvme namespace"),
            NvmeSetupError::Device(_) => write!(f, "could not open the nvme namespace"),
            NvmeSetupError::Ring(_) => write!(f, "could not set up the nvme passthrough ring"),
            NvmeSetupError::NoUringCmd => write!(
                f,
                "nvme passthrough is unavailable: this kernel has no IORING_OP_URING_CMD \
                 (linux 5.19 and later)"
            ),
        }
    }
}

impl std::error::Error for NvmeSetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NvmeSetupError::Namespace(source) => Some(source),
            NvmeSetupError::Device(source) => Some(source),
            NvmeSetupError::Ring(source) => Some(source),
            NvmeSetupError::NoUringCmd => None,
        }
    }
}

impl From<NvmeOpenError> for NvmeSetupError {
    fn from(error: NvmeOpenError) -> Self {
        NvmeSetupError::Namespace(error)
    }
}

impl From<SetupError> for NvmeSetupError {
    fn from(error: SetupError) -> Self {
        NvmeSetupError::Ring(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WINDOW_MAX;
    use std::os::unix::fs::FileTypeExt;

    fn namespace_error(path: &Path) -> NvmeOpenError {
        match NvmeEngine::open(path).unwrap_err() {
            NvmeSetupError::Namespace(error) => error,
            other => panic!(
                "{}: expected a namespace error, got {other:?}",
                path.display()
            ),
        }
    }

    #[test]
    fn refuses_a_regular_file_a_directory_and_a_missing_path() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let error = namespace_error(file.path());
        assert!(
            matches!(error, NvmeOpenError::IsRegularFile { .. }),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let error = namespace_error(dir.path());
        assert!(
            matches!(error, NvmeOpenError::IsDirectory { .. }),
            "{error}"
        );
        let error = namespace_error(&dir.path().join("ng0n1"));
        assert!(matches!(error, NvmeOpenError::NotFound { .. }), "{error}");
    }

    #[test]
    fn refuses_dev_null_as_not_nvme() {
        let error = NvmeEngine::builder("/dev/null")
            .write(true)
            .build()
            .unwrap_err();
        assert_eq!(error.to_string(), "not a usable nvme namespace");
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert_eq!(
            source,
            "/dev/null: not an nvme namespace (NVME_IOCTL_ID refused; use /dev/ngXnY)"
        );
    }

    #[test]
    fn refuses_a_loop_block_device_with_the_ng_hint() {
        // The node is refused by its type, before it is opened, so it need not be attached.
        let loop_device = Path::new("/dev/loop0");
        let is_block =
            std::fs::metadata(loop_device).is_ok_and(|m| m.file_type().is_block_device());
        assert!(
            is_block,
            "this test needs the loop device node /dev/loop0 (modprobe loop)"
        );
        let error = namespace_error(loop_device);
        assert!(
            matches!(error, NvmeOpenError::IsBlockDevice { .. }),
            "{error}"
        );
        assert!(error
            .to_string()
            .ends_with("use /dev/ngXnY, the generic char device"));
    }

    /// Issue 12: before Linux 5.19 there is no `IORING_OP_URING_CMD`; the engine says so
    /// instead of failing on the first command.
    #[test]
    fn without_uring_cmd_the_engine_is_unavailable_with_the_reason() {
        let error = NvmeEngine::builder("/nonexistent/ng0n1")
            .without_features(RingFeatures::URING_CMD)
            .build()
            .unwrap_err();
        assert!(matches!(error, NvmeSetupError::NoUringCmd), "{error:?}");
        assert!(error.to_string().contains("linux 5.19"), "{error}");
    }

    #[test]
    fn refuses_a_window_out_of_range_before_opening() {
        for window in [0, WINDOW_MAX + 1] {
            let error = NvmeEngine::builder("/nonexistent/ng0n1")
                .window(window)
                .build()
                .unwrap_err();
            assert!(
                matches!(error, NvmeSetupError::Ring(SetupError::Window { .. })),
                "{error:?}"
            );
        }
    }
}
