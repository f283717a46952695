//! Softmax cross-entropy as one candle op with its own backward, and the same fused with the
//! linear decoder that produces the logits ([`linear_cross_entropy`], in `linear_cross_entropy.rs`).
//!
//! `candle_nn::loss::cross_entropy` composes log-softmax and a gather: several passes over the
//! (rows x vocabulary) logits, each allocating a tensor of that size, in forward and again in
//! backward. With a 10,000-word vocabulary that was a large part of a training step. This op
//! reads the logits once forward and once backward, and writes only the gradient.

use std::ops::Range;

use candle_core::{CpuStorage, DType, Layout, Shape, Tensor};

use crate::error::{Error, Result};
use crate::fused::real::{cpu_slice, host_slice, Activation, Exact, Fast, Real};
use crate::pool;
use crate::simd::{simd_variants, Simd};

mod linear_cross_entropy;
pub use linear_cross_entropy::linear_cross_entropy;

/// Mean over rows of `-log softmax(logits)[target]`, as PyTorch's `F.cross_entropy`.
///
/// `logits`: (M, V) f32 or f64; `targets`: (M,) integer class indices in `0..V`. On the CPU this
/// runs the fused op; elsewhere `candle_nn::loss::cross_entropy`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (rows, classes) = match logits.dims() {
        &[m, v] if m > 0 && v > 0 => (m, v),
        dims => return Err(Error::shape("logits", "(M, V) with M, V >= 1", dims)),
    };
    check_targets(targets, rows)?;
    if !logits.device().is_cpu() || !matches!(logits.dtype(), DType::F32 | DType::F64) {
        return Ok(candle_nn::loss::cross_entropy(logits, targets)?);
    }
    let op = SoftmaxCrossEntropy::new(targets, rows, classes)?;
    Ok(logits.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(op)))?)
}

/// Refuses targets that are not `rows` integer class indices.
fn check_targets(targets: &Tensor, rows: usize) -> Result<()> {
    if targets.dims() != [rows] || targets.dtype().is_float() {
        return Err(Error::shape("targets", format!("({rows},) integer class indices"), targets.dims()));
    }
    Ok(())
}

/// The row-wise softmax cross-entropy of `targets.len()` rows of `classes` logits.
struct SoftmaxCrossEntropy {
    targets: Vec<u32>,
    classes: usize,
}

impl SoftmaxCrossEntropy {
    /// Reads the targets; each must be below `classes`.
    fn new(targets: &Tensor, rows: usize, classes: usize) -> Result<Self> {
        let targets: Vec<u32> = targets.to_dtype(DType::U32)?.to_vec1()?;
        if let Some((row, &t)) = targets.iter().enumerate().find(|(_, &t)| t as usize >= classes) {
            let expected = format!("class indices below {classes}; targets[{row}] = {t}");
            return Err(Error::shape("targets", expected, &[rows]));
        }
        Ok(SoftmaxCrossEntropy { targets, classes })
    }
}

/// Independent accumulators of the row reductions: a float sum or max folded one element at a
/// time is a serial dependency chain the compiler may not reorder, so it would not vectorise;
/// 16 running values fill an AVX-512 register of f32 (two of f64).
const LANES: usize = 16;

/// log(sum(exp(row))), computed as max + log(sum(exp(x - max))).
///
/// Plain `for` loops only: an iterator adapter's `fold` is a function of its own that need not
/// be inlined into the caller compiled for AVX2 + FMA or AVX-512, and outside it the `mul_add`
/// of the fast `exp` becomes a call to libm's `fmaf`.
#[inline(always)]
fn log_sum_exp<T: Real, A: Activation<T>>(row: &[T]) -> T {
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut lanes = [T::neg_infinity(); LANES];
    for chunk in chunks.clone() {
        for j in 0..LANES {
            lanes[j] = if chunk[j] > lanes[j] { chunk[j] } else { lanes[j] };
        }
    }
    let mut max = T::neg_infinity();
    for &x in lanes.iter().chain(tail) {
        max = if x > max { x } else { max };
    }
    let mut sums = [T::zero(); LANES];
    for chunk in chunks {
        for j in 0..LANES {
            sums[j] += A::exp(chunk[j] - max);
        }
    }
    let mut sum = T::zero();
    for s in sums {
        sum += s;
    }
    for &x in tail {
        sum += A::exp(x - max);
    }
    max + sum.ln()
}

