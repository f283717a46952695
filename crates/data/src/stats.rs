//! Corpus statistics: counts, top-k, n-gram frequency lists, a Zipf fit and a log-log plot.
//!
//! Zipf's law says that the frequency `n_i` of the `i`-th most frequent token follows
//! `log n_i = -alpha * log i + c`. [`fit_zipf`] fits `alpha` and `c` by ordinary least squares
//! on all ranks `i = 1..=N` of a frequency list in log-log space.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{Error, Result};
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

/// One line of a frequency plot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreqSeries {
    /// Legend entry.
    pub label: String,
    /// Frequencies by rank, descending.
    pub freqs: Vec<usize>,
}

static FONT: Once = Once::new();

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` family (no system fonts used).
fn register_fonts() {
    FONT.call_once(|| {
        // The font bytes are a well-formed TrueType file shipped by the `dejavu` crate.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws frequency against rank on log-log axes as a PNG (800 x 600), one line per series, with
/// axis labels, a legend and, if given, the Zipf fit as a dashed line.
pub fn plot_frequencies(
    path: impl AsRef<Path>,
    title: &str,
    series: &[FreqSeries],
    fit: Option<&ZipfFit>,
) -> Result<()> {
    let path = path.as_ref();
    let plot_err = |e: &dyn std::fmt::Display| Error::Plot { path: path.to_owned(), message: e.to_string() };
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return Err(plot_err(&"expected a file name ending in .png"));
    }
    let max_rank = series.iter().map(|s| s.freqs.len()).max().unwrap_or(0);
    let max_freq = series.iter().flat_map(|s| s.freqs.iter().copied()).max().unwrap_or(0);
    if max_rank == 0 || max_freq == 0 {
        return Err(plot_err(&"nothing to plot: every frequency list is empty"));
    }
    register_fonts();
    let root = BitMapBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let x_max = (max_rank as f64 * 1.5).max(10.0);
    let y_max = max_freq as f64 * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..x_max).log_scale(), (0.8f64..y_max).log_scale())
        .map_err(|e| plot_err(&e))?;
    chart
        .configure_mesh()
        .x_desc("rank (log scale)")
        .y_desc("frequency (log scale)")
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| plot_err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = s.freqs.iter().enumerate().filter(|(_, &f)| f > 0).map(|(r, &f)| ((r + 1) as f64, f as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| plot_err(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    if let Some(fit) = fit {
        let n = series.first().map_or(max_rank, |s| s.freqs.len()).max(2);
        // Dashes: short segments along the fitted line, evenly spaced in log rank.
        let steps = 60;
        let at = |k: usize| ((n as f64).ln() * k as f64 / steps as f64).exp();
        let dashes = (0..steps).step_by(2).map(|k| {
            let (r0, r1) = (at(k), at(k + 1));
            PathElement::new(vec![(r0, fit.predict(r0)), (r1, fit.predict(r1))], BLACK.stroke_width(1))
        });
        chart
            .draw_series(dashes)
            .map_err(|e| plot_err(&e))?
            .label(format!("Zipf fit, alpha = {:.3}", fit.alpha))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], BLACK.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(&e))?;
    root.present().map_err(|e| plot_err(&e))?;
    Ok(())
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
