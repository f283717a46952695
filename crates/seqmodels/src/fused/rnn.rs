//! Elman RNN over one batch row and a range of hidden units: h' = act(gi + gh), act = tanh or relu.

use super::real::{Activation, Real};

/// Forward: h' = act(pre), pre = gi + gh.
#[inline(always)]
pub(crate) fn forward_row<T: Real, A: Activation<T>>(relu: bool, pre: &[T], h_next: &mut [T]) {
    for j in 0..h_next.len() {
        let pre = pre[j];
        h_next[j] = if !relu {
            A::tanh(pre)
        } else if pre > T::zero() {
            pre
        } else {
            T::zero()
        };
    }
}

/// Backward: the gradient of the pre-activation from the gradient of h' and h' itself.
#[inline(always)]
pub(crate) fn backward_row<T: Real>(relu: bool, dh: &[T], h_next: &[T], dpre: &mut [T]) {
    for j in 0..dh.len() {
        dpre[j] = match (relu, h_next[j] > T::zero()) {
            (true, true) => dh[j],
            (true, false) => T::zero(),
            (false, _) => dh[j] * (T::one() - h_next[j] * h_next[j]),
        };
    }
}
