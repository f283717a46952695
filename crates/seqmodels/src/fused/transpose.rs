//! The transpose of a block of a row-major matrix into another: how backward turns each step's
//! gate gradients (rows of the batch) into the gate-major layout the weight gradients read.
//! Full 16 x 16 (AVX-512) or 8 x 8 (AVX2) tiles are transposed in registers, the edges element
//! by element.

use crate::simd::Simd;

/// `dst[c * dst_stride + r] = src[r * src_stride + c]` for `r < rows`, `c < cols`, in the
/// instruction set `simd` when there is one (f32), else element by element.
///
/// # Safety
/// `src` must be valid for reads of that block and `dst` for writes of its transpose (the
/// destination may be uninitialised: it is written through the pointer, never referenced); the
/// two must not overlap, and no other thread may write the source block or access the
/// destination block meanwhile.
pub(crate) unsafe fn transpose<T: Copy + 'static>(
    simd: Option<Simd>,
    (rows, cols): (usize, usize),
    (src, src_stride): (*const T, usize),
    (dst, dst_stride): (*mut T, usize),
) {
    let mut done = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if let (Some(simd), true) = (simd, std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()) {
        let (src, dst) = (src.cast::<f32>(), dst.cast::<f32>());
        // SAFETY: T is f32 (checked above); the tiles lie in the caller's blocks; `simd` proves
        // the instruction set.
        done = unsafe {
            if simd.is_avx512() {
                tiles::<16>((rows, cols), (src, src_stride), (dst, dst_stride), |s, ss, d, ds| {
                    avx512::tile(s, ss, d, ds)
                })
            } else {
                tiles::<8>((rows, cols), (src, src_stride), (dst, dst_stride), |s, ss, d, ds| avx2::tile(s, ss, d, ds))
            }
        };
    }
    let _ = simd;
    let (tiled_rows, tiled_cols) = done;
    for r in 0..rows {
        // The columns the tiles left in rows they covered, and every column of the rows below.
        let first = if r < tiled_rows { tiled_cols } else { 0 };
        for c in first..cols {
            // SAFETY: r < rows and c < cols stay in the caller's blocks.
            unsafe { dst.add(c * dst_stride + r).write(*src.add(r * src_stride + c)) };
        }
    }
}

