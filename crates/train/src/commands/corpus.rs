//! `seqlm corpus`: corpus statistics (token count, vocabulary, top-k, Zipf fit, log-log plot).
//!
//! With `--json` it prints one line:
//! `{"tokens":N,"vocab_size":V,"top":[["the",2261],...],"zipf_alpha":A,"distinct":D}`,
//! where `vocab_size` counts `<unk>` (and any reserved token) and `distinct` the different
//! tokens that occur in the (possibly truncated) corpus.

use std::path::PathBuf;

use anyhow::Context;
use seqmodels_data::stats::{frequencies, ngram_counts};
use seqmodels_data::{
    fit_zipf, plot_frequencies, BpeOptions, BpeTokenizer, Cleaning, CorpusOptions, CorpusStats, FreqSeries, LmCorpus,
};

use crate::commands::common::{corpus_locator, default_cleaning};
use crate::tokenizer::TokenizerKind;

/// Arguments of `seqlm corpus`.
#[derive(Debug, clap::Args)]
pub struct CorpusArgs {
    /// A corpus name (timemachine, tinyshakespeare) or the path of a UTF-8 text file. Named
    /// corpora are read from $SEQMODELS_DATA, the cache, or downloaded (SEQMODELS_OFFLINE=1: never).
    #[arg(long)]
    pub corpus: String,
    /// How to tokenize.
    #[arg(long, value_enum, default_value = "char")]
    pub tokenizer: TokenizerKind,
    /// Cleaning [default: d2l for timemachine, none otherwise].
    #[arg(long, value_enum)]
    pub clean: Option<Cleaning>,
    /// Keep only the first N tokens (the vocabulary is still built on the whole text, as d2l does).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// BPE: vocabulary size to train.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub bpe_vocab: usize,
    /// BPE: use this existing tokenizer.json instead of training one.
    #[arg(long, value_name = "FILE")]
    pub tokenizer_json: Option<PathBuf>,
    /// BPE: save the trained tokenizer as this tokenizer.json.
    #[arg(long, value_name = "FILE")]
    pub save_tokenizer: Option<PathBuf>,
    /// Word tokens: append this token after every non-empty line (for example "<eol>").
    #[arg(long, value_name = "TOKEN")]
    pub eol_token: Option<String>,
    /// Save the vocabulary as JSON.
    #[arg(long, value_name = "FILE")]
    pub save_vocab: Option<PathBuf>,
    /// Number of most frequent tokens to show.
    #[arg(long, value_name = "K", default_value_t = 10)]
    pub top: usize,
    /// Write a log-log plot of unigram, bigram and trigram frequencies (PNG).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The JSON line of `seqlm corpus --json` (fields in this order).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CorpusReport {
    /// Number of tokens in the corpus (after `--max-tokens`).
    pub tokens: usize,
    /// Vocabulary size, `<unk>` included.
    pub vocab_size: usize,
    /// Most frequent tokens and their counts.
    pub top: Vec<(String, usize)>,
    /// Fitted Zipf exponent of the unigram frequencies.
    pub zipf_alpha: Option<f64>,
    /// Number of distinct tokens in the corpus.
    pub distinct: usize,
}

struct Computed {
    report: CorpusReport,
    source: PathBuf,
    cleaning: Cleaning,
    corpus: LmCorpus,
}

fn compute(args: &CorpusArgs) -> anyhow::Result<Computed> {
    let source = corpus_locator().resolve(&args.corpus)?;
    let text = seqmodels_data::read_text_file(&source)?;
    let cleaning = args.clean.unwrap_or_else(|| default_cleaning(&args.corpus));
    let corpus = match args.tokenizer.level() {
        Some(level) => {
            let options = CorpusOptions {
                cleaning,
                level,
                eol_token: args.eol_token.clone(),
                max_tokens: args.max_tokens,
                ..CorpusOptions::default()
            };
            LmCorpus::build(&text, &options)?
        }
        None => {
            if args.max_tokens == Some(0) {
                return Err(seqmodels_data::Error::ZeroMaxTokens.into());
            }
            let tokenizer = match &args.tokenizer_json {
                Some(path) => BpeTokenizer::load(path)?,
                None => {
                    let lines = cleaning.apply(&text);
                    let options = BpeOptions { vocab_size: args.bpe_vocab, ..BpeOptions::default() };
                    BpeTokenizer::train(&lines, &options)?
                }
            };
            if let Some(path) = &args.save_tokenizer {
                tokenizer.save(path)?;
            }
            LmCorpus::build_bpe(&text, cleaning, &tokenizer, args.max_tokens)?
        }
    };
    if let Some(path) = &args.save_vocab {
        corpus.vocab.save(path)?;
    }
    let stats = CorpusStats::compute(&corpus.ids, &corpus.vocab, args.top);
    let report = CorpusReport {
        tokens: stats.tokens,
        vocab_size: stats.vocab_size,
        top: stats.top,
        zipf_alpha: stats.zipf_alpha,
        distinct: stats.distinct,
    };
    Ok(Computed { report, source, cleaning, corpus })
}

