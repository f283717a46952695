//! The fused recurrence on CUDA (f32): the same op as the CPU kernels ([`super::FusedRecurrence`]),
//! with cuBLAS for the matrix products and small elementwise kernels (`cuda/kernels.cu`, compiled
//! to PTX by build.rs and embedded here) for everything between two products.
//!
//! Forward, per layer and direction: `gi = x W_ih^T` as one GEMM over all T*N rows; then per step
//! `gh = h W_hh^T` (one GEMM into a preallocated buffer) and one kernel that adds both biases,
//! applies the activations, updates the state held in the result buffer (h_n and c_n end up
//! there), masks rows past their length and writes `output[t]` and, when a gradient can flow,
//! what backward needs; LSTM with projection adds `h = hh W_hr^T` (a GEMM) and a small kernel
//! that stores it.
//!
//! Backward is a second custom op, [`CudaBackward`], over (x, params, grad_res), which shares the
//! saved device buffers with the forward op and returns `[dx | dparams | dstate0]` in one buffer:
//! per step (in reverse processing order) one kernel for the gate gradients and `dh += dgates W_hh`
//! (a GEMM); the weight gradients, dx and the bias gradients (a product with a vector of ones) are
//! single GEMMs over all steps at the end.
//!
//! Unverified on a GPU when written: see docs/fused.md ("Fused CUDA kernels") and
//! tests/cuda_fused.rs.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublas::sys::cublasOperation_t;
use candle_core::cuda_backend::cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DevicePtr, DevicePtrMut, LaunchArgs, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaDevice, CudaStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::sequence::Dims;
use super::FusedRecurrence;
use crate::config::CellKind;

/// The PTX of `cuda/kernels.cu`, compiled by build.rs.
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused_recurrence.ptx"));
/// The name candle caches the loaded module under.
const MODULE: &str = "seqmodels_fused_recurrence";
/// Threads per block of the elementwise kernels.
const BLOCK: u32 = 256;

/// Whether the CUDA kernels can run this tensor: f32 on a CUDA device.
pub(crate) fn supports(t: &Tensor) -> bool {
    t.device().is_cuda() && t.dtype() == DType::F32
}

/// What the forward pass keeps for backward, on the device, each (T, N, width) in time order
/// (zero at positions past a row's length). The meaning of each buffer is that of
/// [`super::sequence::Saved`].
pub(super) struct CudaSaved {
    /// h before each step (T, N, H_out).
    h_prev: CudaSlice<f32>,
    /// LSTM/GRU: gate activations (T, N, G); RNN: h' (T, N, H).
    act: CudaSlice<f32>,
    /// LSTM: c before each step (T, N, H).
    c_prev: Option<CudaSlice<f32>>,
    /// LSTM: tanh(c') (T, N, H).
    tanh_c: Option<CudaSlice<f32>>,
    /// GRU: h W_hn^T + b_hn (T, N, H).
    ghn: Option<CudaSlice<f32>>,
    /// LSTM with projection: o * tanh(c') before the projection (T, N, H).
    hh: Option<CudaSlice<f32>>,
}

impl CudaSaved {
    /// Zeroed buffers for a forward pass of `d`.
    fn new(dev: &CudaDevice, d: &Dims) -> Result<Self> {
        let (tn, h) = (d.seq_len * d.batch, d.hidden);
        let lstm = d.kind == CellKind::Lstm;
        let only = |keep: bool| -> Result<Option<CudaSlice<f32>>> { keep.then(|| zeros(dev, tn * h)).transpose() };
        Ok(CudaSaved {
            h_prev: zeros(dev, tn * d.h_out)?,
            act: zeros(dev, tn * if d.kind.num_gates() == 1 { h } else { d.gates() })?,
            c_prev: only(lstm)?,
            tanh_c: only(lstm)?,
            ghn: only(d.kind == CellKind::Gru)?,
            hh: only(d.proj)?,
        })
    }
}

/// A zeroed device buffer of `len` elements (at least one: CUDA does not allocate nothing).
fn zeros(dev: &CudaDevice, len: usize) -> Result<CudaSlice<f32>> {
    dev.alloc_zeros::<f32>(len.max(1))
}

/// The f32 elements of a contiguous input.
fn view<'a>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, f32>> {
    let slice = s.as_cuda_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(slice.slice(start..end)),
        None => candle_core::bail!("fused recurrence (CUDA): inputs must be contiguous"),
    }
}

