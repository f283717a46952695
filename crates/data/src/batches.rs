//! Language-model minibatches with d2l 0.17's exact semantics, plus a train/validation split.
//!
//! * Random sampling ([`Sampling::Random`], `seq_data_iter_random`): drop a random number of
//!   leading tokens in `[0, num_steps - 1]`, cut the rest into non-overlapping subsequences of
//!   `num_steps` tokens (the last token is kept back for the labels), shuffle their start
//!   positions, and emit `num_subseqs / batch_size` minibatches of `batch_size` subsequences.
//!   Adjacent minibatches are not adjacent in the text: the hidden state is re-initialised.
//! * Sequential partitioning ([`Sampling::Sequential`], `seq_data_iter_sequential`): drop a
//!   random number of leading tokens in `[0, num_steps]`, keep the largest multiple of
//!   `batch_size` tokens (again one token is kept back for the labels), lay them out as
//!   `batch_size` rows, and cut the rows into windows of `num_steps` columns, so that row `i` of
//!   minibatch `k + 1` continues row `i` of minibatch `k`: the hidden state is carried over.
//!
//! In both, the targets are the inputs shifted by one token. Batches are plain row-major index
//! data of shape `batch_size x num_steps`; the trainer turns them into tensors.
//! Every epoch draws a new offset (and, for random sampling, a new shuffle) from a seeded RNG.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// How minibatches are cut from a corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Sampling {
    /// d2l's random sampling.
    #[default]
    Random,
    /// d2l's sequential partitioning.
    Sequential,
}

impl Sampling {
    /// `random` or `sequential`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sampling::Random => "random",
            Sampling::Sequential => "sequential",
        }
    }

    /// The smallest corpus that yields at least one minibatch whatever offset is drawn.
    ///
    /// Random: `(batch_size + 1) * num_steps`; sequential: `(batch_size + 1) * num_steps + 1`.
    pub fn min_tokens(self, batch_size: usize, num_steps: usize) -> usize {
        let base = batch_size.saturating_add(1).saturating_mul(num_steps);
        match self {
            Sampling::Random => base,
            Sampling::Sequential => base.saturating_add(1),
        }
    }
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Sampling::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sampling {0:?}: expected random or sequential")]
pub struct ParseSamplingError(pub String);

impl FromStr for Sampling {
    type Err = ParseSamplingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "random" => Ok(Sampling::Random),
            "sequential" => Ok(Sampling::Sequential),
            other => Err(ParseSamplingError(other.to_owned())),
        }
    }
}

/// One minibatch: inputs and targets, each `batch_size x num_steps` in row-major order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Input indices, row-major `batch_size x num_steps`.
    pub inputs: Vec<u32>,
    /// Target indices (inputs shifted by one token), same shape.
    pub targets: Vec<u32>,
    /// Number of rows.
    pub batch_size: usize,
    /// Number of columns (time steps).
    pub num_steps: usize,
}

impl Batch {
    /// Row `i` of the inputs. Panics if `i >= batch_size`.
    pub fn input_row(&self, i: usize) -> &[u32] {
        &self.inputs[i * self.num_steps..(i + 1) * self.num_steps]
    }

    /// Row `i` of the targets. Panics if `i >= batch_size`.
    pub fn target_row(&self, i: usize) -> &[u32] {
        &self.targets[i * self.num_steps..(i + 1) * self.num_steps]
    }

    /// `[batch_size, num_steps]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.batch_size, self.num_steps]
    }
}

fn check(len: usize, batch_size: usize, num_steps: usize, sampling: Sampling) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::ZeroParameter { name: "batch_size" });
    }
    if num_steps == 0 {
        return Err(Error::ZeroParameter { name: "num_steps" });
    }
    let needed = sampling.min_tokens(batch_size, num_steps);
    if len < needed {
        return Err(Error::CorpusTooShort { tokens: len, batch_size, num_steps, sampling: sampling.as_str(), needed });
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Plan {
    Random { offset: usize, starts: Vec<usize>, next: usize },
    Sequential { offset: usize, row_len: usize, num_batches: usize, next: usize },
}

/// The minibatches of one epoch, produced lazily.
#[derive(Clone, Debug)]
pub struct Epoch<'a> {
    ids: &'a [u32],
    batch_size: usize,
    num_steps: usize,
    plan: Plan,
}

impl<'a> Epoch<'a> {
    fn new<R: Rng + ?Sized>(
        ids: &'a [u32],
        batch_size: usize,
        num_steps: usize,
        sampling: Sampling,
        rng: &mut R,
    ) -> Result<Self> {
        check(ids.len(), batch_size, num_steps, sampling)?;
        let plan = match sampling {
            Sampling::Random => {
                let offset = rng.random_range(0..num_steps);
                let num_subseqs = (ids.len() - offset - 1) / num_steps;
                let mut starts: Vec<usize> = (0..num_subseqs).map(|k| offset + k * num_steps).collect();
                starts.shuffle(rng);
                starts.truncate(num_subseqs / batch_size * batch_size);
                Plan::Random { offset, starts, next: 0 }
            }
            Sampling::Sequential => {
                let offset = rng.random_range(0..=num_steps);
                let row_len = (ids.len() - offset - 1) / batch_size;
                Plan::Sequential { offset, row_len, num_batches: row_len / num_steps, next: 0 }
            }
        };
        Ok(Epoch { ids, batch_size, num_steps, plan })
    }

