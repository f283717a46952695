//! Corpus statistics: counts, top-k, n-gram frequency lists and a Zipf fit (plotted by the
//! `plot` module).
//!
//! Zipf's law says that the frequency `n_i` of the `i`-th most frequent token follows
//! `log n_i = -alpha * log i + c`. [`fit_zipf`] fits `alpha` and `c` by ordinary least squares
//! on all ranks `i = 1..=N` of a frequency list in log-log space.

use std::collections::HashMap;

use crate::vocab::Vocab;

/// One n-gram and how often it occurs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NgramCount {
    /// The token indices of the n-gram.
    pub ids: Vec<u32>,
    /// Number of occurrences.
    pub count: usize,
}

/// Counts the n-grams of `ids` (overlapping windows of `n` tokens), sorted by descending count,
/// ties in order of first appearance. Empty if `n` is 0 or longer than the corpus.
pub fn ngram_counts(ids: &[u32], n: usize) -> Vec<NgramCount> {
    if n == 0 || n > ids.len() {
        return Vec::new();
    }
    let mut slot: HashMap<&[u32], usize> = HashMap::new();
    let mut entries: Vec<(&[u32], usize)> = Vec::new();
    for w in ids.windows(n) {
        match slot.get(w) {
            Some(&s) => entries[s].1 += 1,
            None => {
                slot.insert(w, entries.len());
                entries.push((w, 1));
            }
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.1));
    entries.into_iter().map(|(w, count)| NgramCount { ids: w.to_vec(), count }).collect()
}

/// The counts of a frequency list, in its (descending) order.
pub fn frequencies(counts: &[NgramCount]) -> Vec<usize> {
    counts.iter().map(|c| c.count).collect()
}

/// Renders an n-gram with the vocabulary's tokens, separated by `sep`.
pub fn ngram_text(vocab: &Vocab, ids: &[u32], sep: &str) -> String {
    vocab.decode(ids).join(sep)
}

/// A least-squares fit of `log n_i = -alpha * log i + intercept`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ZipfFit {
    /// The Zipf exponent (positive for a decaying frequency list).
    pub alpha: f64,
    /// The fitted `log n_1` (natural logarithm).
    pub intercept: f64,
    /// Coefficient of determination of the fit in log-log space.
    pub r_squared: f64,
    /// Number of ranks used.
    pub points: usize,
}

impl ZipfFit {
    /// The fitted frequency at `rank` (1-based).
    pub fn predict(&self, rank: f64) -> f64 {
        (self.intercept - self.alpha * rank.ln()).exp()
    }
}

/// Fits Zipf's law to a frequency list sorted by descending frequency, using every rank with a
/// positive frequency. `None` with fewer than two such ranks.
pub fn fit_zipf(freqs: &[usize]) -> Option<ZipfFit> {
    let pts: Vec<(f64, f64)> = freqs
        .iter()
        .enumerate()
        .filter(|(_, &f)| f > 0)
        .map(|(i, &f)| (((i + 1) as f64).ln(), (f as f64).ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let r_squared = if syy > 0.0 { (sxy * sxy) / (sxx * syy) } else { 1.0 };
    Some(ZipfFit { alpha: -slope, intercept, r_squared, points: pts.len() })
}

/// The summary `seqlm corpus` prints.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CorpusStats {
    /// Number of tokens in the corpus.
    pub tokens: usize,
    /// Size of the vocabulary, unknown and reserved tokens included.
    pub vocab_size: usize,
    /// Number of distinct tokens that occur in the corpus.
    pub distinct: usize,
    /// The `k` most frequent tokens with their counts (ties: first seen).
    pub top: Vec<(String, usize)>,
    /// Fitted Zipf exponent of the unigram frequencies (`None` with fewer than two tokens).
    pub zipf_alpha: Option<f64>,
}

impl CorpusStats {
    /// Computes the statistics of the index sequence `ids` over `vocab`.
    pub fn compute(ids: &[u32], vocab: &Vocab, top_k: usize) -> Self {
        let unigrams = ngram_counts(ids, 1);
        let zipf_alpha = fit_zipf(&frequencies(&unigrams)).map(|f| f.alpha);
        let top = unigrams
            .iter()
            .take(top_k)
            .map(|c| (vocab.token(c.ids[0]).unwrap_or(vocab.unk_token()).to_owned(), c.count))
            .collect();
        CorpusStats { tokens: ids.len(), vocab_size: vocab.len(), distinct: unigrams.len(), top, zipf_alpha }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngrams() {
        let ids = [1, 2, 1, 2, 3, 1, 2];
        let bi = ngram_counts(&ids, 2);
        assert_eq!(bi[0], NgramCount { ids: vec![1, 2], count: 3 });
        assert_eq!(bi.iter().map(|c| c.count).sum::<usize>(), 6);
        assert_eq!(ngram_counts(&ids, 3).len(), 5);
        assert!(ngram_counts(&ids, 0).is_empty());
        assert!(ngram_counts(&ids, 8).is_empty());
    }

    #[test]
    fn zipf_exact() {
        // n_i = 1000 / i^1.5 (rounded) gives alpha close to 1.5.
        let freqs: Vec<usize> = (1..=200).map(|i| (1e6 / (i as f64).powf(1.5)).round() as usize).collect();
        let fit = fit_zipf(&freqs).unwrap();
        assert!((fit.alpha - 1.5).abs() < 1e-3, "{fit:?}");
        assert!(fit.r_squared > 0.999);
        assert!((fit.predict(1.0) - 1e6).abs() / 1e6 < 1e-2);
        assert!(fit_zipf(&[5]).is_none());
    }
}