/// A size as a kernel argument.
fn int(v: usize) -> Result<i32> {
    match i32::try_from(v) {
        Ok(v) => Ok(v),
        Err(_) => candle_core::bail!("fused recurrence (CUDA): size {v} does not fit the kernels' 32-bit indices"),
    }
}

/// Launch configuration of an elementwise kernel over `elems` threads.
fn grid(elems: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: ((elems as u32).div_ceil(BLOCK), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// Launches a prepared kernel over `elems` threads (nothing when there are none).
fn launch(mut b: LaunchArgs<'_>, elems: usize) -> Result<()> {
    if elems > 0 {
        // SAFETY: the kernels index only within the buffers sized from the same `Dims` (checked
        // against the inputs on entry), and every argument matches the kernel's signature.
        unsafe { b.launch(grid(elems)) }.w()?;
    }
    Ok(())
}

/// Row-major `C (m x n) = op(A) (m x k) · op(B) (k x n) + beta C`, where `op(A)` is `A` stored
/// (m x k) or, with `a_t`, the transpose of `A` stored (k x m); likewise `B`. cuBLAS is
/// column-major, so this computes `C^T = op(B)^T op(A)^T` with the operands swapped. With `k == 0`
/// `C` is left as it is (callers pass a zeroed `C` there).
#[allow(clippy::too_many_arguments)]
fn gemm<A: DevicePtr<f32>, B: DevicePtr<f32>, C: DevicePtrMut<f32>>(
    blas: &CudaBlas,
    (m, n, k): (usize, usize, usize),
    a: &A,
    a_t: bool,
    b: &B,
    b_t: bool,
    c: &mut C,
    beta: f32,
) -> Result<()> {
    if m == 0 || n == 0 || k == 0 {
        return Ok(());
    }
    if a.len() < m * k || b.len() < k * n || c.len() < m * n {
        candle_core::bail!("fused recurrence (CUDA): GEMM operands smaller than {m}x{k} · {k}x{n}");
    }
    let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
    let cfg = GemmConfig {
        transa: op(b_t),
        transb: op(a_t),
        m: int(n)?,
        n: int(m)?,
        k: int(k)?,
        alpha: 1.0f32,
        lda: int(if b_t { k } else { n })?,
        ldb: int(if a_t { m } else { k })?,
        beta,
        ldc: int(n)?,
    };
    // SAFETY: the operands hold at least the elements the configuration reads and writes
    // (checked above).
    unsafe { blas.gemm(cfg, b, a, c) }.w()?;
    Ok(())
}

/// Time indices in the forward processing order.
fn order(seq_len: usize, reverse: bool) -> Vec<usize> {
    if reverse {
        (0..seq_len).rev().collect()
    } else {
        (0..seq_len).collect()
    }
}

/// Each row's length as the kernels read it (the whole sequence without lengths).
fn upload_lengths(dev: &CudaDevice, d: &Dims, lengths: Option<&[usize]>) -> Result<CudaSlice<i32>> {
    let mut lens: Vec<i32> = match lengths {
        Some(l) if l.len() == d.batch => l.iter().map(|&v| int(v.min(d.seq_len))).collect::<Result<_>>()?,
        Some(l) => candle_core::bail!("fused recurrence (CUDA): {} lengths for a batch of {}", l.len(), d.batch),
        None => vec![int(d.seq_len)?; d.batch],
    };
    if lens.is_empty() {
        lens.push(0);
    }
    dev.clone_htod(&lens)
}

/// Sizes of one op as kernel arguments.
struct Ints {
    seq_len: i32,
    batch: i32,
    hidden: i32,
    h_out: i32,
    bias: i32,
    proj: i32,
    relu: i32,
}

impl Ints {
    fn new(d: &Dims) -> Result<Self> {
        // The kernels index (n, j) pairs and time offsets with 32-bit ints, element offsets with 64.
        int(d.batch * d.gates().max(d.h_out))?;
        Ok(Ints {
            seq_len: int(d.seq_len)?,
            batch: int(d.batch)?,
            hidden: int(d.hidden)?,
            h_out: int(d.h_out)?,
            bias: d.bias as i32,
            proj: d.proj as i32,
            relu: (d.kind == CellKind::RnnRelu) as i32,
        })
    }
}

/// Views of the packed parameters: W_ih (G, I), b_ih (G), W_hh (G, H_out), b_hh (G),
/// W_hr (H_out, H) (biases only with `bias`, W_hr only with a projection).
struct Params<'a> {
    w_ih: CudaView<'a, f32>,
    b_ih: Option<CudaView<'a, f32>>,
    w_hh: CudaView<'a, f32>,
    b_hh: Option<CudaView<'a, f32>>,
    w_hr: Option<CudaView<'a, f32>>,
}

impl<'a> Params<'a> {
    /// Splits `p`, whose length the caller has checked.
    fn new(p: &CudaView<'a, f32>, d: &Dims, input_size: usize) -> Self {
        let g = d.gates();
        let mut at = 0;
        let mut take = |len: usize| {
            at += len;
            p.slice(at - len..at)
        };
        let w_ih = take(g * input_size);
        let b_ih = d.bias.then(|| take(g));
        let w_hh = take(g * d.h_out);
        let b_hh = d.bias.then(|| take(g));
        let w_hr = d.proj.then(|| take(d.h_out * d.hidden));
        Params { w_ih, b_ih, w_hh, b_hh, w_hr }
    }

    /// Pushes b_ih, b_hh and the bias flag (the placeholder for absent biases, never read).
    fn push_biases<'b>(&'b self, b: &mut LaunchArgs<'b>, placeholder: &'b CudaSlice<f32>, flag: &'b i32) {
        for bias in [&self.b_ih, &self.b_hh] {
            match bias {
                Some(v) => b.arg(v),
                None => b.arg(placeholder),
            };
        }
        b.arg(flag);
    }
}

