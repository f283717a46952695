//! The large products of the crate (input projection, decoder, dx, weight gradients): row-major
//! wrappers over the `gemm` crate (the matrix multiply candle itself uses), split between
//! candle's pool threads.

use gemm::Parallelism;

/// How a row-major operand is stored: as the matrix itself or as its transpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The matrix itself.
    AsIs,
    /// The matrix itself with its rows this many elements apart: some consecutive columns of a
    /// wider matrix.
    Strided(usize),
    /// Its transpose (a k x m lhs, an n x k rhs).
    Transposed,
}

/// An operand of a product: its elements (row-major) and how they are stored.
pub type Operand<'a, T> = (&'a [T], Stored);

/// The matrix itself as an operand.
pub fn as_is<T>(m: &[T]) -> Operand<'_, T> {
    (m, Stored::AsIs)
}

/// The matrix itself as an operand, its rows `stride` elements apart.
pub fn strided<T>(m: &[T], stride: usize) -> Operand<'_, T> {
    (m, Stored::Strided(stride))
}

/// (column stride, row stride) of an operand of `rows` x `cols` as stored, and the elements it
/// spans.
fn strides(stored: Stored, rows: usize, cols: usize) -> ((usize, usize), usize) {
    let (cs, rs) = match stored {
        Stored::AsIs => (1, cols),
        Stored::Strided(stride) => (1, stride),
        Stored::Transposed => (rows, 1),
    };
    let span = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 };
    ((cs, rs), span)
}

/// The transpose of the stored matrix as an operand.
pub fn transposed<T>(m: &[T]) -> Operand<'_, T> {
    (m, Stored::Transposed)
}

/// What a product adds to: zeros, what `dst` holds, or a bias row repeated down every row of
/// `dst` (filled by each thread just before its part of the product, while it is in cache).
#[derive(Clone, Copy, Debug)]
pub enum Init<'a, T> {
    /// dst = lhs * rhs.
    Zero,
    /// dst += lhs * rhs.
    Accumulate,
    /// dst = bias (n values, in every row) + lhs * rhs.
    BiasRows(&'a [T]),
}

/// The element types of the products (f32, f64).
pub trait Element: 'static + Copy + Send + Sync + num_traits::Zero + num_traits::One {}
impl<T: 'static + Copy + Send + Sync + num_traits::Zero + num_traits::One> Element for T {}

/// dst (m x n) = init + lhs (m x k) * rhs (k x n), every matrix row-major, dst dense.
/// `lhs`/`rhs` may be stored transposed ((k x m) / (n x k)) or with strided rows (see
/// [`Stored`]); see [`Init`] for `init`.
/// With `threads > 1`, the rows of `dst` (or its columns, when it has few rows) are split between
/// candle's pool threads (see [`split`]); the `gemm` crate's own threading (rayon) is not used.
pub fn matmul<T: Element>(
    dims: (usize, usize, usize),
    dst: &mut [T],
    init: Init<'_, T>,
    lhs: Operand<T>,
    rhs: Operand<T>,
    threads: usize,
) {
    assert!(dst.len() >= dims.0 * dims.1, "matmul destination size");
    // SAFETY: dst holds m x n elements and is borrowed mutably.
    unsafe { product_into(dims, dst.as_mut_ptr(), init, lhs, rhs, threads) }
}

/// A new m x n matrix `init + lhs * rhs` ([`matmul`] into a fresh buffer, which is written once
/// instead of zero-filled first). `init` is [`Init::Zero`] or [`Init::BiasRows`].
pub fn product<T: Element>(
    (m, n, k): (usize, usize, usize),
    init: Init<'_, T>,
    lhs: Operand<T>,
    rhs: Operand<T>,
    threads: usize,
) -> Vec<T> {
    assert!(!matches!(init, Init::Accumulate), "a new product has nothing to accumulate into");
    let mut dst = Vec::with_capacity(m * n);
    // SAFETY: the buffer has room for m x n elements, and without accumulation `product_into`
    // writes every one of them (the product overwrites, or the k = 0 case fills in zeros)
    // before `set_len` exposes them.
    unsafe {
        product_into((m, n, k), dst.as_mut_ptr(), init, lhs, rhs, threads);
        dst.set_len(m * n);
    }
    dst
}

