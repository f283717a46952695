//! `seqlm generate`: continue a prefix with a checkpoint's model.

use std::path::PathBuf;

use crate::commands::common::load_predictor;
use seqmodels::quantized::Precision;

use crate::device::DeviceChoice;
use crate::error::Error;
use crate::generate::{check_generation_len, generate, SamplingOptions};

/// Arguments of `seqlm generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Checkpoint directory (or run directory holding checkpoint/), written by `seqlm train` or
    /// by `scripts/torch_lm.py`.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// The text to continue (cleaned and tokenized as in training; the state is warmed up on it).
    #[arg(long, value_name = "TEXT")]
    pub prefix: String,
    /// Number of tokens to generate.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub len: usize,
    /// Sample with this softmax temperature (0: greedy) [default: greedy decoding, as d2l;
    /// 1 when only --top-k or --top-p is given].
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// Sample from the K most likely tokens only.
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Sample from the smallest set of most likely tokens whose probability reaches P (nucleus).
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,
    /// Seed of the sampler (sampling only).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Precision of the weights: f32, or bf16 / int8 on the CPU (an f32 checkpoint is converted
    /// as it loads; see `seqlm quantize --help`) [default: the checkpoint's own].
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Device: cpu, or cuda / cuda:N in a CUDA build of candle.
    #[arg(long, value_name = "cpu|cuda[:N]", default_value = "cpu")]
    pub device: DeviceChoice,
}

/// Runs `seqlm generate`: prints the prefix (as tokenized) followed by the continuation.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    check_generation_len("len", args.len)?;
    let device = args.device.open()?;
    let options =
        SamplingOptions { temperature: args.temperature, top_k: args.top_k, top_p: args.top_p, seed: args.seed };
    options.validate()?;
    let loaded = load_predictor(&args.checkpoint, &device, args.precision, (1, 1))?;
    let prefix = loaded.tokenizer.encode_prefix(&args.prefix)?;
    if prefix.is_empty() {
        return Err(Error::TooFewTokens { what: format!("the prefix {:?}", args.prefix), needed: 1 }.into());
    }
    let new = generate(loaded.model.as_ref(), &prefix, args.len, &options)?;
    let mut all = prefix;
    all.extend(new);
    println!("{}", loaded.tokenizer.decode(&all));
    Ok(())
}
