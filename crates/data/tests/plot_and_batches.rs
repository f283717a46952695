//! The Zipf plot and minibatches over a real corpus.

mod common;

use seqmodels_data::{Batch, Cleaning, CorpusOptions, LmCorpus, Sampling, TokenLevel};

#[cfg_attr(not(feature = "plot"), allow(dead_code))]
fn words() -> LmCorpus {
    let text = common::corpus_text("timemachine");
    let opts = CorpusOptions { cleaning: Cleaning::D2l, level: TokenLevel::Word, ..Default::default() };
    LmCorpus::build(&text, &opts).unwrap()
}

#[cfg(feature = "plot")]
#[test]
fn zipf_plot_is_a_png() {
    use seqmodels_data::stats::frequencies;
    use seqmodels_data::{fit_zipf, ngram_counts, plot_frequencies, Error, FreqSeries};

    let corpus = words();
    let series: Vec<FreqSeries> = [(1, "unigram"), (2, "bigram"), (3, "trigram")]
        .iter()
        .map(|&(n, label)| FreqSeries { label: label.into(), freqs: frequencies(&ngram_counts(&corpus.ids, n)) })
        .collect();
    let fit = fit_zipf(&series[0].freqs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zipf.png");
    plot_frequencies(&path, "Time Machine: n-gram frequencies", &series, Some(&fit)).unwrap();
    let png = std::fs::read(&path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (800, 600));
    assert!(png.len() > 10_000, "a plot with text and lines, not a blank image: {} bytes", png.len());

    let err = plot_frequencies(dir.path().join("zipf.jpg"), "t", &series, None).unwrap_err();
    assert!(matches!(err, Error::Plot { .. }), "{err}");
    let empty = [FreqSeries { label: "none".into(), freqs: vec![] }];
    assert!(matches!(plot_frequencies(&path, "t", &empty, None), Err(Error::Plot { .. })));
}

#[test]
fn d2l_lm_batches_over_timemachine() {
    let text = common::corpus_text("timemachine");
    let opts = CorpusOptions { max_tokens: Some(10_000), ..Default::default() };
    let corpus = LmCorpus::build(&text, &opts).unwrap();
    for sampling in [Sampling::Random, Sampling::Sequential] {
        let mut loader = corpus.loader(32, 35, sampling, 1234).unwrap();
        let epoch: Vec<Batch> = loader.epoch().collect();
        // d2l: 10,000 tokens in 32 x 35 minibatches give 8 minibatches per epoch.
        assert_eq!(epoch.len(), 8, "{sampling}");
        for b in &epoch {
            assert_eq!(b.inputs.len(), 32 * 35);
            for r in 0..32 {
                let x = b.input_row(r);
                let y = b.target_row(r);
                assert_eq!(&x[1..], &y[..34], "targets are inputs shifted by one");
            }
        }
        if sampling == Sampling::Sequential {
            for (a, b) in epoch.iter().zip(&epoch[1..]) {
                for r in 0..32 {
                    // Row r of the next minibatch starts where row r of this one stopped.
                    assert_eq!(a.target_row(r)[34], b.input_row(r)[0]);
                }
            }
        }
    }
}
