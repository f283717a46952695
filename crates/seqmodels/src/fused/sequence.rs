//! The whole-sequence loops of the fused kernels, shared by the three cell kinds.
//!
//! Forward: per step one GEMM `gh = h W_hh^T` into a preallocated buffer, then one fused pass
//! over the gates (the sums with the input projection and both biases, activations and state
//! update), then, for LSTM with projection, one GEMM with W_hr. Backward (BPTT): per step one
//! fused pass computing the gate gradients and one GEMM `dh = dgates W_hh`; the weight gradients
//! are single GEMMs over all time steps at the end.

use super::gemm::{as_is, matmul, transposed, Init};
use super::real::{Exact, Real};
use super::{gru, lstm, rnn};
use crate::config::CellKind;

/// Sizes of one layer and direction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub seq_len: usize,
    pub batch: usize,
    pub hidden: usize,
    /// proj_size when projecting, else hidden.
    pub h_out: usize,
    pub proj: bool,
    pub bias: bool,
    pub kind: CellKind,
}

impl Dims {
    pub fn gates(&self) -> usize {
        self.kind.num_gates() * self.hidden
    }

    /// Elements of the op's result: output (T, N, H_out), h_n (N, H_out), c_n (N, H) for LSTM.
    pub fn result_len(&self) -> usize {
        let c = if self.kind.has_cell_state() { self.batch * self.hidden } else { 0 };
        (self.seq_len + 1) * self.batch * self.h_out + c
    }

    /// The shape the op gives its result: (T + 2, N, H) for LSTM without projection (output,
    /// h_n, c_n), (T + 1, N, H) for GRU and RNN, so that the output is one `narrow` of it (each
    /// view node costs candle's backward a zero-fill and an add of its size); flat with a
    /// projection, where c_n is wider than the rest.
    pub fn result_shape(&self) -> candle_core::Shape {
        match (self.kind.has_cell_state(), self.proj) {
            (_, true) => self.result_len().into(),
            (c, false) => (self.seq_len + 1 + usize::from(c), self.batch, self.h_out).into(),
        }
    }

    /// Elements of the initial state: h0 (N, H_out), then c0 (N, H) for LSTM.
    pub fn state_len(&self) -> usize {
        let c = if self.kind.has_cell_state() { self.batch * self.hidden } else { 0 };
        self.batch * self.h_out + c
    }

    /// Elements of the packed recurrent parameters: W_hh (G, H_out), b_hh (G), W_hr (P, H).
    pub fn params_len(&self) -> usize {
        let g = self.gates();
        g * self.h_out + if self.bias { g } else { 0 } + if self.proj { self.h_out * self.hidden } else { 0 }
    }
}

/// What backward needs from forward, each (T, N, width) in time order.
#[derive(Debug, Default)]
pub(crate) struct Saved<T> {
    /// h before each step (T, N, H_out).
    pub h_prev: Vec<T>,
    /// LSTM/GRU: gate activations (T, N, G); RNN: h' (T, N, H).
    pub act: Vec<T>,
    /// LSTM: c before each step and tanh(c') (T, N, H).
    pub c_prev: Vec<T>,
    pub tanh_c: Vec<T>,
    /// GRU: h W_hn^T + b_hn (T, N, H).
    pub ghn: Vec<T>,
    /// LSTM with projection: o*tanh(c') (T, N, H).
    pub hh: Vec<T>,
}

impl<T: Real> Saved<T> {
    /// Elements of each buffer for a forward pass of `d`, in field order.
    fn lengths(d: &Dims) -> [usize; 6] {
        let (tn, h) = (d.seq_len * d.batch, d.hidden);
        let only = |kind: bool, len: usize| if kind { len } else { 0 };
        [
            tn * d.h_out,
            tn * if d.kind.num_gates() == 1 { h } else { d.gates() },
            only(d.kind == CellKind::Lstm, tn * h),
            only(d.kind == CellKind::Lstm, tn * h),
            only(d.kind == CellKind::Gru, tn * h),
            only(d.proj, tn * h),
        ]
    }

