//! A weight matrix stored in f32, bf16 or int8, for products with f32 activations.

use crate::error::{Error, Result};

use super::Precision;

/// The stored values of a [`QuantMatrix`], row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// The f32 values as they are.
    F32(Vec<f32>),
    /// bfloat16 bit patterns: the upper half of each f32, rounded to nearest even.
    Bf16(Vec<u16>),
    /// Symmetric per-row int8: `w[r][k] ~ q[r][k] * scales[r]`, with `q` in -127..=127 and
    /// `scales[r] = max_k |w[r][k]| / 127` (1 for a row of zeros).
    Int8 {
        /// The quantized values.
        q: Vec<i8>,
        /// One scale per row.
        scales: Vec<f32>,
    },
}

/// A (rows, cols) weight matrix in one of the [`Precision`]s. Products take it as the right
/// operand, transposed: `y = x W^T`, as `torch.nn.Linear` and the recurrent layers use it.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantMatrix {
    rows: usize,
    cols: usize,
    values: Values,
}

impl QuantMatrix {
    /// Converts the row-major f32 `w` of shape (rows, cols) to `precision`.
    pub fn quantize(w: &[f32], rows: usize, cols: usize, precision: Precision) -> Result<Self> {
        check_len("weights", w.len(), rows, cols)?;
        let values = match precision {
            Precision::F32 => Values::F32(w.to_vec()),
            Precision::Bf16 => Values::Bf16(w.iter().map(|&v| bf16_bits(v)).collect()),
            Precision::Int8 => {
                let (mut q, mut scales) = (Vec::with_capacity(w.len()), Vec::with_capacity(rows));
                for row in w.chunks_exact(cols.max(1)).take(rows) {
                    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let scale = if max > 0.0 && max.is_finite() { max / 127.0 } else { 1.0 };
                    q.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
                    scales.push(scale);
                }
                Values::Int8 { q, scales }
            }
        };
        Ok(QuantMatrix { rows, cols, values })
    }

    /// A matrix from stored values (as a checkpoint holds them), checked against the shape.
    pub fn from_values(rows: usize, cols: usize, values: Values) -> Result<Self> {
        match &values {
            Values::F32(v) => check_len("f32 weights", v.len(), rows, cols)?,
            Values::Bf16(v) => check_len("bf16 weights", v.len(), rows, cols)?,
            Values::Int8 { q, scales } => {
                check_len("int8 weights", q.len(), rows, cols)?;
                check_len("int8 row scales", scales.len(), rows, 1)?;
                if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(Error::Config(format!(
                        "int8 row scales: expected positive finite numbers, found {bad}"
                    )));
                }
            }
        }
        Ok(QuantMatrix { rows, cols, values })
    }

    /// Whether every value stands for a finite number (int8 values always do; their scales are
    /// checked when the matrix is made).
    pub fn is_finite(&self) -> bool {
        match &self.values {
            Values::F32(v) => v.iter().all(|x| x.is_finite()),
            // An exponent of all ones is an infinity or a NaN.
            Values::Bf16(v) => v.iter().all(|b| b & 0x7f80 != 0x7f80),
            Values::Int8 { .. } => true,
        }
    }

    /// Number of rows (outputs of a product).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs of a product).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The stored values.
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The precision of the stored values.
    pub fn precision(&self) -> Precision {
        match self.values {
            Values::F32(_) => Precision::F32,
            Values::Bf16(_) => Precision::Bf16,
            Values::Int8 { .. } => Precision::Int8,
        }
    }

    /// The values as f32, row-major: what the products multiply by.
    pub fn dequantize(&self) -> Vec<f32> {
        match &self.values {
            Values::F32(v) => v.clone(),
            Values::Bf16(v) => v.iter().map(|&b| bf16_to_f32(b)).collect(),
            Values::Int8 { q, scales } => q
                .chunks_exact(self.cols.max(1))
                .zip(scales)
                .flat_map(|(row, s)| row.iter().map(move |&v| f32::from(v) * s))
                .collect(),
        }
    }

    /// Rows `rows` as f32 into `out` (their `rows.len() * cols` values).
    pub fn dequantize_rows_into(&self, rows: std::ops::Range<usize>, out: &mut [f32]) {
        let (lo, hi) = (rows.start * self.cols, rows.end * self.cols);
        match &self.values {
            Values::F32(v) => out.copy_from_slice(&v[lo..hi]),
            Values::Bf16(v) => out.iter_mut().zip(&v[lo..hi]).for_each(|(o, &b)| *o = bf16_to_f32(b)),
            Values::Int8 { q, scales } => {
                let rows_out = out.chunks_exact_mut(self.cols.max(1));
                for ((o, row), s) in rows_out.zip(q[lo..hi].chunks_exact(self.cols.max(1))).zip(&scales[rows]) {
                    o.iter_mut().zip(row).for_each(|(o, &v)| *o = f32::from(v) * s);
                }
            }
        }
    }

    /// Bytes of the stored values (and scales): what one product with a single row reads.
    pub fn bytes(&self) -> usize {
        match &self.values {
            Values::F32(v) => 4 * v.len(),
            Values::Bf16(v) => 2 * v.len(),
            Values::Int8 { q, scales } => q.len() + 4 * scales.len(),
        }
    }
}

