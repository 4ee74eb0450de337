//! What a namespace is: its id, LBA size, size and transfer limit, from NVMe Identify.
//!
//! The Identify parsers are pure functions over the 4096-byte pages so they can be tested on
//! synthetic data; [`NvmeNamespaceInfo::query`] is the thin ioctl layer on top.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rbio_core::IoError;

use super::cmd::LbaFormat;
use super::ioctl::{identify, namespace_id, IDENTIFY_PAGE_BYTES};
use super::limits::{transfer_limit_at, transfer_limit_bytes, KernelQueueLimits};
use super::open::{ioctl_id_error, NvmeOpenError};

/// Identify CNS 0x00: the Identify Namespace data structure for one nsid.
const CNS_NAMESPACE: u8 = 0x00;
/// Identify CNS 0x01: the Identify Controller data structure (nsid 0).
const CNS_CONTROLLER: u8 = 0x01;

// Identify Namespace offsets (NVM command set).
const NS_NSZE_AT: usize = 0;
const NS_NLBAF_AT: usize = 25;
const NS_FLBAS_AT: usize = 26;
const NS_LBAF_AT: usize = 128;
const NS_LBAF_BYTES: usize = 4;
const NS_LBAF_COUNT_MAX: usize = 64;
const _: () = assert!(NS_LBAF_AT + NS_LBAF_BYTES * NS_LBAF_COUNT_MAX <= IDENTIFY_PAGE_BYTES);
// Identify Controller offset of MDTS.
const CTRL_MDTS_AT: usize = 77;

/// The parts of Identify Namespace rbio uses: size and the selected LBA format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// NSZE: namespace size in logical blocks.
    pub block_count: u64,
    /// NLBAF + 1: how many LBA formats the namespace lists.
    pub lba_format_count: u8,
    /// The format FLBAS selects.
    pub format_index: u8,
    /// That format's metadata bytes per block (MS).
    pub metadata_bytes: u16,
    /// That format's block size (from LBADS).
    pub lba_format: LbaFormat,
    /// That format's relative performance (RP, 0 best to 3 degraded).
    pub relative_performance: u8,
}

/// Why an Identify page describes a namespace rbio cannot use.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentifyError {
    /// NSZE is 0: the namespace id is not active (the controller returned a zeroed page).
    Inactive,
    /// FLBAS selects a format past the ones NLBAF lists.
    FormatIndex {
        /// The selected format.
        format_index: u8,
        /// Formats listed.
        lba_format_count: u8,
    },
    /// The selected format's LBADS is not 9 to 16 (512 B to 64 KiB blocks).
    LbaShift {
        /// The selected format.
        format_index: u8,
        /// Its LBADS.
        lba_shift: u8,
    },
    /// The selected format carries metadata, which rbio's reads and writes do not transfer.
    Metadata {
        /// The selected format.
        format_index: u8,
        /// Its metadata bytes per block.
        metadata_bytes: u16,
    },
    /// NSZE times the LBA size does not fit 64 bits.
    TooLarge {
        /// NSZE.
        block_count: u64,
        /// The LBA size.
        lba_bytes: u32,
    },
}

impl fmt::Display for IdentifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentifyError::Inactive => write!(f, "namespace is not active (size 0 blocks)"),
            IdentifyError::FormatIndex {
                format_index,
                lba_format_count,
            } => write!(
                f,
                "lba format {format_index} selected but only {lba_format_count} listed"
            ),
            IdentifyError::LbaShift {
                format_index,
                lba_shift,
            } => write!(
                f,
                "lba format {format_index} has lba shift {lba_shift}; rbio supports 9 to 16"
            ),
            IdentifyError::Metadata {
                format_index,
                metadata_bytes,
            } => write!(
                f,
                "lba format {format_index} has {metadata_bytes} metadata bytes per block; \
                 reformat the namespace to a format without metadata (nvme format --lbaf)"
            ),
            IdentifyError::TooLarge {
                block_count,
                lba_bytes,
            } => write!(
                f,
                "namespace of {block_count} blocks of {lba_bytes} bytes overflows 64 bits"
            ),
        }
    }
}

impl std::error::Error for IdentifyError {}