/// [`matmul`] into a raw destination.
///
/// # Safety
/// `dst` must be valid for writes (and, with [`Init::Accumulate`], reads) of m x n elements
/// that nothing else accesses meanwhile.
unsafe fn product_into<T: Element>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    init: Init<'_, T>,
    (lhs, lhs_stored): Operand<T>,
    (rhs, rhs_stored): Operand<T>,
    threads: usize,
) {
    // Strides of op(lhs) (m x k) and op(rhs) (k x n) over the stored data: (column, row).
    let (((lhs_cs, lhs_rs), lhs_span), ((rhs_cs, rhs_rs), rhs_span)) =
        (strides(lhs_stored, m, k), strides(rhs_stored, k, n));
    assert!(lhs.len() >= lhs_span && rhs.len() >= rhs_span, "matmul operand sizes");
    if let Init::BiasRows(bias) = init {
        assert!(bias.len() >= n, "matmul bias of {} elements for {n} columns", bias.len());
    }
    if m == 0 || n == 0 {
        return;
    }
    // Split the rows of dst between threads, or its columns when it has fewer rows than
    // columns: each thread packs all of the other operand, so the larger one is split (the
    // decoder's 10,000 x 200 weights, not its 400 x 200 input).
    let by_rows = m >= n;
    // A wide dst with few rows times weights stored transposed (the decoder of a short
    // sequence, the input projection of a short batch) runs as its transpose, whose many rows
    // the `gemm` crate vectorises along: several times faster there (scripts/gemm_compare.py),
    // slower from a few hundred rows on, where transposing the result costs more.
    let transpose_dst = !by_rows && m <= TRANSPOSE_MAX_ROWS && rhs_stored == Stored::Transposed;
    let chunks = split(if by_rows { m } else { n }, m * n * k, threads);
    let per = if by_rows { m } else { n }.div_ceil(chunks);
    let dst = SendPtr(dst);
    // The product of rows (or columns) start..start + len of dst.
    let part = |start: usize, len: usize| {
        let (rows, cols) = if by_rows { (len, n) } else { (m, len) };
        // Where the chunk starts in dst, op(lhs) and op(rhs).
        let (dst_at, lhs_at, rhs_at) =
            if by_rows { (start * n, start * lhs_rs, 0) } else { (start, 0, start * rhs_cs) };
        // The first element of each of this chunk's rows in dst; the chunk owns `cols` from there.
        let row_start = |row: usize| dst.offset(dst_at + row * n);
        let accumulate = match init {
            Init::Zero => false,
            Init::Accumulate => true,
            Init::BiasRows(bias) => {
                for row in 0..rows {
                    // SAFETY: this chunk's own part of dst (see below); `bias` holds n elements.
                    unsafe { std::ptr::copy_nonoverlapping(bias.as_ptr().add(dst_at % n), row_start(row), cols) };
                }
                true
            }
        };
        if k == 0 {
            if !accumulate {
                for row in 0..rows {
                    // SAFETY: as above.
                    (0..cols).for_each(|j| unsafe { row_start(row).add(j).write(T::zero()) });
                }
            }
            return;
        }
        let (lhs, rhs) = (
            View { data: lhs, at: lhs_at, rs: lhs_rs, cs: lhs_cs },
            View { data: rhs, at: rhs_at, rs: rhs_rs, cs: rhs_cs },
        );
        if !transpose_dst {
            // SAFETY: the assert above puts every index the strides reach inside the slices;
            // each chunk writes only its own rows (or columns) of `dst`, which is borrowed
            // mutably (so it aliases neither operand).
            return unsafe { gemm_crate((rows, cols, k), dst.offset(dst_at), n, accumulate, lhs, rhs) };
        }
        // dst^T = op(rhs)^T op(lhs)^T, into a buffer added to dst afterwards (see `transpose_dst`).
        let mut tmp = Vec::with_capacity(cols * rows);
        // SAFETY: as above for the operands; `tmp` has room for cols rows of `rows` values, and
        // the product (not accumulating, k > 0 here) writes every one of them before `set_len`
        // exposes them.
        unsafe {
            gemm_crate((cols, rows, k), tmp.as_mut_ptr(), rows, false, rhs.transposed(), lhs.transposed());
            tmp.set_len(cols * rows);
        }
        for i in 0..rows {
            for (j, v) in tmp.iter().skip(i).step_by(rows).enumerate() {
                // SAFETY: this chunk's own part of dst (see above).
                unsafe {
                    let d = row_start(i).add(j);
                    *d = if accumulate { *d + *v } else { *v };
                }
            }
        }
    };
    let total = if by_rows { m } else { n };
    let run = |chunk: usize| {
        let (start, end) = ((chunk * per).min(total), ((chunk + 1) * per).min(total));
        // Bias rows are written, then read and written again by the product: in parts of dst
        // that fit the cache (the (b) decoder's logits are 16 MB), not in one pass over all.
        let step = match init {
            Init::BiasRows(_) => (BIAS_PART / if by_rows { n } else { m }).max(16),
            _ => end - start,
        };
        for at in (start..end).step_by(step.max(1)) {
            part(at, step.min(end - at));
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

/// A matrix operand of the `gemm` crate: element (row, col) is `data[at + row * rs + col * cs]`.
#[derive(Clone, Copy)]
struct View<'a, T> {
    data: &'a [T],
    at: usize,
    rs: usize,
    cs: usize,
}

impl<T> View<'_, T> {
    /// The same elements read as the transposed matrix.
    fn transposed(self) -> Self {
        View { rs: self.cs, cs: self.rs, ..self }
    }
}

/// dst (m x n, row stride dst_rs) = (dst +, when `accumulate`) lhs (m x k) * rhs (k x n), one
/// thread, in the `gemm` crate.
///
/// # Safety
/// `dst` must be valid for writes (and, when `accumulate`, reads) of m rows of n values with row
/// stride dst_rs that nothing else accesses meanwhile, and every index that the views reach for
/// these dimensions must lie inside their slices.
unsafe fn gemm_crate<T: Element>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    accumulate: bool,
    lhs: View<T>,
    rhs: View<T>,
) {
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.at),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.at),
            rhs.cs as isize,
            rhs.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// The most rows of a product that runs as its transpose (see `transpose_dst` in