/// Pushes `buf`, or the placeholder where the kernel's flags say the buffer is not used.
fn push_opt<'b>(b: &mut LaunchArgs<'b>, buf: Option<&'b mut CudaSlice<f32>>, placeholder: &'b CudaSlice<f32>) {
    match buf {
        Some(v) => b.arg(v),
        None => b.arg(placeholder),
    };
}

/// Pushes a saved buffer the kernel reads (the placeholder where this kind has none).
fn push_saved<'b>(b: &mut LaunchArgs<'b>, buf: Option<&'b CudaSlice<f32>>, placeholder: &'b CudaSlice<f32>) {
    match buf {
        Some(v) => b.arg(v),
        None => b.arg(placeholder),
    };
}

/// Checks the element counts of the op's inputs.
fn check_lens(found: &[(usize, usize)]) -> Result<()> {
    if let Some((found, want)) = found.iter().find(|(f, w)| f != w) {
        candle_core::bail!("fused recurrence (CUDA): input of {found} elements, expected {want}");
    }
    Ok(())
}

/// The forward pass of `op` on CUDA (its `cuda_fwd`): inputs x (T*N*I), the packed params and
/// the packed initial state; returns the packed result (output, h_n, c_n) and, when `op.save`,
/// leaves an `Arc<CudaSaved>` in `op.saved` for [`backward`].
pub(super) fn forward(
    op: &FusedRecurrence,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = s1.device().clone();
    let (x, params, state0) = (view(s1, l1)?, view(s2, l2)?, view(s3, l3)?);
    let d = op.dims;
    let (n, h, ho, g, i) = (d.batch, d.hidden, d.h_out, d.gates(), op.input_size);
    let tn = d.seq_len * n;
    check_lens(&[
        (x.len(), tn * i),
        (params.len(), op.input_params_len() + d.params_len()),
        (state0.len(), d.state_len()),
    ])?;
    let ints = Ints::new(&d)?;
    let p = Params::new(&params, &d, i);
    let lengths = upload_lengths(&dev, &d, op.lengths.as_deref())?;
    let blas = dev.cublas_handle();
    let placeholder = zeros(&dev, 1)?;
    let save = op.save as i32;

    // The input projection of all steps (b_ih is added by the step kernels).
    let mut gi = zeros(&dev, tn * g)?;
    gemm(&blas, (tn, g, i), &x, false, &p.w_ih, true, &mut gi, 0.0)?;
    // The running state lives where h_n and c_n end up; state0 has their layout.
    let mut result = dev.alloc_zeros::<f32>(d.result_len())?;
    let state = tn * ho..tn * ho + n * ho;
    dev.memcpy_dtod(&state0, &mut result.slice_mut(tn * ho..))?;
    let mut gh = zeros(&dev, n * g)?;
    let mut hh_step = d.proj.then(|| zeros(&dev, n * h)).transpose()?;
    let mut hproj = d.proj.then(|| zeros(&dev, n * ho)).transpose()?;
    let mut saved = op.save.then(|| CudaSaved::new(&dev, &d)).transpose()?;

    let step_name = match d.kind {
        CellKind::Lstm => "seqmodels_lstm_forward_step",
        CellKind::Gru => "seqmodels_gru_forward_step",
        CellKind::RnnTanh | CellKind::RnnRelu => "seqmodels_rnn_forward_step",
    };
    let step = dev.get_or_load_custom_func(step_name, MODULE, PTX)?;
    let commit = dev.get_or_load_custom_func("seqmodels_proj_commit", MODULE, PTX)?;

    for t in order(d.seq_len, op.reverse) {
        let ti = int(t)?;
        if let Some(s) = saved.as_mut() {
            dev.memcpy_dtod(&result.slice(state.clone()), &mut s.h_prev.slice_mut(t * n * ho..(t + 1) * n * ho))?;
        }
        gemm(&blas, (n, g, ho), &result.slice(state.clone()), false, &p.w_hh, true, &mut gh, 0.0)?;
        let mut b = step.builder();
        b.arg(&gi).arg(&gh);
        p.push_biases(&mut b, &placeholder, &ints.bias);
        b.arg(&lengths).arg(&ti).arg(&ints.seq_len).arg(&ints.batch).arg(&ints.hidden);
        match d.kind {
            CellKind::Lstm => {
                b.arg(&ints.h_out).arg(&ints.proj).arg(&save).arg(&mut result);
                push_opt(&mut b, hh_step.as_mut(), &placeholder);
                match saved.as_mut() {
                    Some(s) => {
                        b.arg(&mut s.act);
                        push_opt(&mut b, s.c_prev.as_mut(), &placeholder);
                        push_opt(&mut b, s.tanh_c.as_mut(), &placeholder);
                        push_opt(&mut b, s.hh.as_mut(), &placeholder);
                    }
                    None => {
                        b.arg(&placeholder).arg(&placeholder).arg(&placeholder).arg(&placeholder);
                    }
                }
            }
            CellKind::Gru => {
                b.arg(&save).arg(&mut result);
                match saved.as_mut() {
                    Some(s) => {
                        b.arg(&mut s.act);
                        push_opt(&mut b, s.ghn.as_mut(), &placeholder);
                    }
                    None => {
                        b.arg(&placeholder).arg(&placeholder);
                    }
                }
            }
            CellKind::RnnTanh | CellKind::RnnRelu => {
                b.arg(&ints.relu).arg(&save).arg(&mut result);
                match saved.as_mut() {
                    Some(s) => b.arg(&mut s.act),
                    None => b.arg(&placeholder),
                };
            }
        }
        launch(b, n * h)?;
        if let (Some(w_hr), Some(hh_step), Some(hproj)) = (&p.w_hr, &hh_step, hproj.as_mut()) {
            gemm(&blas, (n, ho, h), hh_step, false, w_hr, true, hproj, 0.0)?;
            let mut b = commit.builder();
            b.arg(&*hproj).arg(&lengths).arg(&ti).arg(&ints.seq_len).arg(&ints.batch).arg(&ints.h_out);
            b.arg(&mut result);
            launch(b, n * ho)?;
        }
    }
    if let Some(s) = saved {
        *op.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(Arc::new(s)));
    }
    Ok((CudaStorage::wrap_cuda_slice(result, dev), d.result_shape()))
}