/// Parses Identify Namespace (CNS 0) and refuses formats rbio cannot use.
///
/// # Errors
///
/// [`IdentifyError`] for an inactive namespace, a bad format index or LBA size, a format with
/// metadata, or a size that overflows.
pub fn parse_identify_namespace(
    page: &[u8; IDENTIFY_PAGE_BYTES],
) -> Result<IdentifyNamespace, IdentifyError> {
    let nsze_bytes: [u8; 8] = page[NS_NSZE_AT..NS_NSZE_AT + 8]
        .try_into()
        .expect("8 bytes");
    let block_count = u64::from_le_bytes(nsze_bytes);
    if block_count == 0 {
        return Err(IdentifyError::Inactive);
    }
    let nlbaf = page[NS_NLBAF_AT];
    let flbas = page[NS_FLBAS_AT];
    let lba_format_count = nlbaf.saturating_add(1).min(NS_LBAF_COUNT_MAX as u8);
    // FLBAS bits 3:0 are the format index; with more than 16 formats bits 6:5 extend it.
    let mut format_index = flbas & 0x0f;
    if nlbaf >= 16 {
        format_index |= ((flbas >> 5) & 0x03) << 4;
    }
    if format_index >= lba_format_count {
        return Err(IdentifyError::FormatIndex {
            format_index,
            lba_format_count,
        });
    }
    let at = NS_LBAF_AT + NS_LBAF_BYTES * usize::from(format_index);
    let metadata_bytes = u16::from_le_bytes([page[at], page[at + 1]]);
    let lba_shift = page[at + 2];
    let relative_performance = page[at + 3] & 0x03;
    let lba_format = LbaFormat::from_shift(lba_shift).map_err(|_| IdentifyError::LbaShift {
        format_index,
        lba_shift,
    })?;
    if metadata_bytes > 0 {
        return Err(IdentifyError::Metadata {
            format_index,
            metadata_bytes,
        });
    }
    if block_count
        .checked_mul(u64::from(lba_format.lba_bytes()))
        .is_none()
    {
        return Err(IdentifyError::TooLarge {
            block_count,
            lba_bytes: lba_format.lba_bytes(),
        });
    }
    Ok(IdentifyNamespace {
        block_count,
        lba_format_count,
        format_index,
        metadata_bytes,
        lba_format,
        relative_performance,
    })
}

/// MDTS from Identify Controller (CNS 1): the maximum transfer as a power of two of the
/// minimum memory page size, 0 for no limit.
pub fn parse_identify_controller_mdts(page: &[u8; IDENTIFY_PAGE_BYTES]) -> u8 {
    page[CTRL_MDTS_AT]
}

/// An NVMe namespace as rbio drives it through passthrough: what Identify said about it.
///
/// Only Identify makes one ([`NvmeNamespaceInfo::query`], or the engine and
/// [`NvmeNamespace`](crate::NvmeNamespace) that call it on their own descriptor): the fields
/// are read through methods and cannot be set, so no caller can pair a descriptor with a
/// smaller LBA size than its namespace has and make the controller move more bytes than the
/// buffer it was given. A forged one does not compile:
///
/// ```compile_fail
/// use rbio_uring::{LbaFormat, NvmeNamespaceInfo};
/// let forged = NvmeNamespaceInfo {
///     nsid: 1,
///     lba_format: LbaFormat::LBA_512,
///     block_count: 8,
///     max_transfer_bytes: 4096,
/// };
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvmeNamespaceInfo {
    nsid: u32,
    lba_format: LbaFormat,
    block_count: u64,
    max_transfer_bytes: u32,
}

impl NvmeNamespaceInfo {
    /// Namespace `nsid` as Identify Namespace describes it, moving at most
    /// `max_transfer_bytes` per command.
    pub(crate) fn from_identify(
        nsid: u32,
        namespace: &IdentifyNamespace,
        max_transfer_bytes: u32,
    ) -> NvmeNamespaceInfo {
        NvmeNamespaceInfo {
            nsid,
            lba_format: namespace.lba_format,
            block_count: namespace.block_count,
            max_transfer_bytes,
        }
    }

    /// Namespace id, from `NVME_IOCTL_ID`.
    pub fn nsid(&self) -> u32 {
        self.nsid
    }

    /// The formatted logical block size.
    pub fn lba_format(&self) -> LbaFormat {
        self.lba_format
    }

    /// Namespace size in logical blocks (NSZE).
    pub fn block_count(&self) -> u64 {
        self.block_count
    }

