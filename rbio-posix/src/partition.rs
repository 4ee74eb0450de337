//! Splitting a batch into contiguous ranges, one per worker, and choosing the workers.

use std::ops::Range;

/// Splits `op_count` operations into `min(op_count, range_count_max)` contiguous ranges whose
/// sizes differ by at most one, the larger ones first: 10 operations over 3 workers become
/// `0..4`, `4..7`, `7..10`.
pub(crate) fn split(op_count: usize, range_count_max: usize) -> Vec<Range<usize>> {
    let range_count = op_count.min(range_count_max);
    if range_count == 0 {
        return Vec::new();
    }
    let (base, extra) = (op_count / range_count, op_count % range_count);
    let mut ranges = Vec::with_capacity(range_count);
    let mut start = 0;
    for range_index in 0..range_count {
        let len = base + usize::from(range_index < extra);
        ranges.push(start..start + len);
        start += len;
    }
    assert_eq!(start, op_count, "ranges must cover the batch exactly");
    ranges
}

/// The live workers ordered from least to most loaded; ties go to the worker nearest
/// `cursor` (rotating it spreads small batches over all workers). `loads[i]` is worker `i`'s
/// queued operation count, or `None` if it is dead.
pub(crate) fn by_load(loads: &[Option<usize>], cursor: usize) -> Vec<usize> {
    let worker_count = loads.len();
    let mut order: Vec<(usize, usize, usize)> = loads
        .iter()
        .enumerate()
        .filter_map(|(index, load)| {
            let distance = (index + worker_count - cursor % worker_count) % worker_count;
            load.map(|load| (load, distance, index))
        })
        .collect();
    order.sort_unstable();
    order.into_iter().map(|(_, _, index)| index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_operations_over_three_workers_are_four_three_three() {
        assert_eq!(split(10, 3), [0..4, 4..7, 7..10]);
    }

    #[test]
    fn fewer_operations_than_workers_give_one_range_each() {
        assert_eq!(split(2, 8), [0..1, 1..2]);
        assert!(split(0, 8).is_empty());
        assert_eq!(split(5, 1), vec![0..5]);
    }

    #[test]
    fn ranges_are_contiguous_balanced_and_cover_the_batch() {
        for op_count in 0..70 {
            for range_count_max in 1..20 {
                let ranges = split(op_count, range_count_max);
                assert_eq!(ranges.len(), op_count.min(range_count_max));
                let mut next = 0;
                for range in &ranges {
                    assert_eq!(range.start, next, "{op_count} over {range_count_max}");
                    assert!(!range.is_empty());
                    next = range.end;
                }
                assert_eq!(next, op_count);
                let sizes = ranges.iter().map(|r| r.len());
                let (min, max) = (sizes.clone().min(), sizes.max());
                assert!(max.zip(min).is_none_or(|(max, min)| max - min <= 1));
            }
        }
    }

    #[test]
    fn least_loaded_first_and_ties_rotate() {
        assert_eq!(by_load(&[Some(3), Some(0), Some(1)], 0), [1, 2, 0]);
        assert_eq!(by_load(&[Some(0), Some(0), Some(0)], 1), [1, 2, 0]);
        assert_eq!(by_load(&[Some(0), None, Some(0)], 1), [2, 0]);
    }
}
