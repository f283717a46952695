//! Optimizers with PyTorch's update rules and savable state, and gradient clipping.
//!
//! candle-nn's `SGD` has no momentum and its `AdamW` keeps its moments private, so its state
//! cannot be saved for an exact resume; these small optimizers keep every buffer under the
//! parameter's name (`<name>.momentum_buffer`, `<name>.exp_avg`, `<name>.exp_avg_sq`, as in
//! PyTorch's optimizer state) and the step count, so a run resumes bit for bit.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.SGD` (optional momentum, no dampening, no Nesterov; weight decay as L2).
    Sgd,
    /// `torch.optim.Adam` (weight decay added to the gradient, as L2).
    Adam,
    /// `torch.optim.AdamW` (decoupled weight decay).
    Adamw,
}

impl OptimizerKind {
    /// `sgd`, `adam` or `adamw`.
    pub fn as_str(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adamw => "adamw",
        }
    }
}

/// Hyperparameters of the optimizer (the learning rate is given at every step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// The update rule.
    pub kind: OptimizerKind,
    /// SGD momentum (0: plain SGD).
    pub momentum: f64,
    /// Weight decay (L2 for SGD and Adam, decoupled for AdamW).
    pub weight_decay: f64,
    /// Adam's beta1.
    pub beta1: f64,
    /// Adam's beta2.
    pub beta2: f64,
    /// Adam's epsilon.
    pub eps: f64,
}

impl OptimConfig {
    /// PyTorch's defaults for `kind` (AdamW: weight decay 0.01; the others: 0).
    pub fn new(kind: OptimizerKind) -> Self {
        OptimConfig {
            kind,
            momentum: 0.0,
            weight_decay: if kind == OptimizerKind::Adamw { 0.01 } else { 0.0 },
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::option("momentum", "a number in [0, 1)", self.momentum));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::option("weight_decay", "a finite number >= 0", self.weight_decay));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::option(name, "a number in [0, 1)", b));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::option("eps", "a positive finite number", self.eps));
        }
        Ok(())
    }
}

/// An optimizer over named variables, with PyTorch's update rules.
#[derive(Debug)]
pub struct Optimizer {
    cfg: OptimConfig,
    params: Vec<(String, Var)>,
    /// Buffers by key `<param>.<buffer>`.
    state: HashMap<String, Tensor>,
    step: u64,
}

impl Optimizer {
    /// An optimizer for `params` (name, variable); names key the saved state.
    pub fn new(params: Vec<(String, Var)>, cfg: OptimConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Optimizer { cfg, params, state: HashMap::new(), step: 0 })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &OptimConfig {
        &self.cfg
    }

