//! Whole-sequence CPU kernels with hand-written backpropagation through time, as candle
//! custom ops: one op per layer and direction, so the autodiff graph has a handful of nodes
//! per layer instead of several per time step (no stack overflow on long sequences, no
//! per-step allocations).
//!
//! The input projection `x W_ih^T + b_ih` for all steps stays a candle matmul (one GEMM; its
//! backward gives dx, dW_ih and db_ih as single GEMMs). The op takes that projection, the
//! packed recurrent parameters and the packed initial state, and returns the packed output,
//! h_n and c_n; [`crate::cell::step`] is the specification these kernels are tested against.

mod fast_math;
mod gemm;
mod gru;
mod lstm;
#[cfg(target_arch = "x86_64")]
mod panel;
mod real;
mod rnn;
mod sequence;
#[cfg(target_arch = "x86_64")]
mod threaded;

use std::any::Any;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::cell::{CellWeights, State};
use crate::config::CellKind;
use crate::error::Result;
use real::Real;
use sequence::{Dims, Saved, Sequence};

/// Runs a forward pass: sequence, gi, params, state0, save.
type ForwardRunner<T> = fn(&Sequence, &[T], &[T], &[T], bool) -> (Vec<T>, Option<Saved<T>>);
/// Runs a backward pass: sequence, gradient of the result, params, saved forward values.
type BackwardRunner<T> = fn(&Sequence, &[T], &[T], &Saved<T>) -> sequence::Grads<T>;

fn generic_forward<T: Real>(s: &Sequence, g: &[T], p: &[T], h: &[T], save: bool) -> (Vec<T>, Option<Saved<T>>) {
    s.forward(g, p, h, save)
}
fn generic_backward<T: Real>(s: &Sequence, d: &[T], p: &[T], saved: &Saved<T>) -> sequence::Grads<T> {
    s.backward(d, p, saved)
}

#[cfg(target_arch = "x86_64")]
use threaded::{backward as threaded_backward, forward as threaded_forward};
#[cfg(not(target_arch = "x86_64"))]
use {generic_backward as threaded_backward, generic_forward as threaded_forward};

/// The custom op of one layer and direction.
struct FusedRecurrence {
    dims: Dims,
    lengths: Option<Vec<usize>>,
    reverse: bool,
    /// Keep what backward needs (only when a gradient can flow).
    save: bool,
    threads: usize,
    /// Whether the initial state needs a gradient.
    state_grad: bool,
    /// `Saved<f32>` or `Saved<f64>`, written by the forward pass, read by backward.
    saved: Mutex<Option<Box<dyn Any + Send + Sync>>>,
}

impl FusedRecurrence {
    /// Whether the f32 fast path runs this op (x86-64 with AVX-512, no projection), unless
    /// `SEQMODELS_FUSED_GENERIC` is set (used by tests to exercise the portable kernels).
    fn threaded(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            threaded::available(&self.dims) && std::env::var_os("SEQMODELS_FUSED_GENERIC").is_none()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    fn sequence(&self) -> Sequence<'_> {
        Sequence {
            dims: self.dims,
            lengths: self.lengths.as_deref(),
            reverse: self.reverse,
            threads: self.threads,
            state_grad: self.state_grad,
        }
    }

    fn forward<T: Real>(
        &self,
        gi: &[T],
        params: &[T],
        state0: &[T],
        run: ForwardRunner<T>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = &self.dims;
        let expected = [
            (gi.len(), d.seq_len * d.batch * d.gates()),
            (params.len(), d.params_len()),
            (state0.len(), d.state_len()),
        ];
        if let Some((found, want)) = expected.iter().find(|(f, w)| f != w) {
            candle_core::bail!("fused recurrence: input of {found} elements, expected {want}");
        }
        let (result, saved) = run(&self.sequence(), gi, params, state0, self.save);
        if let Some(saved) = saved {
            *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(saved));
        }
        Ok((T::to_cpu_storage_owned(result), Shape::from(d.result_len())))
    }

    fn backward<T: Real>(
        &self,
        params: &Tensor,
        grad_res: &Tensor,
        gi_shape: &Shape,
        run: BackwardRunner<T>,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let guard = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(saved) = guard.as_ref().and_then(|s| s.downcast_ref::<Saved<T>>()) else {
            candle_core::bail!("fused recurrence: backward without a saved forward pass");
        };
        let dresult = grad_res.flatten_all()?.to_vec1::<T>()?;
        let params_v = params.flatten_all()?.to_vec1::<T>()?;
        let grads = run(&self.sequence(), &dresult, &params_v, saved);
        let device = grad_res.device();
        Ok((
            Some(Tensor::from_vec(grads.gi, gi_shape, device)?),
            Some(Tensor::from_vec(grads.params, params.shape(), device)?),
            match self.state_grad {
                true => Some(Tensor::from_vec(grads.state0, self.dims.state_len(), device)?),
                false => None,
            },
        ))
    }
}

