//! The fused gate pass of one batch row over a range of hidden units: the recurrence driver
//! ([`super::driver`]) and the reduced-precision inference layers ([`crate::quantized`]) both
//! run it, in f32 compiled for the detected instruction set, or generic with exact activations.

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