    /// The variables, in the order given.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Number of steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Applies one update with learning rate `lr`. Variables without a gradient are left as
    /// they are (and their buffers untouched), as PyTorch does for `grad is None`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.cfg.clone();
        for (name, var) in &self.params {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            let p = var.as_tensor();
            match c.kind {
                OptimizerKind::Sgd if c.weight_decay == 0.0 && c.momentum == 0.0 && sgd_in_place(p, grad) => {
                    // Plain SGD on the CPU: p -= lr * g in one pass, no temporaries.
                    p.inplace_op2(grad, &SgdStep { lr })?;
                }
                OptimizerKind::Sgd => {
                    let mut d = if c.weight_decay > 0.0 { (grad + (p * c.weight_decay)?)? } else { grad.clone() };
                    if c.momentum > 0.0 {
                        let key = format!("{name}.momentum_buffer");
                        let buf = match self.state.get(&key) {
                            Some(b) => ((b * c.momentum)? + &d)?,
                            None => d.clone(),
                        };
                        self.state.insert(key, buf.clone());
                        d = buf;
                    }
                    var.set(&(p - (d * lr)?)?)?;
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    let mut p = p.clone();
                    let g = if c.kind == OptimizerKind::Adam && c.weight_decay > 0.0 {
                        (grad + (&p * c.weight_decay)?)?
                    } else {
                        grad.clone()
                    };
                    if c.kind == OptimizerKind::Adamw && c.weight_decay > 0.0 {
                        p = (p * (1.0 - lr * c.weight_decay))?;
                    }
                    let (k1, k2) = (format!("{name}.exp_avg"), format!("{name}.exp_avg_sq"));
                    let m = match self.state.get(&k1) {
                        Some(m) => ((m * c.beta1)? + (&g * (1.0 - c.beta1))?)?,
                        None => (&g * (1.0 - c.beta1))?,
                    };
                    let v = match self.state.get(&k2) {
                        Some(v) => ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?,
                        None => (g.sqr()? * (1.0 - c.beta2))?,
                    };
                    let t = self.step as i32;
                    let bc1 = 1.0 - c.beta1.powi(t);
                    let bc2 = 1.0 - c.beta2.powi(t);
                    let denom = ((v.sqrt()? / bc2.sqrt())? + c.eps)?;
                    let update = ((&m / denom)? * (lr / bc1))?;
                    var.set(&(p - update)?)?;
                    self.state.insert(k1, m);
                    self.state.insert(k2, v);
                }
            }
        }
        Ok(())
    }

    /// The buffers, keyed `<param>.<buffer>`, for saving.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self.state.iter().map(|(k, t)| (k.clone(), t.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Restores buffers saved by [`Self::state_tensors`] and the step count. Every buffer must
    /// belong to a parameter and have its shape.
    pub fn load_state(&mut self, tensors: HashMap<String, Tensor>, step: u64) -> Result<()> {
        let shapes: HashMap<&str, (&[usize], DType)> =
            self.params.iter().map(|(n, v)| (n.as_str(), (v.dims(), v.dtype()))).collect();
        let mut state = HashMap::with_capacity(tensors.len());
        for (key, t) in tensors {
            let param = key.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
            let Some((dims, dtype)) = shapes.get(param) else {
                return Err(Error::Mismatch {
                    what: format!("optimizer state `{key}`"),
                    expected: "a buffer of one of the model's parameters".into(),
                    found: format!("unknown parameter `{param}`"),
                });
            };
            if t.dims() != *dims {
                return Err(Error::Mismatch {
                    what: format!("optimizer state `{key}` shape"),
                    expected: format!("{dims:?}"),
                    found: format!("{:?}", t.dims()),
                });
            }
            let device = self.params[0].1.device().clone();
            state.insert(key, t.to_dtype(*dtype)?.to_device(&device)?);
        }
        self.state = state;
        self.step = step;
        Ok(())
    }
}

/// Whether [`SgdStep`] can update `p` with `grad`: both contiguous f32 or f64 on the CPU.
fn sgd_in_place(p: &Tensor, grad: &Tensor) -> bool {
    p.device().is_cpu()
        && grad.device().is_cpu()
        && matches!(p.dtype(), DType::F32 | DType::F64)
        && grad.dtype() == p.dtype()
        && p.is_contiguous()
        && grad.is_contiguous()
        && p.shape() == grad.shape()
}

/// `p -= lr * g` in place, rounding as the composed `p - (g * lr)` does (same results, bit for bit).
struct SgdStep {
    lr: f64,
}

impl candle_core::InplaceOp2 for SgdStep {
    fn name(&self) -> &'static str {
        "seqmodels-sgd-step"
    }

    fn cpu_fwd(
        &self,
        p: &mut candle_core::CpuStorage,
        pl: &candle_core::Layout,
        g: &candle_core::CpuStorage,
        gl: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use candle_core::CpuStorage::{F32, F64};
        let (Some((p0, p1)), Some((g0, g1))) = (pl.contiguous_offsets(), gl.contiguous_offsets()) else {
            candle_core::bail!("sgd step: parameter and gradient must be contiguous")
        };
        match (p, g) {
            (F32(p), F32(g)) => sgd_update(&mut p[p0..p1], &g[g0..g1], self.lr as f32),
            (F64(p), F64(g)) => sgd_update(&mut p[p0..p1], &g[g0..g1], self.lr),
            _ => candle_core::bail!("sgd step: expected f32 or f64 parameter and gradient of one dtype"),
        }
        Ok(())
    }
}

