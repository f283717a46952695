//! The decoder of a language model and its loss as one op: `cross_entropy(x W^T + b, targets)`.
//!
//! With a 10,000-word vocabulary the logits of a minibatch are (M x 10,000): 16 MB for M = 400.
//! Built from candle ops, every such tensor costs more than its arithmetic: the bias is added in
//! a pass of its own, and in backward candle's autodiff zero-fills a gradient buffer for each
//! node before adding into it (the logits, the product before the bias, the transposed weight).
//! This op computes the logits into its own buffer with one GEMM (bias as the initial value),
//! keeps them for backward, overwrites them there with d loss / d logits, and returns dx, dW
//! and db from three GEMMs: no tensor of the logits' size passes through the autodiff graph.

use std::any::Any;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use super::{check_targets, cross_entropy, SoftmaxCrossEntropy};
use crate::error::Result;
use crate::fused::real::{cpu_slice, Real};
use crate::linear::{BackwardResult, Linear};

/// Mean over rows of `-log softmax(x W^T + b)[target]`: PyTorch's
/// `F.cross_entropy(F.linear(x, weight, bias), targets)`, with gradients for `x`, `weight` and
/// `bias`.
///
/// `x`: (M, K), or (..., K) with M rows in all (a time-major (T, N, K) needs no reshape, which
/// would cost the autodiff graph a node of x's size); `weight`: (V, K); `bias`: (V,); `targets`:
/// (M,) integer class indices in `0..V`.
/// On the CPU (f32, f64) this is one fused op (see the module docs); elsewhere the composition
/// of candle's matmul with [`cross_entropy`].
pub fn linear_cross_entropy(x: &Tensor, weight: &Tensor, bias: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let linear = Linear::of(x, weight, bias)?;
    check_targets(targets, linear.rows)?;
    if !Linear::runs_fused(x, weight, bias) {
        let x = x.reshape((linear.rows, linear.features))?;
        return cross_entropy(&x.matmul(&weight.t()?)?.broadcast_add(bias)?, targets);
    }
    let op = LinearCrossEntropy {
        loss: SoftmaxCrossEntropy::new(targets, linear.rows, linear.outputs)?,
        linear,
        save: x.track_op() || weight.track_op() || bias.track_op(),
        logits: Mutex::new(None),
    };
    let (x, weight, bias) = (x.contiguous()?, weight.contiguous()?, bias.contiguous()?);
    Ok(x.apply_op3_arc(&weight, &bias, Arc::new(Box::new(op)))?)
}

struct LinearCrossEntropy {
    loss: SoftmaxCrossEntropy,
    /// The products (shared with [`crate::linear::linear`]).
    linear: Linear,
    /// Whether to keep the logits for backward (only when a gradient can flow).
    save: bool,
    /// The logits and each row's log-sum-exp (`Kept<f32>` or `Kept<f64>`), kept by forward;
    /// backward turns the logits into the gradient in place and drops them.
    logits: Mutex<Option<Box<dyn Any + Send + Sync>>>,
}

/// What forward keeps for backward: the logits (rows x classes) and each row's log-sum-exp, so
/// that backward does not compute the latter again.
struct Kept<T> {
    logits: Vec<T>,
    lse: Vec<T>,
}

impl LinearCrossEntropy {
    /// logits = x W^T + b (one GEMM, the bias as its initial value), then the mean loss (`loss`
    /// returns it and each row's log-sum-exp).
    fn forward<T: Real>(&self, x: &[T], w: &[T], b: &[T], loss: impl Fn(&[T]) -> (T, Vec<T>)) -> T {
        let logits = self.linear.forward(x, w, b);
        let (value, lse) = loss(&logits);
        if self.save {
            *self.logits.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(Kept { logits, lse }));
        }
        value
    }

    /// The linear layer's backward with G = d loss / d logits, computed in place over the kept
    /// logits by `gradient` (given the rows' log-sum-exp), which returns G's column sums (db).
    fn backward<T: Real>(&self, x: &Tensor, w: &Tensor, gradient: impl Fn(&mut [T], &[T]) -> Vec<T>) -> BackwardResult {
        let kept = self.logits.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(Kept { logits: mut g, lse }) = kept.and_then(|l| l.downcast::<Kept<T>>().ok()).map(|l| *l) else {
            candle_core::bail!("linear cross entropy: backward without kept logits (a second backward?)")
        };
        let db = gradient(&mut g, &lse);
        self.linear.backward(x, w, &g, Some(db))
    }
}

