//! The synthetic series of d2l's "Sequence Models" section.
//!
//! `x_t = sin(0.01 t) + eps_t` with `eps_t ~ N(0, 0.2^2)` for `t = 1..=T` (d2l uses `T = 1000`),
//! and the autoregressive data set whose features are the `tau` previous values
//! (`features[:, i] = x[i : T - tau + i]`, `labels = x[tau:]`); d2l trains on the first 600
//! examples with `tau = 4`.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::error::{Error, Result};

/// d2l's series length.
pub const D2L_T: usize = 1000;
/// d2l's noise standard deviation.
pub const D2L_NOISE_STD: f32 = 0.2;
/// d2l's embedding width.
pub const D2L_TAU: usize = 4;
/// d2l's number of training examples.
pub const D2L_NUM_TRAIN: usize = 600;

/// A noisy sine wave.
#[derive(Clone, Debug, PartialEq)]
pub struct SineSeries {
    /// Time stamps `1..=T`.
    pub time: Vec<f32>,
    /// Values `sin(0.01 t) + noise`.
    pub x: Vec<f32>,
}

impl SineSeries {
    /// `T` values with Gaussian noise of standard deviation `noise_std`, drawn from a RNG seeded
    /// with `seed`. `noise_std` must be finite and non-negative.
    pub fn generate(t: usize, noise_std: f32, seed: u64) -> Result<Self> {
        if t == 0 {
            return Err(Error::ZeroParameter { name: "T" });
        }
        let bad_std = || Error::InvalidParameter {
            name: "noise_std",
            expected: "finite and >= 0".into(),
            found: noise_std.to_string(),
        };
        if !(noise_std.is_finite() && noise_std >= 0.0) {
            return Err(bad_std());
        }
        let normal = Normal::new(0.0f32, noise_std).map_err(|_| bad_std())?;
        let mut rng = StdRng::seed_from_u64(seed);
        let time: Vec<f32> = (1..=t).map(|i| i as f32).collect();
        let x = time.iter().map(|&ti| (0.01 * ti).sin() + normal.sample(&mut rng)).collect();
        Ok(SineSeries { time, x })
    }

    /// The d2l series: `T = 1000`, noise 0.2.
    pub fn d2l(seed: u64) -> Self {
        Self::generate(D2L_T, D2L_NOISE_STD, seed).expect("d2l parameters are valid")
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// Whether the series is empty (never, for a generated one).
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// The autoregressive data set with `tau` lagged features (see the module documentation).
    pub fn features(&self, tau: usize) -> Result<SeriesDataset> {
        SeriesDataset::new(&self.x, tau)
    }
}

/// Lagged features and next-value labels of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesDataset {
    /// Row-major `(T - tau) x tau`: row `i` is `x[i..i + tau]`.
    pub features: Vec<f32>,
    /// `T - tau` labels: label `i` is `x[i + tau]`.
    pub labels: Vec<f32>,
    /// Features per example.
    pub tau: usize,
}

impl SeriesDataset {
    /// Builds the data set of `x` with `tau` lags; needs `1 <= tau < x.len()`.
    pub fn new(x: &[f32], tau: usize) -> Result<Self> {
        if tau == 0 {
            return Err(Error::ZeroParameter { name: "tau" });
        }
        if tau >= x.len() {
            return Err(Error::InvalidParameter {
                name: "tau",
                expected: format!("smaller than the series length {}", x.len()),
                found: tau.to_string(),
            });
        }
        let n = x.len() - tau;
        let mut features = Vec::with_capacity(n * tau);
        for i in 0..n {
            features.extend_from_slice(&x[i..i + tau]);
        }
        Ok(SeriesDataset { features, labels: x[tau..].to_vec(), tau })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features of example `i`, if it exists.
    pub fn example(&self, i: usize) -> Option<(&[f32], f32)> {
        let label = *self.labels.get(i)?;
        Some((&self.features[i * self.tau..(i + 1) * self.tau], label))
    }

    /// The first `num_train` examples and the rest; `num_train` must be in `1..len`.
    pub fn split(&self, num_train: usize) -> Result<(SeriesDataset, SeriesDataset)> {
        if num_train == 0 || num_train >= self.len() {
            return Err(Error::InvalidSplit {
                reason: format!(
                    "num_train must be in 1..{} for {} examples, found {num_train}",
                    self.len(),
                    self.len()
                ),
            });
        }
        let cut = num_train * self.tau;
        let part = |f: &[f32], l: &[f32]| SeriesDataset { features: f.to_vec(), labels: l.to_vec(), tau: self.tau };
        Ok((
            part(&self.features[..cut], &self.labels[..num_train]),
            part(&self.features[cut..], &self.labels[num_train..]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d2l_series() {
        let s = SineSeries::d2l(0);
        assert_eq!(s.len(), 1000);
        assert_eq!(s.time[0], 1.0);
        assert_eq!(s, SineSeries::d2l(0));
        assert_ne!(s, SineSeries::d2l(1));
        let resid: Vec<f32> = s.time.iter().zip(&s.x).map(|(t, x)| x - (0.01 * t).sin()).collect();
        let mean = resid.iter().sum::<f32>() / 1000.0;
        let std = (resid.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / 999.0).sqrt();
        assert!(mean.abs() < 0.05 && (std - 0.2).abs() < 0.03, "mean {mean} std {std}");
    }

    #[test]
    fn features_and_split() {
        let s = SineSeries::generate(10, 0.0, 0).unwrap();
        let d = s.features(4).unwrap();
        assert_eq!(d.len(), 6);
        let (f, l) = d.example(2).unwrap();
        assert_eq!(f, &s.x[2..6]);
        assert_eq!(l, s.x[6]);
        let (train, test) = d.split(4).unwrap();
        assert_eq!((train.len(), test.len()), (4, 2));
        assert_eq!(test.example(0).unwrap().1, s.x[8]);
        assert!(d.split(6).is_err());
        assert!(s.features(0).is_err());
        assert!(s.features(10).is_err());
        assert!(SineSeries::generate(5, -1.0, 0).is_err());
        assert!(SineSeries::generate(0, 0.2, 0).is_err());
    }
}