/// Transposes the full `N` x `N` tiles of the block with `tile` and returns the rows and columns
/// they covered (whole multiples of `N`).
///
/// # Safety
/// As for [`transpose`], and `tile` must be safe to call on any N x N tile inside the blocks.
#[cfg(target_arch = "x86_64")]
unsafe fn tiles<const N: usize>(
    (rows, cols): (usize, usize),
    (src, src_stride): (*const f32, usize),
    (dst, dst_stride): (*mut f32, usize),
    tile: impl Fn(*const f32, usize, *mut f32, usize),
) -> (usize, usize) {
    let (full_rows, full_cols) = (rows / N * N, cols / N * N);
    for r in (0..full_rows).step_by(N) {
        for c in (0..full_cols).step_by(N) {
            // SAFETY: the tile (rows r..r+N, columns c..c+N) lies in the caller's blocks.
            tile(
                unsafe { src.add(r * src_stride + c) },
                src_stride,
                unsafe { dst.add(c * dst_stride + r) },
                dst_stride,
            );
        }
    }
    (full_rows, full_cols)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// One 16 x 16 tile: 16 row loads, four rounds of shuffles, 16 column stores.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `src` must be valid for reads of 16 rows of 16 values
    /// (row stride `ss`) and `dst` for writes of 16 rows of 16 (row stride `ds`).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
        // SAFETY: row i < 16 of the tile (the caller's contract).
        let r: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * ss)) });
        // Pairs of rows interleaved element by element, then pairs of those by element pairs:
        // u[4k + c], in each 128-bit lane L, holds column 4L + c of rows 4k..4k+4.
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (k, c) = (i / 4, i % 4);
            let (a, b) = (_mm512_castps_pd(t[4 * k + c / 2]), _mm512_castps_pd(t[4 * k + c / 2 + 2]));
            _mm512_castpd_ps(if c % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
        });
        for c in 0..4 {
            // Lane L of u[c], u[4 + c], u[8 + c], u[12 + c] make column 4L + c.
            let v0 = _mm512_shuffle_f32x4::<0x44>(u[c], u[4 + c]);
            let v1 = _mm512_shuffle_f32x4::<0xEE>(u[c], u[4 + c]);
            let v2 = _mm512_shuffle_f32x4::<0x44>(u[8 + c], u[12 + c]);
            let v3 = _mm512_shuffle_f32x4::<0xEE>(u[8 + c], u[12 + c]);
            let columns = [
                _mm512_shuffle_f32x4::<0x88>(v0, v2),
                _mm512_shuffle_f32x4::<0xDD>(v0, v2),
                _mm512_shuffle_f32x4::<0x88>(v1, v3),
                _mm512_shuffle_f32x4::<0xDD>(v1, v3),
            ];
            for (lane, column) in columns.into_iter().enumerate() {
                // SAFETY: column 4 * lane + c < 16 of the tile (the caller's contract).
                unsafe { _mm512_storeu_ps(dst.add((4 * lane + c) * ds), column) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// One 8 x 8 tile: 8 row loads, three rounds of shuffles, 8 column stores.
    ///
    /// # Safety
    /// The CPU must support AVX2; `src` must be valid for reads of 8 rows of 8 values (row
    /// stride `ss`) and `dst` for writes of 8 rows of 8 (row stride `ds`).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tile(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
        // SAFETY: row i < 8 of the tile (the caller's contract).
        let r: [__m256; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.add(i * ss)) });
        let t: [__m256; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_ps(a, b)
            } else {
                _mm256_unpackhi_ps(a, b)
            }
        });
        // s[4h + c], in each 128-bit lane L, holds column 4L + c of rows 4h..4h+4.
        let s: [__m256; 8] = std::array::from_fn(|i| {
            let (half, c) = (i / 4, i % 4);
            let (a, b) = (t[4 * half + c / 2], t[4 * half + c / 2 + 2]);
            if c % 2 == 0 {
                _mm256_shuffle_ps::<0x44>(a, b)
            } else {
                _mm256_shuffle_ps::<0xEE>(a, b)
            }
        });
        for c in 0..4 {
            // SAFETY: columns c and 4 + c < 8 of the tile (the caller's contract).
            unsafe {
                _mm256_storeu_ps(dst.add(c * ds), _mm256_permute2f128_ps::<0x20>(s[c], s[4 + c]));
                _mm256_storeu_ps(dst.add((4 + c) * ds), _mm256_permute2f128_ps::<0x31>(s[c], s[4 + c]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set this CPU has, and the element-by-element path, on blocks with and
    /// without edges, against the definition.
    #[test]
    fn transposes_blocks_of_any_size() {
        let sets = [Simd::capped(None), Simd::capped(Some("avx2")), None];
        for simd in sets {
            for (rows, cols) in [(16, 16), (32, 1024), (17, 33), (8, 8), (5, 3), (20, 100), (0, 4)] {
                let (ss, ds) = (cols + 3, rows + 5);
                let src: Vec<f32> = (0..rows * ss).map(|i| i as f32).collect();
                let mut dst = vec![f32::NAN; cols * ds];
                // SAFETY: src holds rows of ss >= cols values, dst cols rows of ds >= rows.
                unsafe { transpose(simd, (rows, cols), (src.as_ptr(), ss), (dst.as_mut_ptr(), ds)) };
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(dst[c * ds + r], src[r * ss + c], "{simd:?} {rows}x{cols} at ({r},{c})");
                    }
                }
            }
        }
    }
}