/// [`product_into`]).
const TRANSPOSE_MAX_ROWS: usize = 64;

/// Elements of dst per part of a product that starts from bias rows (1 MiB of f32).
const BIAS_PART: usize = 1 << 18;

/// How many chunks a product is split into (along a dimension of `len`): one per pool thread
/// (at most `threads`) when the product is large enough to pay for the hand-off, each chunk at
/// least 16 long. One pool for all the work of an op: the `gemm` crate's rayon workers would
/// otherwise compete with candle's pool threads for the same cores.
fn split(len: usize, work: usize, threads: usize) -> usize {
    let pool = crate::pool::threads();
    if threads <= 1 || work < 48 * 48 * 48 {
        return 1;
    }
    threads.min(pool).min(len / 16).max(1)
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

#[cfg(test)]
mod tests {
    use super::{matmul, Init, Stored};
    use num_traits::AsPrimitive;

    /// Every storage combination, split by rows (tall dst) and by columns (one-row dst), starting
    /// from zero, from dst and from a bias row, against a plain triple loop, in f32 and f64.
    /// The values are small integers, so every sum is exact in both.
    #[test]
    fn split_products_match_a_plain_loop() {
        split_products_match::<f32>();
        split_products_match::<f64>();
    }

    fn split_products_match<
        T: super::Element
            + std::fmt::Debug
            + PartialEq
            + std::iter::Sum
            + std::ops::Add<Output = T>
            + std::ops::Mul<Output = T>,
    >()
    where
        f64: AsPrimitive<T>,
    {
        let value = |i: usize| (((i * 7919) % 13) as f64 - 6.0).as_();
        for (m, n, k) in [(100, 50, 40), (1, 300, 500), (3, 2, 1), (40, 3, 0), (3000, 200, 2), (2, 3000, 70)] {
            let (a, b): (Vec<T>, Vec<T>) =
                ((0..m * k).map(value).collect(), (0..k * n).map(|i| value(i + 5)).collect());
            for (sa, sb) in [
                (Stored::AsIs, Stored::AsIs),
                (Stored::Transposed, Stored::AsIs),
                (Stored::AsIs, Stored::Transposed),
                (Stored::Transposed, Stored::Transposed),
            ] {
                let at = |i: usize, kk: usize| if sa == Stored::AsIs { a[i * k + kk] } else { a[kk * m + i] };
                let bt = |kk: usize, j: usize| if sb == Stored::AsIs { b[kk * n + j] } else { b[j * k + kk] };
                let bias: Vec<T> = (0..n).map(|j| value(j + 3)).collect();
                for init in [Init::Zero, Init::Accumulate, Init::BiasRows(&bias)] {
                    let mut dst: Vec<T> = (0..m * n).map(|i| value(i + 11)).collect();
                    let expected: Vec<T> = (0..m * n)
                        .map(|ij| {
                            let (i, j) = (ij / n, ij % n);
                            let start = match init {
                                Init::Zero => T::zero(),
                                Init::Accumulate => dst[ij],
                                Init::BiasRows(b) => b[j],
                            };
                            (0..k).map(|kk| at(i, kk) * bt(kk, j)).sum::<T>() + start
                        })
                        .collect();
                    matmul((m, n, k), &mut dst, init, (&a, sa), (&b, sb), 2);
                    assert_eq!(dst, expected, "{m}x{n}x{k} {sa:?} {sb:?} {init:?}");
                }
            }
        }
    }
}