    fn buffers(&mut self) -> [&mut Vec<T>; 6] {
        [&mut self.h_prev, &mut self.act, &mut self.c_prev, &mut self.tanh_c, &mut self.ghn, &mut self.hh]
    }

    /// Zeroed buffers for a forward pass of `d`.
    pub fn new(d: &Dims) -> Self {
        let mut saved = Saved::default();
        for (v, len) in saved.buffers().into_iter().zip(Self::lengths(d)) {
            *v = vec![T::zero(); len];
        }
        saved
    }

    /// Empty buffers with room for a forward pass of `d` that writes every element through
    /// their pointers (`as_mut_ptr`), skipping the zero-fill of [`Saved::new`] (megabytes).
    /// Without `h_prev` that buffer stays empty: backward reads h before each step from the
    /// output instead (see [`Saved::h_prev_in_output`]).
    pub fn unfilled(d: &Dims, h_prev: bool) -> Self {
        let mut saved = Saved::default();
        // `buffers` lists h_prev first: skipping it leaves it empty (and unallocated).
        for (v, len) in saved.buffers().into_iter().zip(Self::lengths(d)).skip(usize::from(!h_prev)) {
            *v = Vec::with_capacity(len);
        }
        saved
    }

    /// Exposes the elements of buffers made by [`Saved::unfilled`] for the same `d` (those it
    /// left empty stay empty).
    ///
    /// # Safety
    /// Every element of the others must have been written.
    pub unsafe fn assume_filled(&mut self, d: &Dims) {
        for (v, len) in self.buffers().into_iter().zip(Self::lengths(d)) {
            if v.capacity() >= len {
                v.set_len(len);
            }
        }
    }

    /// Whether forward left `h_prev` out, h before each step being the output of the step
    /// before it (every row runs the whole sequence).
    pub fn h_prev_in_output(&self) -> bool {
        self.h_prev.is_empty() && !self.act.is_empty()
    }
}

/// The `Q` gate slices of a row that stacks Q gates of equal width.
#[inline(always)]
pub(crate) fn gates<const Q: usize, T>(row: &[T]) -> [&[T]; Q] {
    let w = row.len() / Q;
    std::array::from_fn(|q| &row[q * w..(q + 1) * w])
}

/// The `Q` gate slices of a row, mutable.
#[inline(always)]
pub(crate) fn gates_mut<const Q: usize, T>(row: &mut [T]) -> [&mut [T]; Q] {
    let w = row.len() / Q;
    let mut chunks = row.chunks_exact_mut(w);
    std::array::from_fn(|_| chunks.next().expect("row holds Q gates"))
}

/// The layer input and the parameters of its projection: each runner computes
/// `x W_ih^T + b_ih` itself (the portable one as one GEMM over all steps, the threaded one step
/// by step, so that no (T, N, G) buffer is written and read back).
#[derive(Clone, Copy)]
pub(crate) struct InputSide<'a, T> {
    /// (T, N, I).
    pub x: &'a [T],
    /// (G, I).
    pub w_ih: &'a [T],
    /// (G) when the layer has biases.
    pub b_ih: Option<&'a [T]>,
    /// I.
    pub size: usize,
}

/// What backward may read of its forward pass besides [`Saved`]: the op's result (output, h_n,
/// c_n) and initial state (h0, c0).
#[derive(Clone, Copy)]
pub(crate) struct Forward<'a, T> {
    pub result: &'a [T],
    pub state0: &'a [T],
}

/// The biases as the row kernels take them, zeros where the layer has none: each part's own
/// (GRU keeps them apart for its n gate) and their sum (LSTM, RNN).
pub(crate) struct Biases<T> {
    pub input: Vec<T>,
    pub hidden: Vec<T>,
    pub sum: Vec<T>,
}