impl SoftmaxCrossEntropy {
    /// Sum over `rows` of log-sum-exp(row) - row[target]; each row's log-sum-exp goes to `lse`
    /// (one per row of `rows`), which backward can reuse.
    #[inline(always)]
    fn loss_rows<T: Real, A: Activation<T>>(&self, logits: &[T], rows: Range<usize>, lse: &mut [T]) -> T {
        let v = self.classes;
        let mut total = T::zero();
        // A plain loop, for the reason given at `log_sum_exp`.
        for (r, lse) in rows.zip(lse) {
            let row = &logits[r * v..(r + 1) * v];
            *lse = log_sum_exp::<T, A>(row);
            total += *lse - row[self.targets[r] as usize];
        }
        total
    }

    /// Mean loss over all rows, the rows split between candle's pool threads, and each row's
    /// log-sum-exp.
    fn loss<T: Real>(&self, logits: &[T], part: impl Fn(&[T], Range<usize>, &mut [T]) -> T + Sync) -> (T, Vec<T>) {
        let rows = self.targets.len();
        let mut lse = vec![T::zero(); rows];
        let sums = pool::map_parts_mut(&mut lse, 1, PARALLEL_ROWS, |r, lse| part(logits, r, lse));
        let total = sums.into_iter().fold(T::zero(), |acc, s| acc + s);
        (total / T::from(rows).unwrap_or_else(T::one), lse)
    }

    /// Runs `part(rows of buf, rows, column sums)` on the row chunks of `buf` (rows x classes)
    /// in parallel, each chunk with its own zeroed `classes` sums (none when not
    /// `column_sums`); returns their total.
    fn on_rows_mut<T: Real>(
        &self,
        buf: &mut [T],
        column_sums: bool,
        part: impl Fn(&mut [T], Range<usize>, &mut [T]) + Sync,
    ) -> Vec<T> {
        let sums_len = if column_sums { self.classes } else { 0 };
        let parts = pool::map_parts_mut(buf, self.classes, PARALLEL_ROWS, |r, out| {
            let mut sums = vec![T::zero(); sums_len];
            part(out, r, &mut sums);
            sums
        });
        let mut parts = parts.into_iter();
        let mut total = parts.next().unwrap_or_default();
        for part in parts {
            total.iter_mut().zip(&part).for_each(|(t, p)| *t += *p);
        }
        total
    }

    /// Replaces `rows` of logits (`buf` holds exactly those rows) by their gradient,
    /// scale * (softmax - one_hot(target)), and adds each column of it to `sums` (the bias
    /// gradient of a decoder before the loss, taken while the rows are in cache; an empty
    /// `sums` takes none). `lse`: the
    /// rows' log-sum-exp when forward kept them (all rows), else computed again.
    #[inline(always)]
    fn gradient_rows_in_place<T: Real, A: Activation<T>>(
        &self,
        buf: &mut [T],
        rows: Range<usize>,
        scale: T,
        sums: &mut [T],
        lse: Option<&[T]>,
    ) {
        for (r, row) in rows.zip(buf.chunks_exact_mut(self.classes)) {
            let lse = lse.map_or_else(|| log_sum_exp::<T, A>(row), |l| l[r]);
            row.iter_mut().for_each(|x| *x = scale * A::exp(*x - lse));
            row[self.targets[r] as usize] -= scale;
            sums.iter_mut().zip(&*row).for_each(|(s, g)| *s += *g);
        }
    }

    /// [`Self::gradient_rows_in_place`] over all rows, in parallel (f64, or any float); returns
    /// the column sums of the gradient when `column_sums` (else nothing).
    fn gradient_in_place<T: Real>(&self, logits: &mut [T], scale: T, lse: Option<&[T]>, column_sums: bool) -> Vec<T> {
        self.on_rows_mut(logits, column_sums, |buf, r, sums| {
            self.gradient_rows_in_place::<T, Exact>(buf, r, scale, sums, lse)
        })
    }

    /// [`Self::gradient_in_place`] for f32, with the vectorised pass where the CPU has one.
    fn gradient_in_place_f32(
        &self,
        logits: &mut [f32],
        scale: f32,
        lse: Option<&[f32]>,
        column_sums: bool,
    ) -> Vec<f32> {
        self.on_rows_mut(logits, column_sums, |buf, r, sums| match Simd::detect() {
            Some(simd) => gradient_rows_in_place_simd(simd, self, buf, r, scale, sums, lse),
            None => self.gradient_rows_in_place::<f32, Exact>(buf, r, scale, sums, lse),
        })
    }

