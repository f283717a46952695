//! `y = x W^T` with f32 activations `x` and a [`QuantMatrix`] `W`. bf16 and f32 weights are
//! widened to f32 as they are loaded and the products accumulated in f32. int8 weights multiply
//! `x` rounded to 16-bit integers (one scale per row of `x`, relative error at most 2^-16 of the
//! row's largest value) with integer multiply-adds, in blocks summed in f32; the weight row's
//! and the `x` row's scales multiply the sum. From 128 rows of `x` on (`DEQUANTIZE_MIN_BATCH`), the
//! weights are widened to f32 instead and the product is an f32 GEMM; f32 weights run as a GEMM
//! from 12 rows on (`F32_GEMM_MIN_BATCH`).
//!
//! The kernel is a blocked dot product: a weight row is converted once per chunk of lanes and
//! multiplied with up to four rows of `x` while it sits in registers, so that at batch 1 the
//! weights stream from memory exactly once (the product is bound by memory bandwidth there, and
//! smaller weights are faster), and at larger batches each converted chunk serves four rows.
//! Rows of `x` are taken in blocks that stay in the cache while every weight row passes.
//!
//! Work is split between candle's pool threads by weight rows when `x` has few rows (one
//! sequence generating text), by rows of `x` otherwise. The dot products use AVX2 + FMA
//! intrinsics where the CPU has them (the compiler does not vectorise the widening loads and
//! the four-row blocking on its own), else portable Rust.

use crate::error::{Error, Result};
use crate::fused::gemm::{as_is, matmul, transposed, Init};
use crate::fused::transpose::transpose;
use crate::simd::Simd;

use super::matrix::{bf16_to_f32, QuantMatrix, Values};

/// `out = x W^T`: `x` is (m, W.cols) row-major, `out` (m, W.rows) row-major.
pub fn product(w: &QuantMatrix, x: &[f32], m: usize, out: &mut [f32]) -> Result<()> {
    let (rows, k) = (w.rows(), w.cols());
    if x.len() != m * k || out.len() != m * rows {
        return Err(Error::Shape {
            what: "quantized product".into(),
            expected: format!("x of {m} x {k} and out of {m} x {rows} values"),
            found: vec![x.len(), out.len()],
        });
    }
    if m == 0 || rows == 0 {
        return Ok(());
    }
    let threads = crate::fused::num_threads();
    if let (Values::F32(v), true) = (w.values(), m >= F32_GEMM_MIN_BATCH) {
        // f32 weights need no widening: the GEMM runs them from a few rows of x on.
        matmul((m, rows, k), out, Init::Zero, as_is(x), transposed(v), threads);
        return Ok(());
    }
    if m >= DEQUANTIZE_MIN_BATCH {
        // Many rows of x: the arithmetic dominates, and the f32 GEMM does it best; widening the
        // weights once costs a small fraction of it.
        let mut wide = vec![0f32; rows * k];
        crate::pool::map_parts_mut(&mut wide, k, 64, |items, part| w.dequantize_rows_into(items, part));
        matmul((m, rows, k), out, Init::Zero, as_is(x), transposed(&wide), threads);
        return Ok(());
    }
    let simd = Avx2::detect();
    // int8 weights at small batches: x rounded to 16-bit integers, one scale per row, so that
    // the products run as integer multiply-adds (two per instruction and lane, no conversion of
    // the weights).
    let x16 = matches!(w.values(), Values::Int8 { .. }).then(|| quantize_rows_i16(x, k));
    let x16 = x16.as_ref().map(|(q, s)| (q.as_slice(), s.as_slice()));
    // Below this many multiply-adds a second thread costs more than it saves.
    const MIN_PARALLEL_WORK: usize = 1 << 16;
    let parallel = m * rows * k >= MIN_PARALLEL_WORK && crate::pool::threads() > 1;
    if m >= ROW_SPLIT_MIN_BATCH || !parallel {
        // Each part: a range of rows of x and the same rows of out.
        let min_parallel = if parallel { 2 } else { usize::MAX };
        crate::pool::map_parts_mut(out, rows, min_parallel, |items, part| {
            let lhs = Lhs {
                x: &x[items.start * k..items.end * k],
                x16: x16.map(|(q, s)| (&q[items.start * k..items.end * k], &s[items.clone()])),
            };
            rows_times(simd, w, 0..rows, lhs, part, Stride { row: 1, x_row: rows });
        });
    } else {
        // Each part: a range of weight rows, written to the transposed output (rows, m), which
        // is `out` itself when m is 1.
        let mut transposed = if m == 1 { Vec::new() } else { vec![0f32; rows * m] };
        let target = if m == 1 { &mut *out } else { &mut transposed[..] };
        crate::pool::map_parts_mut(target, m, 2, |items, part| {
            rows_times(simd, w, items, Lhs { x, x16 }, part, Stride { row: m, x_row: 1 });
        });
        if m > 1 {
            // SAFETY: `transposed` holds `rows` rows of m values and `out` (checked above) m rows
            // of `rows`; they are separate buffers, both borrowed here.
            unsafe {
                transpose(Simd::detect(), (rows, m), (transposed.as_ptr(), m), (out.as_mut_ptr(), rows));
            }
        }
    }
    Ok(())
}

