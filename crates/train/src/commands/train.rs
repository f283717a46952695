//! `seqlm train`: train a recurrent language model on a corpus.
//!
//! Defaults reproduce d2l's concise LSTM (Time Machine, d2l character cleaning, one-hot input,
//! LSTM H=256, batch 32, 35 steps, SGD lr 1, clipping at 1, sequential partitioning, the first
//! 10,000 tokens, 500 epochs). The run directory receives `metrics.jsonl`, `perplexity.png` and
//! `checkpoint/` (see `docs/checkpoint.md`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use seqmodels::{CellKind, Implementation, RnnConfig};
use seqmodels_data::{named_corpus, Cleaning, Sampling};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointConfig};
use crate::commands::common::{default_cleaning, read_corpus};
use crate::device::DeviceChoice;
use crate::error::Error;
use crate::generate::{generate, SamplingOptions};
use crate::metrics::{self, EpochMetrics};
use crate::model::{InitScheme, LmConfig};
use crate::optim::{OptimConfig, OptimizerKind};
use crate::schedule::LrSchedule;
use crate::tokenizer::{TextTokenizer, TokenizerKind, TokenizerSpec};
use crate::trainer::{evaluate, read_training_files, EpochEnd, TrainConfig, Trainer};

/// RNN nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NonlinearityArg {
    /// tanh (PyTorch's default).
    Tanh,
    /// relu.
    Relu,
}

/// Arguments of `seqlm train`.
///
/// Options shown with "[default: ..]" in their help but typed as `Option` are the ones fixed by
/// a checkpoint: with `--resume` they must be left out.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
With --resume DIR the model, data and training options come from the checkpoint and must be left out; \
--epochs (to train longer), --lr (a new rate from now on), --device, --impl, --out and the output options may be given.\n\
Ctrl-C writes a checkpoint after the current step and exits with status 130; a loss that becomes NaN or \
infinite stops the run (status 1) and keeps the last good checkpoint.")]
pub struct TrainArgs {
    // ---- data
    /// Corpus: a name (timemachine, tinyshakespeare) or the path of a UTF-8 text file. Named
    /// corpora are read from $SEQMODELS_DATA, the cache, or downloaded [default: timemachine].
    #[arg(long, value_name = "NAME|PATH", help_heading = "Data")]
    pub corpus: Option<String>,
    /// Validation text file (tokenized like the corpus) [default: a held-out tail of the corpus,
    /// see --val-fraction].
    #[arg(long, value_name = "PATH", help_heading = "Data")]
    pub valid: Option<PathBuf>,
    /// Test text file: its perplexity is printed at the end.
    #[arg(long, value_name = "PATH", help_heading = "Data")]
    pub test: Option<PathBuf>,
    /// Without --valid: the last ceil(F x training tokens) tokens of the corpus are held out for
    /// validation (never trained on); 0 turns validation off [default: 0.1].
    #[arg(long, value_name = "F", help_heading = "Data")]
    pub val_fraction: Option<f64>,
    /// Tokens [default: char].
    #[arg(long, value_enum, help_heading = "Data")]
    pub tokenizer: Option<TokenizerKind>,
    /// Cleaning [default: d2l for timemachine, none for other corpora].
    #[arg(long, value_enum, help_heading = "Data")]
    pub clean: Option<Cleaning>,
    /// Append an end-of-sentence token `<eos>` to every line (word tokens only).
    #[arg(long, help_heading = "Data")]
    pub eos: bool,
    /// BPE vocabulary size to train [default: 1000].
    #[arg(long, value_name = "N", help_heading = "Data")]
    pub bpe_vocab: Option<usize>,
    /// Train on the first N tokens of the corpus, or `all` [default: 10000, as d2l].
    #[arg(long, value_name = "N|all", help_heading = "Data")]
    pub max_tokens: Option<String>,