impl CustomOp3 for LinearCrossEntropy {
    fn name(&self) -> &'static str {
        "seqmodels-linear-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let storage = match s1 {
            CpuStorage::F32(_) => {
                let (x, w, b) = (cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?);
                CpuStorage::F32(vec![self.forward::<f32>(x, w, b, |l| self.loss.loss_f32(l))])
            }
            CpuStorage::F64(_) => {
                let (x, w, b) = (cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?);
                let loss =
                    |l: &[f64]| self.loss.loss(l, |l, r, lse| self.loss.loss_rows::<f64, super::Exact>(l, r, lse));
                CpuStorage::F64(vec![self.forward::<f64>(x, w, b, loss)])
            }
            _ => candle_core::bail!("linear cross entropy: expected f32 or f64"),
        };
        Ok((storage, Shape::from(())))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad_res: &Tensor) -> BackwardResult {
        let rows = self.loss.targets.len() as f64;
        let scale = grad_res.to_dtype(DType::F64)?.to_scalar::<f64>()? / rows;
        match x.dtype() {
            DType::F32 => {
                self.backward::<f32>(x, w, |g, lse| self.loss.gradient_in_place_f32(g, scale as f32, Some(lse), true))
            }
            DType::F64 => self.backward::<f64>(x, w, |g, lse| self.loss.gradient_in_place(g, scale, Some(lse), true)),
            other => candle_core::bail!("linear cross entropy: expected f32 or f64, found {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    /// The fused op against matmul + bias + [`super::cross_entropy`], in value and in the
    /// gradients of x, W and b; 203 rows split between the pool's threads.
    #[test]
    fn matches_the_composition() {
        for dtype in [DType::F32, DType::F64] {
            let device = Device::Cpu;
            let var = |shape: (usize, usize)| {
                Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &device).unwrap().to_dtype(dtype).unwrap()).unwrap()
            };
            let (x, w) = (var((203, 17)), var((61, 17)));
            let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 61, &device).unwrap().to_dtype(dtype).unwrap()).unwrap();
            let targets =
                Tensor::from_vec((0..203u32).map(|i| (i * 13) % 61).collect::<Vec<_>>(), 203, &device).unwrap();
            let fused = super::linear_cross_entropy(&x, &w, &b, &targets).unwrap();
            let logits = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
            let composed = super::cross_entropy(&logits, &targets).unwrap();
            let value = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
            assert!((value(&fused) - value(&composed)).abs() < 1e-5, "{dtype:?}");
            let (gf, gc) = (
                fused.affine(3.0, 0.0).unwrap().backward().unwrap(),
                composed.affine(3.0, 0.0).unwrap().backward().unwrap(),
            );
            for (name, v) in [("x", &x), ("weight", &w), ("bias", &b)] {
                let diff = (gf.get(v).unwrap() - gc.get(v).unwrap()).unwrap().abs().unwrap();
                let max = value(&diff.max_all().unwrap());
                assert!(max < 1e-5, "{dtype:?} {name}: gradient differs by {max}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let device = Device::Cpu;
        let x = Tensor::zeros((4, 3), DType::F32, &device).unwrap();
        let w = Tensor::zeros((5, 2), DType::F32, &device).unwrap();
        let b = Tensor::zeros(5, DType::F32, &device).unwrap();
        let t = Tensor::new(&[0u32, 1, 2, 3], &device).unwrap();
        let msg = super::linear_cross_entropy(&x, &w, &b, &t).unwrap_err().to_string();
        assert!(msg.contains("weight") && msg.contains("(V, 3)"), "{msg}");
        let w = Tensor::zeros((5, 3), DType::F32, &device).unwrap();
        let t = Tensor::new(&[0u32, 1, 5, 3], &device).unwrap();
        let msg = super::linear_cross_entropy(&x, &w, &b, &t).unwrap_err().to_string();
        assert!(msg.contains("targets[2] = 5"), "{msg}");
    }
}