fn contiguous<'a, T: Real>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("fused recurrence: inputs must be contiguous"),
    }
}

impl CustomOp3 for FusedRecurrence {
    fn name(&self) -> &'static str {
        "seqmodels-fused-recurrence"
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
        match s1 {
            CpuStorage::F32(_) => {
                let run: ForwardRunner<f32> = if self.threaded() { threaded_forward } else { generic_forward };
                self.forward::<f32>(contiguous(s1, l1)?, contiguous(s2, l2)?, contiguous(s3, l3)?, run)
            }
            CpuStorage::F64(_) => {
                self.forward::<f64>(contiguous(s1, l1)?, contiguous(s2, l2)?, contiguous(s3, l3)?, generic_forward)
            }
            _ => candle_core::bail!("fused recurrence: expected f32 or f64 storage"),
        }
    }

    fn bwd(
        &self,
        gi: &Tensor,
        params: &Tensor,
        _state0: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        match gi.dtype() {
            DType::F32 => {
                let run: BackwardRunner<f32> = if self.threaded() { threaded_backward } else { generic_backward };
                self.backward::<f32>(params, grad_res, gi.shape(), run)
            }
            DType::F64 => self.backward::<f64>(params, grad_res, gi.shape(), generic_backward),
            other => candle_core::bail!("fused recurrence: expected f32 or f64, found {other:?}"),
        }
    }
}

/// Whether the fused kernels can run this tensor (CPU, f32 or f64).
pub(crate) fn supports(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Runs one direction of one layer with the fused kernel: `gi` (T, N, G) is x W_ih^T + b_ih,
/// `start` the initial state. Returns the outputs (T, N, H_out) in time order and the final
/// state, exactly as the composed path does.
pub(crate) fn run_direction(
    kind: CellKind,
    w: &CellWeights,
    gi: &Tensor,
    start: &State,
    lengths: Option<&[usize]>,
    reverse: bool,
) -> Result<(Tensor, State)> {
    let (seq_len, batch, _) = gi.dims3()?;
    let (gates, h_out) = w.weight_hh.dims2()?;
    let hidden = gates / kind.num_gates();
    let mut parts = vec![w.weight_hh.flatten_all()?];
    parts.extend(w.bias_hh.iter().cloned());
    if let Some(hr) = &w.weight_hr {
        parts.push(hr.flatten_all()?);
    }
    let params = Tensor::cat(&parts, 0)?;
    let mut state_parts = vec![start.h.flatten_all()?];
    if let Some(c) = &start.c {
        state_parts.push(c.flatten_all()?);
    }
    let state0 = Tensor::cat(&state_parts, 0)?;
    let gi = gi.contiguous()?;
    let dims = Dims { seq_len, batch, hidden, h_out, proj: w.weight_hr.is_some(), bias: w.bias_hh.is_some(), kind };
    let op = FusedRecurrence {
        dims,
        lengths: lengths.map(|l| l.to_vec()),
        reverse,
        save: gi.track_op() || params.track_op() || state0.track_op(),
        threads: candle_core::utils::get_num_threads(),
        state_grad: state0.track_op(),
        saved: Mutex::new(None),
    };
    let result = gi.apply_op3_arc(&params, &state0, Arc::new(Box::new(op)))?;
    let out_len = seq_len * batch * h_out;
    let output = result.narrow(0, 0, out_len)?.reshape((seq_len, batch, h_out))?;
    let h = result.narrow(0, out_len, batch * h_out)?.reshape((batch, h_out))?;
    let c = if kind.has_cell_state() {
        Some(result.narrow(0, out_len + batch * h_out, batch * hidden)?.reshape((batch, hidden))?)
    } else {
        None
    };
    Ok((output, State { h, c }))
}
