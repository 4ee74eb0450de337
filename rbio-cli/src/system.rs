//! Facts about the machine and this process, read from /proc and /sys: kernel, CPU, peak
//! memory, the disk under a path, and dropping the page cache.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::output::note;

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

/// Drops the page cache of the whole machine (root only): every program on it reads its data
/// back from disk afterwards, so only the benchmark and `demo --drop-caches` call this.
/// Returns why not when it is not permitted.
pub fn drop_page_cache() -> Result<(), String> {
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|error| format!("cannot drop the page cache ({error}); runs may read cached data"))
}

/// Drops the page cache before each run and keeps count, so a refusal is said (once, on
/// stderr, as it happens) and the results can tell whether every run started cold.
#[derive(Debug)]
pub struct CacheDropper {
    /// Who says it on stderr: `rbio bench`, `rbio demo`.
    speaker: &'static str,
    attempt_count: usize,
    failure_count: usize,
    first_failure: Option<String>,
}

impl CacheDropper {
    /// A dropper that has not dropped anything yet.
    pub fn new(speaker: &'static str) -> CacheDropper {
        CacheDropper {
            speaker,
            attempt_count: 0,
            failure_count: 0,
            first_failure: None,
        }
    }

    /// Drops the page cache; the first refusal is printed on stderr.
    pub fn drop_now(&mut self) {
        self.drop_with(drop_page_cache);
    }

    fn drop_with(&mut self, drop: impl FnOnce() -> Result<(), String>) {
        self.attempt_count += 1;
        if let Err(why) = drop() {
            self.failure_count += 1;
            if self.first_failure.is_none() {
                note!("{}: {why}", self.speaker);
                self.first_failure = Some(why);
            }
        }
    }

    /// `Ok` when every drop succeeded, else why not and how often.
    pub fn outcome(&self) -> Result<(), String> {
        match &self.first_failure {
            None => Ok(()),
            Some(why) if self.failure_count == self.attempt_count => Err(why.clone()),
            Some(why) => Err(format!(
                "{} of {} drops failed, the first: {why}",
                self.failure_count, self.attempt_count
            )),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_drop_is_counted_and_reported() {
        let mut cache = CacheDropper::new("rbio test");
        cache.drop_with(|| Ok(()));
        assert_eq!(cache.outcome(), Ok(()));
        cache.drop_with(|| Err("cannot drop the page cache (denied)".to_owned()));
        cache.drop_with(|| Ok(()));
        assert_eq!(
            cache.outcome(),
            Err("1 of 3 drops failed, the first: cannot drop the page cache (denied)".to_owned())
        );

        let mut refused = CacheDropper::new("rbio test");
        for _ in 0..3 {
            refused.drop_with(|| Err("not permitted".to_owned()));
        }
        assert_eq!(refused.outcome(), Err("not permitted".to_owned()));
    }
}
