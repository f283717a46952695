//! A weight matrix packed once per sequence into 32-column panels, and the AVX-512 product of
//! a small row-major matrix (the batch of hidden states) with it.
//!
//! The recurrent product of every time step multiplies the same weights: packing them once
//! and keeping each thread's share resident in its own cache is what a generic GEMM call per
//! step (which re-packs its operands every time) cannot do.

/// Columns per panel: two 16-lane AVX-512 registers.
pub(crate) const NR: usize = 32;
/// Rows per microkernel tile.
const MR: usize = 8;

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
    /// per column (no index arithmetic per element).
    pub(crate) fn new(k: usize, ncols: usize, source: &[f32], stride: usize, start: impl Fn(usize) -> usize) -> Self {
        let panels = ncols.div_ceil(NR);
        let mut data = vec![0.0; panels * k * NR];
        for (p, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let cols = NR.min(ncols - p * NR);
            let starts: Vec<usize> = (0..cols).map(|l| start(p * NR + l)).collect();
            let adjacent = starts.windows(2).all(|w| w[1] == w[0] + 1);
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

    /// Row length of a product's destination: the columns rounded up to whole panels.
    pub(crate) fn padded_cols(&self) -> usize {
        self.panels * NR
    }

    /// c (m x padded_cols, row stride ldc) = a (m x K, row stride lda) * self.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `a` must be valid for reads of rows m with stride lda and
    /// K columns, `c` valid for writes of m rows of `padded_cols()` with stride ldc.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn product(&self, m: usize, a: *const f32, lda: usize, c: *mut f32, ldc: usize) {
        for p in 0..self.panels {
            let b = self.data.as_ptr().add(p * self.k * NR);
            let mut r = 0;
            while r + MR <= m {
                tile::<MR>(self.k, a.add(r * lda), lda, b, c.add(r * ldc + p * NR), ldc);
                r += MR;
            }
            let (a, c) = (a.add(r * lda), c.add(r * ldc + p * NR));
            match m - r {
                0 => {}
                1 => tile::<1>(self.k, a, lda, b, c, ldc),
                2 => tile::<2>(self.k, a, lda, b, c, ldc),
                3 => tile::<3>(self.k, a, lda, b, c, ldc),
                4 => tile::<4>(self.k, a, lda, b, c, ldc),
                5 => tile::<5>(self.k, a, lda, b, c, ldc),
                6 => tile::<6>(self.k, a, lda, b, c, ldc),
                _ => tile::<7>(self.k, a, lda, b, c, ldc),
            }
        }
    }
}

/// R rows x 32 columns: 2R accumulators, two panel loads and R broadcasts per k.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize>(k: usize, a: *const f32, lda: usize, b: *const f32, c: *mut f32, ldc: usize) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..k {
        let b0 = _mm512_loadu_ps(b.add(kk * NR));
        let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
        for (r, acc) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(r * lda + kk));
            acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * ldc), acc[0]);
        _mm512_storeu_ps(c.add(r * ldc + 16), acc[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_matches_a_plain_triple_loop() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        for (m, k, n) in [(13, 37, 70), (8, 256, 32), (1, 5, 3), (32, 64, 96)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let w: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            let packed = Packed::new(k, n, &w, n, |col| col);
            let ldc = packed.padded_cols();
            let mut c = vec![0f32; m * ldc];
            unsafe { packed.product(m, a.as_ptr(), k, c.as_mut_ptr(), ldc) };
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|kk| a[i * k + kk] * w[kk * n + j]).sum();
                    assert!((c[i * ldc + j] - want).abs() < 1e-4, "({i},{j}): {} vs {want}", c[i * ldc + j]);
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// `perf stat -e task-clock cargo test --release -p seqmodels --lib panel::speed -- --ignored`:
    /// 4000 products of (32 x 256) by (256 x 1024): 67 GFLOP in total.
    #[test]
    #[ignore]
    fn recurrent_product_speed() {
        let (m, k, n) = (32, 256, 1024);
        let a = vec![0.5f32; m * k];
        let w: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32).collect();
        let packed = Packed::new(k, n, &w, n, |col| col);
        let ldc = packed.padded_cols();
        let mut c = vec![0f32; m * ldc];
        let start = std::time::Instant::now();
        for _ in 0..4000 {
            unsafe { packed.product(m, a.as_ptr(), k, c.as_mut_ptr(), ldc) };
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{:.1} GFLOP/s wall", 4000.0 * 2.0 * (m * k * n) as f64 / secs / 1e9);
        assert!(c[0] > 0.0);
    }
}
