//! LSTM rows: gates i, f, g, o (PyTorch's order), fused activation and state update, and
//! their derivatives. Each function handles one batch row of one time step.

use super::real::Real;

/// Forward of one row. `pre` = gi + gh (4H, gate pre-activations); writes the activations
/// back into `pre`, updates `c` in place (c' = f*c + i*g), and writes tanh(c') and
/// hh = o*tanh(c') (the output before any projection).
#[inline]
pub(crate) fn forward_row<T: Real>(pre: &mut [T], c: &mut [T], tanh_c: &mut [T], hh: &mut [T]) {
    let h = c.len();
    let (i, rest) = pre.split_at_mut(h);
    let (f, rest) = rest.split_at_mut(h);
    let (g, o) = rest.split_at_mut(h);
    for j in 0..h {
        let (ij, fj, gj, oj) = (i[j].sigmoid(), f[j].sigmoid(), g[j].tanh(), o[j].sigmoid());
        let cj = fj * c[j] + ij * gj;
        let tc = cj.tanh();
        (i[j], f[j], g[j], o[j]) = (ij, fj, gj, oj);
        c[j] = cj;
        tanh_c[j] = tc;
        hh[j] = oj * tc;
    }
}

/// Backward of one row. `dhh`: gradient of hh; `dc`: gradient of c' on entry, of c on exit;
/// `act`: the saved activations i, f, g, o; `c_prev`, `tanh_c`: the saved states.
/// Writes the gradient of the gate pre-activations into `dpre` (4H).
#[inline]
pub(crate) fn backward_row<T: Real>(dhh: &[T], dc: &mut [T], act: &[T], c_prev: &[T], tanh_c: &[T], dpre: &mut [T]) {
    let h = dc.len();
    let one = T::one();
    let (di, rest) = dpre.split_at_mut(h);
    let (df, rest) = rest.split_at_mut(h);
    let (dg, d_o) = rest.split_at_mut(h);
    for j in 0..h {
        let (ij, fj, gj, oj) = (act[j], act[h + j], act[2 * h + j], act[3 * h + j]);
        let tc = tanh_c[j];
        let dct = dc[j] + dhh[j] * oj * (one - tc * tc);
        d_o[j] = dhh[j] * tc * oj * (one - oj);
        di[j] = dct * gj * ij * (one - ij);
        df[j] = dct * c_prev[j] * fj * (one - fj);
        dg[j] = dct * ij * (one - gj * gj);
        dc[j] = dct * fj;
    }
}