/// The backward pass of one [`FusedRecurrence`] on CUDA, as a custom op over (x, params,
/// grad_res) whose result packs `[dx | dparams | dstate0]` (dstate0 only with `state_grad`); it
/// reads the device buffers the forward pass saved.
struct CudaBackward {
    dims: Dims,
    lengths: Option<Vec<usize>>,
    reverse: bool,
    state_grad: bool,
    input_size: usize,
    /// Elements of W_ih and b_ih at the head of the packed params.
    input_params_len: usize,
    saved: Arc<CudaSaved>,
}

impl CudaBackward {
    /// Elements of the packed result.
    fn result_len(&self) -> usize {
        let d = &self.dims;
        let state = if self.state_grad { d.state_len() } else { 0 };
        d.seq_len * d.batch * self.input_size + self.input_params_len + d.params_len() + state
    }
}

impl CustomOp3 for CudaBackward {
    fn name(&self) -> &'static str {
        "seqmodels-fused-recurrence-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("fused recurrence: the CUDA backward op runs only on CUDA")
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let out = self.run(s1.device(), &view(s1, l1)?, &view(s2, l2)?, &view(s3, l3)?)?;
        Ok((CudaStorage::wrap_cuda_slice(out, s1.device().clone()), Shape::from(self.result_len())))
    }
}

