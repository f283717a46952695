//! GRU over one batch row and a range of hidden units: gates r, z, n (PyTorch's order), with
//! n = tanh(gi_n + r * (h W_hn^T + b_hn)) and h' = (1-z)*n + z*h.

use super::real::{Activation, Real};
use super::sequence::cut;

/// Forward. `gi`, `gh`: input and hidden parts of the gates, without biases; `b_ih`, `b_hh`:
/// the biases of each part. Writes the activations r, z, n, the hidden part of n with its bias
/// (`ghn`, needed by backward) and h'.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_row<T: Real, A: Activation<T>>(
    gi: [&[T]; 3],
    gh: [&[T]; 3],
    b_ih: [&[T]; 3],
    b_hh: [&[T]; 3],
    h_prev: &[T],
    act: [&mut [T]; 3],
    ghn: &mut [T],
    h_next: &mut [T],
) {
    // Every slice cut to the same length up front: no bounds checks left in the loop, which
    // would keep it from vectorising.
    let len = h_prev.len();
    let (gi, gh, b_ih, b_hh) = (cut(gi, len), cut(gh, len), cut(b_ih, len), cut(b_hh, len));
    let [ar, az, an] = act.map(|s| &mut s[..len]);
    let (ghn, h_next) = (&mut ghn[..len], &mut h_next[..len]);
    // Two passes, r and z then n and h': shorter loops, whose iterations the core overlaps
    // (one loop would wait on a chain of exp, divide, exp, divide each time).
    for j in 0..len {
        ar[j] = A::sigmoid(gi[0][j] + b_ih[0][j] + gh[0][j] + b_hh[0][j]);
        az[j] = A::sigmoid(gi[1][j] + b_ih[1][j] + gh[1][j] + b_hh[1][j]);
    }
    for j in 0..len {
        let hidden_n = gh[2][j] + b_hh[2][j];
        let n = A::tanh(gi[2][j] + b_ih[2][j] + ar[j] * hidden_n);
        an[j] = n;
        ghn[j] = hidden_n;
        h_next[j] = n + az[j] * (h_prev[j] - n);
    }
}

/// Backward. `dh`: gradient of h'. Writes the gradients of the input part (`dgi`) and of the
/// hidden part (`dgh`) of the gates, and the direct gradient of h through z*h (`dh_direct`).
#[inline(always)]
pub(crate) fn backward_row<T: Real>(
    dh: &[T],
    act: [&[T]; 3],
    ghn: &[T],
    h_prev: &[T],
    dgi: [&mut [T]; 3],
    dgh: [&mut [T]; 3],
    dh_direct: &mut [T],
) {
    let (one, len) = (T::one(), dh.len());
    // Same lengths up front, as in forward.
    let act = act.map(|s| &s[..len]);
    let [ir, iz, inn] = dgi.map(|s| &mut s[..len]);
    let [hr, hz, hn] = dgh.map(|s| &mut s[..len]);
    let (ghn, h_prev, dh_direct) = (&ghn[..len], &h_prev[..len], &mut dh_direct[..len]);
    for j in 0..len {
        let (r, z, n) = (act[0][j], act[1][j], act[2][j]);
        let dn = dh[j] * (one - z) * (one - n * n);
        let dz = dh[j] * (h_prev[j] - n) * z * (one - z);
        let dr = dn * ghn[j] * r * (one - r);
        (ir[j], iz[j], inn[j]) = (dr, dz, dn);
        (hr[j], hz[j], hn[j]) = (dr, dz, dn * r);
        dh_direct[j] = dh[j] * z;
    }
}
