//! d2l "Language Models and the Dataset": unigram, bigram and trigram frequencies of The Time
//! Machine's words, Zipf's law on a log-log plot, and the two ways of cutting a corpus into
//! minibatches (random sampling and sequential partitioning) on the toy sequence 0..34.
//!
//! `cargo run --release --example language_models -- [--quick] [--out DIR]`

mod common;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::SeedableRng;
use seqmodels_workspace::data::clean::clean_d2l_lines;
use seqmodels_workspace::data::stats::{frequencies, ngram_text};
use seqmodels_workspace::data::tokenize::tokenize_lines;
use seqmodels_workspace::data::{
    fit_zipf, ngram_counts, plot_frequencies, random_batches, sequential_batches, Batch, FreqSeries, TokenLevel, Vocab,
    VocabOptions,
};

fn show(batch: &Batch) {
    let rows = |f: &dyn Fn(usize) -> Vec<u32>| (0..batch.batch_size).map(f).collect::<Vec<_>>();
    println!("X: {:?}", rows(&|i| batch.input_row(i).to_vec()));
    println!("Y: {:?}", rows(&|i| batch.target_row(i).to_vec()));
}

fn main() -> Result<()> {
    let args = common::Args::parse("language_models")?;

    // tokens = d2l.tokenize(d2l.read_time_machine()); corpus = [token for line in tokens ...]
    let text = common::read_corpus("timemachine")?;
    let lines = clean_d2l_lines(&text);
    let tokens = tokenize_lines(&lines, TokenLevel::Word);
    let corpus: Vec<&str> = tokens.iter().flatten().copied().collect();
    let vocab = Vocab::build(&corpus, &VocabOptions::default());
    let ids = vocab.encode(&corpus);

    // vocab.token_freqs[:10]: the most frequent words are stop words
    let unigrams = ngram_counts(&ids, 1);
    let show_top = |counts: &[seqmodels_workspace::data::stats::NgramCount]| {
        let top: Vec<(String, usize)> =
            counts.iter().take(10).map(|c| (ngram_text(&vocab, &c.ids, ", "), c.count)).collect();
        println!("{top:?}");
    };
    println!("unigrams:");
    show_top(&unigrams);
    // bigram_tokens = [pair for pair in zip(corpus[:-1], corpus[1:])]
    let bigrams = ngram_counts(&ids, 2);
    println!("bigrams:");
    show_top(&bigrams);
    // trigram_tokens = [triple for triple in zip(corpus[:-2], corpus[1:-1], corpus[2:])]
    let trigrams = ngram_counts(&ids, 3);
    println!("trigrams:");
    show_top(&trigrams);

    // d2l.plot([unigram_freqs, bigram_freqs, trigram_freqs], xscale='log', yscale='log')
    let uni = frequencies(&unigrams);
    let fit = fit_zipf(&uni);
    if let Some(f) = &fit {
        println!("Zipf fit of the unigrams: n_i ~ i^-{:.3} (R^2 = {:.3})", f.alpha, f.r_squared);
    }
    let series = [
        FreqSeries { label: "unigram".into(), freqs: uni },
        FreqSeries { label: "bigram".into(), freqs: frequencies(&bigrams) },
        FreqSeries { label: "trigram".into(), freqs: frequencies(&trigrams) },
    ];
    let plot = args.out.join("zipf.png");
    plot_frequencies(&plot, "The Time Machine: n-gram frequency by rank", &series, fit.as_ref())?;
    println!("wrote {}", plot.display());

    // my_seq = list(range(35)); batch_size=2, num_steps=5
    let my_seq: Vec<u32> = (0..35).collect();
    let mut rng = StdRng::seed_from_u64(0);
    println!("\nrandom sampling (seq_data_iter_random):");
    for batch in random_batches(&my_seq, 2, 5, &mut rng)? {
        show(&batch);
    }
    println!("\nsequential partitioning (seq_data_iter_sequential):");
    for batch in sequential_batches(&my_seq, 2, 5, &mut rng)? {
        show(&batch);
    }
    Ok(())
}