/// From this many rows of `x` on (the input side of a whole sequence, the decoder), the weights
/// are widened to f32 once and the product runs as an f32 GEMM.
const DEQUANTIZE_MIN_BATCH: usize = 128;

/// From this many rows of `x` on, a product with f32 weights runs as an f32 GEMM: the row
/// kernels below read the weights once per four rows of `x`, the GEMM packs them once per call
/// for all rows, which pays from about this many (at 8 rows the row kernels are faster).
const F32_GEMM_MIN_BATCH: usize = 12;

/// From this many rows of `x` on, the work is split by rows of `x`: every thread then reads all
/// the weights, but each converted chunk serves enough rows to pay for it.
const ROW_SPLIT_MIN_BATCH: usize = 16;

/// Where the product of weight row `r` (counted from the part's first) with row `n` of `x` goes:
/// `out[r * row + n * x_row]`.
#[derive(Clone, Copy)]
struct Stride {
    row: usize,
    x_row: usize,
}

/// The left operand of a part: rows of `x`, and for int8 weights the same rows as 16-bit
/// integers with their scales.
#[derive(Clone, Copy)]
struct Lhs<'a> {
    x: &'a [f32],
    x16: Option<(&'a [i16], &'a [f32])>,
}

/// Each row of the (rows, k) `x` as `round(x / s)` in -32767..=32767 with
/// `s = max |x| / 32767` (1 for a row of zeros), and the scales.
fn quantize_rows_i16(x: &[f32], k: usize) -> (Vec<i16>, Vec<f32>) {
    let (mut q, mut scales) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len() / k.max(1)));
    for row in x.chunks_exact(k.max(1)) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 && max.is_finite() { max / 32767.0 } else { 1.0 };
        q.extend(row.iter().map(|v| (v / scale).round().clamp(-32767.0, 32767.0) as i16));
        scales.push(scale);
    }
    (q, scales)
}

/// Weight rows `rows` of `w` times every row of `lhs`, into `out` as `stride` says.
fn rows_times(
    simd: Option<Avx2>,
    w: &QuantMatrix,
    rows: std::ops::Range<usize>,
    lhs: Lhs,
    out: &mut [f32],
    stride: Stride,
) {
    match simd {
        Some(s) => rows_with(s, w, rows, lhs, out, stride),
        None => rows_with(Portable, w, rows, lhs, out, stride),
    }
}

