//! GRU rows: gates r, z, n (PyTorch's order), with n = tanh(gi_n + r * (h W_hn^T + b_hn)).

use super::real::Real;

/// Forward of one row. `gi`, `gh`: the input and hidden parts (3H each, biases included);
/// writes the activations r, z, n into `act`, the hidden part of n (h W_hn^T + b_hn) into
/// `ghn`, and h' = (1-z)*n + z*h into `h_next`.
#[inline]
pub(crate) fn forward_row<T: Real>(gi: &[T], gh: &[T], h_prev: &[T], act: &mut [T], ghn: &mut [T], h_next: &mut [T]) {
    let h = h_prev.len();
    for j in 0..h {
        let r = (gi[j] + gh[j]).sigmoid();
        let z = (gi[h + j] + gh[h + j]).sigmoid();
        let n = (gi[2 * h + j] + r * gh[2 * h + j]).tanh();
        act[j] = r;
        act[h + j] = z;
        act[2 * h + j] = n;
        ghn[j] = gh[2 * h + j];
        h_next[j] = n + z * (h_prev[j] - n);
    }
}

/// Backward of one row. `dh`: gradient of h'. Writes the gradients of the input part `dgi`
/// and of the hidden part `dgh` of the gates (3H each), and the direct gradient of h through
/// h' = ... + z*h into `dh_direct`.
#[inline]
pub(crate) fn backward_row<T: Real>(
    dh: &[T],
    act: &[T],
    ghn: &[T],
    h_prev: &[T],
    dgi: &mut [T],
    dgh: &mut [T],
    dh_direct: &mut [T],
) {
    let h = dh.len();
    let one = T::one();
    for j in 0..h {
        let (r, z, n) = (act[j], act[h + j], act[2 * h + j]);
        let dn = dh[j] * (one - z) * (one - n * n);
        let dz = dh[j] * (h_prev[j] - n) * z * (one - z);
        let dr = dn * ghn[j] * r * (one - r);
        dgi[j] = dr;
        dgi[h + j] = dz;
        dgi[2 * h + j] = dn;
        dgh[j] = dr;
        dgh[h + j] = dz;
        dgh[2 * h + j] = dn * r;
        dh_direct[j] = dh[j] * z;
    }
}