impl CudaBackward {
    /// BPTT from the gradient of the result `dres` (output, h_n, c_n).
    fn run(
        &self,
        dev: &CudaDevice,
        x: &CudaView<f32>,
        params: &CudaView<f32>,
        dres: &CudaView<f32>,
    ) -> Result<CudaSlice<f32>> {
        let d = self.dims;
        let (n, h, ho, g, i) = (d.batch, d.hidden, d.h_out, d.gates(), self.input_size);
        let tn = d.seq_len * n;
        check_lens(&[
            (x.len(), tn * i),
            (params.len(), self.input_params_len + d.params_len()),
            (dres.len(), d.result_len()),
        ])?;
        let ints = Ints::new(&d)?;
        let p = Params::new(params, &d, i);
        let lengths = upload_lengths(dev, &d, self.lengths.as_deref())?;
        let blas = dev.cublas_handle();
        let placeholder = zeros(dev, 1)?;
        let s = &*self.saved;
        let (lstm, gru) = (d.kind == CellKind::Lstm, d.kind == CellKind::Gru);

        // The recurrence's seeds: the gradients of h_n and c_n.
        let end = tn * ho;
        let mut dh = zeros(dev, n * ho)?;
        dev.memcpy_dtod(&dres.slice(end..end + n * ho), &mut dh)?;
        let mut dc = lstm.then(|| zeros(dev, n * h)).transpose()?;
        if let Some(dc) = dc.as_mut() {
            dev.memcpy_dtod(&dres.slice(end + n * ho..end + n * ho + n * h), dc)?;
        }
        // Gate gradients of all steps: dgi for the input side; GRU's hidden side differs (n gate).
        let mut dgi = zeros(dev, tn * g)?;
        let mut dgh = gru.then(|| zeros(dev, tn * g)).transpose()?;
        let mut dproj = d.proj.then(|| zeros(dev, tn * ho)).transpose()?;
        let mut dhh = d.proj.then(|| zeros(dev, n * h)).transpose()?;

        let step_name = match d.kind {
            CellKind::Lstm => "seqmodels_lstm_backward_step",
            CellKind::Gru => "seqmodels_gru_backward_step",
            CellKind::RnnTanh | CellKind::RnnRelu => "seqmodels_rnn_backward_step",
        };
        let step = dev.get_or_load_custom_func(step_name, MODULE, PTX)?;
        let proj_step = dev.get_or_load_custom_func("seqmodels_proj_backward_step", MODULE, PTX)?;

        for t in order(d.seq_len, self.reverse).into_iter().rev() {
            let ti = int(t)?;
            if let (Some(dproj), Some(dhh), Some(w_hr)) = (dproj.as_mut(), dhh.as_mut(), &p.w_hr) {
                let mut b = proj_step.builder();
                b.arg(dres).arg(&lengths).arg(&ti).arg(&ints.batch).arg(&ints.h_out).arg(&mut dh).arg(&mut *dproj);
                launch(b, n * ho)?;
                gemm(&blas, (n, h, ho), &dproj.slice(t * n * ho..(t + 1) * n * ho), false, w_hr, false, dhh, 0.0)?;
            }
            let mut b = step.builder();
            b.arg(dres).arg(&lengths).arg(&ti).arg(&ints.batch).arg(&ints.hidden);
            match d.kind {
                CellKind::Lstm => {
                    b.arg(&ints.proj);
                    push_saved(&mut b, dhh.as_ref(), &placeholder);
                    b.arg(&mut dh);
                    push_opt(&mut b, dc.as_mut(), &placeholder);
                    b.arg(&s.act);
                    push_saved(&mut b, s.c_prev.as_ref(), &placeholder);
                    push_saved(&mut b, s.tanh_c.as_ref(), &placeholder);
                    b.arg(&mut dgi);
                }
                CellKind::Gru => {
                    b.arg(&mut dh).arg(&s.act);
                    push_saved(&mut b, s.ghn.as_ref(), &placeholder);
                    b.arg(&s.h_prev).arg(&mut dgi);
                    push_opt(&mut b, dgh.as_mut(), &placeholder);
                }
                CellKind::RnnTanh | CellKind::RnnRelu => {
                    b.arg(&ints.relu).arg(&mut dh).arg(&s.act).arg(&mut dgi);
                }
            }
            launch(b, n * h)?;
            // dh (of the state before step t) += dgates_h W_hh.
            let dg_t = dgh.as_ref().unwrap_or(&dgi).slice(t * n * g..(t + 1) * n * g);
            gemm(&blas, (n, ho, g), &dg_t, false, &p.w_hh, false, &mut dh, 1.0)?;
        }

        // The packed result: dx, then the parameters' gradients in their packed order, then
        // dstate0. Each product runs once over all T*N rows.
        let mut out = dev.alloc_zeros::<f32>(self.result_len())?;
        let ones = dev.clone_htod(&vec![1f32; tn.max(1)])?;
        let dg_h = dgh.as_ref().unwrap_or(&dgi);
        let mut at = 0;
        let mut next = |len: usize| {
            at += len;
            at - len..at
        };
        let r = next(tn * i);
        gemm(&blas, (tn, i, g), &dgi, false, &p.w_ih, false, &mut out.slice_mut(r), 0.0)?;
        let r = next(g * i);
        gemm(&blas, (g, i, tn), &dgi, true, x, false, &mut out.slice_mut(r), 0.0)?;
        if d.bias {
            let r = next(g);
            gemm(&blas, (1, g, tn), &ones, false, &dgi, false, &mut out.slice_mut(r), 0.0)?;
        }
        let r = next(g * ho);
        gemm(&blas, (g, ho, tn), dg_h, true, &s.h_prev, false, &mut out.slice_mut(r), 0.0)?;
        if d.bias {
            let r = next(g);
            gemm(&blas, (1, g, tn), &ones, false, dg_h, false, &mut out.slice_mut(r), 0.0)?;
        }
        if let (Some(dproj), Some(hh)) = (&dproj, &s.hh) {
            let r = next(ho * h);
            gemm(&blas, (ho, h, tn), dproj, true, hh, false, &mut out.slice_mut(r), 0.0)?;
        }
        if self.state_grad {
            let r = next(n * ho);
            dev.memcpy_dtod(&dh.slice(..n * ho), &mut out.slice_mut(r))?;
            if let Some(dc) = &dc {
                let r = next(n * h);
                dev.memcpy_dtod(&dc.slice(..n * h), &mut out.slice_mut(r))?;
            }
        }
        Ok(out)
    }
}

