//! One layer and direction of a fused recurrence: its sizes, options and buffers (what forward
//! saves for backward, the gradients), and the weight gradients over all steps that close
//! backpropagation through time. The loop itself is [`super::driver`].

use super::gemm::{as_is, matmul, strided, transposed, Init};
use super::real::Real;
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

/// The `Q` gate slices of a row, mutable.
#[inline(always)]
pub(crate) fn gates_mut<const Q: usize, T>(row: &mut [T]) -> [&mut [T]; Q] {
    let w = row.len() / Q;
    let mut chunks = row.chunks_exact_mut(w);
    std::array::from_fn(|_| chunks.next().expect("row holds Q gates"))
}

/// The layer input and the parameters of its projection: the driver computes
/// `x W_ih^T + b_ih` (see [`super::engine::Engine::input_per_step`]).
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
    /// The gate gradients (of the input part, for GRU) gate-major: (G, T*N), row j holding gate
    /// column j of every step and sequence. The weight gradients take them in this layout as
    /// their left operand, which the `gemm` crate reads without repacking.
    pub gi: Vec<T>,
    /// The op's packed params: zeros where the input side's go (the caller's to fill), then
    /// the recurrent ones.
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

/// The packed recurrent parameters, apart.
pub(crate) struct Params<'a, T> {
    /// (G, H_out).
    pub w_hh: &'a [T],
    /// (G) when the layer has biases.
    pub b_hh: Option<&'a [T]>,
    /// (H_out, H) with a projection.
    pub w_hr: Option<&'a [T]>,
}

impl Sequence<'_> {
    /// Whether row n is within its length at time t.
    pub fn valid(&self, t: usize, n: usize) -> bool {
        self.lengths.is_none_or(|l| t < l[n])
    }

    /// How many rows from the first hold every row within its length at time t (the last such
    /// row + 1): the per-step products skip the rest, which have ended (all of them past the
    /// shortest sequences when the lengths are sorted in decreasing order, as packing needs).
    pub fn active_rows(&self, t: usize) -> usize {
        match self.lengths {
            None => self.dims.batch,
            Some(l) => l.iter().rposition(|&len| t < len).map_or(0, |last| last + 1),
        }
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

    /// W_hh, b_hh and W_hr of the packed recurrent parameters.
    pub fn split_params<'p, T>(&self, params: &'p [T]) -> Params<'p, T> {
        let d = &self.dims;
        let (w_hh, rest) = params.split_at(d.gates() * d.h_out);
        let (b_hh, rest) = if d.bias { (Some(&rest[..d.gates()]), &rest[d.gates()..]) } else { (None, rest) };
        Params { w_hh, b_hh, w_hr: d.proj.then_some(rest) }
    }

    /// dW_hh, db_hh and dW_hr as single GEMMs over all time steps into `dparams` (packed like
    /// the params, [`Dims::params_len`] long), from the gradients of the hidden part of the gates
    /// `dgh` (G, T*N: gate-major, see [`Grads::gi`]), of the projected outputs `dproj` (T, N, P;
    /// empty without projection) and what forward saved. db_hh is `dgh_sums` when the caller
    /// summed dgh's rows already.
    pub fn weight_grads<T: Real>(
        &self,
        dparams: &mut [T],
        (dgh, dproj): (&[T], &[T]),
        (saved, forward): (&Saved<T>, Option<Forward<T>>),
        dgh_sums: Option<&[T]>,
    ) {
        let d = self.dims;
        let (h, ho, g, tn) = (d.hidden, d.h_out, d.gates(), d.seq_len * d.batch);
        let (dw_hh, rest) = dparams.split_at_mut(g * ho);
        match forward.filter(|_| saved.h_prev_in_output()) {
            None => matmul((g, ho, tn), dw_hh, Init::Zero, as_is(dgh), as_is(&saved.h_prev), self.threads),
            Some(f) => self.dw_hh_from_output(dw_hh, dgh, f),
        }
        let rest = if d.bias {
            let (db, rest) = rest.split_at_mut(g);
            match dgh_sums {
                Some(sums) => db.copy_from_slice(sums),
                None => add_row_sums(db, dgh),
            }
            rest
        } else {
            rest
        };
        if d.proj {
            matmul((ho, h, tn), rest, Init::Zero, transposed(dproj), as_is(&saved.hh), self.threads);
        }
    }

    /// dW_hh = sum over steps of dgh[t]^T h_prev[t], where h before each step is the output of
    /// the step before it in processing order, and h0 before the first.
    fn dw_hh_from_output<T: Real>(&self, dw_hh: &mut [T], dgh: &[T], f: Forward<T>) {
        let d = self.dims;
        let (m, ho, g, steps) = (d.batch, d.h_out, d.gates(), d.seq_len);
        let (out, h0) = (&f.result[..steps * m * ho], &f.state0[..m * ho]);
        // Steps after the first in processing order (columns of dgh), against the outputs one
        // step before them.
        let (tn, rows) = (steps * m, (steps - 1) * m);
        let (later, first, earlier) = match self.reverse {
            false => (&dgh[m..], dgh, &out[..rows * ho]),
            true => (dgh, &dgh[rows..], &out[m * ho..]),
        };
        matmul((g, ho, rows), dw_hh, Init::Zero, strided(later, tn), as_is(earlier), self.threads);
        if h0.iter().any(|v| *v != T::zero()) {
            matmul((g, ho, m), dw_hh, Init::Accumulate, strided(first, tn), as_is(h0), self.threads);
        }
    }
}

/// `out[j]` += the sum of row j of `rows`, a row-major matrix of `out.len()` rows (a bias
/// gradient from gate-major gate gradients).
pub(crate) fn add_row_sums<T: Real>(out: &mut [T], rows: &[T]) {
    let width = rows.len() / out.len().max(1);
    for (sum, row) in out.iter_mut().zip(rows.chunks_exact(width.max(1))) {
        *sum = row.iter().fold(*sum, |acc, v| acc + *v);
    }
}
