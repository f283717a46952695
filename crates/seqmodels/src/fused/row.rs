//! The fused gate pass of one batch row over a range of hidden units, and its gradients: the
//! recurrence driver ([`super::driver`]) runs both, the reduced-precision inference layers
//! ([`crate::quantized`]) the gate pass; in f32 compiled for the detected instruction set, or
//! generic with exact activations.

use super::real::{Activation, Fast, Real};
use super::sequence::Biases;
use super::{gru, lstm, rnn};
use crate::config::CellKind;
use crate::simd::{simd_variants, Simd};

/// Where the gate pass of one row writes what backward needs besides h': the gate
/// activations (GRU uses three, RNN none), tanh(c') (LSTM) and the hidden part of n (GRU).
pub(crate) struct RowOut<'a, T> {
    pub act: [&'a mut [T]; 4],
    pub tanh_c: &'a mut [T],
    pub ghn: &'a mut [T],
}

/// One row's inputs and outputs of the gate pass, over the units `u0..u0 + h_next.len()`.
pub(crate) struct GateRow<'a, T> {
    pub kind: CellKind,
    /// Those units' gate columns of the recurrent product, gate after gate.
    pub gh: &'a [T],
    /// The same of the input projection, gate q starting at `q * gx_stride`.
    pub gx: &'a [T],
    /// The distance between two gates in `gx`: the units' count when it holds those units'
    /// columns gate after gate, H when it is a full row of G starting at unit u0.
    pub gx_stride: usize,
    pub biases: &'a Biases<T>,
    pub u0: usize,
    /// h before the step, those units (GRU; unused otherwise).
    pub h_prev: &'a [T],
    /// c on entry, c' on exit (LSTM; unused otherwise).
    pub c: &'a mut [T],
    pub out: RowOut<'a, T>,
    /// h' of those units (LSTM: o * tanh(c'), before any projection).
    pub h_next: &'a mut [T],
}

/// The fused gate pass of one row: the pre-activation sums (recurrent part, input part, biases),
/// the activations and the state update, which writes h' (and c'); vectorised for `simd`, or
/// portable without one.
pub(crate) fn gate_pass(simd: Option<Simd>, row: GateRow<f32>) {
    match simd {
        Some(s) => gate_pass_simd(s, row),
        None => forward_gates::<f32, Fast>(row),
    }
}

simd_variants! {
    fn gate_pass_simd<'a>(row: GateRow<'a, f32>) {
        forward_gates::<f32, Fast>(row)
    }
}

/// The gate pass with the activations `A`, for any float type.
#[inline(always)]
pub(crate) fn forward_gates<T: Real, A: Activation<T>>(row: GateRow<T>) {
    let GateRow { kind, gh, gx, gx_stride, biases, u0, h_prev, c, out, h_next } = row;
    let nu = h_next.len();
    let h = biases.sum.len() / kind.num_gates();
    // Gate q of my units: in my gate columns of a product (stride nu), and in a full row of G
    // (the biases, stride h from u0).
    fn of_gates<const Q: usize, T>(mine: &[T], stride: usize, nu: usize) -> [&[T]; Q] {
        std::array::from_fn(|q| &mine[q * stride..q * stride + nu])
    }
    fn of_units<const Q: usize, T>(row: &[T], h: usize, u0: usize, nu: usize) -> [&[T]; Q] {
        std::array::from_fn(|q| &row[q * h + u0..q * h + u0 + nu])
    }
    match kind {
        CellKind::Lstm => lstm::forward_row::<T, A>(
            of_gates(gh, nu, nu),
            of_gates(gx, gx_stride, nu),
            of_units(&biases.sum, h, u0, nu),
            out.act,
            c,
            out.tanh_c,
            h_next,
        ),
        CellKind::Gru => {
            let [r, z, n, _] = out.act;
            gru::forward_row::<T, A>(
                of_gates(gx, gx_stride, nu),
                of_gates(gh, nu, nu),
                of_units(&biases.input, h, u0, nu),
                of_units(&biases.hidden, h, u0, nu),
                h_prev,
                [r, z, n],
                out.ghn,
                h_next,
            );
        }
        CellKind::RnnTanh | CellKind::RnnRelu => {
            let bias = of_units::<1, T>(&biases.sum, h, u0, nu)[0];
            rnn::forward_row::<T, A>(kind == CellKind::RnnRelu, &gh[..nu], &gx[..nu], bias, h_next)
        }
    }
}

/// One row's inputs and outputs of the gate gradients, over the units of `dh`. What a cell kind
/// does not use is empty.
pub(crate) struct GradRow<'a, T> {
    pub kind: CellKind,
    /// The gradient of h' of those units (LSTM: of o * tanh(c'), before any projection).
    pub dh: &'a [T],
    /// The gradient of c' on entry, of c on exit (LSTM).
    pub dc: &'a mut [T],
    /// The saved activations: the gates (LSTM four, GRU three), or h' (RNN, the first).
    pub act: [&'a [T]; 4],
    /// c before the step and tanh(c') (LSTM).
    pub c_prev: &'a [T],
    pub tanh_c: &'a [T],
    /// The hidden part of n and h before the step (GRU).
    pub ghn: &'a [T],
    pub h_prev: &'a [T],
    /// The gradients of the gates' pre-activations, gate after gate (LSTM four, RNN one); for
    /// GRU, of their input part (three).
    pub dgates: [&'a mut [T]; 4],
    /// The gradients of the hidden part of GRU's gates.
    pub dgh: [&'a mut [T]; 3],
    /// The gradient of h that bypasses the gates (GRU: z * dh).
    pub direct: &'a mut [T],
}

/// The gate gradients of one row, compiled for `simd`, or portable without one.
pub(crate) fn gate_grads(simd: Option<Simd>, row: GradRow<f32>) {
    match simd {
        Some(s) => gate_grads_simd(s, row),
        None => backward_gates(row),
    }
}

simd_variants! {
    fn gate_grads_simd<'a>(row: GradRow<'a, f32>) {
        backward_gates(row)
    }
}

/// The gate gradients of one row, for any float type: the cell kind's backward.
#[inline(always)]
pub(crate) fn backward_gates<T: Real>(row: GradRow<T>) {
    let GradRow { kind, dh, dc, act, c_prev, tanh_c, ghn, h_prev, dgates, dgh, direct } = row;
    match kind {
        CellKind::Lstm => lstm::backward_row(dh, dc, act, c_prev, tanh_c, dgates),
        CellKind::Gru => {
            let [ir, iz, inn, _] = dgates;
            gru::backward_row(dh, [act[0], act[1], act[2]], ghn, h_prev, [ir, iz, inn], dgh, direct)
        }
        CellKind::RnnTanh | CellKind::RnnRelu => {
            let [dpre, ..] = dgates;
            rnn::backward_row(kind == CellKind::RnnRelu, dh, act[0], dpre)
        }
    }
}