    fn loss_f32(&self, logits: &[f32]) -> (f32, Vec<f32>) {
        self.loss(logits, |l, r, lse| match Simd::detect() {
            Some(simd) => loss_rows_simd(simd, self, l, r, lse),
            None => self.loss_rows::<f32, Exact>(l, r, lse),
        })
    }
}

/// Rows below which the loss runs on the calling thread alone.
const PARALLEL_ROWS: usize = 64;

// The f32 passes compiled for the detected instruction set, so that the polynomial exp
// vectorises.

simd_variants! {
    fn loss_rows_simd(op: &SoftmaxCrossEntropy, logits: &[f32], rows: Range<usize>, lse: &mut [f32]) -> f32 {
        op.loss_rows::<f32, Fast>(logits, rows, lse)
    }
}

simd_variants! {
    fn gradient_rows_in_place_simd(
        op: &SoftmaxCrossEntropy,
        buf: &mut [f32],
        rows: Range<usize>,
        scale: f32,
        sums: &mut [f32],
        lse: Option<&[f32]>,
    ) {
        op.gradient_rows_in_place::<f32, Fast>(buf, rows, scale, sums, lse)
    }
}

impl candle_core::CustomOp1 for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "seqmodels-softmax-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let storage = match s {
            CpuStorage::F32(_) => CpuStorage::F32(vec![self.loss_f32(cpu_slice(s, l)?).0]),
            CpuStorage::F64(_) => CpuStorage::F64(vec![
                self.loss(cpu_slice(s, l)?, |l, r, lse| self.loss_rows::<f64, Exact>(l, r, lse)).0,
            ]),
            _ => candle_core::bail!("cross entropy: expected f32 or f64 logits"),
        };
        Ok((storage, Shape::from(())))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // d loss / d logits = (softmax - one_hot(target)) * grad / M, written over a copy of the
        // logits (the copy replaces the zero-fill of a fresh buffer).
        let scale = grad_res.to_dtype(DType::F64)?.to_scalar::<f64>()? / self.targets.len() as f64;
        let grad = match logits.dtype() {
            DType::F32 => {
                let mut g = host_slice::<f32>(logits)?.get()?.to_vec();
                self.gradient_in_place_f32(&mut g, scale as f32, None, false);
                Tensor::from_vec(g, logits.shape(), logits.device())?
            }
            DType::F64 => {
                let mut g = host_slice::<f64>(logits)?.get()?.to_vec();
                self.gradient_in_place(&mut g, scale, None, false);
                Tensor::from_vec(g, logits.shape(), logits.device())?
            }
            other => candle_core::bail!("cross entropy: expected f32 or f64 logits, found {other:?}"),
        };
        Ok(Some(grad))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn matches_candle_nn_in_value_and_gradient() {
        // 37 rows run on one thread, 203 rows are split between the pool's threads.
        for rows in [37u32, 203] {
            check_against_candle_nn(rows);
        }
    }

    fn check_against_candle_nn(rows: u32) {
        let device = Device::Cpu;
        let logits = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (rows as usize, 53), &device).unwrap())).unwrap();
        let targets =
            Tensor::from_vec((0..rows).map(|i| (i * 7) % 53).collect::<Vec<_>>(), rows as usize, &device).unwrap();
        let ours = super::cross_entropy(logits.as_tensor(), &targets).unwrap();
        let reference = candle_nn::loss::cross_entropy(logits.as_tensor(), &targets).unwrap();
        let (a, b) = (ours.to_scalar::<f32>().unwrap(), reference.to_scalar::<f32>().unwrap());
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        let (ga, gb) = (
            ours.affine(2.0, 0.0).unwrap().backward().unwrap(),
            reference.affine(2.0, 0.0).unwrap().backward().unwrap(),
        );
        let diff = (ga.get(logits.as_tensor()).unwrap() - gb.get(logits.as_tensor()).unwrap()).unwrap();
        let max: f32 = diff.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(max < 1e-6, "gradient differs by {max}");
    }

    #[test]
    fn bad_targets_are_refused() {
        let logits = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
        let msg = super::cross_entropy(&logits, &targets).unwrap_err().to_string();
        assert!(msg.contains("targets[1] = 3"), "{msg}");
    }
}
