//! A weight matrix packed once per sequence into 32-column panels, and the product of a small
//! row-major matrix (the batch of hidden states) with it, in AVX-512 or AVX2 micro-kernels.
//!
//! The recurrent product of every time step multiplies the same weights: packing them once
//! and keeping each thread's share resident in its own cache is what a generic GEMM call per
//! step (which re-packs its operands every time) cannot do.

use super::transpose::transpose;
use crate::simd::Simd;

/// Columns per panel: two 16-lane AVX-512 registers, or four 8-lane AVX2 ones.
pub(crate) const NR: usize = 32;

/// A K x ncols matrix stored as ceil(ncols / 32) panels, each K rows of 32 contiguous values
/// (zero-padded).
pub(crate) struct Packed {
    k: usize,
    panels: usize,
    data: Vec<f32>,
}

impl Packed {
    /// Packs the K x ncols matrix whose element (row kk, column col) is
    /// `source[start(col) + kk * stride]`: each column is a strided run of `source`, found once
    /// per column (no index arithmetic per element). `simd` transposes the panels whose columns
    /// are evenly spaced rows of `source` (the forward pass's W_hh and W_ih, a gate's rows).
    pub(crate) fn new(
        simd: Simd,
        (k, ncols): (usize, usize),
        source: &[f32],
        stride: usize,
        start: impl Fn(usize) -> usize,
    ) -> Self {
        let panels = ncols.div_ceil(NR);
        let mut data = vec![0.0; panels * k * NR];
        for (p, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let cols = NR.min(ncols - p * NR);
            let starts: Vec<usize> = (0..cols).map(|l| start(p * NR + l)).collect();
            let adjacent = starts.windows(2).all(|w| w[1] == w[0] + 1);
            let spacing = starts.get(1).map_or(0, |s1| s1.wrapping_sub(starts[0]));
            let rows = stride == 1 && cols > 1 && spacing >= k && starts.windows(2).all(|w| w[1] == w[0] + spacing);
            if rows && starts[cols - 1] + k <= source.len() {
                // SAFETY: the block's rows starts[0] + l * spacing .. + k (l < cols) lie in
                // `source` (checked just above; spacing >= k keeps them apart), and the panel
                // holds k rows of NR >= cols values; `simd` was detected.
                unsafe {
                    transpose(Some(simd), (cols, k), (source[starts[0]..].as_ptr(), spacing), (panel.as_mut_ptr(), NR))
                };
                continue;
            }
            for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
                if adjacent {
                    // The panel's columns lie side by side in `source`: a plain copy per row.
                    let at = starts[0] + kk * stride;
                    row[..cols].copy_from_slice(&source[at..at + cols]);
                } else {
                    for (v, &at) in row.iter_mut().zip(&starts) {
                        *v = source[at + kk * stride];
                    }
                }
            }
        }
        Packed { k, panels, data }
    }

    /// K, the rows of the matrix (the length of a product's inner sums).
    pub(crate) fn depth(&self) -> usize {
        self.k
    }

    /// Row length of a product's destination: the columns rounded up to whole panels.
    pub(crate) fn padded_cols(&self) -> usize {
        self.panels * NR
    }

    /// c (m x padded_cols, row stride ldc) = a (m x K, row stride lda) * self, with the
    /// instruction set `simd`.
    ///
    /// # Safety
    /// `a` must be valid for reads of m rows of K values with row stride lda, `c` valid for
    /// writes of m rows of `padded_cols()` values with row stride ldc, and no other thread may
    /// write those rows of `a` or access those of `c` meanwhile.
    pub(crate) unsafe fn product(&self, simd: Simd, m: usize, a: *const f32, lda: usize, c: *mut f32, ldc: usize) {
        if simd.is_avx512() {
            // SAFETY: `simd` proves AVX-512F; the pointer ranges are the caller's.
            unsafe { self.product_with::<avx512::Tile>(m, a, lda, c, ldc) }
        } else {
            // SAFETY: `simd` proves AVX2 and FMA; the pointer ranges are the caller's.
            unsafe { self.product_with::<avx2::Tile>(m, a, lda, c, ldc) }
        }
    }

    /// [`Packed::product`] with the micro-kernel `K`.
    ///
    /// # Safety
    /// As for [`Packed::product`], and the CPU must support `K`'s instructions.
    #[inline(always)]
    unsafe fn product_with<K: MicroKernel>(&self, m: usize, a: *const f32, lda: usize, c: *mut f32, ldc: usize) {
        for p in 0..self.panels {
            // SAFETY (all pointer arithmetic below): panel p lies in `data`; row r < m of `a`
            // and `c` lie in the caller's ranges, and column p * NR + 32 <= padded_cols.
            let b = unsafe { self.data.as_ptr().add(p * self.k * NR) };
            let mut r = 0;
            while r + K::ROWS <= m {
                unsafe { K::tile(K::ROWS, self.k, a.add(r * lda), lda, b, c.add(r * ldc + p * NR), ldc) };
                r += K::ROWS;
            }
            if r < m {
                // SAFETY: as above, for the last m - r < K::ROWS rows.
                unsafe { K::tile(m - r, self.k, a.add(r * lda), lda, b, c.add(r * ldc + p * NR), ldc) };
            }
        }
    }
}

