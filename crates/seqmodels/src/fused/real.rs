//! The float types the fused kernels run on (f32, f64) and the activations they use.

use candle_core::{Layout, Tensor, WithDType};
use num_traits::Float;

/// f32 or f64: candle's storage access plus float arithmetic, in one bound.
pub(crate) trait Real: Float + std::ops::AddAssign + WithDType + Default + Send + Sync + 'static {}

impl Real for f32 {}
impl Real for f64 {}

/// The exp, sigmoid and tanh a kernel uses: exact (libm) or the vectorisable approximations.
pub(crate) trait Activation<T> {
    fn exp(x: T) -> T;
    fn sigmoid(x: T) -> T;
    fn tanh(x: T) -> T;
}

/// libm's exp and tanh: any float type, exact to rounding.
pub(crate) struct Exact;

impl<T: Real> Activation<T> for Exact {
    #[inline(always)]
    fn exp(x: T) -> T {
        x.exp()
    }
    #[inline(always)]
    fn sigmoid(x: T) -> T {
        T::one() / (T::one() + (-x).exp())
    }
    #[inline(always)]
    fn tanh(x: T) -> T {
        x.tanh()
    }
}

/// Polynomial f32 approximations (absolute error < 3e-7) that vectorise with AVX-512 or AVX2.
pub(crate) struct Fast;

impl Activation<f32> for Fast {
    #[inline(always)]
    fn exp(x: f32) -> f32 {
        super::fast_math::exp(x)
    }
    #[inline(always)]
    fn sigmoid(x: f32) -> f32 {
        super::fast_math::sigmoid(x)
    }
    #[inline(always)]
    fn tanh(x: f32) -> f32 {
        super::fast_math::tanh(x)
    }
}

/// The contiguous elements of a custom op's CPU input (candle hands storage and layout apart).
pub(crate) fn cpu_slice<'a, T: Real>(s: &'a candle_core::CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&T::cpu_storage_as_slice(s)?[start..end]),
        None => candle_core::bail!("seqmodels custom op: expected contiguous inputs"),
    }
}

/// The elements of a CPU tensor: borrowed from its storage when contiguous, else copied.
pub(crate) enum HostSlice<'a, T: Real> {
    /// The storage's read guard (candle's lock type, named through `Deref`) and the layout.
    Borrowed(Box<dyn std::ops::Deref<Target = candle_core::Storage> + 'a>, Layout),
    Copied(Vec<T>),
}

impl<T: Real> HostSlice<'_, T> {
    /// The elements.
    pub(crate) fn get(&self) -> candle_core::Result<&[T]> {
        match self {
            HostSlice::Borrowed(storage, layout) => match &***storage {
                candle_core::Storage::Cpu(cpu) => cpu_slice(cpu, layout),
                _ => candle_core::bail!("seqmodels custom op: expected a CPU tensor"),
            },
            HostSlice::Copied(v) => Ok(v),
        }
    }
}

/// Reads a CPU tensor in place when it is contiguous (else copies it), for a custom op's `bwd`.
pub(crate) fn host_slice<T: Real>(t: &Tensor) -> candle_core::Result<HostSlice<'_, T>> {
    let (storage, layout) = t.storage_and_layout();
    if layout.is_contiguous() && matches!(&*storage, candle_core::Storage::Cpu(_)) && t.dtype() == T::DTYPE {
        return Ok(HostSlice::Borrowed(Box::new(storage), layout.clone()));
    }
    drop(storage);
    Ok(HostSlice::Copied(t.flatten_all()?.to_vec1::<T>()?))
}