    /// Number of minibatches in this epoch (including those already produced).
    pub fn num_batches(&self) -> usize {
        match &self.plan {
            Plan::Random { starts, .. } => starts.len() / self.batch_size,
            Plan::Sequential { num_batches, .. } => *num_batches,
        }
    }

    /// The number of tokens dropped at the start of the corpus in this epoch.
    pub fn offset(&self) -> usize {
        match &self.plan {
            Plan::Random { offset, .. } => *offset,
            Plan::Sequential { offset, .. } => *offset,
        }
    }
}

impl Iterator for Epoch<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let (bs, ns) = (self.batch_size, self.num_steps);
        let mut inputs = Vec::with_capacity(bs * ns);
        let mut targets = Vec::with_capacity(bs * ns);
        match &mut self.plan {
            Plan::Random { starts, next, .. } => {
                let chunk = starts.get(*next..*next + bs)?;
                for &s in chunk {
                    inputs.extend_from_slice(&self.ids[s..s + ns]);
                    targets.extend_from_slice(&self.ids[s + 1..s + 1 + ns]);
                }
                *next += bs;
            }
            Plan::Sequential { offset, row_len, num_batches, next } => {
                if *next >= *num_batches {
                    return None;
                }
                let col = *next * ns;
                for row in 0..bs {
                    let s = *offset + row * *row_len + col;
                    inputs.extend_from_slice(&self.ids[s..s + ns]);
                    targets.extend_from_slice(&self.ids[s + 1..s + 1 + ns]);
                }
                *next += 1;
            }
        }
        Some(Batch { inputs, targets, batch_size: bs, num_steps: ns })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match &self.plan {
            Plan::Random { starts, next, .. } => (starts.len() - *next) / self.batch_size,
            Plan::Sequential { num_batches, next, .. } => num_batches - next,
        };
        (left, Some(left))
    }
}

impl ExactSizeIterator for Epoch<'_> {}

/// d2l's `seq_data_iter_random`: one epoch of randomly sampled minibatches.
///
/// Fails if a size is zero or the corpus is shorter than [`Sampling::min_tokens`].
pub fn random_batches<'a, R: Rng + ?Sized>(
    ids: &'a [u32],
    batch_size: usize,
    num_steps: usize,
    rng: &mut R,
) -> Result<Epoch<'a>> {
    Epoch::new(ids, batch_size, num_steps, Sampling::Random, rng)
}

/// d2l's `seq_data_iter_sequential`: one epoch of sequentially partitioned minibatches.
///
/// Fails if a size is zero or the corpus is shorter than [`Sampling::min_tokens`].
pub fn sequential_batches<'a, R: Rng + ?Sized>(
    ids: &'a [u32],
    batch_size: usize,
    num_steps: usize,
    rng: &mut R,
) -> Result<Epoch<'a>> {
    Epoch::new(ids, batch_size, num_steps, Sampling::Sequential, rng)
}

/// d2l's `SeqDataLoader`: a corpus, the minibatch shape, the sampling and a seeded RNG; every
/// call to [`SeqDataLoader::epoch`] gives the next epoch.
#[derive(Clone, Debug)]
pub struct SeqDataLoader {
    ids: Vec<u32>,
    batch_size: usize,
    num_steps: usize,
    sampling: Sampling,
    rng: StdRng,
}

impl SeqDataLoader {
    /// Checks the sizes against the corpus and seeds the RNG.
    pub fn new(ids: Vec<u32>, batch_size: usize, num_steps: usize, sampling: Sampling, seed: u64) -> Result<Self> {
        check(ids.len(), batch_size, num_steps, sampling)?;
        Ok(SeqDataLoader { ids, batch_size, num_steps, sampling, rng: StdRng::seed_from_u64(seed) })
    }

    /// The minibatches of the next epoch.
    pub fn epoch(&mut self) -> Epoch<'_> {
        Epoch::new(&self.ids, self.batch_size, self.num_steps, self.sampling, &mut self.rng)
            .expect("sizes were checked in SeqDataLoader::new")
    }

    /// The corpus.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Rows per minibatch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Time steps per minibatch.
    pub fn num_steps(&self) -> usize {
        self.num_steps
    }

    /// The sampling method.
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }
}

/// Splits a corpus into a training part (the beginning) and a validation part (the last
/// `num_val` tokens), keeping both contiguous. Both parts must be non-empty.
pub fn train_val_split(ids: &[u32], num_val: usize) -> Result<(&[u32], &[u32])> {
    if num_val == 0 || num_val >= ids.len() {
        return Err(Error::InvalidSplit {
            reason: format!(
                "num_val must be in 1..{} for a corpus of {} tokens, found {num_val}",
                ids.len(),
                ids.len()
            ),
        });
    }
    Ok(ids.split_at(ids.len() - num_val))
}

