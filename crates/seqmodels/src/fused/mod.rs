//! Whole-sequence CPU kernels with hand-written backpropagation through time, as candle
//! custom ops: one op per layer and direction, so the autodiff graph has a handful of nodes
//! per layer instead of several per time step (no stack overflow on long sequences, no
//! per-step allocations).
//!
//! The op takes the layer input, the packed parameters and the packed initial state, and
//! returns the output, h_n and c_n in one tensor. The input projection `x W_ih^T` is computed
//! inside it (step by step in the vectorised engine, one GEMM over all steps in the generic one;
//! the gate pass adds the biases), and so are dx, dW_ih and db_ih in backward: no large
//! intermediate tensors in candle's graph, whose backward would zero-fill and add each of them.
//! One loop, [`driver`], runs every cell kind and option with either engine ([`engine`]).
//! [`crate::cell::step`] is the specification these kernels are tested against.

#[cfg(feature = "cuda")]
mod cuda;
mod driver;
mod engine;
mod fast_math;
pub mod gemm;
mod gru;
mod lstm;
#[cfg(target_arch = "x86_64")]
mod panel;
pub(crate) mod real;
mod rnn;
pub(crate) mod row;
pub(crate) mod sequence;
mod threads;
pub(crate) mod transpose;

use std::any::Any;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::cell::{CellWeights, State};
use crate::config::CellKind;
use crate::error::Result;
use engine::{Engine, Generic};
use gemm::{as_is, matmul, product, transposed, Init};
use real::Real;
use sequence::{Dims, Forward, InputSide, Saved, Sequence};

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
    /// Features of the layer input.
    input_size: usize,
    /// `Saved<f32>` or `Saved<f64>` (on CUDA `Arc<cuda::CudaSaved>`), written by the forward pass,
    /// read by backward.
    saved: Mutex<Option<Box<dyn Any + Send + Sync>>>,
}

impl FusedRecurrence {
    /// The instruction set of the vectorised f32 engine when it runs this op (x86-64 with
    /// AVX-512F or AVX2 + FMA, no projection; `SEQMODELS_SIMD=none` turns it off, see
    /// [`crate::simd`]).
    fn vectorised(&self) -> Option<crate::simd::Simd> {
        crate::simd::Simd::detect().filter(|_| !self.dims.proj)
    }

    fn generic(&self) -> Generic {
        Generic { threads: self.threads }
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

    /// Elements of the input-projection parameters at the head of the packed params:
    /// W_ih (G, I) then b_ih (G).
    fn input_params_len(&self) -> usize {
        let g = self.dims.gates();
        g * self.input_size + if self.dims.bias { g } else { 0 }
    }

    fn forward<T: Real, E: Engine<T>>(
        &self,
        engine: E,
        x: &[T],
        params: &[T],
        state0: &[T],
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = &self.dims;
        let (tn, g, i) = (d.seq_len * d.batch, d.gates(), self.input_size);
        let expected = [
            (x.len(), tn * i),
            (params.len(), self.input_params_len() + d.params_len()),
            (state0.len(), d.state_len()),
        ];
        if let Some((found, want)) = expected.iter().find(|(f, w)| f != w) {
            candle_core::bail!("fused recurrence: input of {found} elements, expected {want}");
        }
        let (w_ih, rest) = params.split_at(g * i);
        let (b_ih, recurrent) = rest.split_at(self.input_params_len() - g * i);
        let input = InputSide { x, w_ih, b_ih: d.bias.then_some(b_ih), size: i };
        let (result, saved) = driver::forward(engine, &self.sequence(), input, recurrent, state0, self.save);
        if let Some(saved) = saved {
            *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(saved));
        }
        Ok((T::to_cpu_storage_owned(result), d.result_shape()))
    }

