//! Softmax cross-entropy as one candle op with its own backward.
//!
//! `candle_nn::loss::cross_entropy` composes log-softmax and a gather: several passes over the
//! (rows x vocabulary) logits, each allocating a tensor of that size, in forward and again in
//! backward. With a 10,000-word vocabulary that was a large part of a training step. This op
//! reads the logits once forward and once backward, and writes only the gradient.

use candle_core::{CpuStorage, DType, Layout, Shape, Storage, Tensor};

use crate::error::{Error, Result};
use crate::fused::real::{Activation, Exact, Fast, Real};

/// Mean over rows of `-log softmax(logits)[target]`, as PyTorch's `F.cross_entropy`.
///
/// `logits`: (M, V) f32 or f64; `targets`: (M,) integer class indices in `0..V`. On the CPU this
/// runs the fused op; elsewhere `candle_nn::loss::cross_entropy`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (rows, classes) = match logits.dims() {
        &[m, v] if m > 0 && v > 0 => (m, v),
        dims => return Err(Error::shape("logits", "(M, V) with M, V >= 1", dims)),
    };
    if targets.dims() != [rows] || targets.dtype().is_float() {
        return Err(Error::shape("targets", format!("({rows},) integer class indices"), targets.dims()));
    }
    if !logits.device().is_cpu() || !matches!(logits.dtype(), DType::F32 | DType::F64) {
        return Ok(candle_nn::loss::cross_entropy(logits, targets)?);
    }
    let targets: Vec<u32> = targets.to_dtype(DType::U32)?.to_vec1()?;
    if let Some((row, &t)) = targets.iter().enumerate().find(|(_, &t)| t as usize >= classes) {
        return Err(Error::shape("targets", format!("class indices below {classes}; targets[{row}] = {t}"), &[rows]));
    }
    let op = SoftmaxCrossEntropy { targets, classes };
    Ok(logits.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(op)))?)
}

struct SoftmaxCrossEntropy {
    targets: Vec<u32>,
    classes: usize,
}

/// log(sum(exp(row))), computed as max + log(sum(exp(x - max))).
#[inline(always)]
fn log_sum_exp<T: Real, A: Activation<T>>(row: &[T]) -> T {
    let max = row.iter().fold(T::neg_infinity(), |m, &x| if x > m { x } else { m });
    let sum = row.iter().fold(T::zero(), |s, &x| s + A::exp(x - max));
    max + sum.ln()
}

impl SoftmaxCrossEntropy {
    #[inline(always)]
    fn loss<T: Real, A: Activation<T>>(&self, logits: &[T]) -> T {
        let total = logits
            .chunks_exact(self.classes)
            .zip(&self.targets)
            .fold(T::zero(), |acc, (row, &t)| acc + log_sum_exp::<T, A>(row) - row[t as usize]);
        total / T::from(self.targets.len()).unwrap_or_else(T::one)
    }

    /// d loss / d logits = scale * (softmax - one_hot(target)), scale = grad / M.
    #[inline(always)]
    fn gradient<T: Real, A: Activation<T>>(&self, logits: &[T], scale: T) -> Vec<T> {
        let mut grad = vec![T::zero(); logits.len()];
        for ((row, out), &t) in
            logits.chunks_exact(self.classes).zip(grad.chunks_exact_mut(self.classes)).zip(&self.targets)
        {
            let lse = log_sum_exp::<T, A>(row);
            for (o, &x) in out.iter_mut().zip(row) {
                *o = scale * A::exp(x - lse);
            }
            out[t as usize] -= scale;
        }
        grad
    }

    /// f32: the polynomial exp, vectorised with AVX-512 where the CPU has it.
    fn loss_f32(&self, logits: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected.
            return unsafe { loss_avx512(self, logits) };
        }
        self.loss::<f32, Exact>(logits)
    }

    fn gradient_f32(&self, logits: &[f32], scale: f32) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected.
            return unsafe { gradient_avx512(self, logits, scale) };
        }
        self.gradient::<f32, Exact>(logits, scale)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn loss_avx512(op: &SoftmaxCrossEntropy, logits: &[f32]) -> f32 {
    op.loss::<f32, Fast>(logits)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gradient_avx512(op: &SoftmaxCrossEntropy, logits: &[f32], scale: f32) -> Vec<f32> {
    op.gradient::<f32, Fast>(logits, scale)
}

fn cpu_slice<'a, T: Real>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&T::cpu_storage_as_slice(s)?[start..end]),
        None => candle_core::bail!("cross entropy: logits must be contiguous"),
    }
}

impl candle_core::CustomOp1 for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "seqmodels-softmax-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let storage = match s {
            CpuStorage::F32(_) => CpuStorage::F32(vec![self.loss_f32(cpu_slice(s, l)?)]),
            CpuStorage::F64(_) => CpuStorage::F64(vec![self.loss::<f64, Exact>(cpu_slice(s, l)?)]),
            _ => candle_core::bail!("cross entropy: expected f32 or f64 logits"),
        };
        Ok((storage, Shape::from(())))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (storage, layout) = logits.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else { candle_core::bail!("cross entropy: logits left the CPU") };
        let rows = self.targets.len() as f64;
        let grad = match cpu {
            CpuStorage::F32(_) => {
                let scale = grad_res.to_dtype(DType::F32)?.to_scalar::<f32>()? / rows as f32;
                Tensor::from_vec(self.gradient_f32(cpu_slice(cpu, layout)?, scale), logits.shape(), logits.device())?
            }
            CpuStorage::F64(_) => {
                let scale = grad_res.to_dtype(DType::F64)?.to_scalar::<f64>()? / rows;
                Tensor::from_vec(
                    self.gradient::<f64, Exact>(cpu_slice(cpu, layout)?, scale),
                    logits.shape(),
                    logits.device(),
                )?
            }
            _ => candle_core::bail!("cross entropy: expected f32 or f64 logits"),
        };
        Ok(Some(grad))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn matches_candle_nn_in_value_and_gradient() {
        let device = Device::Cpu;
        let logits = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (37, 53), &device).unwrap())).unwrap();
        let targets = Tensor::from_vec((0..37u32).map(|i| (i * 7) % 53).collect::<Vec<_>>(), 37, &device).unwrap();
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
