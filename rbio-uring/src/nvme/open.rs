//! Whether a path is an NVMe namespace's generic char device (`/dev/ngXnY`), and the error
//! type that says what it is instead.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use rbio_core::NvmeStatus;

use super::identify::IdentifyError;
use super::ioctl::namespace_id;

/// What an `NVME_IOCTL_ID` failure means: `ENOTTY` (or `EINVAL` from drivers that answer
/// unknown ioctls so) is a char device that is not an NVMe namespace.
pub(crate) fn ioctl_id_error(path: &Path, source: io::Error) -> NvmeOpenError {
    match source.raw_os_error() {
        Some(libc::ENOTTY) | Some(libc::EINVAL) => NvmeOpenError::NotNvmeNamespace {
            path: path.to_path_buf(),
        },
        _ => NvmeOpenError::Io {
            path: path.to_path_buf(),
            step: "NVME_IOCTL_ID",
            source,
        },
    }
}

/// Why a path is not an NVMe namespace rbio can drive through passthrough.
#[non_exhaustive]
#[derive(Debug)]
pub enum NvmeOpenError {
    /// Nothing at the path.
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a directory.
    IsDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a block device (`/dev/nvme0n1`); passthrough needs the generic char device.
    IsBlockDevice {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a regular file.
    IsRegularFile {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a FIFO, socket or other non-device.
    NotCharDevice {
        /// The path given.
        path: PathBuf,
    },
    /// A char device whose driver does not know `NVME_IOCTL_ID` (`ENOTTY`), such as
    /// `/dev/null` or a controller device `/dev/nvme0`.
    NotNvmeNamespace {
        /// The path given.
        path: PathBuf,
    },
    /// A system call failed.
    Io {
        /// The path given.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The controller refused an Identify command.
    IdentifyStatus {
        /// The path given.
        path: PathBuf,
        /// The Identify CNS value (0 namespace, 1 controller).
        cns: u8,
        /// The NVMe status.
        status: NvmeStatus,
    },
    /// Identify describes a namespace rbio cannot use.
    Identify {
        /// The path given.
        path: PathBuf,
        /// The namespace id.
        nsid: u32,
        /// What is wrong with it.
        source: IdentifyError,
    },
}

impl fmt::Display for NvmeOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeOpenError::NotFound { path } => write!(f, "{}: no such device", path.display()),
            NvmeOpenError::IsDirectory { path } => {
                write!(
                    f,
                    "{}: is a directory, not an nvme char device",
                    path.display()
                )
            }
            NvmeOpenError::IsBlockDevice { path } => write!(
                f,
                "{}: is a block device; use /dev/ngXnY, the generic char device",
                path.display()
            ),
            NvmeOpenError::IsRegularFile { path } => {
                write!(
                    f,
                    "{}: is a regular file, not an nvme char device",
                    path.display()
                )
            }
            NvmeOpenError::NotCharDevice { path } => {
                write!(f, "{}: is not a character device", path.display())
            }
            NvmeOpenError::NotNvmeNamespace { path } => write!(
                f,
                "{}: not an nvme namespace (NVME_IOCTL_ID refused; use /dev/ngXnY)",
                path.display()
            ),
            NvmeOpenError::Io { path, step, source } => {
                write!(f, "{}: {step} failed: {source}", path.display())
            }
            NvmeOpenError::IdentifyStatus { path, cns, status } => {
                write!(f, "{}: identify cns {cns} failed: {status}", path.display())
            }
            NvmeOpenError::Identify { path, nsid, source } => {
                write!(f, "{}: namespace {nsid}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for NvmeOpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NvmeOpenError::Io { source, .. } => Some(source),
            NvmeOpenError::Identify { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Opens `path` read-only after checking it is a character device that answers
/// `NVME_IOCTL_ID`, that is, an NVMe namespace's generic device `/dev/ngXnY`.
///
/// The type is checked before opening (so a FIFO never blocks the open) and again on the
/// open descriptor.
///
/// # Errors
///
/// [`NvmeOpenError`] saying what the path is instead.
pub fn check_nvme_char_device(path: impl AsRef<Path>) -> Result<File, NvmeOpenError> {
    let path = path.as_ref();
    let stat_error = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => NvmeOpenError::NotFound {
            path: path.to_path_buf(),
        },
        _ => NvmeOpenError::Io {
            path: path.to_path_buf(),
            step: "stat",
            source,
        },
    };
    let file_type = fs::metadata(path).map_err(stat_error)?.file_type();
    refuse_unless_char_device(path, file_type)?;
    let file = File::open(path).map_err(|source| NvmeOpenError::Io {
        path: path.to_path_buf(),
        step: "open",
        source,
    })?;
    refuse_unless_char_device(path, file.metadata().map_err(stat_error)?.file_type())?;
    namespace_id(file.as_fd()).map_err(|source| ioctl_id_error(path, source))?;
    Ok(file)
}

fn refuse_unless_char_device(path: &Path, file_type: fs::FileType) -> Result<(), NvmeOpenError> {
    let path = path.to_path_buf();
    if file_type.is_char_device() {
        Ok(())
    } else if file_type.is_dir() {
        Err(NvmeOpenError::IsDirectory { path })
    } else if file_type.is_block_device() {
        Err(NvmeOpenError::IsBlockDevice { path })
    } else if file_type.is_file() {
        Err(NvmeOpenError::IsRegularFile { path })
    } else {
        Err(NvmeOpenError::NotCharDevice { path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::identify::NvmeNamespaceInfo;

    #[test]
    fn refuses_a_regular_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let error = check_nvme_char_device(file.path()).unwrap_err();
        assert!(
            matches!(error, NvmeOpenError::IsRegularFile { .. }),
            "{error}"
        );
    }

    #[test]
    fn refuses_a_directory_and_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let error = check_nvme_char_device(dir.path()).unwrap_err();
        assert!(
            matches!(error, NvmeOpenError::IsDirectory { .. }),
            "{error}"
        );
        let error = check_nvme_char_device(dir.path().join("ng9n9")).unwrap_err();
        assert!(matches!(error, NvmeOpenError::NotFound { .. }), "{error}");
    }

    #[test]
    fn refuses_dev_null_as_not_nvme() {
        let error = check_nvme_char_device("/dev/null").unwrap_err();
        assert!(
            matches!(error, NvmeOpenError::NotNvmeNamespace { .. }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "/dev/null: not an nvme namespace (NVME_IOCTL_ID refused; use /dev/ngXnY)"
        );
        let file = File::open("/dev/null").unwrap();
        let error = NvmeNamespaceInfo::query(file.as_fd()).unwrap_err();
        assert!(
            matches!(error, NvmeOpenError::NotNvmeNamespace { ref path } if path == Path::new("/dev/null")),
            "{error}"
        );
    }

    #[test]
    fn refuses_a_block_device_with_the_ng_hint() {
        let block_device = fs::read_dir("/dev")
            .unwrap()
            .filter_map(Result::ok)
            .find(|entry| entry.file_type().is_ok_and(|kind| kind.is_block_device()))
            .expect("this test needs a block device node in /dev (a loop device will do)");
        let error = check_nvme_char_device(block_device.path()).unwrap_err();
        assert!(
            matches!(error, NvmeOpenError::IsBlockDevice { .. }),
            "{error}"
        );
        assert!(error
            .to_string()
            .ends_with("use /dev/ngXnY, the generic char device"));
    }
}
