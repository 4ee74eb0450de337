//! `NvmeNamespace`: an open namespace together with what Identify said about it on that same
//! descriptor, and the synchronous reads that need both.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rbio_core::IoError;

use super::fdp::{FdpStatusError, RuhStatusDescriptor};
use super::identify::NvmeNamespaceInfo;
use super::ioctl::{read_blocking, reclaim_unit_handle_status};
use super::open::{check_nvme_char_device, NvmeOpenError};

/// An NVMe namespace's generic char device (`/dev/ngXnY`), open read-only, with its
/// [`NvmeNamespaceInfo`] from Identify on this very descriptor.
///
/// A read's command count and block counts follow from the LBA size, and the controller moves
/// blocks × LBA size bytes whatever buffer the kernel mapped; keeping the descriptor and the
/// Identify answer in one handle is what makes that product always fit the buffer. No handle
/// can be assembled from a file and some other namespace's information:
///
/// ```compile_fail
/// use rbio_uring::{NvmeNamespace, NvmeNamespaceInfo};
/// fn mismatched(file: std::fs::File, other: NvmeNamespaceInfo) -> NvmeNamespace {
///     NvmeNamespace { file, info: other }
/// }
/// ```
///
/// Reformatting the namespace to another LBA size while a handle is open makes its
/// information stale (an administrator's action, with the namespace in use); open a new one.
#[derive(Debug)]
pub struct NvmeNamespace {
    file: File,
    info: NvmeNamespaceInfo,
}

impl NvmeNamespace {
    /// Opens the namespace at `path` read-only, after checking it is an NVMe namespace's
    /// generic char device, and asks it who it is (`NVME_IOCTL_ID`, Identify Namespace and
    /// Identify Controller; before Linux 6.2 admin passthrough needs `CAP_SYS_ADMIN`).
    ///
    /// # Errors
    ///
    /// [`NvmeOpenError`] saying what the path is instead, which step failed, or why the
    /// namespace is unusable.
    pub fn open(path: impl AsRef<Path>) -> Result<NvmeNamespace, NvmeOpenError> {
        let file = check_nvme_char_device(path)?;
        let info = NvmeNamespaceInfo::query(file.as_fd())?;
        Ok(NvmeNamespace { file, info })
    }

    /// What Identify said: namespace id, LBA format, size and transfer limit.
    pub fn info(&self) -> &NvmeNamespaceInfo {
        &self.info
    }

    /// Reads `buf.len()` bytes at `offset_bytes` with NVMe Read commands through the
    /// synchronous `NVME_IOCTL_IO_CMD`, one command per transfer-sized piece.
    ///
    /// The reference path for the passthrough engine and the guest tests: slow (one command
    /// at a time) but with nothing between rbio and the controller except the kernel.
    ///
    /// # Errors
    ///
    /// [`IoError::Misaligned`] when offset or length is not a multiple of the LBA size
    /// (nothing is sent); otherwise the first failing command's [`IoError::Nvme`] or
    /// [`IoError::Os`].
    pub fn read_blocking(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), IoError> {
        read_blocking(self, offset_bytes, buf)
    }

    /// The namespace's Flexible Data Placement reclaim unit handles, one descriptor per
    /// placement identifier, from NVMe I/O Management Receive (Reclaim Unit Handle Status)
    /// through the synchronous `NVME_IOCTL_IO_CMD`.
    ///
    /// # Errors
    ///
    /// [`FdpStatusError::Nvme`] when the controller refuses (no FDP, or FDP not enabled on
    /// the namespace's endurance group), [`FdpStatusError::Os`] when the ioctl fails, and
    /// [`FdpStatusError::Truncated`] when the answer is shorter than it says.
    pub fn reclaim_unit_handle_status(&self) -> Result<Vec<RuhStatusDescriptor>, FdpStatusError> {
        reclaim_unit_handle_status(self)
    }

    /// The open descriptor, for the ioctls.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_namespace_before_any_ioctl() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let error = NvmeNamespace::open(file.path()).unwrap_err();
        assert!(
            matches!(error, NvmeOpenError::IsRegularFile { .. }),
            "{error}"
        );
        let error = NvmeNamespace::open("/dev/null").unwrap_err();
        assert!(
            matches!(error, NvmeOpenError::NotNvmeNamespace { .. }),
            "{error}"
        );
    }
}
