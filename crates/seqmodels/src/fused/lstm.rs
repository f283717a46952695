//! LSTM over one batch row and a range of hidden units: gates i, f, g, o (PyTorch's order),
//! fused activation and state update, and their derivatives. Gate q of unit j is element j
//! of the q-th slice, so callers pass a whole row or one thread's share of the units.

use super::real::{Activation, Real};
use super::sequence::cut;

/// Forward. The pre-activation of gate q is `gh[q] + gi[q] + bias[q]`: the hidden part, the
/// input part and the two biases summed. `act` receives i, f, g, o; `c`: c on entry,
/// c' = f*c + i*g on exit; writes tanh(c') and hh = o*tanh(c') (before projection).
#[inline(always)]
pub(crate) fn forward_row<T: Real, A: Activation<T>>(
    gh: [&[T]; 4],
    gi: [&[T]; 4],
    bias: [&[T]; 4],
    act: [&mut [T]; 4],
    c: &mut [T],
    tanh_c: &mut [T],
    hh: &mut [T],
) {
    // Every slice cut to the same length up front: no bounds checks left in the loop, which
    // would keep it from vectorising.
    let n = c.len();
    let (gh, gi, bias) = (cut(gh, n), cut(gi, n), cut(bias, n));
    let [ai, af, ag, ao] = act.map(|s| &mut s[..n]);
    let (tanh_c, hh) = (&mut tanh_c[..n], &mut hh[..n]);
    // Two passes: the gates, then the state. One loop doing both is too long for the core to
    // overlap its iterations, and each waits on its own chain of exp, divide, exp, divide.
    for j in 0..n {
        let pre = |q: usize| gh[q][j] + gi[q][j] + bias[q][j];
        (ai[j], af[j], ag[j], ao[j]) = (A::sigmoid(pre(0)), A::sigmoid(pre(1)), A::tanh(pre(2)), A::sigmoid(pre(3)));
    }
    for j in 0..n {
        let cj = af[j] * c[j] + ai[j] * ag[j];
        let tc = A::tanh(cj);
        c[j] = cj;
        tanh_c[j] = tc;
        hh[j] = ao[j] * tc;
    }
}

/// Backward. `dhh`: gradient of hh; `dc`: gradient of c' on entry, of c on exit; `act`,
/// `c_prev`, `tanh_c`: saved by forward. Writes the gradients of the pre-activations.
#[inline(always)]
pub(crate) fn backward_row<T: Real>(
    dhh: &[T],
    dc: &mut [T],
    act: [&[T]; 4],
    c_prev: &[T],
    tanh_c: &[T],
    dpre: [&mut [T]; 4],
) {
    let (one, n) = (T::one(), dc.len());
    // Same lengths up front, as in forward.
    let [ai, af, ag, ao] = act.map(|s| &s[..n]);
    let [di, df, dg, d_o] = dpre.map(|s| &mut s[..n]);
    let (dhh, c_prev, tanh_c) = (&dhh[..n], &c_prev[..n], &tanh_c[..n]);
    for j in 0..n {
        let (i, f, g, o, tc) = (ai[j], af[j], ag[j], ao[j], tanh_c[j]);
        let dct = dc[j] + dhh[j] * o * (one - tc * tc);
        d_o[j] = dhh[j] * tc * o * (one - o);
        di[j] = dct * g * i * (one - i);
        df[j] = dct * c_prev[j] * f * (one - f);
        dg[j] = dct * i * (one - g * g);
        dc[j] = dct * f;
    }
}