/// [`rows_times`] with the dot products of `dots`: int8 weights take the 16-bit rows of `x`
/// where `lhs` has them.
fn rows_with<D>(dots: D, w: &QuantMatrix, rows: std::ops::Range<usize>, lhs: Lhs, out: &mut [f32], stride: Stride)
where
    D: Dots<f32, f32> + Dots<Bf16, f32> + Dots<i8, f32> + Dots<i8, i16>,
{
    let k = w.cols();
    let (lo, hi) = (rows.start * k, rows.end * k);
    let x = (lhs.x, None);
    match (w.values(), lhs.x16) {
        (Values::F32(v), _) => rows_kernel(dots, &v[lo..hi], k, None, x, out, stride),
        (Values::Bf16(v), _) => rows_kernel(dots, Bf16::cast(&v[lo..hi]), k, None, x, out, stride),
        (Values::Int8 { q, scales }, Some((xq, xs))) => {
            rows_kernel(dots, &q[lo..hi], k, Some(&scales[rows]), (xq, Some(xs)), out, stride)
        }
        (Values::Int8 { q, scales }, None) => rows_kernel(dots, &q[lo..hi], k, Some(&scales[rows]), x, out, stride),
    }
}

/// A stored weight that widens to f32.
trait Weight: Copy {
    /// How [`avx2`] loads eight of them.
    const KIND: Kind;
    fn widen(self) -> f32;
}
/// The stored formats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    F32,
    Bf16,
    I8,
}
impl Weight for f32 {
    const KIND: Kind = Kind::F32;
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}
impl Weight for i8 {
    const KIND: Kind = Kind::I8;
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from(self)
    }
}
/// bfloat16 bits.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Bf16(u16);
impl Bf16 {
    fn cast(bits: &[u16]) -> &[Bf16] {
        // SAFETY: `Bf16` is `repr(transparent)` over `u16`: same size, alignment and validity.
        unsafe { std::slice::from_raw_parts(bits.as_ptr().cast(), bits.len()) }
    }
}
impl Weight for Bf16 {
    const KIND: Kind = Kind::Bf16;
    #[inline(always)]
    fn widen(self) -> f32 {
        bf16_to_f32(self.0)
    }
}

/// The dot products of one weight row with one or four rows of `x` (all of the row's length),
/// before the scales.
trait Dots<W, X>: Copy {
    fn dot4(self, w: &[W], x: [&[X]; 4]) -> [f32; 4];
    fn dot1(self, w: &[W], x: &[X]) -> f32;
}

/// Plain Rust, for CPUs without AVX2.
#[derive(Clone, Copy)]
struct Portable;

impl Dots<i8, i16> for Portable {
    fn dot4(self, w: &[i8], x: [&[i16]; 4]) -> [f32; 4] {
        x.map(|x| self.dot1(w, x))
    }
    fn dot1(self, w: &[i8], x: &[i16]) -> f32 {
        w.iter().zip(x).map(|(&a, &b)| i64::from(a) * i64::from(b)).sum::<i64>() as f32
    }
}

impl<W: Weight> Dots<W, f32> for Portable {
    fn dot4(self, w: &[W], x: [&[f32]; 4]) -> [f32; 4] {
        let mut sums = [0f32; 4];
        for (i, v) in w.iter().enumerate() {
            let v = v.widen();
            for b in 0..4 {
                sums[b] += v * x[b][i];
            }
        }
        sums
    }
    fn dot1(self, w: &[W], x: &[f32]) -> f32 {
        w.iter().zip(x).map(|(v, x)| v.widen() * x).sum()
    }
}

/// Proof that the CPU has AVX2 and FMA (and that `SEQMODELS_SIMD` does not say `none`).
#[derive(Clone, Copy)]
struct Avx2(());

