//! PyTorch's default initialisation, from a seed.
//!
//! `VarBuilder::from_varmap` already draws U(-1/sqrt(H), 1/sqrt(H)) for new parameters, but
//! candle's CPU generator cannot be seeded; these functions give repeatable weights.

use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::Result;

/// Draws every parameter in `shapes` from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as
/// PyTorch's `reset_parameters` does, in order, from a generator seeded with `seed`.
pub fn seeded_parameters(
    shapes: &[(String, Vec<usize>)],
    hidden_size: usize,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Vec<(String, Tensor)>> {
    let bound = 1.0 / (hidden_size as f64).sqrt();
    uniform_parameters(shapes, bound, seed, dtype, device)
}

/// Draws every parameter in `shapes` from U(-bound, bound) with a generator seeded with `seed`.
pub fn uniform_parameters(
    shapes: &[(String, Vec<usize>)],
    bound: f64,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Vec<(String, Tensor)>> {
    // Each tensor is drawn as f64 values, then converted to `dtype`.
    let per_element = 8 + dtype.size_in_bytes();
    let sizes = shapes
        .iter()
        .map(|(name, shape)| crate::memory::bytes_of(&format!("parameter {name}"), shape, per_element))
        .collect::<Result<Vec<u64>>>()?;
    let what = format!("initialising {} parameter tensors", shapes.len());
    crate::memory::check_bytes(&what, crate::memory::sum_bytes(&what, &sizes)?)?;
    let mut rng = StdRng::seed_from_u64(seed);
    shapes
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values: Vec<f64> = (0..n).map(|_| rng.random_range(-bound..=bound)).collect();
            let t = Tensor::from_vec(values, shape.as_slice(), device)?.to_dtype(dtype)?;
            Ok((name.clone(), t))
        })
        .collect()
}