/// The backward pass of `op` on CUDA (its `bwd` on a CUDA tensor): runs [`CudaBackward`] on the
/// buffers the forward pass saved and splits its packed result into the gradients of x, the
/// params and (when `state_grad`) the initial state.
pub(super) fn backward(
    op: &FusedRecurrence,
    x: &Tensor,
    params: &Tensor,
    grad_res: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let saved = {
        let guard = op.saved.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref().and_then(|s| s.downcast_ref::<Arc<CudaSaved>>()) {
            Some(s) => s.clone(),
            None => candle_core::bail!("fused recurrence (CUDA): backward without a saved forward pass"),
        }
    };
    let d = op.dims;
    let bw = CudaBackward {
        dims: d,
        lengths: op.lengths.clone(),
        reverse: op.reverse,
        state_grad: op.state_grad,
        input_size: op.input_size,
        input_params_len: op.input_params_len(),
        saved,
    };
    let (x_len, p_len) = (x.elem_count(), params.elem_count());
    // Detached: the packed gradients are not differentiated again.
    let (xd, pd, gd) = (x.detach().contiguous()?, params.detach().contiguous()?, grad_res.detach().contiguous()?);
    let packed = xd.apply_op3_arc(&pd, &gd, Arc::new(Box::new(bw)))?;
    let dx = packed.narrow(0, 0, x_len)?.reshape(x.shape())?;
    let dparams = packed.narrow(0, x_len, p_len)?.reshape(params.shape())?;
    let dstate0 = match op.state_grad {
        true => Some(packed.narrow(0, x_len + p_len, d.state_len())?),
        false => None,
    };
    Ok((Some(dx), Some(dparams), dstate0))
}