    fn backward<T: Real, E: Engine<T>>(
        &self,
        engine: E,
        x: &Tensor,
        params: &Tensor,
        (res, state0): (&Tensor, &Tensor),
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let guard = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(saved) = guard.as_ref().and_then(|s| s.downcast_ref::<Saved<T>>()) else {
            candle_core::bail!("fused recurrence: backward without a saved forward pass");
        };
        let d = &self.dims;
        let (tn, g, i) = (d.seq_len * d.batch, d.gates(), self.input_size);
        // Read in place where contiguous: the parameters alone are megabytes.
        let (dresult, params_v, x_v) =
            (real::host_slice::<T>(grad_res)?, real::host_slice::<T>(params)?, real::host_slice::<T>(x)?);
        let (dresult, params_v, x_v) = (dresult.get()?, params_v.get()?, x_v.get()?);
        let (res, state0) = (real::host_slice::<T>(res)?, real::host_slice::<T>(state0)?);
        let forward = Forward { result: res.get()?, state0: state0.get()? };
        let head = self.input_params_len();
        let grads = driver::backward(engine, &self.sequence(), (forward, dresult), (&params_v[head..], head), saved);
        // The input side, each as one GEMM over all steps: dx = dgi W_ih, dW_ih = dgi^T x; and
        // db_ih = column sums of dgi.
        let dx = product((tn, i, g), Init::Zero, transposed(&grads.gi), as_is(&params_v[..g * i]), self.threads);
        let mut dparams = grads.params;
        let (input_side, recurrent) = dparams.split_at_mut(head);
        matmul((g, i, tn), &mut input_side[..g * i], Init::Zero, as_is(&grads.gi), as_is(x_v), self.threads);
        if d.bias {
            let db_ih = &mut input_side[g * i..];
            match (d.kind, &grads.gi_sums) {
                (CellKind::Gru, Some(sums)) => db_ih.copy_from_slice(sums),
                (CellKind::Gru, None) => sequence::add_row_sums(db_ih, &grads.gi),
                // Only GRU's n gate tells the input side's gate gradients from the hidden side's:
                // elsewhere they are one buffer, so db_ih is db_hh, which follows dW_hh (G, H_out).
                (_, _) => db_ih.copy_from_slice(&recurrent[g * d.h_out..g * d.h_out + g]),
            }
        }
        let device = grad_res.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dparams, params.shape(), device)?),
            match self.state_grad {
                true => Some(Tensor::from_vec(grads.state0, d.state_len(), device)?),
                false => None,
            },
        ))
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
        let (x, params, state0) = (s1, s2, s3);
        match x {
            CpuStorage::F32(_) => {
                let inputs = (real::cpu_slice(x, l1)?, real::cpu_slice(params, l2)?, real::cpu_slice(state0, l3)?);
                match self.vectorised() {
                    #[cfg(target_arch = "x86_64")]
                    Some(simd) => {
                        let engine = engine::Vectorised { simd, threads: self.threads };
                        self.forward(engine, inputs.0, inputs.1, inputs.2)
                    }
                    _ => self.forward(self.generic(), inputs.0, inputs.1, inputs.2),
                }
            }
            CpuStorage::F64(_) => self.forward::<f64, _>(
                self.generic(),
                real::cpu_slice(x, l1)?,
                real::cpu_slice(params, l2)?,
                real::cpu_slice(state0, l3)?,
            ),
            _ => candle_core::bail!("fused recurrence: expected f32 or f64 storage"),
        }
    }

    /// f32 on CUDA: cuBLAS products and the elementwise kernels of `cuda/kernels.cu`.
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::forward(self, s1, l1, s2, l2, s3, l3)
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        state0: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return cuda::backward(self, x, params, grad_res);
        }
        match x.dtype() {
            DType::F32 => match self.vectorised() {
                #[cfg(target_arch = "x86_64")]
                Some(simd) => {
                    let engine = engine::Vectorised { simd, threads: self.threads };
                    self.backward::<f32, _>(engine, x, params, (res, state0), grad_res)
                }
                _ => self.backward::<f32, _>(self.generic(), x, params, (res, state0), grad_res),
            },
            DType::F64 => self.backward::<f64, _>(self.generic(), x, params, (res, state0), grad_res),
            other => candle_core::bail!("fused recurrence: expected f32 or f64, found {other:?}"),
        }
    }
}

/// candle's CPU thread count (`RAYON_NUM_THREADS`, else the physical cores), read once: candle
/// parses /proc/cpuinfo again on every call, which costs more than a small op.
pub(crate) fn num_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(candle_core::utils::get_num_threads)
}

/// Whether [`crate::Implementation::Auto`] runs the fused kernels on this tensor: CPU, f32 or
/// f64. On CUDA, Auto keeps the composed path until the CUDA kernels have been checked on a GPU
/// (docs/cuda.md); [`crate::Implementation::Fused`] asks for them explicitly.
pub(crate) fn chosen_by_default(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Whether the fused kernels can run this tensor at all (CPU f32/f64; CUDA f32 with the `cuda`
/// feature).
pub(crate) fn supports(t: &Tensor) -> bool {
    chosen_by_default(t) || cuda_supports(t)
}

#[cfg(feature = "cuda")]
fn cuda_supports(t: &Tensor) -> bool {
    cuda::supports(t)
}
#[cfg(not(feature = "cuda"))]
fn cuda_supports(_: &Tensor) -> bool {
    false
}

/// Runs one direction of one layer with the fused kernel on the layer input `x` (T, N, I),
/// from the initial state `start`. Returns the outputs (T, N, H_out) in time order and the
/// final state, exactly as the composed path does.
pub(crate) fn run_direction(
    kind: CellKind,
    w: &CellWeights,
    x: &Tensor,
    start: &State,
    lengths: Option<&[usize]>,
    reverse: bool,
) -> Result<(Tensor, State)> {
    let (seq_len, batch, input_size) = x.dims3()?;
    let (gates, h_out) = w.weight_hh.dims2()?;
    let hidden = gates / kind.num_gates();
    // Packed parameters: W_ih, b_ih, W_hh, b_hh, W_hr (the op's layout).
    let mut parts = vec![w.weight_ih.flatten_all()?];
    parts.extend(w.bias_ih.iter().cloned());
    parts.push(w.weight_hh.flatten_all()?);
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
    let x = x.contiguous()?;
    let dims = Dims { seq_len, batch, hidden, h_out, proj: w.weight_hr.is_some(), bias: w.bias_hh.is_some(), kind };
    let op = FusedRecurrence {
        dims,
        lengths: lengths.map(|l| l.to_vec()),
        reverse,
        save: x.track_op() || params.track_op() || state0.track_op(),
        threads: num_threads(),
        state_grad: state0.track_op(),
        input_size,
        saved: Mutex::new(None),
    };
    let result = x.apply_op3_arc(&params, &state0, Arc::new(Box::new(op)))?;
    if result.rank() == 3 {
        // (T + 1 [+ 1], N, H): output, h_n [, c_n] (see `Dims::result_shape`).
        let c = kind.has_cell_state().then(|| result.get(seq_len + 1)).transpose()?;
        return Ok((result.narrow(0, 0, seq_len)?, State { h: result.get(seq_len)?, c }));
    }
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
