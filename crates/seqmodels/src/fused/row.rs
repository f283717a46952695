//! The fused gate pass of one batch row over a range of hidden units, compiled for the
//! detected instruction set: the threaded f32 kernels and the reduced-precision inference
//! layers ([`crate::quantized`]) both run it.

use super::real::Fast;
use super::sequence::Biases;
use super::{gru, lstm, rnn};
use crate::config::CellKind;
use crate::simd::simd_variants;

/// Where the gate pass of one row writes what backward needs besides h': the gate
/// activations (GRU uses three, RNN none), tanh(c') (LSTM) and the hidden part of n (GRU).
pub(crate) struct RowOut<'a> {
    pub act: [&'a mut [f32]; 4],
    pub tanh_c: &'a mut [f32],
    pub ghn: &'a mut [f32],
}

simd_variants! {
    /// The fused gate pass of one row over a range of units `u0..u0 + h_next.len()`: the
    /// pre-activation sums (those units' gate columns `gh` of the recurrent product and `gx` of
    /// the input one, gate after gate, and the biases), the activations and the state update,
    /// which writes those units of h' (and c' in `c`).
    pub(crate) fn gate_pass<'a>(
        kind: CellKind,
        gh: &[f32],
        gx: &[f32],
        biases: &Biases<f32>,
        u0: usize,
        h_prev: &[f32],
        c: &mut [f32],
        out: RowOut<'a>,
        h_next: &mut [f32],
    ) {
        forward_gates(kind, gh, gx, biases, u0, h_prev, c, out, h_next)
    }
}

/// [`gate_pass`] without vector instructions, for a CPU without AVX2.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gate_pass_portable<'a>(
    kind: CellKind,
    gh: &[f32],
    gx: &[f32],
    biases: &Biases<f32>,
    u0: usize,
    h_prev: &[f32],
    c: &mut [f32],
    out: RowOut<'a>,
    h_next: &mut [f32],
) {
    forward_gates(kind, gh, gx, biases, u0, h_prev, c, out, h_next)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_gates<'a>(
    kind: CellKind,
    gh: &[f32],
    gx: &[f32],
    biases: &Biases<f32>,
    u0: usize,
    h_prev: &[f32],
    c: &mut [f32],
    out: RowOut<'a>,
    h_next: &mut [f32],
) {
    let nu = h_next.len();
    let h = biases.sum.len() / kind.num_gates();
    // Gate q of my units in my gate columns of a product, and in a full row of G (the biases).
    fn of_gates<const Q: usize>(mine: &[f32], nu: usize) -> [&[f32]; Q] {
        std::array::from_fn(|q| &mine[q * nu..(q + 1) * nu])
    }
    fn of_units<const Q: usize>(row: &[f32], h: usize, u0: usize, nu: usize) -> [&[f32]; Q] {
        std::array::from_fn(|q| &row[q * h + u0..q * h + u0 + nu])
    }
    match kind {
        CellKind::Lstm => lstm::forward_row::<f32, Fast>(
            of_gates(gh, nu),
            of_gates(gx, nu),
            of_units(&biases.sum, h, u0, nu),
            out.act,
            c,
            out.tanh_c,
            h_next,
        ),
        CellKind::Gru => {
            let [r, z, n, _] = out.act;
            gru::forward_row::<f32, Fast>(
                of_gates(gx, nu),
                of_gates(gh, nu),
                of_units(&biases.input, h, u0, nu),
                of_units(&biases.hidden, h, u0, nu),
                h_prev,
                [r, z, n],
                out.ghn,
                h_next,
            );
        }
        CellKind::RnnTanh | CellKind::RnnRelu => {
            let bias = of_units::<1>(&biases.sum, h, u0, nu)[0];
            rnn::forward_row::<f32, Fast>(kind == CellKind::RnnRelu, &gh[..nu], &gx[..nu], bias, h_next)
        }
    }
}
