//! Facts about the machine and this process, read from /proc and /sys: kernel, CPU, peak
//! memory, the disk under a path, and dropping the page cache.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The kernel release (`uname -r`).
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The CPU model and the number of CPUs this process may use.
pub fn cpu() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let count = std::thread::available_parallelism().map_or(1, |count| count.get());
    format!("{count} x {model}")
}

/// The process's peak resident memory (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Drops the page cache (root only). Returns why not when it is not permitted.
pub fn drop_page_cache() -> Result<(), String> {
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|error| format!("cannot drop the page cache ({error}); runs may read cached data"))
}

/// The disk holding `path`: its block device name and model, e.g. `vda (virtio disk)`.
pub fn disk_of(path: &Path) -> String {
    let Ok(metadata) = std::fs::metadata(path) else {
        return "unknown".to_owned();
    };
    let dev = if metadata.file_type().is_file() || metadata.is_dir() {
        metadata.dev()
    } else {
        metadata.rdev()
    };
    let (major, minor) = ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00));
    let sys = format!("/sys/dev/block/{major}:{minor}");
    let name = std::fs::canonicalize(&sys)
        .ok()
        .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("{major}:{minor}"));
    let read = |file: &str| {
        std::fs::read_to_string(format!("{sys}/{file}"))
            .ok()
            .or_else(|| std::fs::read_to_string(format!("{sys}/../{file}")).ok())
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    let model = read("device/model").unwrap_or_else(|| match name.starts_with("vd") {
        true => "virtio disk".to_owned(),
        false => "disk".to_owned(),
    });
    let rotational =
        read("queue/rotational").map_or("", |r| if r == "1" { ", rotational" } else { "" });
    format!("{name} ({model}{rotational})")
}
