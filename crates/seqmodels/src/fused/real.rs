//! The float types the fused kernels run on (f32, f64) and the math they need.

use candle_core::WithDType;
use num_traits::Float;

/// f32 or f64: candle's storage access plus the activations, in one bound.
pub(crate) trait Real: Float + WithDType + Default + Send + Sync + 'static {
    /// 1 / (1 + exp(-x)).
    #[inline(always)]
    fn sigmoid(self) -> Self {
        Self::one() / (Self::one() + (-self).exp())
    }
}

impl Real for f32 {}
impl Real for f64 {}
