//! Elman RNN over one batch row and a range of hidden units: h' = act(gi + gh), act = tanh or relu.

use super::real::{Activation, Real};

/// Forward: h' = act(gh + gi + bias), the hidden part, the input part and both biases summed.
#[inline(always)]
pub(crate) fn forward_row<T: Real, A: Activation<T>>(relu: bool, gh: &[T], gi: &[T], bias: &[T], h_next: &mut [T]) {
    for (((h_next, &gh), &gi), &b) in h_next.iter_mut().zip(gh).zip(gi).zip(bias) {
        let pre = gh + gi + b;
        *h_next = if !relu {
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
    for ((dpre, &dh), &h) in dpre.iter_mut().zip(dh).zip(h_next) {
        *dpre = match (relu, h > T::zero()) {
            (true, true) => dh,
            (true, false) => T::zero(),
            (false, _) => dh * (T::one() - h * h),
        };
    }
}