fn check_len(what: &str, len: usize, rows: usize, cols: usize) -> Result<()> {
    match rows.checked_mul(cols) {
        Some(n) if n == len => Ok(()),
        _ => Err(Error::Shape { what: what.into(), expected: format!("{rows} x {cols} values"), found: vec![len] }),
    }
}

/// The bfloat16 nearest to `v` (ties to even), as bits; NaN stays NaN.
pub fn bf16_bits(v: f32) -> u16 {
    if v.is_nan() {
        return 0x7fc0;
    }
    let bits = v.to_bits();
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bfloat16 bits (exact).
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_to_f32(bf16_bits(1.0)), 1.0);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa, 1.
        assert_eq!(bf16_to_f32(bf16_bits(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(bf16_to_f32(bf16_bits(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert!(bf16_to_f32(bf16_bits(f32::NAN)).is_nan());
        let with = |v: f32| QuantMatrix::quantize(&[1.0, v], 1, 2, Precision::Bf16).unwrap().is_finite();
        assert!(with(3.0e38) && !with(f32::NAN) && !with(f32::NEG_INFINITY));
        assert_eq!(bf16_to_f32(bf16_bits(f32::INFINITY)), f32::INFINITY);
    }

    #[test]
    fn int8_rows_keep_their_largest_value_and_relative_error() {
        let w = [0.5f32, -1.0, 0.25, 0.0, 0.0, 0.0, 3.0, 2.9, -0.01];
        let m = QuantMatrix::quantize(&w, 3, 3, Precision::Int8).unwrap();
        let back = m.dequantize();
        assert_eq!(back[1], -1.0);
        assert_eq!(&back[3..6], &[0.0, 0.0, 0.0]);
        assert_eq!(back[6], 3.0);
        for (row, brow) in w.chunks(3).zip(back.chunks(3)) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in row.iter().zip(brow) {
                assert!((a - b).abs() <= max / 254.0 + 1e-7, "{a} vs {b}");
            }
        }
        assert_eq!(m.bytes(), 9 + 12);
    }

    #[test]
    fn stored_values_are_checked_against_the_shape() {
        assert!(QuantMatrix::from_values(2, 3, Values::Bf16(vec![0; 5])).is_err());
        let bad_scale = Values::Int8 { q: vec![0; 6], scales: vec![1.0, 0.0] };
        assert!(QuantMatrix::from_values(2, 3, bad_scale).unwrap_err().to_string().contains("found 0"));
        assert!(QuantMatrix::quantize(&[0.0; 6], usize::MAX, 2, Precision::F32).is_err());
    }
}