/// `p -= g * lr` elementwise. Large tensors (a 10,000-word embedding or decoder: 2M values) are
/// split between candle's pool threads; each element's arithmetic is the same either way.
fn sgd_update<T>(p: &mut [T], g: &[T], lr: T)
where
    T: Copy + Send + Sync + std::ops::Mul<Output = T> + std::ops::SubAssign,
{
    const SERIAL_BELOW: usize = 1 << 17;
    seqmodels::pool::map_parts_mut(p, 1, SERIAL_BELOW, |range, p| {
        p.iter_mut().zip(&g[range]).for_each(|(p, g)| *p -= *g * lr)
    });
}

/// The global L2 norm of the gradients of `params` (those without a gradient count as zero).
pub fn grad_norm(grads: &GradStore, params: &[(String, Var)]) -> Result<f64> {
    let mut sums = Vec::with_capacity(params.len());
    for (_, v) in params {
        if let Some(g) = grads.get(v.as_tensor()) {
            sums.push(g.to_dtype(DType::F32)?.sqr()?.sum_all()?);
        }
    }
    if sums.is_empty() {
        return Ok(0.0);
    }
    let total = Tensor::stack(&sums, 0)?.sum_all()?.to_scalar::<f32>()?;
    Ok((total as f64).sqrt())
}

/// Gradient clipping by global L2 norm, as d2l does it: when the norm exceeds `max_norm`, every
/// gradient is scaled by `max_norm / norm`. `max_norm <= 0` turns clipping off. Returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, params: &[(String, Var)], max_norm: f64) -> Result<f64> {
    let norm = grad_norm(grads, params)?;
    if max_norm > 0.0 && norm > max_norm && norm.is_finite() {
        let scale = max_norm / norm;
        for (_, v) in params {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn quadratic_steps(kind: OptimizerKind, momentum: f64, wd: f64, steps: usize) -> Vec<f32> {
        // loss = sum(w^2) / 2, gradient w.
        let w = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let cfg = OptimConfig { momentum, weight_decay: wd, ..OptimConfig::new(kind) };
        let mut opt = Optimizer::new(vec![("w".into(), w.clone())], cfg).unwrap();
        for _ in 0..steps {
            let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.1).unwrap();
        }
        w.as_tensor().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn sgd_momentum_matches_hand_computation() {
        // w1 = w0 - lr*g0 = 0.9 w0; buf1 = g1 + 0.5*g0 = 0.9w0 + 0.5w0 = 1.4 w0; w2 = 0.9w0 - 0.14 w0 = 0.76 w0
        let w = quadratic_steps(OptimizerKind::Sgd, 0.5, 0.0, 2);
        assert!((w[0] - 0.76).abs() < 1e-6 && (w[1] + 1.52).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let w = quadratic_steps(OptimizerKind::Adam, 0.0, 0.0, 1);
        assert!((w[0] - 0.9).abs() < 1e-5 && (w[1] + 1.9).abs() < 1e-5, "{w:?}");
        // AdamW decays first: w*(1 - lr*wd) then the Adam step.
        let w = quadratic_steps(OptimizerKind::Adamw, 0.0, 0.5, 1);
        assert!((w[0] - (0.95 - 0.1)).abs() < 1e-5, "{w:?}");
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let w = Var::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
        let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let mut grads = loss.backward().unwrap();
        let params = vec![("w".to_string(), w.clone())];
        let norm = clip_grad_norm(&mut grads, &params, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        assert!((grad_norm(&grads, &params).unwrap() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn plain_sgd_in_place_equals_the_composed_update_bit_for_bit() {
        // The large shape is split between the pool's threads.
        for (dtype, shape) in [(DType::F32, (37, 11)), (DType::F64, (37, 11)), (DType::F32, (1001, 300))] {
            let p0 = Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let w = Var::from_tensor(&p0).unwrap();
            let target = Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let loss = (w.as_tensor() * &target).unwrap().sum_all().unwrap(); // gradient: target
            let grads = loss.backward().unwrap();
            let mut opt = Optimizer::new(vec![("w".into(), w.clone())], OptimConfig::new(OptimizerKind::Sgd)).unwrap();
            opt.step(&grads, 0.37).unwrap();
            let expected = (&p0 - (&target * 0.37).unwrap()).unwrap();
            let bits = |t: &Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            assert_eq!(bits(w.as_tensor()), bits(&expected), "{dtype:?}");
        }
    }
}