    /// Bytes one command may move from a page-aligned buffer: the smallest of MDTS and the
    /// kernel's queue limits (see `limits.rs`); [`NvmeNamespaceInfo::max_transfer_bytes_at`]
    /// gives the limit for any buffer.
    pub fn max_transfer_bytes(&self) -> u32 {
        self.max_transfer_bytes
    }

    /// Namespace size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.block_count
            .saturating_mul(u64::from(self.lba_format.lba_bytes()))
    }

    /// Bytes one command may move from a buffer starting at user address `addr`.
    ///
    /// [`Self::max_transfer_bytes`] when `addr` is 4 KiB aligned; otherwise one page less (in
    /// whole blocks, at least one block): the kernel maps the buffer one segment per page, and
    /// an unaligned buffer of the full limit touches one page too many (`EINVAL`; seen on
    /// QEMU's controller with 512 KiB from a heap `Vec`).
    pub fn max_transfer_bytes_at(&self, addr: usize) -> u32 {
        transfer_limit_at(self.max_transfer_bytes, self.lba_format.lba_bytes(), addr)
    }

    /// Asks the namespace behind `fd` (an open `/dev/ngXnY`) who it is: `NVME_IOCTL_ID`, then
    /// Identify Namespace and Identify Controller through `NVME_IOCTL_ADMIN_CMD`.
    ///
    /// Admin passthrough needs `CAP_SYS_ADMIN` on kernels before 6.2 (and for most commands
    /// after); without it the ioctl fails with `EACCES`.
    ///
    /// # Errors
    ///
    /// [`NvmeOpenError`] naming the step that failed, or why the namespace is unusable.
    pub fn query(fd: BorrowedFd<'_>) -> Result<NvmeNamespaceInfo, NvmeOpenError> {
        let path = path_of_fd(fd);
        let nsid = namespace_id(fd).map_err(|source| ioctl_id_error(&path, source))?;
        let ns_page = identify(fd, CNS_NAMESPACE, nsid)
            .map_err(|error| identify_error(&path, CNS_NAMESPACE, error))?;
        let namespace =
            parse_identify_namespace(&ns_page).map_err(|source| NvmeOpenError::Identify {
                path: path.clone(),
                nsid,
                source,
            })?;
        let ctrl_page = identify(fd, CNS_CONTROLLER, 0)
            .map_err(|error| identify_error(&path, CNS_CONTROLLER, error))?;
        let mdts = parse_identify_controller_mdts(&ctrl_page);
        let kernel_limits = sysfs_name(fd).map_or_else(KernelQueueLimits::default, |name| {
            KernelQueueLimits::read(&name)
        });
        let max_transfer_bytes = transfer_limit_bytes(mdts, kernel_limits);
        Ok(NvmeNamespaceInfo::from_identify(
            nsid,
            &namespace,
            max_transfer_bytes,
        ))
    }
}

/// The sysfs name (`ng0n1`) of the char device behind `fd`, found through its device number
/// so a renamed or linked `/dev` node still finds its limits.
fn sysfs_name(fd: BorrowedFd<'_>) -> Option<String> {
    let file = File::from(fd.try_clone_to_owned().ok()?);
    let rdev = file.metadata().ok()?.rdev();
    let class_link = format!("/sys/dev/char/{}:{}", libc::major(rdev), libc::minor(rdev));
    let sysfs_dir = fs::canonicalize(class_link).ok()?;
    Some(sysfs_dir.file_name()?.to_str()?.to_owned())
}

/// The path `fd` was opened with, for messages; `fd N` when /proc is not there to say.
fn path_of_fd(fd: BorrowedFd<'_>) -> PathBuf {
    let raw = fd.as_raw_fd();
    fs::read_link(format!("/proc/self/fd/{raw}"))
        .unwrap_or_else(|_| PathBuf::from(format!("fd {raw}")))
}

