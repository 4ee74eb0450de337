//! How many bytes one passthrough command may move: the controller's MDTS, the kernel's
//! queue limits, and where the buffer starts within a page.
//!
//! The kernel maps a passthrough buffer in place (no copy), one segment per page unless
//! neighbouring pages happen to be physically contiguous, and refuses a request with more
//! segments than the queue's `max_segments` (`EINVAL`). So the limit rbio uses is the smallest
//! of MDTS, `max_hw_sectors_kb` and `max_segments` pages. Measured on QEMU's controller under
//! Linux 6.1: MDTS 7 (512 KiB), `max_hw_sectors_kb` 512, `max_segments` 127: 508 KiB.

use std::fs;
use std::path::PathBuf;

/// The memory page size MDTS is counted in. The controller's CAP.MPSMIN is a register user
/// space cannot read, so rbio assumes the common 4096; a controller with a larger minimum page
/// only allows more than rbio uses.
pub const NVME_MPSMIN_BYTES_ASSUMED: u32 = 4096;
/// The transfer limit used when MDTS is 0 ("no limit"): 1 MiB per command.
pub const NVME_TRANSFER_BYTES_UNLIMITED_CAP: u32 = 1 << 20;
/// Segments per request assumed when sysfs does not show `max_segments`: nvme-pci's
/// `NVME_MAX_SEGS` in Linux 6.1, the smallest recent kernels use.
pub const NVME_SEGMENTS_ASSUMED: u32 = 127;
/// Bytes one segment is assumed to cover: a 4 KiB page. Hosts with larger pages get a
/// smaller limit than they could use, never a larger one.
const SEGMENT_BYTES_ASSUMED: u32 = 4096;
/// No limit computed here exceeds 2 GiB (`data_len` is 32 bits; nothing needs more).
const TRANSFER_BYTES_CEILING: u64 = 1 << 31;

/// The per-command byte limit MDTS allows: `2^mdts * 4096` (see
/// [`NVME_MPSMIN_BYTES_ASSUMED`]), 0 capped to [`NVME_TRANSFER_BYTES_UNLIMITED_CAP`], and
/// anything above 2 GiB capped there.
pub fn max_transfer_bytes_from_mdts(mdts: u8) -> u32 {
    if mdts == 0 {
        return NVME_TRANSFER_BYTES_UNLIMITED_CAP;
    }
    let limit_bytes = u64::from(NVME_MPSMIN_BYTES_ASSUMED)
        .checked_shl(u32::from(mdts))
        .unwrap_or(u64::MAX);
    limit_bytes.min(TRANSFER_BYTES_CEILING) as u32
}

/// The kernel's limits on one request to a namespace, as sysfs shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelQueueLimits {
    /// `max_hw_sectors_kb` in bytes, if shown.
    pub max_hw_bytes: Option<u32>,
    /// `max_segments`, if shown.
    pub max_segments: Option<u32>,
}

impl KernelQueueLimits {
    /// Reads the limits for the generic char device `name` (`ng0n1`) from whichever of
    /// [`sysfs_queue_dirs`] exist, keeping the smallest value of each.
    pub fn read(name: &str) -> KernelQueueLimits {
        let read_each = |file: &str, parse: fn(&str) -> Option<u32>| {
            sysfs_queue_dirs(name)
                .iter()
                .filter_map(|dir| parse(&fs::read_to_string(dir.join(file)).ok()?))
                .min()
        };
        KernelQueueLimits {
            max_hw_bytes: read_each("max_hw_sectors_kb", parse_max_hw_sectors_kb),
            max_segments: read_each("max_segments", parse_max_segments),
        }
    }
}

/// The sysfs queue directories that may describe the generic device `name` (`ng0n1`): the
/// class device's (absent on Linux 6.1, whose `ngXnY` hangs off the controller) and the
/// block device `nvme0n1`'s.
pub fn sysfs_queue_dirs(name: &str) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(format!(
        "/sys/class/nvme-generic/{name}/device/queue"
    ))];
    if let Some(rest) = name.strip_prefix("ng") {
        dirs.push(PathBuf::from(format!("/sys/block/nvme{rest}/queue")));
    }
    dirs
}

/// The byte limit a `max_hw_sectors_kb` file states, `None` if it is not a positive number.
pub fn parse_max_hw_sectors_kb(text: &str) -> Option<u32> {
    let kib: u32 = text.trim().parse().ok()?;
    (kib > 0).then(|| kib.saturating_mul(1024))
}

/// The count a `max_segments` file states, `None` if it is not a positive number.
pub fn parse_max_segments(text: &str) -> Option<u32> {
    let segments: u32 = text.trim().parse().ok()?;
    (segments > 0).then_some(segments)
}