    // ---- model
    /// Recurrent layer [default: lstm].
    #[arg(long, value_enum, help_heading = "Model")]
    pub model: Option<CellKind>,
    /// RNN nonlinearity (--model rnn only) [default: tanh].
    #[arg(long, value_enum, help_heading = "Model")]
    pub nonlinearity: Option<NonlinearityArg>,
    /// Stacked recurrent layers [default: 1].
    #[arg(long, value_name = "N", help_heading = "Model")]
    pub layers: Option<usize>,
    /// Hidden size H [default: 256].
    #[arg(long, value_name = "H", help_heading = "Model")]
    pub hidden: Option<usize>,
    /// Embedding size E (instead of one-hot input) [default: one-hot].
    #[arg(long, value_name = "E", conflicts_with = "one_hot", help_heading = "Model")]
    pub embed: Option<usize>,
    /// One-hot input vectors, as d2l (the default).
    #[arg(long, help_heading = "Model")]
    pub one_hot: bool,
    /// Share the embedding matrix with the decoder (needs --embed equal to directions x hidden,
    /// or x --proj-size).
    #[arg(long, help_heading = "Model")]
    pub tie_weights: bool,
    /// Dropout on the embedding and recurrent outputs and between recurrent layers [default: 0].
    #[arg(long, value_name = "P", help_heading = "Model")]
    pub dropout: Option<f64>,
    /// Bidirectional recurrent layers (such a model cannot generate sensible text).
    #[arg(long, help_heading = "Model")]
    pub bidirectional: bool,
    /// LSTM projection size (0: none) [default: 0].
    #[arg(long, value_name = "P", help_heading = "Model")]
    pub proj_size: Option<usize>,
    /// Recurrent layers without biases.
    #[arg(long, help_heading = "Model")]
    pub no_bias: bool,
    /// Draw every parameter from U(-A, A) instead of PyTorch's default init.
    #[arg(long, value_name = "A", help_heading = "Model")]
    pub init_range: Option<f64>,

    // ---- training
    /// Sequences per minibatch [default: 32].
    #[arg(long, value_name = "B", help_heading = "Training")]
    pub batch: Option<usize>,
    /// Time steps per minibatch (truncated BPTT length) [default: 35].
    #[arg(long, value_name = "T", help_heading = "Training")]
    pub steps: Option<usize>,
    /// Epochs in total (with --resume: train until this many) [default: 500].
    #[arg(long, value_name = "N", help_heading = "Training")]
    pub epochs: Option<usize>,
    /// Learning rate (with --resume: the rate from now on) [default: 1].
    #[arg(long, value_name = "LR", allow_negative_numbers = true, help_heading = "Training")]
    pub lr: Option<f64>,
    /// Optimizer [default: sgd].
    #[arg(long, value_enum, help_heading = "Training")]
    pub optimizer: Option<OptimizerKind>,
    /// SGD momentum [default: 0].
    #[arg(long, value_name = "M", help_heading = "Training")]
    pub momentum: Option<f64>,
    /// Weight decay (L2 for sgd/adam, decoupled for adamw) [default: 0; 0.01 for adamw].
    #[arg(long, value_name = "W", help_heading = "Training")]
    pub weight_decay: Option<f64>,
    /// Divide the learning rate by X every epoch after epoch --lr-decay-after.
    #[arg(long, value_name = "X", conflicts_with = "lr_plateau", help_heading = "Training")]
    pub lr_decay: Option<f64>,
    /// The last epoch trained at the initial rate when --lr-decay is given [default: 1].
    #[arg(long, value_name = "N", requires = "lr_decay", help_heading = "Training")]
    pub lr_decay_after: Option<usize>,
    /// Divide the learning rate by X whenever the validation perplexity does not improve.
    #[arg(long, value_name = "X", help_heading = "Training")]
    pub lr_plateau: Option<f64>,
    /// Clip gradients to this global L2 norm (0: no clipping) [default: 1].
    #[arg(long, value_name = "C", allow_negative_numbers = true, help_heading = "Training")]
    pub clip: Option<f64>,
    /// Minibatch sampling [default: sequential].
    #[arg(long, value_enum, help_heading = "Training")]
    pub sampling: Option<Sampling>,
    /// Seed of the initial weights, the data order and the dropout masks [default: 0].
    #[arg(long, value_name = "S", help_heading = "Training")]
    pub seed: Option<u64>,
    /// Device: cpu, or cuda / cuda:N in a CUDA build of candle.
    #[arg(long, value_name = "cpu|cuda[:N]", default_value = "cpu", help_heading = "Training")]
    pub device: DeviceChoice,
    /// Implementation of the recurrent layers: auto (the fused kernels on the CPU, composed on
    /// CUDA), fused or composed (same results within float tolerance; allowed with --resume).
    #[arg(long = "impl", value_enum, default_value_t = Implementation::Auto, help_heading = "Training")]
    pub implementation: Implementation,

