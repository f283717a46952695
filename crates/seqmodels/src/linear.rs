//! PyTorch's `F.linear(x, weight, bias)` as one candle op on the CPU: the product and the bias in
//! one GEMM (the bias as its initial value), and dx, dW, db as three GEMMs in backward, all on
//! candle's thread pool (the pool the recurrent kernels use, see `fused::gemm`). A language
//! model's decoder is this op; composed from candle's matmul and broadcast add it costs an extra
//! pass over the (rows x vocabulary) output and runs on a second thread pool.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::error::{Error, Result};
use crate::fused::gemm::{as_is, product, transposed, Init};
use crate::fused::real::{cpu_slice, host_slice, Real};
use crate::fused::transpose::transpose;
use crate::simd::Simd;

/// `x W^T + b` for `x` (M, K), `weight` (V, K), `bias` (V,): (M, V). On the CPU (f32, f64) one
/// fused op with its own backward; elsewhere candle's matmul and broadcast add.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if x.rank() != 2 {
        return Err(Error::shape("x", "(M, K) with M, K >= 1", x.dims()));
    }
    let op = Linear::of(x, weight, bias)?;
    if !Linear::runs_fused(x, weight, bias) {
        return Ok(x.matmul(&weight.t()?)?.broadcast_add(bias)?);
    }
    let (x, weight, bias) = (x.contiguous()?, weight.contiguous()?, bias.contiguous()?);
    Ok(x.apply_op3_arc(&weight, &bias, Arc::new(Box::new(op)))?)
}

/// The op, and the products of [`crate::loss::linear_cross_entropy`], which shares them.
pub(crate) struct Linear {
    /// M.
    pub rows: usize,
    /// K.
    pub features: usize,
    /// V.
    pub outputs: usize,
}

impl Linear {
    /// The sizes of `x W^T + b` for `x` (..., K): M is the product of the leading dimensions
    /// (at least one). Errors name the operand whose shape does not fit.
    pub fn of(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Self> {
        let (rows, features) = match x.dims() {
            [lead @ .., k] if !lead.is_empty() && *k > 0 && lead.iter().all(|&d| d > 0) => (lead.iter().product(), *k),
            dims => return Err(Error::shape("x", "(..., M, K) with M, K >= 1", dims)),
        };
        let outputs = match weight.dims() {
            &[v, k] if v > 0 && k == features => v,
            dims => return Err(Error::shape("weight", format!("(V, {features}) with V >= 1"), dims)),
        };
        if bias.dims() != [outputs] {
            return Err(Error::shape("bias", format!("({outputs},)"), bias.dims()));
        }
        Ok(Linear { rows, features, outputs })
    }

    /// Whether the fused CPU op runs these operands: all on the CPU, all f32 or all f64.
    pub fn runs_fused(x: &Tensor, weight: &Tensor, bias: &Tensor) -> bool {
        let same_dtype = weight.dtype() == x.dtype() && bias.dtype() == x.dtype();
        x.device().is_cpu() && same_dtype && matches!(x.dtype(), DType::F32 | DType::F64)
    }

    fn threads() -> usize {
        crate::fused::num_threads()
    }

    /// y = x W^T + b, (M, V).
    pub fn forward<T: Real>(&self, x: &[T], w: &[T], b: &[T]) -> Vec<T> {
        let (m, v, k) = (self.rows, self.outputs, self.features);
        product((m, v, k), Init::BiasRows(b), as_is(x), transposed(w), Self::threads())
    }

    /// dx = G W, dW = G^T x, db = column sums of G (unless the caller has them: `sums`), for the
    /// output gradient G (M, V); `x` and `w` are the op's CPU inputs, read in place.
    pub fn backward<T: Real>(&self, x: &Tensor, w: &Tensor, g: &[T], sums: Option<Vec<T>>) -> BackwardResult {
        let (m, v, k, threads) = (self.rows, self.outputs, self.features, Self::threads());
        let (x_in, w_in) = (host_slice::<T>(x)?, host_slice::<T>(w)?);
        let (xv, wv) = (x_in.get()?, w_in.get()?);
        let dx = product((m, k, v), Init::Zero, as_is(g), as_is(wv), threads);
        // dW^T = x^T G (K x V), transposed into dW afterwards: the `gemm` crate reads G (M x V,
        // row-major) as it is in this product, where dW = G^T x made it repack all of G first.
        let dw_t = product((k, v, m), Init::Zero, transposed(xv), as_is(g), threads);
        let mut dw = Vec::with_capacity(v * k);
        // SAFETY: dw_t holds K rows of V values, and `dw` has room for V rows of K, every one of
        // which the transpose writes before `set_len` exposes them.
        unsafe {
            transpose(Simd::detect(), (k, v), (dw_t.as_ptr(), v), (dw.as_mut_ptr(), k));
            dw.set_len(v * k);
        }
        let db = match sums {
            Some(db) => db,
            None => product((1, v, m), Init::Zero, as_is(&vec![T::one(); m]), as_is(g), threads),
        };
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dw, (v, k), device)?),
            Some(Tensor::from_vec(db, v, device)?),
        ))
    }
}

