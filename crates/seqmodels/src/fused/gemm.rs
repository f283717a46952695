//! A safe row-major wrapper over the `gemm` crate (the matrix multiply candle itself uses).

use gemm::Parallelism;

/// How a row-major operand is stored: as the matrix itself or as its transpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    AsIs,
    Transposed,
}

/// dst (m x n) = [dst +] lhs (m x k) * rhs (k x n), every matrix row-major and dense.
/// `lhs`/`rhs` may be stored transposed ((k x m) / (n x k)). `accumulate` adds to `dst`.
/// With `threads > 1`, the rows of `dst` are split between candle's pool threads (see
/// [`split_rows`]); the `gemm` crate's own threading (a rayon pool) is not used.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: 'static + Copy + Send + Sync + num_traits::Zero + num_traits::One>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    lhs: &[T],
    lhs_stored: Stored,
    rhs: &[T],
    rhs_stored: Stored,
    threads: usize,
) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n, "matmul operand sizes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].iter_mut().for_each(|v| *v = T::zero());
        }
        return;
    }
    // Strides of op(lhs) (m x k) and op(rhs) (k x n) over the stored data: (column, row).
    let (lhs_cs, lhs_rs) = match lhs_stored {
        Stored::AsIs => (1, k),
        Stored::Transposed => (m, 1),
    };
    let (rhs_cs, rhs_rs) = match rhs_stored {
        Stored::AsIs => (1, n),
        Stored::Transposed => (k, 1),
    };
    let chunks = split_rows(m, n, k, threads);
    let rows_per = m.div_ceil(chunks);
    let dst = SendPtr(dst.as_mut_ptr());
    let run = |chunk: usize| {
        let start = chunk * rows_per;
        if start >= m {
            return;
        }
        let rows = rows_per.min(m - start);
        // SAFETY: the assert above guarantees that every index the strides reach lies inside the
        // slices; each chunk writes only its own rows start..start+rows of `dst`, which is
        // borrowed mutably (so it aliases neither operand).
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                dst.offset(start * n),
                1,
                n as isize,
                accumulate,
                lhs.as_ptr().add(start * lhs_rs),
                lhs_cs as isize,
                lhs_rs as isize,
                rhs.as_ptr(),
                rhs_cs as isize,
                rhs_rs as isize,
                T::one(),
                T::one(),
                false,
                false,
                false,
                Parallelism::None,
            )
        }
    };
    if chunks == 1 {
        run(0);
    } else {
        candle_core::utils::barrier_pool().execute(|tid| {
            if tid < chunks {
                run(tid)
            }
        });
    }
}

/// How many row chunks a product is split into: one per pool thread (at most `threads`) when
/// it is large enough to pay for the hand-off, each chunk at least 16 rows. One pool for all
/// the work of an op: the `gemm` crate's rayon workers would otherwise compete with candle's
/// pool threads for the same cores.
fn split_rows(m: usize, n: usize, k: usize, threads: usize) -> usize {
    let pool = candle_core::utils::barrier_pool().n_workers() + 1;
    if threads <= 1 || m * n * k < 48 * 48 * 48 {
        return 1;
    }
    threads.min(pool).min(m / 16).max(1)
}

/// A pointer that the pool's threads may share; each writes a disjoint part.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
impl<T> SendPtr<T> {
    /// The pointer `count` elements further (a method, so closures capture the whole `SendPtr`).
    ///
    /// # Safety
    /// As `pointer::add`.
    unsafe fn offset(self, count: usize) -> *mut T {
        self.0.add(count)
    }
}

// SAFETY: used only to hand disjoint row ranges of one buffer to the pool's threads.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}