    // ---- run directory and output
    /// Run directory (metrics.jsonl, perplexity.png, checkpoint/) [default: runs/CORPUS-MODEL,
    /// or the first free runs/CORPUS-MODEL-N; with --resume: the resumed run's directory].
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub out: Option<PathBuf>,
    /// Replace a previous run in --out instead of refusing to.
    #[arg(long, help_heading = "Output")]
    pub overwrite: bool,
    /// Continue the run whose checkpoint (or run directory) is DIR, exactly where it stopped.
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub resume: Option<PathBuf>,
    /// Generate a sample every N epochs (0: never).
    #[arg(long, value_name = "N", default_value_t = 50, help_heading = "Output")]
    pub sample_every: usize,
    /// Prefix of the samples and of the final continuation.
    #[arg(long, value_name = "TEXT", default_value = "time traveller", help_heading = "Output")]
    pub prefix: String,
    /// Tokens generated per sample.
    #[arg(long, value_name = "N", default_value_t = 50, help_heading = "Output")]
    pub sample_len: usize,
    /// Print a line of metrics every N epochs (and on the first and last).
    #[arg(long, value_name = "N", default_value_t = 10, help_heading = "Output")]
    pub log_every: usize,
    /// Write a checkpoint every N epochs (and always at the end, on Ctrl-C, and never after a NaN).
    #[arg(long, value_name = "N", default_value_t = 1, help_heading = "Output")]
    pub checkpoint_every: usize,
    /// No progress bar (it is only drawn on a terminal anyway).
    #[arg(long, help_heading = "Output")]
    pub no_progress: bool,
}

/// How the data was prepared (stored in `trainer.json` to rebuild it on `--resume`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// Corpus name or absolute path.
    pub corpus: String,
    /// Validation file (absolute path), if any.
    pub valid: Option<PathBuf>,
    /// Test file (absolute path), if any.
    pub test: Option<PathBuf>,
    /// Held-out fraction when there is no validation file.
    pub val_fraction: f64,
    /// Training-token budget (`None`: all).
    pub max_tokens: Option<usize>,
    /// BPE vocabulary size.
    pub bpe_vocab: usize,
}

/// The prepared data.
pub struct Prepared {
    /// The fitted tokenizer.
    pub tokenizer: TextTokenizer,
    /// Training indices.
    pub train: Vec<u32>,
    /// Validation indices.
    pub valid: Option<Vec<u32>>,
    /// Test indices.
    pub test: Option<Vec<u32>>,
    /// Tokens in the whole corpus.
    pub corpus_tokens: usize,
}

fn read_file_text(path: &Path, what: &str) -> anyhow::Result<String> {
    seqmodels_data::read_text_file(path).with_context(|| format!("reading the {what} file {}", path.display()))
}

/// Tokenizes the corpus (or re-encodes it with `tokenizer`) and splits it as `spec` says.
pub fn prepare_data(spec: &DataSpec, tok: TokenizerChoice<'_>) -> anyhow::Result<Prepared> {
    let text = read_corpus(&spec.corpus)?;
    let (tokenizer, ids) = match tok {
        TokenizerChoice::Fit(tspec) => {
            TextTokenizer::fit(&text, tspec, spec.bpe_vocab).with_context(|| format!("tokenizing {}", spec.corpus))?
        }
        TokenizerChoice::Use(t) => {
            let ids = t.encode(&text).with_context(|| format!("tokenizing {}", spec.corpus))?;
            (t.clone(), ids)
        }
    };
    let n = ids.len();
    let budget = spec.max_tokens.unwrap_or(n).min(n);
    let (train, valid) = match &spec.valid {
        Some(path) => {
            let v = tokenizer.encode(&read_file_text(path, "validation")?)?;
            if v.len() < 2 {
                bail!(
                    "the validation file {} has {} tokens after tokenization: expected at least 2",
                    path.display(),
                    v.len()
                );
            }
            (ids[..budget].to_vec(), Some(v))
        }
        None if spec.val_fraction > 0.0 => {
            let val_len = (spec.val_fraction * budget as f64).ceil() as usize;
            let val_len = val_len.max(2);
            if val_len >= n {
                return Err(Error::option(
                    "val-fraction",
                    format!("a held-out tail shorter than the corpus ({n} tokens)"),
                    format!("{} ({val_len} tokens)", spec.val_fraction),
                )
                .into());
            }
            let train_len = budget.min(n - val_len);
            (ids[..train_len].to_vec(), Some(ids[n - val_len..].to_vec()))
        }
        None => (ids[..budget].to_vec(), None),
    };
    let test = match &spec.test {
        Some(path) => Some(tokenizer.encode(&read_file_text(path, "test")?)?),
        None => None,
    };
    Ok(Prepared { tokenizer, train, valid, test, corpus_tokens: n })
}