/// The gradients of x, weight and bias.
pub(crate) type BackwardResult = candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)>;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "seqmodels-linear"
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
                CpuStorage::F32(self.forward::<f32>(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(self.forward::<f64>(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?))
            }
            _ => candle_core::bail!("linear: expected f32 or f64"),
        };
        Ok((storage, Shape::from((self.rows, self.outputs))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad: &Tensor) -> BackwardResult {
        match x.dtype() {
            DType::F32 => self.backward::<f32>(x, w, host_slice::<f32>(grad)?.get()?, None),
            DType::F64 => self.backward::<f64>(x, w, host_slice::<f64>(grad)?.get()?, None),
            other => candle_core::bail!("linear: expected f32 or f64, found {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    /// The op against candle's matmul + broadcast add, in value and in every gradient (203 rows
    /// and 61 outputs: the products are split between the pool's threads).
    #[test]
    fn matches_candle() {
        for dtype in [DType::F32, DType::F64] {
            let device = Device::Cpu;
            let var = |dims: &[usize]| {
                let t = Tensor::randn(0f32, 1.0, dims, &device).unwrap().to_dtype(dtype).unwrap();
                Var::from_tensor(&t).unwrap()
            };
            let (x, w, b) = (var(&[203, 17]), var(&[61, 17]), var(&[61]));
            let ours = super::linear(&x, &w, &b).unwrap();
            let theirs = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
            let weights = Tensor::randn(0f32, 1.0, (203, 61), &device).unwrap().to_dtype(dtype).unwrap();
            let max = |t: Tensor| t.abs().unwrap().max_all().unwrap().to_dtype(DType::F64).unwrap();
            let max = |t: Tensor| max(t).to_scalar::<f64>().unwrap();
            assert!(max((&ours - &theirs).unwrap()) < 1e-4, "{dtype:?} values");
            let (go, gt) = (
                (&ours * &weights).unwrap().sum_all().unwrap().backward().unwrap(),
                (&theirs * &weights).unwrap().sum_all().unwrap().backward().unwrap(),
            );
            for (name, v) in [("x", &x), ("weight", &w), ("bias", &b)] {
                let diff = (go.get(v).unwrap() - gt.get(v).unwrap()).unwrap();
                assert!(max(diff) < 1e-3, "{dtype:?} {name}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let d = Device::Cpu;
        let (x, w, b) = (
            Tensor::zeros((4, 3), DType::F32, &d).unwrap(),
            Tensor::zeros((5, 3), DType::F32, &d).unwrap(),
            Tensor::zeros(4, DType::F32, &d).unwrap(),
        );
        let msg = super::linear(&x, &w, &b).unwrap_err().to_string();
        assert!(msg.contains("bias") && msg.contains("(5,)"), "{msg}");
    }
}
