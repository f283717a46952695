//! Sequence lengths of `seqlm bench --lengths`, drawn by a generator small enough to write
//! out twice: `scripts/bench_torch.py` implements the same one, so both programs time batches
//! of the same lengths.
//!
//! `random`: each of the B sequences of T steps gets a length `lo + next() % (T - lo + 1)`
//! with `lo = ceil(T / 4)` and `next` a [`SplitMix64`] seeded with `--seed` (uniform over
//! `[lo, T]` up to a bias below `T / 2^64`), then the lengths are sorted in decreasing order
//! (as PyTorch's `pack_padded_sequence(..., enforce_sorted=True)` needs). One draw serves every
//! iteration, so each iteration computes the same number of tokens.

use serde::Serialize;

/// How long the sequences of a benchmark batch are (`--lengths`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LengthsMode {
    /// Every sequence has all T steps.
    #[default]
    Full,
    /// Lengths drawn by [`random_lengths`] from `--seed`.
    Random,
}

impl LengthsMode {
    /// The name on the command line and in the JSON report (`full`, `random`).
    pub fn name(self) -> &'static str {
        match self {
            LengthsMode::Full => "full",
            LengthsMode::Random => "random",
        }
    }

    /// The lengths of `batch` sequences of at most `steps` steps: `None` when every sequence is
    /// full, else [`random_lengths`].
    pub fn draw(self, batch: usize, steps: usize, seed: u64) -> Option<Vec<usize>> {
        match self {
            LengthsMode::Full => None,
            LengthsMode::Random => Some(random_lengths(batch, steps, seed)),
        }
    }
}

/// Vigna's SplitMix64: the state advances by a fixed odd constant and each output is the state
/// through a 64-bit finaliser. All arithmetic wraps modulo 2^64.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `batch` lengths in `[ceil(steps / 4), steps]`, sorted in decreasing order (see the module
/// docs). `steps` is at least 1 wherever a benchmark runs; with 0 every length is 0.
pub fn random_lengths(batch: usize, steps: usize, seed: u64) -> Vec<usize> {
    let lo = steps.div_ceil(4);
    let span = (steps - lo + 1) as u64;
    let mut rng = SplitMix64::new(seed);
    let mut lengths: Vec<usize> = (0..batch).map(|_| lo + (rng.next_u64() % span) as usize).collect();
    lengths.sort_unstable_by(|a, b| b.cmp(a));
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_outputs() {
        // The first outputs of SplitMix64 from state 0 (Vigna's reference implementation).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn random_lengths_are_fixed_for_a_seed() {
        // The same values are asserted in scripts/bench_torch.py (`random_lengths`).
        assert_eq!(random_lengths(8, 35, 0), [32, 31, 21, 19, 17, 16, 16, 9]);
        assert_eq!(
            random_lengths(20, 20, 0),
            [20, 20, 20, 17, 17, 17, 16, 16, 16, 15, 14, 14, 11, 11, 11, 10, 9, 9, 8, 6]
        );
        assert_eq!(random_lengths(3, 4, 5), [4, 3, 1]);
        assert_eq!(random_lengths(4, 1, 0), [1, 1, 1, 1]);
        assert_eq!(random_lengths(2, 0, 0), [0, 0]);
    }

    #[test]
    fn random_lengths_stay_in_range_and_sorted() {
        for steps in 1..50 {
            let lengths = random_lengths(17, steps, steps as u64);
            assert!(lengths.windows(2).all(|w| w[0] >= w[1]), "{lengths:?}");
            assert!(lengths.iter().all(|&l| steps.div_ceil(4) <= l && l <= steps), "{steps}: {lengths:?}");
        }
        assert_eq!(LengthsMode::Full.draw(3, 4, 5), None);
        assert_eq!(LengthsMode::Random.draw(3, 4, 5), Some(vec![4, 3, 1]));
    }
}