/// A micro-kernel: `rows` (at most `ROWS`) rows of `a` times one packed panel of 32 columns.
trait MicroKernel {
    /// Rows per full tile: as many as the accumulators that fit in the vector registers.
    const ROWS: usize;

    /// c[r][0..32] = sum over kk of a[r][kk] * b[kk][0..32], for r < rows.
    ///
    /// # Safety
    /// The CPU must support the kernel's instructions; `a` valid for reads of `rows` rows of k
    /// values (stride lda), `b` of k * 32 values, `c` for writes of `rows` rows of 32 (stride ldc).
    unsafe fn tile(rows: usize, k: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize);
}

/// Expands `$tile::<R>` for every row count 1..=ROWS, so that each tile's accumulators are a
/// fixed-size array the compiler keeps in registers.
macro_rules! by_rows {
    ($tile:ident, $rows:expr, $args:tt, $($r:literal)*) => {
        match $rows {
            $($r => $tile::<$r> $args,)*
            _ => unreachable!("a tile of more rows than the micro-kernel holds"),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MicroKernel, NR};
    use std::arch::x86_64::*;

    /// 8 rows x 32 columns: 16 accumulators, two panel loads and 8 broadcasts per k.
    pub(super) struct Tile;

    impl MicroKernel for Tile {
        const ROWS: usize = 8;

        /// # Safety
        /// As for [`MicroKernel::tile`].
        #[inline(always)]
        unsafe fn tile(rows: usize, k: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize) {
            // SAFETY: the caller's contract.
            unsafe { by_rows!(tile, rows, (k, a, lda, b, c, ldc), 1 2 3 4 5 6 7 8) }
        }
    }

    /// # Safety
    /// As for [`MicroKernel::tile`] with `rows = R`, on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize>(k: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for kk in 0..k {
            // SAFETY: kk < k and r < R stay inside the caller's ranges.
            let (b0, b1) = unsafe { (_mm512_loadu_ps(b.add(kk * NR)), _mm512_loadu_ps(b.add(kk * NR + 16))) };
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(unsafe { *a.add(r * lda + kk) });
                acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: row r < R of c has 32 writable values.
            unsafe {
                _mm512_storeu_ps(c.add(r * ldc), acc[0]);
                _mm512_storeu_ps(c.add(r * ldc + 16), acc[1]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MicroKernel, NR};
    use std::arch::x86_64::*;

    /// 3 rows x 32 columns: 12 accumulators and 3 broadcasts in the 16 AVX registers; the panel
    /// is read straight from memory by each FMA.
    pub(super) struct Tile;

    impl MicroKernel for Tile {
        const ROWS: usize = 3;

        /// # Safety
        /// As for [`MicroKernel::tile`].
        #[inline(always)]
        unsafe fn tile(rows: usize, k: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize) {
            // SAFETY: the caller's contract.
            unsafe { by_rows!(tile, rows, (k, a, lda, b, c, ldc), 1 2 3) }
        }
    }

    /// # Safety
    /// As for [`MicroKernel::tile`] with `rows = R`, on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)] // q picks both the column block of b and the accumulator
    unsafe fn tile<const R: usize>(k: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize) {
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        for kk in 0..k {
            // SAFETY: kk < k and r < R stay inside the caller's ranges.
            let av: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(unsafe { *a.add(r * lda + kk) }));
            for q in 0..4 {
                let bq = unsafe { _mm256_loadu_ps(b.add(kk * NR + 8 * q)) };
                for r in 0..R {
                    acc[r][q] = _mm256_fmadd_ps(av[r], bq, acc[r][q]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (q, acc) in acc.iter().enumerate() {
                // SAFETY: row r < R of c has 32 writable values.
                unsafe { _mm256_storeu_ps(c.add(r * ldc + 8 * q), *acc) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every micro-kernel this CPU has, against a plain triple loop.
    #[test]
    fn product_matches_a_plain_triple_loop() {
        let variants: Vec<Simd> = [Simd::capped(Some("avx2")), Simd::capped(None)].into_iter().flatten().collect();
        if variants.is_empty() {
            println!("skipped: this CPU has neither AVX-512F nor AVX2 + FMA (the generic engine runs instead)");
        }
        for simd in variants {
            for (m, k, n) in [(13, 37, 70), (8, 256, 32), (1, 5, 3), (32, 64, 96), (4, 1, 33)] {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
                let w: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
                let packed = Packed::new(simd, (k, n), &w, n, |col| col);
                // The same matrix stored transposed (a column per row, as W_hh is in forward)
                // packs to the same panels, through the transpose.
                let w_t: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
                assert_eq!(Packed::new(simd, (k, n), &w_t, 1, |col| col * k).data, packed.data, "{m}x{k}x{n}");
                let ldc = packed.padded_cols();
                let mut c = vec![f32::NAN; m * ldc];
                // SAFETY: a holds m x k values, c m rows of ldc; `simd` was detected.
                unsafe { packed.product(simd, m, a.as_ptr(), k, c.as_mut_ptr(), ldc) };
                for i in 0..m {
                    for j in 0..n {
                        let want: f32 = (0..k).map(|kk| a[i * k + kk] * w[kk * n + j]).sum();
                        let got = c[i * ldc + j];
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{}: ({i},{j}) of {m}x{k}x{n}: {got} vs {want}",
                            simd.name()
                        );
                    }
                }
            }
        }
    }
}
