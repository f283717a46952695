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
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: 'static + Copy + num_traits::Zero + num_traits::One>(
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
    let (lhs_cs, lhs_rs) = match lhs_stored {
        Stored::AsIs => (1, k as isize),
        Stored::Transposed => (m as isize, 1),
    };
    let (rhs_cs, rhs_rs) = match rhs_stored {
        Stored::AsIs => (1, n as isize),
        Stored::Transposed => (k as isize, 1),
    };
    // Threads only pay off on products large enough to split.
    let parallelism =
        if threads > 1 && m * n * k >= 48 * 48 * 48 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: the assert above guarantees every index the strides reach lies inside the slices,
    // and `dst` is borrowed mutably, so it cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        )
    }
}
