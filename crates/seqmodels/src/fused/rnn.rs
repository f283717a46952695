//! Elman RNN rows: h' = act(gi + gh) with act = tanh or relu.

use super::real::Real;

/// Forward of one row: h' = act(gi + gh).
#[inline]
pub(crate) fn forward_row<T: Real>(relu: bool, gi: &[T], gh: &[T], h_next: &mut [T]) {
    for j in 0..h_next.len() {
        let pre = gi[j] + gh[j];
        h_next[j] = if !relu {
            pre.tanh()
        } else if pre > T::zero() {
            pre
        } else {
            T::zero()
        };
    }
}

/// Backward of one row: the gradient of the pre-activation from the gradient of h' and h'.
#[inline]
pub(crate) fn backward_row<T: Real>(relu: bool, dh: &[T], h_next: &[T], dpre: &mut [T]) {
    for j in 0..dh.len() {
        dpre[j] = if relu {
            if h_next[j] > T::zero() {
                dh[j]
            } else {
                T::zero()
            }
        } else {
            dh[j] * (T::one() - h_next[j] * h_next[j])
        };
    }
}
