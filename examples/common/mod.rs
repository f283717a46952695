//! Helpers shared by the d2l examples: command-line arguments, the Time Machine corpus, the
//! training loop over `seqmodels_train::Trainer` and greedy continuations.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use seqmodels_workspace::data::{CorpusLocator, CorpusOptions, LmCorpus, Vocab};
use seqmodels_workspace::train::generate::{generate, SamplingOptions};
use seqmodels_workspace::train::metrics::{plot_perplexity, EpochMetrics};
use seqmodels_workspace::train::model::{LanguageModel, LmConfig};
use seqmodels_workspace::train::trainer::{EpochEnd, TrainConfig, Trainer};

/// `--quick` and `--out DIR`, the only options of every example.
pub struct Args {
    /// A few epochs on a small slice of the data (seconds, for CI).
    pub quick: bool,
    /// Where the figures go.
    pub out: PathBuf,
}

impl Args {
    /// Parses the command line; the default output directory is `runs/examples/NAME`.
    pub fn parse(name: &str) -> Result<Args> {
        let mut quick = false;
        let mut out = PathBuf::from("runs/examples").join(name);
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => quick = true,
                "--out" => out = it.next().context("--out needs a directory")?.into(),
                "-h" | "--help" => {
                    println!("usage: cargo run --release --example {name} -- [--quick] [--out DIR]");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (expected --quick or --out DIR)"),
            }
        }
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        Ok(Args { quick, out })
    }
}

/// Reads a named corpus from `$SEQMODELS_DATA`, else `../shared/data` beside the repository,
/// else the cache (or a download).
pub fn read_corpus(name: &str) -> Result<String> {
    let locator = CorpusLocator::from_env_or_beside(Path::new(env!("CARGO_MANIFEST_DIR")));
    locator.read(name).with_context(|| format!("reading the corpus {name:?} (set SEQMODELS_DATA)"))
}

/// The Time Machine as d2l's `load_corpus_time_machine`: d2l cleaning, characters, the first
/// `max_tokens` tokens.
pub fn time_machine_chars(max_tokens: usize) -> Result<LmCorpus> {
    let text = read_corpus("timemachine")?;
    let opts = CorpusOptions { max_tokens: Some(max_tokens), ..CorpusOptions::default() };
    Ok(LmCorpus::build(&text, &opts)?)
}

/// The prefix followed by `len` greedily generated characters.
pub fn continuation(model: &LanguageModel, vocab: &Vocab, prefix: &str, len: usize) -> Result<String> {
    let chars: Vec<String> = prefix.chars().map(|c| c.to_string()).collect();
    let ids = vocab.encode(&chars);
    let new = generate(model, &ids, len, &SamplingOptions::greedy())?;
    Ok(format!("{prefix}{}", vocab.decode(&new).concat()))
}

/// What a training run reports.
pub struct LmReport {
    pub history: Vec<EpochMetrics>,
    pub perplexity: f64,
    pub tokens_per_s: f64,
}

/// d2l's `train_ch8` over the project's trainer: trains, prints the perplexity every
/// `log_every` epochs with a sample, plots perplexity per epoch to `plot`, and prints the
/// final perplexity, the speed and two continuations, as the book does.
pub fn train_lm(
    title: &str,
    model_cfg: LmConfig,
    cfg: TrainConfig,
    corpus: &LmCorpus,
    plot: &Path,
) -> Result<(LanguageModel, LmReport)> {
    let epochs = cfg.epochs;
    let log_every = (epochs / 10).max(1);
    let mut trainer = Trainer::new(model_cfg, cfg, corpus.ids.clone(), None, &Device::Cpu)?;
    println!(
        "{title}: {} parameters, {} training tokens, vocabulary {}",
        trainer.model().config().num_parameters(),
        corpus.ids.len(),
        corpus.vocab.len()
    );
    let stop = AtomicBool::new(false);
    let mut history = Vec::new();
    let started = Instant::now();
    while !trainer.finished() {
        match trainer.run_epoch(&stop, &mut |_| {})? {
            EpochEnd::Finished(m) => {
                if m.epoch == 1 || m.epoch % log_every == 0 {
                    let sample = continuation(trainer.model(), &corpus.vocab, "time traveller", 50)?;
                    println!("epoch {:>4}  perplexity {:>8.3}  {sample}", m.epoch, m.train_ppl);
                }
                history.push(m);
            }
            EpochEnd::Interrupted => bail!("training was interrupted"),
        }
    }
    plot_perplexity(plot, title, &history)?;
    let last = history.last().context("no epoch was trained")?;
    let tokens: usize = history.iter().map(|m| m.tokens).sum();
    let seconds: f64 = history.iter().map(|m| m.seconds).sum();
    let tokens_per_s = tokens as f64 / seconds.max(1e-9);
    println!(
        "perplexity {:.1}, {:.0} tokens/sec on cpu ({:.1} s)",
        last.train_ppl,
        tokens_per_s,
        started.elapsed().as_secs_f64()
    );
    println!("{}", continuation(trainer.model(), &corpus.vocab, "time traveller", 50)?);
    println!("{}", continuation(trainer.model(), &corpus.vocab, "traveller", 50)?);
    println!("wrote {}", plot.display());
    let report = LmReport { perplexity: last.train_ppl, tokens_per_s, history: history.clone() };
    Ok((trainer.model().clone(), report))
}
