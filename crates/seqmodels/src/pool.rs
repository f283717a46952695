//! Work split between the threads of candle's pool for the ops outside the fused kernels (the
//! loss, an optimizer's update): one consecutive part per thread, each run by the thread of its
//! index, results returned in part order so that sums over parts do not depend on timing.

use std::ops::Range;
use std::sync::Mutex;

/// The threads of candle's pool: its workers and the calling thread.
pub fn threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// `items` split into consecutive ranges of equal length (the last may be shorter), one per pool
/// thread (at most one per item); a single range when `items` is below `min_parallel`, where
/// handing work to other threads costs more than it saves.
pub fn split(items: usize, min_parallel: usize) -> Vec<Range<usize>> {
    let parts = if items < min_parallel { 1 } else { threads().min(items).max(1) };
    let chunk = items.div_ceil(parts).max(1);
    (0..items).step_by(chunk).map(|start| start..items.min(start + chunk)).collect()
}

/// Runs `f(items, part)` on the parts of `data` in parallel on candle's pool and returns the
/// results in part order. `data` holds `data.len() / unit` items of `unit` elements each; the
/// items are split as [`split`] says, and `part` is the slice of `data` that holds `items`.
pub fn map_parts_mut<T: Send, R: Send>(
    data: &mut [T],
    unit: usize,
    min_parallel: usize,
    f: impl Fn(Range<usize>, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let unit = unit.max(1);
    let items = data.len() / unit;
    let ranges = split(items, min_parallel);
    if ranges.len() <= 1 {
        return vec![f(0..items, data)];
    }
    let chunk = ranges[0].len() * unit;
    // One slot per part, each taken once by the thread of its index.
    type Slot<'a, T> = Mutex<Option<(Range<usize>, &'a mut [T])>>;
    let slots: Vec<Slot<T>> = ranges.into_iter().zip(data.chunks_mut(chunk)).map(|p| Mutex::new(Some(p))).collect();
    let results: Vec<Mutex<Option<R>>> = slots.iter().map(|_| Mutex::new(None)).collect();
    candle_core::utils::barrier_pool().execute(|tid| {
        let part = slots.get(tid).and_then(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some((items, part)) = part {
            let result = f(items, part);
            *results[tid].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
    });
    // The pool runs the closure once for every thread index, and there are at most that many
    // parts, so every slot holds a result.
    results
        .into_iter()
        .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()).expect("the pool ran every part"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_items_once_in_order() {
        assert_eq!(split(10, 64), vec![0..10]);
        assert_eq!(split(0, 0), Vec::<Range<usize>>::new());
        let ranges = split(1000, 1);
        assert_eq!(ranges.len(), threads().min(1000));
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(1000));
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn every_part_runs_once_and_results_come_in_order() {
        let mut data: Vec<u64> = (0..3000).collect();
        let sums = map_parts_mut(&mut data, 3, 1, |items, part| {
            assert_eq!(part.len(), items.len() * 3);
            part.iter_mut().for_each(|x| *x *= 2);
            items.start
        });
        assert!(sums.windows(2).all(|w| w[0] < w[1]), "{sums:?}");
        assert!(data.iter().enumerate().all(|(i, &x)| x == 2 * i as u64));
    }
}
