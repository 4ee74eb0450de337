//! Shared set-up for rbio's benchmarks: the data file they read, random offsets, page-cache
//! control, and a side-by-side summary table with ratios to a baseline measured in the same run.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rbio_core::Device;

/// The data file of the O_DIRECT engine benchmarks: 2 GiB, larger than any cache in the way.
pub const DIRECT_FILE_BYTES: u64 = 2 << 30;
/// The data file of the hot-page-cache benchmarks.
pub const HOT_FILE_BYTES: u64 = 256 << 20;
/// Reads per criterion iteration of the engine benchmarks.
pub const OP_COUNT: usize = 4096;
/// Offsets the engine benchmarks cycle through, so successive iterations read different
/// blocks, as fio does.
pub const OFFSET_COUNT: usize = 1 << 20;

/// Where benchmark data files live: `target/rbio-bench/` of the workspace, kept across runs.
pub fn bench_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("rbio-bench")
}

/// A file of `len_bytes` pseudo-random bytes (no holes, so every read reaches the disk),
/// created on first use and reused after.
///
/// # Panics
/// If the file cannot be created or written: a benchmark cannot run without it.
pub fn data_file(len_bytes: u64) -> PathBuf {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("create target/rbio-bench");
    let path = dir.join(format!("data-{}m.bin", len_bytes >> 20));
    let complete = std::fs::metadata(&path).is_ok_and(|m| m.len() == len_bytes);
    if !complete {
        eprintln!(
            "rbio-bench: writing {} MiB data file {}",
            len_bytes >> 20,
            path.display()
        );
        let partial = path.with_extension("partial");
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&partial)
            .expect("create data file");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..len_bytes.div_ceil(1 << 20) {
            for word in chunk.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            file.write_all(&chunk).expect("write data file");
        }
        file.sync_all().expect("sync data file");
        std::fs::rename(&partial, &path).expect("rename data file");
    }
    path
}

/// `count` offsets of `block_bytes`-aligned blocks spread over `len_bytes`, from a fixed seed.
pub fn random_offsets(count: usize, len_bytes: u64, block_bytes: u64, seed: u64) -> Vec<u64> {
    let blocks = len_bytes / block_bytes;
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % blocks) * block_bytes
        })
        .collect()
}

/// Random 4 KiB reads over one device, for the engine benchmarks: a long list of seeded
/// offsets ([`OFFSET_COUNT`]) cycled through, so successive iterations read different blocks,
/// as fio does.
pub struct Workload {
    /// The device read.
    pub device: Arc<Device>,
    offsets: Vec<u64>,
    cursor: usize,
}

impl Workload {
    /// Reads of 4 KiB blocks anywhere in the first `file_bytes` of `device`.
    pub fn new(device: Device, file_bytes: u64) -> Workload {
        Workload {
            device: Arc::new(device),
            offsets: random_offsets(OFFSET_COUNT, file_bytes, 4096, 7),
            cursor: 0,
        }
    }

    /// The next offset to read, cycling through the list.
    pub fn next_offset(&mut self) -> u64 {
        let offset = self.offsets[self.cursor];
        self.cursor = (self.cursor + 1) % self.offsets.len();
        offset
    }
}

/// Drops the page cache (root only); returns whether it was permitted.
pub fn drop_page_cache() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// One row of a summary: a configuration and its measured rate.
pub struct Row {
    /// The configuration, e.g. "posix workers=8".
    pub name: String,
    /// Operations per second.
    pub ops_per_second: f64,
}

/// Prints rows with each one's ratio to `baseline_ops_per_second`, a rate measured in this
/// run.
pub fn print_summary(title: &str, baseline_name: &str, baseline_ops_per_second: f64, rows: &[Row]) {
    print_table(
        &format!("{title} (baseline: {baseline_name}, measured in this run)"),
        baseline_ops_per_second,
        rows,
    );
}

/// Prints rows with each one's ratio to `goal_ops_per_second`, a target rather than a
/// measurement.
pub fn print_against_goal(title: &str, goal_name: &str, goal_ops_per_second: f64, rows: &[Row]) {
    print_table(
        &format!("{title} (x goal: {goal_name})"),
        goal_ops_per_second,
        rows,
    );
}

fn print_table(heading: &str, baseline_ops_per_second: f64, rows: &[Row]) {
    println!("\n{heading}");
    println!(
        "{:<40} {:>12} {:>10}",
        "configuration", "ops/s", "x baseline"
    );
    for row in rows {
        println!(
            "{:<40} {:>12.0} {:>10.2}",
            row.name,
            row.ops_per_second,
            row.ops_per_second / baseline_ops_per_second
        );
    }
}

/// Operations per second for `op_count` operations taking `elapsed`.
pub fn rate(op_count: u64, elapsed: Duration) -> f64 {
    op_count as f64 / elapsed.as_secs_f64()
}