fn plot(args: &CorpusArgs, computed: &Computed, path: &std::path::Path) -> anyhow::Result<()> {
    let series: Vec<FreqSeries> = [(1, "unigram"), (2, "bigram"), (3, "trigram")]
        .iter()
        .map(|&(n, label)| FreqSeries {
            label: label.to_owned(),
            freqs: frequencies(&ngram_counts(&computed.corpus.ids, n)),
        })
        .filter(|s| !s.freqs.is_empty())
        .collect();
    let fit = fit_zipf(&series.first().map(|s| s.freqs.clone()).unwrap_or_default());
    let tokenizer = format!("{:?}", args.tokenizer).to_lowercase();
    let title = format!("{}: {tokenizer} n-gram frequencies", args.corpus);
    plot_frequencies(path, &title, &series, fit.as_ref())?;
    Ok(())
}

/// Computes the report of `seqlm corpus` (and writes the files it asks for).
pub fn report(args: &CorpusArgs) -> anyhow::Result<CorpusReport> {
    let computed = compute(args)?;
    if let Some(path) = &args.plot {
        plot(args, &computed, path)?;
    }
    Ok(computed.report)
}

fn show(token: &str) -> String {
    let escaped = format!("{token:?}");
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        escaped
    } else {
        token.to_owned()
    }
}

/// Runs `seqlm corpus`.
pub fn run(args: &CorpusArgs) -> anyhow::Result<()> {
    let computed = compute(args)?;
    if let Some(path) = &args.plot {
        plot(args, &computed, path).with_context(|| format!("writing the plot {}", path.display()))?;
    }
    let r = &computed.report;
    if args.json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    println!("corpus      {} ({})", args.corpus, computed.source.display());
    println!("cleaning    {}", computed.cleaning);
    println!("tokenizer   {:?}", args.tokenizer);
    println!("tokens      {}", r.tokens);
    println!("vocabulary  {} ({} distinct tokens in the corpus)", r.vocab_size, r.distinct);
    match r.zipf_alpha {
        Some(a) => println!("zipf alpha  {a:.4}"),
        None => println!("zipf alpha  n/a"),
    }
    if !r.top.is_empty() {
        println!("top {}:", r.top.len());
        let width = r.top.iter().map(|(t, _)| show(t).chars().count()).max().unwrap_or(0);
        for (i, (token, count)) in r.top.iter().enumerate() {
            println!("  {:>3}  {:<width$}  {count}", i + 1, show(token));
        }
    }
    if let Some(path) = &args.plot {
        println!("plot        {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CorpusArgs,
    }

    fn run_report(extra: &[&str], corpus: &str) -> anyhow::Result<CorpusReport> {
        // The corpus found as a program run from this repository finds it, passed as a path.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let path = seqmodels_data::CorpusLocator::from_env_or_beside(&root).resolve(corpus)?;
        let mut argv = vec!["corpus", "--corpus", path.to_str().unwrap()];
        argv.extend_from_slice(extra);
        report(&Cli::try_parse_from(argv)?.args)
    }

    #[test]
    fn issue_checks_chars_and_words() {
        let r = run_report(&["--tokenizer", "char", "--clean", "d2l", "--json"], "timemachine").unwrap();
        assert_eq!((r.tokens, r.vocab_size, r.distinct), (170_580, 28, 27));
        assert_eq!(r.top[1], ("e".to_string(), 17_838));
        let r = run_report(&["--tokenizer", "word", "--clean", "d2l", "--top", "3"], "timemachine").unwrap();
        assert_eq!((r.tokens, r.vocab_size, r.distinct), (32_775, 4_580, 4_579));
        assert_eq!(r.top[0], ("the".to_string(), 2_261));
        assert_eq!(r.top.len(), 3);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.starts_with(r#"{"tokens":32775,"vocab_size":4580,"top":[["the",2261],"#), "{json}");
        let r = run_report(&["--max-tokens", "10000", "--clean", "d2l"], "timemachine").unwrap();
        assert_eq!((r.tokens, r.vocab_size), (10_000, 28));
    }

    #[test]
    fn shakespeare_and_errors() {
        let r = run_report(&["--clean", "none"], "tinyshakespeare").unwrap();
        assert_eq!(r.distinct, 65);
        let err = run_report(&["--max-tokens", "0"], "timemachine").unwrap_err();
        assert!(err.to_string().contains("max_tokens"), "{err}");
        let err = run_report(&["--tokenizer", "bpe", "--max-tokens", "0"], "timemachine").unwrap_err();
        assert!(err.to_string().contains("max_tokens"), "{err}");
        assert!(run_report(&["--clean", "lower"], "timemachine").is_err());
    }
}