impl<T: Real> Biases<T> {
    /// From b_ih and b_hh (G each, when present) for `g` gate columns.
    pub fn new(g: usize, b_ih: Option<&[T]>, b_hh: Option<&[T]>) -> Self {
        let or_zero = |b: Option<&[T]>| b.map_or_else(|| vec![T::zero(); g], <[T]>::to_vec);
        let (input, hidden) = (or_zero(b_ih), or_zero(b_hh));
        let sum = input.iter().zip(&hidden).map(|(a, b)| *a + *b).collect();
        Biases { input, hidden, sum }
    }
}

/// The first `len` elements of each slice (the row kernels cut their inputs to one length, so
/// that no bounds check stays in their loops to keep them from vectorising).
#[inline(always)]
pub(crate) fn cut<const Q: usize, T>(parts: [&[T]; Q], len: usize) -> [&[T]; Q] {
    parts.map(|s| &s[..len])
}

/// Gradients of the op's three inputs.
pub(crate) struct Grads<T> {
    pub gi: Vec<T>,
    pub params: Vec<T>,
    pub state0: Vec<T>,
    /// The column sums of `gi` (db_ih) when the runner summed them as it went (GRU, where they
    /// differ from db_hh); else the op sums them.
    pub gi_sums: Option<Vec<T>>,
}

/// One layer and direction over the whole sequence.
pub(crate) struct Sequence<'a> {
    pub dims: Dims,
    pub lengths: Option<&'a [usize]>,
    pub reverse: bool,
    pub threads: usize,
    /// Whether the gradient of the initial state is wanted (else backward may skip it).
    pub state_grad: bool,
}

struct Params<'a, T> {
    w_hh: &'a [T],
    b_hh: Option<&'a [T]>,
    w_hr: Option<&'a [T]>,
}

