//! The regions given to `register_fixed_buffers`, checked as LMCache checks them.

use pyo3::PyResult;

use super::errors::value;

/// The most regions one registration takes (io_uring's limit).
const REGIONS_MAX: usize = 65536;
/// The largest region io_uring registers.
const REGION_BYTES_MAX: u64 = 1 << 30;

/// Validated, non-overlapping `(address, bytes)` regions.
#[derive(Debug)]
pub struct FixedRegions {
    regions: Vec<(u64, u64)>,
}

impl FixedRegions {
    /// Checks the regions: equal lengths, 1 to 65536 of them, none null, empty, over 1 GiB,
    /// wrapping the address space, or overlapping another.
    pub fn new(ptrs: &[u64], sizes: &[u64]) -> PyResult<FixedRegions> {
        if ptrs.len() != sizes.len() {
            return Err(value("buffer_ptrs and buffer_sizes must have same length"));
        }
        if ptrs.is_empty() {
            return Err(value("no fixed buffers given"));
        }
        if ptrs.len() > REGIONS_MAX {
            return Err(value(format!(
                "too many fixed buffers: {} > {REGIONS_MAX}",
                ptrs.len()
            )));
        }
        let mut regions = Vec::with_capacity(ptrs.len());
        for (index, (&ptr, &size)) in ptrs.iter().zip(sizes).enumerate() {
            if ptr == 0 {
                return Err(value(format!("fixed buffer {index} has a null pointer")));
            }
            if size == 0 {
                return Err(value(format!("fixed buffer {index} has zero size")));
            }
            if size > REGION_BYTES_MAX {
                return Err(value(format!(
                    "fixed buffer {index} exceeds the 1 GiB limit"
                )));
            }
            if ptr.checked_add(size).is_none() {
                return Err(value(format!(
                    "fixed buffer {index} address range overflows"
                )));
            }
            regions.push((ptr, size));
        }
        let mut sorted: Vec<(usize, u64, u64)> = regions
            .iter()
            .enumerate()
            .map(|(i, &(p, s))| (i, p, s))
            .collect();
        sorted.sort_unstable_by_key(|&(_, ptr, _)| ptr);
        for pair in sorted.windows(2) {
            let ((first, ptr, size), (second, next_ptr, _)) = (pair[0], pair[1]);
            if ptr + size > next_ptr {
                return Err(value(format!(
                    "fixed buffer regions overlap: buffer {first} [{ptr:#x}, {:#x}) and buffer {second} at {next_ptr:#x}",
                    ptr + size
                )));
            }
        }
        Ok(FixedRegions { regions })
    }

    /// The regions' bytes in all.
    pub fn total_bytes(&self) -> u64 {
        self.regions.iter().map(|&(_, size)| size).sum()
    }
}