/// Whether to fit a tokenizer on the corpus or use an existing one.
pub enum TokenizerChoice<'a> {
    /// Fit on the corpus.
    Fit(&'a TokenizerSpec),
    /// Use this one (resume).
    Use(&'a TextTokenizer),
}

fn parse_max_tokens(s: Option<&str>) -> anyhow::Result<Option<usize>> {
    match s {
        None => Ok(Some(10_000)),
        Some("all") => Ok(None),
        Some(v) => match v.parse::<usize>() {
            Ok(0) => Err(Error::option("max-tokens", "at least 1, or `all`", 0).into()),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(Error::option("max-tokens", "a number of tokens or `all`", v).into()),
        },
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Builds the data, model and training configurations of a fresh run from the arguments.
fn fresh_configs(args: &TrainArgs) -> anyhow::Result<(DataSpec, TokenizerSpec, TrainConfig)> {
    let corpus = args.corpus.clone().unwrap_or_else(|| "timemachine".into());
    let corpus_spec = if named_corpus(&corpus).is_some() {
        corpus.clone()
    } else {
        absolute(Path::new(&corpus)).display().to_string()
    };
    let val_fraction = args.val_fraction.unwrap_or(0.1);
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(Error::option("val-fraction", "a fraction in [0, 1)", val_fraction).into());
    }
    let data = DataSpec {
        corpus: corpus_spec,
        valid: args.valid.as_deref().map(absolute),
        test: args.test.as_deref().map(absolute),
        val_fraction,
        max_tokens: parse_max_tokens(args.max_tokens.as_deref())?,
        bpe_vocab: args.bpe_vocab.unwrap_or(1000),
    };
    let tok = TokenizerSpec {
        kind: args.tokenizer.unwrap_or(TokenizerKind::Char),
        cleaning: args.clean.unwrap_or_else(|| default_cleaning(&corpus)),
        eos: args.eos.then(|| "<eos>".to_string()),
    };
    tok.validate()?;
    let d = TrainConfig::d2l();
    let opt_kind = args.optimizer.unwrap_or(OptimizerKind::Sgd);
    let mut optimizer = OptimConfig::new(opt_kind);
    if let Some(m) = args.momentum {
        if opt_kind != OptimizerKind::Sgd && m != 0.0 {
            return Err(Error::option("momentum", "--optimizer sgd (Adam has beta1 instead)", m).into());
        }
        optimizer.momentum = m;
    }
    if let Some(w) = args.weight_decay {
        optimizer.weight_decay = w;
    }
    let schedule = match (args.lr_decay, args.lr_plateau) {
        (Some(factor), _) => LrSchedule::StepDecay { factor, after: args.lr_decay_after.unwrap_or(1) },
        (None, Some(factor)) => LrSchedule::Plateau { factor },
        (None, None) => LrSchedule::Constant,
    };
    if matches!(schedule, LrSchedule::Plateau { .. }) && data.valid.is_none() && data.val_fraction == 0.0 {
        bail!("--lr-plateau needs validation data: give --valid or a --val-fraction above 0");
    }
    let train = TrainConfig {
        batch_size: args.batch.unwrap_or(d.batch_size),
        num_steps: args.steps.unwrap_or(d.num_steps),
        epochs: args.epochs.unwrap_or(d.epochs),
        lr: args.lr.unwrap_or(d.lr),
        optimizer,
        schedule,
        clip: args.clip.unwrap_or(d.clip),
        sampling: args.sampling.unwrap_or(Sampling::Sequential),
        seed: args.seed.unwrap_or(d.seed),
        init: args.init_range.map_or(InitScheme::Pytorch, InitScheme::Uniform),
    };
    train.validate()?;
    Ok((data, tok, train))
}

fn model_config(args: &TrainArgs, vocab_size: usize) -> anyhow::Result<LmConfig> {
    let kind = match (args.model.unwrap_or(CellKind::Lstm), args.nonlinearity) {
        (CellKind::RnnTanh | CellKind::RnnRelu, Some(NonlinearityArg::Relu)) => CellKind::RnnRelu,
        (CellKind::RnnTanh | CellKind::RnnRelu, _) => CellKind::RnnTanh,
        (other, Some(_)) => bail!("--nonlinearity only applies to --model rnn, not {}", other.short_name()),
        (other, None) => other,
    };
    let hidden = args.hidden.unwrap_or(256);
    let dropout = args.dropout.unwrap_or(0.0);
    let cfg = LmConfig {
        vocab_size,
        embed: args.embed,
        rnn: RnnConfig {
            kind,
            input_size: args.embed.unwrap_or(vocab_size),
            hidden_size: hidden,
            num_layers: args.layers.unwrap_or(1),
            bias: !args.no_bias,
            batch_first: false,
            dropout,
            bidirectional: args.bidirectional,
            proj_size: args.proj_size.unwrap_or(0),
        },
        dropout,
        tie_weights: args.tie_weights,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Options that a checkpoint fixes: given with `--resume`, they are an error.
fn locked_options(args: &TrainArgs) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut check = |set: bool, name: &'static str| {
        if set {
            v.push(name)
        }
    };
    check(args.corpus.is_some(), "--corpus");
    check(args.valid.is_some(), "--valid");
    check(args.test.is_some(), "--test");
    check(args.val_fraction.is_some(), "--val-fraction");
    check(args.tokenizer.is_some(), "--tokenizer");
    check(args.clean.is_some(), "--clean");
    check(args.eos, "--eos");
    check(args.bpe_vocab.is_some(), "--bpe-vocab");
    check(args.max_tokens.is_some(), "--max-tokens");
    check(args.model.is_some(), "--model");
    check(args.nonlinearity.is_some(), "--nonlinearity");
    check(args.layers.is_some(), "--layers");
    check(args.hidden.is_some(), "--hidden");
    check(args.embed.is_some(), "--embed");
    check(args.one_hot, "--one-hot");
    check(args.tie_weights, "--tie-weights");
    check(args.dropout.is_some(), "--dropout");
    check(args.bidirectional, "--bidirectional");
    check(args.proj_size.is_some(), "--proj-size");
    check(args.no_bias, "--no-bias");
    check(args.init_range.is_some(), "--init-range");
    check(args.batch.is_some(), "--batch");
    check(args.steps.is_some(), "--steps");
    check(args.optimizer.is_some(), "--optimizer");
    check(args.momentum.is_some(), "--momentum");
    check(args.weight_decay.is_some(), "--weight-decay");
    check(args.lr_decay.is_some(), "--lr-decay");
    check(args.lr_decay_after.is_some(), "--lr-decay-after");
    check(args.lr_plateau.is_some(), "--lr-plateau");
    check(args.clip.is_some(), "--clip");
    check(args.sampling.is_some(), "--sampling");
    check(args.seed.is_some(), "--seed");
    v
}

/// Creates the run directory and checks that it can be written.
fn prepare_out_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create the output directory", dir, e))?;
    let probe = dir.join(".seqlm-write-test");
    std::fs::write(&probe, b"ok").map_err(|e| Error::io("write into the output directory", dir, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn holds_run(dir: &Path) -> bool {
    dir.join("metrics.jsonl").exists() || dir.join(checkpoint::CHECKPOINT_DIR).exists()
}

fn default_out(corpus: &str, model: &LmConfig) -> PathBuf {
    let stem =
        Path::new(corpus).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "corpus".into());
    let base = format!("runs/{stem}-{}", model.rnn.kind.layer_name().to_lowercase());
    let mut candidate = PathBuf::from(&base);
    let mut k = 2;
    while holds_run(&candidate) {
        candidate = PathBuf::from(format!("{base}-{k}"));
        k += 1;
    }
    candidate
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// A learning rate or other number, short: `1`, `0.25`, `1e-5`, `1e35`.
fn fmt_num(x: f64) -> String {
    if x != 0.0 && !(1e-3..1e5).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

fn fmt_duration(s: f64) -> String {
    if s >= 3600.0 {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    } else if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

fn epoch_line(m: &EpochMetrics, epochs: usize) -> String {
    let width = epochs.to_string().len();
    let val = m.val_ppl.map_or(String::new(), |v| format!("  val ppl {v:8.3}"));
    format!(
        "epoch {:>width$}/{epochs}  train ppl {:8.3}{val}  lr {}  {} tok/s  {:.1}s",
        m.epoch,
        m.train_ppl,
        fmt_num(m.lr),
        fmt_rate(m.tokens_per_s),
        m.seconds
    )
}

/// A continuation of `prefix` (greedy), or a note why there is none.
fn continuation(trainer_model: &crate::model::LanguageModel, tok: &TextTokenizer, prefix: &str, len: usize) -> String {
    let ids = match tok.encode_prefix(prefix) {
        Ok(ids) if !ids.is_empty() => ids,
        _ => return format!("(the prefix {prefix:?} has no tokens in this vocabulary)"),
    };
    match generate(trainer_model, &ids, len, &SamplingOptions::greedy()) {
        Ok(new) => {
            let mut all = ids.clone();
            all.extend(new);
            tok.decode(&all)
        }
        Err(e) => format!("(generation failed: {e})"),
    }
}

/// Runs `seqlm train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    if args.checkpoint_every == 0 {
        return Err(Error::option("checkpoint-every", "at least 1", 0).into());
    }
    let device = args.device.open()?;
    let started = Instant::now();

    // ---- build or restore the trainer
    let (mut trainer, tokenizer, ckpt_config, data_spec, test, run_dir) = if let Some(resume) = &args.resume {
        let locked = locked_options(args);
        if !locked.is_empty() {
            bail!(
                "--resume takes the model, data and training options from the checkpoint; remove {} \
                 (allowed with --resume: --epochs, --lr, --device, --impl, --out and the output options)",
                locked.join(", ")
            );
        }
        let loaded =
            checkpoint::load(resume, &device).with_context(|| format!("loading checkpoint {}", resume.display()))?;
        let saved =
            read_training_files(&loaded.dir).with_context(|| format!("resuming from {}", loaded.dir.display()))?;
        let data_spec: DataSpec = serde_json::from_value(saved.state.extra.clone()).map_err(|e| Error::Checkpoint {
            path: loaded.dir.join("trainer.json"),
            problem: format!("the `extra` data options are unreadable: {e}"),
        })?;
        let prepared = prepare_data(&data_spec, TokenizerChoice::Use(&loaded.tokenizer))?;
        let mut trainer = Trainer::resume(
            loaded.model,
            loaded.varmap,
            saved.state,
            saved.optimizer,
            saved.carry,
            prepared.train,
            prepared.valid,
        )
        .with_context(|| format!("resuming from {}", loaded.dir.display()))?;
        if let Some(e) = args.epochs {
            trainer.set_epochs(e)?;
        }
        if let Some(lr) = args.lr {
            trainer.set_lr(lr)?;
        }
        let ckpt_run_dir = match loaded.dir.file_name().and_then(|n| n.to_str()) {
            Some(n) if n.starts_with(checkpoint::CHECKPOINT_DIR) => loaded.dir.parent().map(Path::to_path_buf),
            _ => None,
        }
        .unwrap_or_else(|| loaded.dir.clone());
        let run_dir = args.out.clone().unwrap_or(ckpt_run_dir.clone());
        prepare_out_dir(&run_dir)?;
        // Keep the metrics of the epochs the checkpoint holds.
        let done = trainer.progress().epoch;
        let mut lines = metrics::read(&ckpt_run_dir.join("metrics.jsonl")).unwrap_or_default();
        lines.retain(|m| m.epoch <= done);
        metrics::rewrite(&run_dir.join("metrics.jsonl"), &lines)?;
        println!(
            "resuming {} at epoch {} (batch {}, step {}) of {}",
            loaded.dir.display(),
            done + 1,
            trainer.progress().batch,
            trainer.progress().step,
            trainer.config().epochs
        );
        (trainer, prepared.tokenizer, loaded.config, data_spec, prepared.test, run_dir)
    } else {
        let (data_spec, tok_spec, train_cfg) = fresh_configs(args)?;
        let prepared = prepare_data(&data_spec, TokenizerChoice::Fit(&tok_spec))?;
        let model_cfg = model_config(args, prepared.tokenizer.vocab_size())?;
        let needed = train_cfg.sampling.as_str();
        let min = seqmodels_data::Sampling::min_tokens(train_cfg.sampling, train_cfg.batch_size, train_cfg.num_steps);
        if prepared.train.len() < min {
            return Err(Error::option(
                "batch/steps",
                format!(
                    "a minibatch that fits the {} training tokens ({needed} sampling with --batch {} --steps {} needs at least {min})",
                    prepared.train.len(),
                    train_cfg.batch_size,
                    train_cfg.num_steps
                ),
                format!("--batch {} --steps {}", train_cfg.batch_size, train_cfg.num_steps),
            )
            .into());
        }
        let run_dir = match &args.out {
            Some(d) => d.clone(),
            None => default_out(&data_spec.corpus, &model_cfg),
        };
        if holds_run(&run_dir) && !args.overwrite {
            bail!(
                "{} already holds a run (metrics.jsonl or checkpoint/): continue it with --resume {}, \
                 start over with --overwrite, or choose another --out",
                run_dir.display(),
                run_dir.display()
            );
        }
        prepare_out_dir(&run_dir)?;
        metrics::rewrite(&run_dir.join("metrics.jsonl"), &[])?;
        let trainer = Trainer::new(model_cfg.clone(), train_cfg, prepared.train, prepared.valid, &device)?;
        let cfg = CheckpointConfig::new(model_cfg, tok_spec);
        println!(
            "corpus {} ({} tokens, vocabulary {}): training on {} tokens, validating on {}",
            data_spec.corpus,
            prepared.corpus_tokens,
            prepared.tokenizer.vocab_size(),
            trainer.fingerprint().train_tokens,
            match trainer.fingerprint().valid_tokens {
                0 => "nothing".to_string(),
                n => format!("{n} tokens"),
            }
        );
        (trainer, prepared.tokenizer, cfg, data_spec, prepared.test, run_dir)
    };
    trainer.set_implementation(args.implementation);
    if trainer.model().config().embed.is_none() && trainer.model().config().vocab_size > 2000 {
        println!(
            "note: one-hot input over {} tokens is slow and large; --embed E (for example 200) is the usual choice",
            trainer.model().config().vocab_size
        );
    }
    let extra = serde_json::to_value(&data_spec)?;
    let mc = trainer.model().config().clone();
    let tc = trainer.config().clone();
    println!(
        "model {} x{} H={} input {} ({} parameters); {} lr {} clip {} batch {} steps {} {} sampling; run directory {}",
        mc.rnn.kind.layer_name(),
        mc.rnn.num_layers,
        mc.rnn.hidden_size,
        mc.embed.map_or("one-hot".to_string(), |e| format!("embedding {e}")),
        mc.num_parameters(),
        tc.optimizer.kind.as_str(),
        fmt_num(trainer.lr()),
        fmt_num(tc.clip),
        tc.batch_size,
        tc.num_steps,
        tc.sampling,
        run_dir.display()
    );

    // ---- Ctrl-C: finish the current step, checkpoint, exit (a second Ctrl-C exits at once).
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }

    let epochs = trainer.config().epochs;
    if trainer.finished() {
        println!(
            "the run already has {} of {epochs} epochs; give a larger --epochs to train more",
            trainer.progress().epoch
        );
        return Ok(());
    }
    let pb = if args.no_progress {
        ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::with_draw_target(Some((epochs * 1000) as u64), ProgressDrawTarget::stderr())
    };
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {msg} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut history = metrics::read(&run_dir.join("metrics.jsonl"))?;
    let title = format!(
        "{} {} on {}",
        mc.rnn.kind.layer_name(),
        mc.rnn.hidden_size,
        Path::new(&data_spec.corpus).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    );
    let last_good = |epoch: usize| -> String {
        if epoch == 0 {
            "no checkpoint was written yet".into()
        } else {
            format!(
                "the last good checkpoint (epoch {epoch}) is in {}",
                run_dir.join(checkpoint::CHECKPOINT_DIR).display()
            )
        }
    };
    let mut saved_epoch = if args.resume.is_some() { trainer.progress().epoch } else { 0 };

    while !trainer.finished() {
        let mut on_step = |r: &crate::trainer::StepReport| {
            pb.set_prefix(format!("epoch {}/{}", r.epoch, epochs));
            pb.set_position(((r.epoch - 1) * 1000 + r.batch * 1000 / r.num_batches.max(1)) as u64);
            pb.set_message(format!(
                "loss {:.3} ppl {:.2} {} tok/s",
                r.epoch_loss,
                r.epoch_loss.exp(),
                fmt_rate(r.tokens_per_s)
            ));
        };
        let end = match trainer.run_epoch(&stop, &mut on_step) {
            Ok(end) => end,
            Err(e @ Error::NonFinite { .. }) => {
                pb.finish_and_clear();
                if !history.is_empty() {
                    let _ = metrics::plot_perplexity(&run_dir.join("perplexity.png"), &title, &history);
                }
                return Err(anyhow::anyhow!(
                    "{e}. {}; try a smaller --lr or --clip (resume with --resume {} --lr ...)",
                    last_good(saved_epoch),
                    run_dir.display()
                ));
            }
            Err(e) => return Err(e.into()),
        };
        match end {
            EpochEnd::Interrupted => {
                pb.finish_and_clear();
                let files = trainer.training_files(extra.clone())?;
                let dir = checkpoint::save(&run_dir, &ckpt_config, trainer.model(), &tokenizer, &files)
                    .context("writing the checkpoint after Ctrl-C")?;
                if !history.is_empty() {
                    metrics::plot_perplexity(&run_dir.join("perplexity.png"), &title, &history)?;
                }
                let p = trainer.progress();
                println!(
                    "interrupted: checkpoint written to {} (epoch {}, batch {}, step {}); continue with: seqlm train --resume {}",
                    dir.display(),
                    p.epoch + 1,
                    p.batch,
                    p.step,
                    run_dir.display()
                );
                std::process::exit(130);
            }
            EpochEnd::Finished(mut m) => {
                let e = m.epoch;
                let last = e == epochs;
                if args.sample_every > 0 && (e % args.sample_every == 0 || last) {
                    m.sample = Some(continuation(trainer.model(), &tokenizer, &args.prefix, args.sample_len));
                }
                metrics::append(&run_dir.join("metrics.jsonl"), &m)?;
                history.push(m.clone());
                if e % args.checkpoint_every == 0 || last {
                    let files = trainer.training_files(extra.clone())?;
                    checkpoint::save(&run_dir, &ckpt_config, trainer.model(), &tokenizer, &files)
                        .with_context(|| format!("writing the checkpoint of epoch {e}"))?;
                    saved_epoch = e;
                }
                if e == 1 || last || (args.log_every > 0 && e % args.log_every == 0) || m.sample.is_some() {
                    pb.suspend(|| {
                        println!("{}", epoch_line(&m, epochs));
                        if let Some(s) = &m.sample {
                            println!("  sample: {s}");
                        }
                    });
                }
                if args.sample_every > 0 && e % args.sample_every == 0 {
                    metrics::plot_perplexity(&run_dir.join("perplexity.png"), &title, &history)?;
                }
            }
        }
    }
    pb.finish_and_clear();

    // ---- the end: plot, final perplexity, test perplexity, continuation
    let plot = run_dir.join("perplexity.png");
    metrics::plot_perplexity(&plot, &title, &history)?;
    let last = history.last().cloned().expect("history is not empty");
    let total_s: f64 = history.iter().map(|m| m.seconds).sum();
    let total_tokens: usize = history.iter().map(|m| m.tokens).sum();
    println!(
        "trained {} epochs: {} of training steps, {} tok/s ({} wall time in this session)",
        last.epoch,
        fmt_duration(total_s),
        fmt_rate(total_tokens as f64 / total_s.max(1e-9)),
        fmt_duration(started.elapsed().as_secs_f64())
    );
    match last.val_ppl {
        Some(v) => println!("final perplexity: train {:.3}, validation {:.3}", last.train_ppl, v),
        None => println!("final perplexity: train {:.3}", last.train_ppl),
    }
    if let Some(test) = &test {
        let t = evaluate(trainer.model(), test, tc.batch_size, tc.num_steps).context("evaluating the test file")?;
        println!("test perplexity: {:.3} ({} tokens)", t.perplexity, t.tokens);
    }
    println!("{}", continuation(trainer.model(), &tokenizer, &args.prefix, args.sample_len));
    println!(
        "wrote {}, {} and {}",
        run_dir.join(checkpoint::CHECKPOINT_DIR).display(),
        run_dir.join("metrics.jsonl").display(),
        plot.display()
    );
    Ok(())
}