impl Sequence<'_> {
    /// Whether row n is within its length at time t.
    pub fn valid(&self, t: usize, n: usize) -> bool {
        self.lengths.is_none_or(|l| t < l[n])
    }

    /// Time indices in processing order.
    pub fn order(&self) -> Vec<usize> {
        let t = self.dims.seq_len;
        if self.reverse {
            (0..t).rev().collect()
        } else {
            (0..t).collect()
        }
    }

    fn split_params<'p, T>(&self, params: &'p [T]) -> Params<'p, T> {
        let d = &self.dims;
        let (w_hh, rest) = params.split_at(d.gates() * d.h_out);
        let (b_hh, rest) = if d.bias { (Some(&rest[..d.gates()]), &rest[d.gates()..]) } else { (None, rest) };
        Params { w_hh, b_hh, w_hr: d.proj.then_some(rest) }
    }

    /// Runs the sequence. `gi` (T, N, G) holds x W_ih^T; `b_ih` its bias; `params` the packed
    /// recurrent parameters; `state0` h0 then c0. Returns the result (output, h_n, c_n) and,
    /// when `save`, what backward needs.
    pub fn forward<T: Real>(
        &self,
        gi: &[T],
        b_ih: Option<&[T]>,
        params: &[T],
        state0: &[T],
        save: bool,
    ) -> (Vec<T>, Option<Saved<T>>) {
        let d = self.dims;
        let (n_, h, ho, g) = (d.batch, d.hidden, d.h_out, d.gates());
        let p = self.split_params(params);
        let biases = Biases::new(g, b_ih, p.b_hh);
        let zero = T::zero();
        let mut result = vec![zero; d.result_len()];
        let mut hs = state0[..n_ * ho].to_vec();
        let mut c = state0[n_ * ho..].to_vec();
        let mut gh = vec![zero; n_ * g];
        let mut h_next = vec![zero; n_ * ho.max(h)];
        let mut hh = vec![zero; n_ * h];
        let mut tanh_c = vec![zero; n_ * h];
        let mut ghn = vec![zero; n_ * h];
        let mut act = vec![zero; g];
        let mut saved = save.then(|| Saved::new(&d));

        for t in self.order() {
            matmul((n_, g, ho), &mut gh, Init::Zero, as_is(&hs), transposed(p.w_hh), self.threads);
            let gi_t = &gi[t * n_ * g..(t + 1) * n_ * g];
            if let Some(s) = saved.as_mut() {
                s.h_prev[t * n_ * ho..(t + 1) * n_ * ho].copy_from_slice(&hs);
            }
            let rows = (0..n_).filter(|&n| self.valid(t, n));
            match d.kind {
                CellKind::Lstm => {
                    for n in rows.clone() {
                        let (gh_row, gi_row) = (&gh[n * g..(n + 1) * g], &gi_t[n * g..(n + 1) * g]);
                        let c_row = &mut c[n * h..(n + 1) * h];
                        let at = (t * n_ + n) * h;
                        if let Some(s) = saved.as_mut() {
                            s.c_prev[at..at + h].copy_from_slice(c_row);
                        }
                        let tc = &mut tanh_c[n * h..(n + 1) * h];
                        let hh_row = &mut hh[n * h..(n + 1) * h];
                        lstm::forward_row::<T, Exact>(
                            gates(gh_row),
                            gates(gi_row),
                            gates(&biases.sum),
                            gates_mut(&mut act),
                            c_row,
                            tc,
                            hh_row,
                        );
                        if let Some(s) = saved.as_mut() {
                            s.tanh_c[at..at + h].copy_from_slice(tc);
                            s.act[(t * n_ + n) * g..(t * n_ + n + 1) * g].copy_from_slice(&act);
                            if d.proj {
                                s.hh[at..at + h].copy_from_slice(hh_row);
                            }
                        }
                    }
                    let new_h: &[T] = match p.w_hr {
                        Some(w_hr) => {
                            matmul((n_, ho, h), &mut h_next, Init::Zero, as_is(&hh), transposed(w_hr), 1);
                            &h_next
                        }
                        None => &hh,
                    };
                    for n in rows {
                        hs[n * ho..(n + 1) * ho].copy_from_slice(&new_h[n * ho..(n + 1) * ho]);
                    }
                }
                CellKind::Gru => {
                    for n in rows.clone() {
                        let (a, b) = (n * g..(n + 1) * g, n * h..(n + 1) * h);
                        gru::forward_row::<T, Exact>(
                            gates(&gi_t[a.clone()]),
                            gates(&gh[a]),
                            gates(&biases.input),
                            gates(&biases.hidden),
                            &hs[b.clone()],
                            gates_mut(&mut act),
                            &mut ghn[b.clone()],
                            &mut h_next[b.clone()],
                        );
                        if let Some(s) = saved.as_mut() {
                            let at = (t * n_ + n) * h;
                            s.act[(t * n_ + n) * g..(t * n_ + n + 1) * g].copy_from_slice(&act);
                            s.ghn[at..at + h].copy_from_slice(&ghn[b.clone()]);
                        }
                        hs[b.clone()].copy_from_slice(&h_next[b]);
                    }
                }
                CellKind::RnnTanh | CellKind::RnnRelu => {
                    let relu = d.kind == CellKind::RnnRelu;
                    for n in rows.clone() {
                        let b = n * h..(n + 1) * h;
                        rnn::forward_row::<T, Exact>(
                            relu,
                            &gh[b.clone()],
                            &gi_t[b.clone()],
                            &biases.sum,
                            &mut h_next[b.clone()],
                        );
                        if let Some(s) = saved.as_mut() {
                            let at = (t * n_ + n) * h;
                            s.act[at..at + h].copy_from_slice(&h_next[b.clone()]);
                        }
                        hs[b.clone()].copy_from_slice(&h_next[b]);
                    }
                }
            }
            for n in (0..n_).filter(|&n| self.valid(t, n)) {
                let at = (t * n_ + n) * ho;
                result[at..at + ho].copy_from_slice(&hs[n * ho..(n + 1) * ho]);
            }
        }
        let end = d.seq_len * n_ * ho;
        result[end..end + n_ * ho].copy_from_slice(&hs);
        result[end + n_ * ho..].copy_from_slice(&c);
        (result, saved)
    }

    /// Backpropagation through time from the gradient of the result (output, h_n, c_n).
    pub fn backward<T: Real>(&self, dresult: &[T], params: &[T], saved: &Saved<T>) -> Grads<T> {
        let d = self.dims;
        let (n_, h, ho, g) = (d.batch, d.hidden, d.h_out, d.gates());
        let tn = d.seq_len * n_;
        let p = self.split_params(params);
        let zero = T::zero();
        let end = tn * ho;
        let dout = &dresult[..end];
        let mut dh = dresult[end..end + n_ * ho].to_vec();
        let mut dc = dresult[end + n_ * ho..].to_vec();
        let mut dgi = vec![zero; tn * g];
        let mut dgh_gru = if d.kind == CellKind::Gru { vec![zero; tn * g] } else { Vec::new() };
        let mut dproj = if d.proj { vec![zero; tn * ho] } else { Vec::new() };
        let mut dh_tot = vec![zero; n_ * ho];
        let mut dhh = vec![zero; n_ * h];
        let mut direct = vec![zero; n_ * ho];

        for t in self.order().into_iter().rev() {
            for n in 0..n_ {
                let (r, at) = (n * ho..(n + 1) * ho, (t * n_ + n) * ho);
                if self.valid(t, n) {
                    for j in 0..ho {
                        dh_tot[n * ho + j] = dh[n * ho + j] + dout[at + j];
                    }
                    direct[r].fill(zero);
                } else {
                    dh_tot[r.clone()].fill(zero);
                    direct[r.clone()].copy_from_slice(&dh[r]);
                }
            }
            let rows = (0..n_).filter(|&n| self.valid(t, n));
            match d.kind {
                CellKind::Lstm => {
                    let dhh: &[T] = match p.w_hr {
                        Some(w_hr) => {
                            dproj[t * n_ * ho..(t + 1) * n_ * ho].copy_from_slice(&dh_tot);
                            matmul((n_, h, ho), &mut dhh, Init::Zero, as_is(&dh_tot), as_is(w_hr), 1);
                            &dhh
                        }
                        None => &dh_tot,
                    };
                    for n in rows {
                        let (b, at) = (n * h..(n + 1) * h, (t * n_ + n) * h);
                        let ga = (t * n_ + n) * g;
                        lstm::backward_row(
                            &dhh[b.clone()],
                            &mut dc[b],
                            gates(&saved.act[ga..ga + g]),
                            &saved.c_prev[at..at + h],
                            &saved.tanh_c[at..at + h],
                            gates_mut(&mut dgi[ga..ga + g]),
                        );
                    }
                }
                CellKind::Gru => {
                    for n in rows {
                        let (b, at, ga) = (n * h..(n + 1) * h, (t * n_ + n) * h, (t * n_ + n) * g);
                        gru::backward_row(
                            &dh_tot[b.clone()],
                            gates(&saved.act[ga..ga + g]),
                            &saved.ghn[at..at + h],
                            &saved.h_prev[at..at + h],
                            gates_mut(&mut dgi[ga..ga + g]),
                            gates_mut(&mut dgh_gru[ga..ga + g]),
                            &mut direct[b],
                        );
                    }
                }
                CellKind::RnnTanh | CellKind::RnnRelu => {
                    let relu = d.kind == CellKind::RnnRelu;
                    for n in rows {
                        let (b, at) = (n * h..(n + 1) * h, (t * n_ + n) * h);
                        rnn::backward_row(relu, &dh_tot[b], &saved.act[at..at + h], &mut dgi[at..at + h]);
                    }
                }
            }
            let dgh = if d.kind == CellKind::Gru { &dgh_gru } else { &dgi };
            dh.copy_from_slice(&direct);
            let dgh_t = &dgh[t * n_ * g..(t + 1) * n_ * g];
            matmul((n_, ho, g), &mut dh, Init::Accumulate, as_is(dgh_t), as_is(p.w_hh), self.threads);
        }

        let dgh = if d.kind == CellKind::Gru { &dgh_gru } else { &dgi };
        let dparams = self.weight_grads(dgh, &dproj, (saved, None), None);
        let mut dstate0 = dh;
        dstate0.extend_from_slice(&dc);
        Grads { gi: dgi, params: dparams, state0: dstate0, gi_sums: None }
    }

    /// dW_hh, db_hh and dW_hr as single GEMMs over all time steps, from the gradients of the
    /// hidden part of the gates `dgh` (T, N, G), of the projected outputs `dproj` (T, N, P;
    /// empty without projection) and what forward saved; packed like the params. db_hh is
    /// `dgh_sums` when the caller summed dgh's columns already.
    pub fn weight_grads<T: Real>(
        &self,
        dgh: &[T],
        dproj: &[T],
        (saved, forward): (&Saved<T>, Option<Forward<T>>),
        dgh_sums: Option<&[T]>,
    ) -> Vec<T> {
        let d = self.dims;
        let (h, ho, g, tn) = (d.hidden, d.h_out, d.gates(), d.seq_len * d.batch);
        let zero = T::zero();
        let mut dparams = vec![zero; d.params_len()];
        let (dw_hh, rest) = dparams.split_at_mut(g * ho);
        match forward.filter(|_| saved.h_prev_in_output()) {
            None => matmul((g, ho, tn), dw_hh, Init::Zero, transposed(dgh), as_is(&saved.h_prev), self.threads),
            Some(f) => self.dw_hh_from_output(dw_hh, dgh, f),
        }
        let rest = if d.bias {
            let (db, rest) = rest.split_at_mut(g);
            match dgh_sums {
                Some(sums) => db.copy_from_slice(sums),
                None => add_column_sums(db, dgh),
            }
            rest
        } else {
            rest
        };
        if d.proj {
            matmul((ho, h, tn), rest, Init::Zero, transposed(dproj), as_is(&saved.hh), self.threads);
        }
        dparams
    }

    /// dW_hh = sum over steps of dgh[t]^T h_prev[t], where h before each step is the output of
    /// the step before it in processing order, and h0 before the first.
    fn dw_hh_from_output<T: Real>(&self, dw_hh: &mut [T], dgh: &[T], f: Forward<T>) {
        let d = self.dims;
        let (m, ho, g, steps) = (d.batch, d.h_out, d.gates(), d.seq_len);
        let (out, h0) = (&f.result[..steps * m * ho], &f.state0[..m * ho]);
        // Steps after the first in processing order, against the outputs one step before them.
        let rows = (steps - 1) * m;
        let (later, first, earlier) = match self.reverse {
            false => (&dgh[m * g..], &dgh[..m * g], &out[..rows * ho]),
            true => (&dgh[..rows * g], &dgh[rows * g..], &out[m * ho..]),
        };
        matmul((g, ho, rows), dw_hh, Init::Zero, transposed(later), as_is(earlier), self.threads);
        if h0.iter().any(|v| *v != T::zero()) {
            matmul((g, ho, m), dw_hh, Init::Accumulate, transposed(first), as_is(h0), self.threads);
        }
    }
}

/// `out` += the column sums of `rows`, a row-major matrix `out.len()` wide (a bias gradient).
pub(crate) fn add_column_sums<T: Real>(out: &mut [T], rows: &[T]) {
    for row in rows.chunks_exact(out.len()) {
        out.iter_mut().zip(row).for_each(|(a, b)| *a += *b);
    }
}