fn identify_error(path: &Path, cns: u8, error: IoError) -> NvmeOpenError {
    match error {
        IoError::Nvme(status) => NvmeOpenError::IdentifyStatus {
            path: path.to_path_buf(),
            cns,
            status,
        },
        IoError::Os(errno) => NvmeOpenError::Io {
            path: path.to_path_buf(),
            step: "identify (NVME_IOCTL_ADMIN_CMD)",
            source: io::Error::from_raw_os_error(errno.0),
        },
        other => NvmeOpenError::Io {
            path: path.to_path_buf(),
            step: "identify (NVME_IOCTL_ADMIN_CMD)",
            source: io::Error::other(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Page = [u8; IDENTIFY_PAGE_BYTES];

    /// A namespace page: `block_count` blocks, `formats` as (ms, lbads, rp), `flbas`.
    fn namespace_page(block_count: u64, formats: &[(u16, u8, u8)], flbas: u8) -> Box<Page> {
        let mut page = Box::new([0u8; IDENTIFY_PAGE_BYTES]);
        page[0..8].copy_from_slice(&block_count.to_le_bytes());
        page[25] = (formats.len() - 1) as u8;
        page[26] = flbas;
        for (index, &(ms, lbads, rp)) in formats.iter().enumerate() {
            let at = 128 + 4 * index;
            page[at..at + 2].copy_from_slice(&ms.to_le_bytes());
            page[at + 2] = lbads;
            page[at + 3] = rp;
        }
        page
    }

    #[test]
    fn parses_the_selected_format() {
        let page = namespace_page(
            0x0001_0000_0002_0000,
            &[(0, 9, 2), (0, 12, 0), (8, 12, 1)],
            1,
        );
        let ns = parse_identify_namespace(&page).unwrap();
        assert_eq!(ns.block_count, 0x0001_0000_0002_0000);
        assert_eq!(ns.lba_format_count, 3);
        assert_eq!(ns.format_index, 1);
        assert_eq!(ns.lba_format, LbaFormat::LBA_4096);
        assert_eq!(ns.relative_performance, 0);
        let page = namespace_page(131072, &[(0, 9, 2), (0, 12, 0)], 0x10); // bit 4: extended LBA
        let ns = parse_identify_namespace(&page).unwrap();
        assert_eq!(
            (ns.format_index, ns.lba_format, ns.relative_performance),
            (0, LbaFormat::LBA_512, 2)
        );
    }

    #[test]
    fn flbas_high_bits_count_only_with_more_than_16_formats() {
        let mut formats = vec![(0u16, 9u8, 0u8); 20];
        formats[17] = (0, 12, 0);
        // index 17 = low 0b0001 plus high 0b01 in bits 6:5
        let page = namespace_page(8, &formats, 0b0010_0001);
        let ns = parse_identify_namespace(&page).unwrap();
        assert_eq!((ns.format_index, ns.lba_format), (17, LbaFormat::LBA_4096));
        let page = namespace_page(8, &formats[..16], 0b0010_0001);
        assert_eq!(parse_identify_namespace(&page).unwrap().format_index, 1);
    }

    #[test]
    fn mdts_is_byte_77_of_identify_controller() {
        let mut page = Box::new([0u8; IDENTIFY_PAGE_BYTES]);
        page[77] = 7;
        assert_eq!(parse_identify_controller_mdts(&page), 7);
    }

    #[test]
    fn refuses_metadata_inactive_bad_index_and_bad_size() {
        let page = namespace_page(64, &[(0, 9, 0), (8, 9, 0)], 1);
        let error = parse_identify_namespace(&page).unwrap_err();
        assert_eq!(
            error,
            IdentifyError::Metadata {
                format_index: 1,
                metadata_bytes: 8
            }
        );
        assert!(error
            .to_string()
            .starts_with("lba format 1 has 8 metadata bytes per block"));
        let zeroed = Box::new([0u8; IDENTIFY_PAGE_BYTES]);
        assert_eq!(
            parse_identify_namespace(&zeroed),
            Err(IdentifyError::Inactive)
        );
        let page = namespace_page(64, &[(0, 9, 0), (0, 12, 0)], 2);
        assert_eq!(
            parse_identify_namespace(&page),
            Err(IdentifyError::FormatIndex {
                format_index: 2,
                lba_format_count: 2
            })
        );
        let page = namespace_page(64, &[(0, 8, 0)], 0);
        assert_eq!(
            parse_identify_namespace(&page),
            Err(IdentifyError::LbaShift {
                format_index: 0,
                lba_shift: 8
            })
        );
        let page = namespace_page(u64::MAX / 1024, &[(0, 12, 0)], 0);
        assert!(matches!(
            parse_identify_namespace(&page),
            Err(IdentifyError::TooLarge { .. })
        ));
    }
}