/// [`train_val_split`] with the validation part given as a fraction in `(0, 1)` of the corpus
/// (rounded to the nearest token).
pub fn train_val_split_fraction(ids: &[u32], val_fraction: f64) -> Result<(&[u32], &[u32])> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(Error::InvalidSplit { reason: format!("val_fraction must be in (0, 1), found {val_fraction}") });
    }
    let num_val = (ids.len() as f64 * val_fraction).round() as usize;
    train_val_split(ids, num_val)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> Vec<u32> {
        (0..n).collect()
    }

    #[test]
    fn random_semantics_d2l_example() {
        // d2l: my_seq = list(range(35)), batch_size=2, num_steps=5.
        let ids = seq(35);
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let epoch = random_batches(&ids, 2, 5, &mut rng).unwrap();
            let offset = epoch.offset();
            assert!(offset < 5);
            let expected_batches = ((35 - offset - 1) / 5) / 2;
            assert_eq!(epoch.num_batches(), expected_batches);
            let batches: Vec<Batch> = epoch.collect();
            assert_eq!(batches.len(), expected_batches);
            let mut starts = Vec::new();
            for b in &batches {
                assert_eq!(b.shape(), [2, 5]);
                for r in 0..2 {
                    let x = b.input_row(r);
                    let y = b.target_row(r);
                    assert_eq!(x[0] as usize % 5, offset);
                    for t in 0..5 {
                        assert_eq!(x[t], x[0] + t as u32);
                        assert_eq!(y[t], x[t] + 1);
                    }
                    starts.push(x[0]);
                }
            }
            starts.sort();
            starts.dedup();
            assert_eq!(starts.len(), batches.len() * 2, "subsequences must not repeat");
        }
    }

    #[test]
    fn sequential_semantics_d2l_example() {
        let ids = seq(35);
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let epoch = sequential_batches(&ids, 2, 5, &mut rng).unwrap();
            let offset = epoch.offset();
            assert!(offset <= 5);
            let row_len = (35 - offset - 1) / 2;
            let batches: Vec<Batch> = epoch.collect();
            assert_eq!(batches.len(), row_len / 5);
            for (k, b) in batches.iter().enumerate() {
                for r in 0..2 {
                    let x = b.input_row(r);
                    assert_eq!(x[0] as usize, offset + r * row_len + k * 5);
                    for t in 0..5 {
                        assert_eq!(x[t], x[0] + t as u32);
                        assert_eq!(b.target_row(r)[t], x[t] + 1);
                    }
                }
            }
        }
    }

    #[test]
    fn seeded_and_epochs_differ() {
        let ids = seq(1000);
        let mut a = SeqDataLoader::new(ids.clone(), 4, 7, Sampling::Random, 42).unwrap();
        let mut b = SeqDataLoader::new(ids, 4, 7, Sampling::Random, 42).unwrap();
        let a1: Vec<Batch> = a.epoch().collect();
        let b1: Vec<Batch> = b.epoch().collect();
        assert_eq!(a1, b1);
        let a2: Vec<Batch> = a.epoch().collect();
        assert_ne!(a1, a2);
    }

    #[test]
    fn too_short_and_zero_sizes() {
        let ids = seq(10);
        let err = SeqDataLoader::new(ids.clone(), 2, 5, Sampling::Random, 0).unwrap_err();
        assert!(matches!(err, Error::CorpusTooShort { needed: 15, .. }), "{err}");
        assert!(err.to_string().contains("at least 15 tokens"));
        assert!(matches!(
            SeqDataLoader::new(seq(15), 2, 5, Sampling::Sequential, 0),
            Err(Error::CorpusTooShort { needed: 16, .. })
        ));
        assert!(matches!(SeqDataLoader::new(ids.clone(), 0, 5, Sampling::Random, 0), Err(Error::ZeroParameter { .. })));
        assert!(matches!(SeqDataLoader::new(ids, 1, 0, Sampling::Random, 0), Err(Error::ZeroParameter { .. })));
    }

    #[test]
    fn min_tokens_always_gives_a_batch() {
        for sampling in [Sampling::Random, Sampling::Sequential] {
            for (bs, ns) in [(1, 1), (2, 5), (3, 4), (32, 35)] {
                let n = sampling.min_tokens(bs, ns);
                let mut loader = SeqDataLoader::new(seq(n as u32), bs, ns, sampling, 7).unwrap();
                for _ in 0..20 {
                    assert!(loader.epoch().count() >= 1, "{sampling} {bs}x{ns}");
                }
            }
        }
    }

    #[test]
    fn split() {
        let ids = seq(10);
        let (t, v) = train_val_split(&ids, 3).unwrap();
        assert_eq!((t.len(), v), (7, &[7, 8, 9][..]));
        let (t, v) = train_val_split_fraction(&ids, 0.2).unwrap();
        assert_eq!((t.len(), v.len()), (8, 2));
        assert!(train_val_split(&ids, 0).is_err());
        assert!(train_val_split(&ids, 10).is_err());
        assert!(train_val_split_fraction(&ids, 1.0).is_err());
        assert!(train_val_split_fraction(&ids, f64::NAN).is_err());
    }
}
