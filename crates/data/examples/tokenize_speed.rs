//! Benchmark: tokenizing and numericalizing Tiny Shakespeare by characters.
//!
//! ```text
//! SEQMODELS_DATA=../shared/data cargo run --release -p seqmodels-data --example tokenize_speed [RUNS]
//! ```
//!
//! Times `LmCorpus::build` (no cleaning, character tokens, vocabulary, indices) on the text
//! already in memory, and prints the median, minimum and maximum over RUNS runs (default 21).

use std::time::{Duration, Instant};

use seqmodels_data::{Cleaning, CorpusLocator, CorpusOptions, LmCorpus, TokenLevel};

fn main() -> anyhow::Result<()> {
    let runs: usize = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 21,
    };
    anyhow::ensure!(runs > 0, "RUNS must be at least 1");
    let text = CorpusLocator::from_env().read("tinyshakespeare")?;
    let options = CorpusOptions { cleaning: Cleaning::None, level: TokenLevel::Char, ..CorpusOptions::default() };

    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut corpus = LmCorpus::build(&text, &options)?; // warm-up
    for _ in 0..runs {
        let start = Instant::now();
        corpus = LmCorpus::build(&text, &options)?;
        times.push(start.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("tinyshakespeare: {} bytes -> {} tokens, vocabulary {}", text.len(), corpus.len(), corpus.vocab.len());
    println!(
        "char tokenize + numericalize: median {:.2} ms, min {:.2} ms, max {:.2} ms over {runs} runs ({:.0} MB/s at the median)",
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1]),
        text.len() as f64 / times[runs / 2].as_secs_f64() / 1e6
    );
    Ok(())
}
