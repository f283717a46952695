//! `seqlm eval`: perplexity of a checkpoint's model on a text.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::commands::common::{load_predictor, read_corpus};
use seqmodels::quantized::Precision;

use crate::device::DeviceChoice;
use crate::error::Error;
use crate::trainer::evaluate;

/// Arguments of `seqlm eval`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["text", "corpus"])))]
pub struct EvalArgs {
    /// Checkpoint directory (or run directory holding checkpoint/), written by `seqlm train` or
    /// by `scripts/torch_lm.py`.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// The UTF-8 text file to evaluate on (cleaned and tokenized as in training).
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Or a corpus name or path (timemachine, tinyshakespeare, or a file), read as `seqlm train` reads it.
    #[arg(long, value_name = "NAME|PATH")]
    pub corpus: Option<String>,
    /// Evaluate only the first N tokens of the text.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Rows read in parallel: the text is cut into B contiguous rows, each read with its own
    /// carried state. 1 predicts every token from the whole text before it (exact, slower).
    #[arg(long, value_name = "B", default_value_t = 1)]
    pub batch: usize,
    /// Time steps per forward call (the state is carried across calls, so this only changes speed).
    #[arg(long, value_name = "T", default_value_t = 256)]
    pub steps: usize,
    /// Print one JSON line {"perplexity":..,"tokens":..} instead of a sentence.
    #[arg(long)]
    pub json: bool,
    /// Precision of the weights: f32, or bf16 / int8 on the CPU (an f32 checkpoint is converted
    /// as it loads; see `seqlm quantize --help`) [default: the checkpoint's own].
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Device: cpu, or cuda / cuda:N in a CUDA build of candle.
    #[arg(long, value_name = "cpu|cuda[:N]", default_value = "cpu")]
    pub device: DeviceChoice,
}

/// The JSON line of `seqlm eval --json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalReport {
    /// exp(mean cross-entropy per predicted token).
    pub perplexity: f64,
    /// Number of predicted tokens.
    pub tokens: usize,
}

/// Runs `seqlm eval`.
pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let device = args.device.open()?;
    if args.batch == 0 {
        return Err(Error::option("batch", "at least 1", 0).into());
    }
    if args.steps == 0 {
        return Err(Error::option("steps", "at least 1", 0).into());
    }
    if args.max_tokens == Some(0) {
        return Err(Error::option("max-tokens", "at least 1", 0).into());
    }
    let loaded = load_predictor(&args.checkpoint, &device, args.precision, (args.batch, args.steps))?;
    let (text, what) = match (&args.text, &args.corpus) {
        (Some(path), _) => (
            seqmodels_data::read_text_file(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, Some(corpus)) => (read_corpus(corpus)?, corpus.clone()),
        (None, None) => unreachable!("clap requires --text or --corpus"),
    };
    let mut ids = loaded.tokenizer.encode(&text).with_context(|| format!("tokenizing {what}"))?;
    if let Some(n) = args.max_tokens {
        ids.truncate(n);
    }
    let eval = evaluate(loaded.model.as_ref(), &ids, args.batch, args.steps)
        .with_context(|| format!("evaluating on {what}"))?;
    let report = EvalReport { perplexity: eval.perplexity, tokens: eval.tokens };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "perplexity {:.6} (cross-entropy {:.6} nats) on {} tokens of {what}",
            eval.perplexity, eval.loss, eval.tokens
        );
    }
    Ok(())
}