/// Bytes one command may move from a page-aligned buffer: the smallest of MDTS, the kernel's
/// `max_hw_sectors_kb`, and `max_segments` (or [`NVME_SEGMENTS_ASSUMED`]) 4 KiB pages.
pub fn transfer_limit_bytes(mdts: u8, limits: KernelQueueLimits) -> u32 {
    let segments = limits.max_segments.unwrap_or(NVME_SEGMENTS_ASSUMED);
    let segment_limit_bytes = u64::from(segments) * u64::from(SEGMENT_BYTES_ASSUMED);
    let mut limit_bytes = max_transfer_bytes_from_mdts(mdts);
    limit_bytes = limit_bytes.min(segment_limit_bytes.min(TRANSFER_BYTES_CEILING) as u32);
    if let Some(max_hw_bytes) = limits.max_hw_bytes {
        limit_bytes = limit_bytes.min(max_hw_bytes);
    }
    limit_bytes
}

/// The limit for a buffer at user address `addr`: `aligned_limit_bytes` when page aligned,
/// otherwise one page less (the buffer touches one more page, so needs one more segment),
/// in whole `lba_bytes` blocks and at least one block.
pub(crate) fn transfer_limit_at(aligned_limit_bytes: u32, lba_bytes: u32, addr: usize) -> u32 {
    if addr % SEGMENT_BYTES_ASSUMED as usize == 0 {
        return aligned_limit_bytes;
    }
    let reduced_bytes = aligned_limit_bytes.saturating_sub(SEGMENT_BYTES_ASSUMED);
    (reduced_bytes / lba_bytes * lba_bytes).max(lba_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdts_gives_the_controller_limit() {
        assert_eq!(max_transfer_bytes_from_mdts(7), 512 * 1024);
        assert_eq!(max_transfer_bytes_from_mdts(5), 128 * 1024);
        assert_eq!(max_transfer_bytes_from_mdts(0), 1 << 20);
        assert_eq!(max_transfer_bytes_from_mdts(40), 1 << 31);
        assert_eq!(max_transfer_bytes_from_mdts(255), 1 << 31);
    }

    #[test]
    fn the_smallest_limit_wins() {
        let qemu_on_6_1 = KernelQueueLimits {
            max_hw_bytes: Some(512 * 1024),
            max_segments: Some(127),
        };
        assert_eq!(transfer_limit_bytes(7, qemu_on_6_1), 508 * 1024);
        let big_segments = KernelQueueLimits {
            max_hw_bytes: Some(256 * 1024),
            max_segments: Some(1024),
        };
        assert_eq!(transfer_limit_bytes(7, big_segments), 256 * 1024);
        assert_eq!(transfer_limit_bytes(5, big_segments), 128 * 1024);
        assert_eq!(
            transfer_limit_bytes(0, KernelQueueLimits::default()),
            508 * 1024
        );
        let huge = KernelQueueLimits {
            max_hw_bytes: None,
            max_segments: Some(u32::MAX),
        };
        assert_eq!(transfer_limit_bytes(40, huge), 1 << 31);
    }

    #[test]
    fn unaligned_buffers_get_one_page_less() {
        assert_eq!(
            transfer_limit_at(508 * 1024, 512, 0x7f00_0000_0000),
            508 * 1024
        );
        assert_eq!(
            transfer_limit_at(508 * 1024, 512, 0x7f00_0000_0010),
            504 * 1024
        );
        assert_eq!(
            transfer_limit_at(508 * 1024, 4096, 0x7f00_0000_0200),
            504 * 1024
        );
        assert_eq!(transfer_limit_at(6 * 1024, 4096, 0x10), 4096);
        assert_eq!(transfer_limit_at(4096, 4096, 0x10), 4096);
    }

    #[test]
    fn sysfs_dirs_and_values_parse() {
        assert_eq!(
            sysfs_queue_dirs("ng1n2"),
            vec![
                PathBuf::from("/sys/class/nvme-generic/ng1n2/device/queue"),
                PathBuf::from("/sys/block/nvme1n2/queue"),
            ]
        );
        assert_eq!(sysfs_queue_dirs("odd").len(), 1);
        assert_eq!(parse_max_hw_sectors_kb("512\n"), Some(512 * 1024));
        assert_eq!(parse_max_hw_sectors_kb("0\n"), None);
        assert_eq!(parse_max_hw_sectors_kb("lots"), None);
        assert_eq!(parse_max_segments("127\n"), Some(127));
        assert_eq!(parse_max_segments("-1"), None);
    }
}
