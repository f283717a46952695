//! Seedable dropout between layers.
//!
//! candle's CPU random generator cannot be seeded, so the masks come from our own generator:
//! runs with the same seed drop the same units.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::{Error, Result};

/// Inverted dropout with a seeded generator shared by clones of the module.
#[derive(Clone, Debug)]
pub struct SeededDropout {
    p: f64,
    rng: Arc<Mutex<StdRng>>,
}

impl SeededDropout {
    /// Dropout with probability `p`; `seed` None draws a seed from the OS.
    pub fn new(p: f64, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        SeededDropout { p, rng: Arc::new(Mutex::new(rng)) }
    }

    /// Restarts the generator from `seed`.
    pub fn reseed(&self, seed: u64) {
        *self.lock() = StdRng::seed_from_u64(seed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StdRng> {
        // A poisoned lock only means another thread panicked mid-draw; the generator is still usable.
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Zeroes each element with probability p and scales the rest by 1/(1-p).
    pub fn apply(&self, xs: &Tensor) -> Result<Tensor> {
        if self.p == 0.0 {
            return Ok(xs.clone());
        }
        let n = xs.elem_count();
        let keep_scale = if self.p >= 1.0 { 0.0 } else { 1.0 / (1.0 - self.p) };
        let mask: Vec<f64> = {
            let mut rng = self.lock();
            (0..n).map(|_| if rng.random::<f64>() >= self.p { keep_scale } else { 0.0 }).collect()
        };
        let mask = Tensor::from_vec(mask, xs.shape(), &Device::Cpu)?;
        let mask = match xs.dtype() {
            DType::F64 => mask,
            dtype => mask.to_dtype(dtype)?,
        };
        (xs * mask.to_device(xs.device())?).map_err(Error::from)
    }
}