impl Avx2 {
    fn detect() -> Option<Avx2> {
        #[cfg(target_arch = "x86_64")]
        {
            static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            let has = *HAS.get_or_init(|| {
                crate::simd::Simd::detect().is_some()
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            });
            has.then_some(Avx2(()))
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }
}

impl Dots<i8, i16> for Avx2 {
    fn dot4(self, w: &[i8], x: [&[i16]; 4]) -> [f32; 4] {
        assert!(x.iter().all(|r| r.len() == w.len()), "rows of the weights' length");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Avx2` is only made after the CPU reported AVX2 and FMA; the rows have the
        // weights' length (asserted above).
        return unsafe { avx2::dot4_i16(w, x) };
        #[cfg(not(target_arch = "x86_64"))]
        Portable.dot4(w, x)
    }
    fn dot1(self, w: &[i8], x: &[i16]) -> f32 {
        assert_eq!(x.len(), w.len(), "a row of the weights' length");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot4`.
        return unsafe { avx2::dot1_i16(w, x) };
        #[cfg(not(target_arch = "x86_64"))]
        Portable.dot1(w, x)
    }
}

impl<W: Weight> Dots<W, f32> for Avx2 {
    fn dot4(self, w: &[W], x: [&[f32]; 4]) -> [f32; 4] {
        assert!(x.iter().all(|r| r.len() == w.len()), "rows of the weights' length");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an `Avx2` is only made after the CPU reported AVX2 and FMA; the rows have the
        // weights' length (asserted above).
        return unsafe { avx2::dot4(w, x) };
        #[cfg(not(target_arch = "x86_64"))]
        Portable.dot4(w, x)
    }
    fn dot1(self, w: &[W], x: &[f32]) -> f32 {
        assert_eq!(x.len(), w.len(), "a row of the weights' length");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dot4`.
        return unsafe { avx2::dot1(w, x) };
        #[cfg(not(target_arch = "x86_64"))]
        Portable.dot1(w, x)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Kind, Weight};

    /// Eight weights from `p`, widened to f32.
    ///
    /// # Safety
    /// AVX2 and FMA; `p` points at eight readable weights.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load8<W: Weight>(p: *const W) -> __m256 {
        // SAFETY: the caller's contract; the loads are unaligned ones.
        unsafe {
            match W::KIND {
                Kind::F32 => _mm256_loadu_ps(p.cast()),
                Kind::Bf16 => {
                    let halves = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(halves))
                }
                Kind::I8 => _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))),
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sum8(v: __m256) -> f32 {
        let four = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps::<1>(two, two)))
    }

    /// # Safety
    /// AVX2 and FMA; every row of `x` has `w.len()` elements.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot4<W: Weight>(w: &[W], x: [&[f32]; 4]) -> [f32; 4] {
        let k = w.len();
        let (wp, xp) = (w.as_ptr(), x.map(<[f32]>::as_ptr));
        // Two chunks of eight per row: eight independent sums.
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut i = 0;
        // SAFETY (the loads): i + 16 <= k (then i + 8 <= k) elements of w and of each row.
        unsafe {
            while i + 16 <= k {
                let (w0, w1) = (load8(wp.add(i)), load8(wp.add(i + 8)));
                for b in 0..4 {
                    acc[2 * b] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp[b].add(i)), acc[2 * b]);
                    acc[2 * b + 1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp[b].add(i + 8)), acc[2 * b + 1]);
                }
                i += 16;
            }
            if i + 8 <= k {
                let w0 = load8(wp.add(i));
                for b in 0..4 {
                    acc[2 * b] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp[b].add(i)), acc[2 * b]);
                }
                i += 8;
            }
        }
        let mut sums = [0f32; 4];
        for b in 0..4 {
            sums[b] = sum8(_mm256_add_ps(acc[2 * b], acc[2 * b + 1]));
            for j in i..k {
                sums[b] += w[j].widen() * x[b][j];
            }
        }
        sums
    }

    /// # Safety
    /// AVX2 and FMA; `x` has `w.len()` elements.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot1<W: Weight>(w: &[W], x: &[f32]) -> f32 {
        let k = w.len();
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (the loads): i + 32 <= k (then i + 8 <= k) elements of w and x.
        unsafe {
            while i + 32 <= k {
                for (u, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(load8(wp.add(i + 8 * u)), _mm256_loadu_ps(xp.add(i + 8 * u)), *acc);
                }
                i += 32;
            }
            while i + 8 <= k {
                acc[0] = _mm256_fmadd_ps(load8(wp.add(i)), _mm256_loadu_ps(xp.add(i)), acc[0]);
                i += 8;
            }
        }
        let mut sum = sum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        for j in i..k {
            sum += w[j].widen() * x[j];
        }
        sum
    }

    /// Elements per block of the integer sums. A lane of `_mm256_madd_epi16` is the sum of two
    /// products of at most 127 * 32767; an accumulator lane takes at most one per 16 elements, so
    /// a block adds at most 256 of them, below 2^31, before its sums go to f32.
    const I16_BLOCK: usize = 4096;

    /// Sixteen int8 weights from `p`, widened to i16.
    ///
    /// # Safety
    /// AVX2; `p` points at sixteen readable weights.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load16(p: *const i8) -> __m256i {
        // SAFETY: the caller's contract; an unaligned load.
        unsafe { _mm256_cvtepi8_epi16(_mm_loadu_si128(p.cast())) }
    }

    /// # Safety
    /// AVX2 and FMA; every row of `x` has `w.len()` elements.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot4_i16(w: &[i8], x: [&[i16]; 4]) -> [f32; 4] {
        let k = w.len();
        let (wp, xp) = (w.as_ptr(), x.map(<[i16]>::as_ptr));
        let mut total = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 16 <= k {
            let end = k.min(i + I16_BLOCK);
            let mut acc = [_mm256_setzero_si256(); 4];
            // SAFETY (the loads): i + 16 <= end <= k elements of w and of each row.
            unsafe {
                while i + 16 <= end {
                    let w16 = load16(wp.add(i));
                    for b in 0..4 {
                        let p = _mm256_madd_epi16(w16, _mm256_loadu_si256(xp[b].add(i).cast()));
                        acc[b] = _mm256_add_epi32(acc[b], p);
                    }
                    i += 16;
                }
            }
            for b in 0..4 {
                total[b] = _mm256_add_ps(total[b], _mm256_cvtepi32_ps(acc[b]));
            }
        }
        let mut sums = [0f32; 4];
        for b in 0..4 {
            let tail: i32 = (i..k).map(|j| i32::from(w[j]) * i32::from(x[b][j])).sum();
            sums[b] = sum8(total[b]) + tail as f32;
        }
        sums
    }

    /// # Safety
    /// AVX2 and FMA; `x` has `w.len()` elements.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot1_i16(w: &[i8], x: &[i16]) -> f32 {
        let k = w.len();
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut total = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= k {
            let end = k.min(i + I16_BLOCK);
            // Two independent sums, so that consecutive multiply-adds do not wait on each other.
            let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            // SAFETY (the loads): i + 32 (then i + 16) <= end <= k elements of w and x.
            unsafe {
                while i + 32 <= end {
                    a0 = _mm256_add_epi32(
                        a0,
                        _mm256_madd_epi16(load16(wp.add(i)), _mm256_loadu_si256(xp.add(i).cast())),
                    );
                    let (w1, x1) = (load16(wp.add(i + 16)), _mm256_loadu_si256(xp.add(i + 16).cast()));
                    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(w1, x1));
                    i += 32;
                }
                if i + 16 <= end {
                    a0 = _mm256_add_epi32(
                        a0,
                        _mm256_madd_epi16(load16(wp.add(i)), _mm256_loadu_si256(xp.add(i).cast())),
                    );
                    i += 16;
                }
            }
            total = _mm256_add_ps(total, _mm256_cvtepi32_ps(_mm256_add_epi32(a0, a1)));
        }
        let tail: i32 = (i..k).map(|j| i32::from(w[j]) * i32::from(x[j])).sum();
        sum8(total) + tail as f32
    }
}

/// Rows of `x` kept in the cache while every weight row of a part passes over them.
const X_BLOCK: usize = 32;

/// The blocked loop over rows of `x` and weight rows; `dots` does the arithmetic, then the
/// weight rows' `scales` and the rows of `x`'s scales multiply the sums.
fn rows_kernel<W, X, D: Dots<W, X>>(
    dots: D,
    w: &[W],
    k: usize,
    scales: Option<&[f32]>,
    (x, x_scales): (&[X], Option<&[f32]>),
    out: &mut [f32],
    stride: Stride,
) {
    if k == 0 {
        return out.fill(0.0);
    }
    let (rows, m) = (w.len() / k, x.len() / k);
    for n0 in (0..m).step_by(X_BLOCK) {
        let n1 = m.min(n0 + X_BLOCK);
        for (r, w_row) in w.chunks_exact(k).enumerate().take(rows) {
            let scale = scales.map_or(1.0, |s| s[r]);
            let mut put =
                |n: usize, v: f32| out[r * stride.row + n * stride.x_row] = v * scale * x_scales.map_or(1.0, |s| s[n]);
            let mut n = n0;
            while n + 4 <= n1 {
                let row = |b: usize| &x[(n + b) * k..(n + b + 1) * k];
                let sums = dots.dot4(w_row, [row(0), row(1), row(2), row(3)]);
                for (b, v) in sums.into_iter().enumerate() {
                    put(n + b, v);
                }
                n += 4;
            }
            for n in n..n1 {
                put(n, dots.dot1(w_row, &x[n * k..(n + 1) * k]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Precision;
    use super::*;

    fn reference(w: &[f32], rows: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * rows];
        for n in 0..m {
            for r in 0..rows {
                out[n * rows + r] =
                    (0..k).map(|i| f64::from(w[r * k + i]) * f64::from(x[n * k + i])).sum::<f64>() as f32;
            }
        }
        out
    }

    #[test]
    fn every_precision_and_shape_matches_the_dequantized_product() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        // Batch 1, a few rows, the row-split threshold and beyond; k with and without a tail.
        for &(m, rows, k) in &[
            (1, 3, 5),
            (1, 300, 130),
            (3, 64, 64),
            (5, 257, 200),
            (16, 40, 33),
            (37, 129, 300),
            (130, 20, 70),
            (1, 3, 9000),
            (5, 4, 4100),
        ] {
            let w: Vec<f32> = (0..rows * k).map(|_| next()).collect();
            let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
            for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
                let q = QuantMatrix::quantize(&w, rows, k, precision).unwrap();
                let want = reference(&q.dequantize(), rows, k, &x, m);
                let mut got = vec![f32::NAN; m * rows];
                product(&q, &x, m, &mut got).unwrap();
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    // f32 accumulation of k products of magnitude <= 1, in another order.
                    assert!(
                        (a - b).abs() <= 1e-5 * k as f32,
                        "{precision:?} m={m} rows={rows} k={k} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_avx2_kernels_match_the_portable_ones() {
        let Some(avx2) = Avx2::detect() else { return };
        let (k, m) = (203, 9);
        let w: Vec<f32> = (0..3 * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
        for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
            let q = QuantMatrix::quantize(&w, 3, k, precision).unwrap();
            let stride = Stride { row: 1, x_row: 3 };
            let (mut fast, mut plain) = (vec![0f32; m * 3], vec![0f32; m * 3]);
            let (xq, xs) = quantize_rows_i16(&x, k);
            let lhs = Lhs { x: &x, x16: (precision == Precision::Int8).then_some((&xq[..], &xs[..])) };
            let run = |dots: Option<Avx2>, out: &mut [f32]| rows_times(dots, &q, 0..3, lhs, out, stride);
            run(Some(avx2), &mut fast);
            run(None, &mut plain);
            for (a, b) in fast.iter().zip(&plain) {
                assert!((a - b).abs() <= 1e-5 * k as f32, "{precision:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        let q = QuantMatrix::quantize(&[1.0; 6], 2, 3, Precision::Bf16).unwrap();
        let mut out = vec![0.0; 2];
        assert!(product(&q, &[1.0; 4], 1, &mut out).is_err());
        product(&q, &[1.0; 3], 1, &mut out).unwrap();
        assert_eq!(out, vec![3.0, 3.0]);
    }
}
