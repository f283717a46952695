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
use clap::Args as _;
use seqmodels::{CellKind, Implementation, RnnConfig};
use seqmodels_data::{named_corpus, Cleaning, Sampling};
use serde::{Deserialize, Serialize};

use super::GivenOptions;
use crate::commands::common::{default_cleaning, read_corpus};
use crate::device::DeviceChoice;
use crate::error::Error;
use crate::generate::check_generation_len;
use crate::model::{InitScheme, LmConfig};
use crate::optim::{OptimConfig, OptimizerKind};
use crate::run_dir;
use crate::schedule::LrSchedule;
use crate::tokenizer::{TextTokenizer, TokenizerKind, TokenizerSpec};
use crate::trainer::TrainConfig;

mod session;

use session::{Ended, TrainRun};

/// RNN nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NonlinearityArg {
    /// tanh (PyTorch's default).
    Tanh,
    /// relu.
    Relu,
}

/// Arguments of `seqlm train`, in groups: what a checkpoint fixes (data, model, recipe), what a
/// resumed run may change (session) and where the output goes.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
With --resume DIR the model, data and training options come from the checkpoint and must be left out; \
--epochs (to train longer), --lr (a new rate from now on), --device, --impl, --out and the output options may be given.\n\
Ctrl-C writes a checkpoint after the current step and exits with status 130; a loss that becomes NaN or \
infinite stops the run (status 1) and keeps the last good checkpoint.")]
pub struct TrainArgs {
    /// The corpus and how it is tokenized (fixed by a checkpoint).
    #[command(flatten)]
    pub data: DataArgs,
    /// The model (fixed by a checkpoint).
    #[command(flatten)]
    pub model: ModelArgs,
    /// The training recipe (fixed by a checkpoint).
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// What a resumed run may change.
    #[command(flatten)]
    pub session: SessionArgs,
    /// The run directory and what is printed and written.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The options given on the command line (the others hold their defaults).
    #[arg(skip)]
    pub given: GivenOptions,
}

/// Data options of `seqlm train`.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Corpus: a name (timemachine, tinyshakespeare) or the path of a UTF-8 text file. Named
    /// corpora are read from $SEQMODELS_DATA, the cache, or downloaded.
    #[arg(long, value_name = "NAME|PATH", default_value = "timemachine", help_heading = "Data")]
    pub corpus: String,
    /// Validation text file (tokenized like the corpus) [default: a held-out tail of the corpus,
    /// see --val-fraction].
    #[arg(long, value_name = "PATH", help_heading = "Data")]
    pub valid: Option<PathBuf>,
    /// Test text file: its perplexity is printed at the end.
    #[arg(long, value_name = "PATH", help_heading = "Data")]
    pub test: Option<PathBuf>,
    /// Without --valid: the last ceil(F x training tokens) tokens of the corpus are held out for
    /// validation (never trained on); 0 turns validation off.
    #[arg(long, value_name = "F", default_value_t = 0.1, help_heading = "Data")]
    pub val_fraction: f64,
    /// Tokens.
    #[arg(long, value_enum, default_value_t = TokenizerKind::Char, help_heading = "Data")]
    pub tokenizer: TokenizerKind,
    /// Cleaning [default: d2l for timemachine, none for other corpora].
    #[arg(long, value_enum, help_heading = "Data")]
    pub clean: Option<Cleaning>,
    /// Append an end-of-sentence token `<eos>` to every line (word tokens only).
    #[arg(long, help_heading = "Data")]
    pub eos: bool,
    /// BPE vocabulary size to train.
    #[arg(long, value_name = "N", default_value_t = 1000, help_heading = "Data")]
    pub bpe_vocab: usize,
    /// Train on the first N tokens of the corpus (d2l: 10000), or `all`.
    #[arg(long, value_name = "N|all", default_value = "10000", help_heading = "Data")]
    pub max_tokens: String,
}

/// Model options of `seqlm train`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Recurrent layer.
    #[arg(long, value_enum, default_value_t = CellKind::Lstm, help_heading = "Model")]
    pub model: CellKind,
    /// RNN nonlinearity (--model rnn only).
    #[arg(long, value_enum, default_value_t = NonlinearityArg::Tanh, help_heading = "Model")]
    pub nonlinearity: NonlinearityArg,
    /// Stacked recurrent layers.
    #[arg(long, value_name = "N", default_value_t = 1, help_heading = "Model")]
    pub layers: usize,
    /// Hidden size H.
    #[arg(long, value_name = "H", default_value_t = 256, help_heading = "Model")]
    pub hidden: usize,
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
    /// Dropout on the embedding and recurrent outputs and between recurrent layers.
    #[arg(long, value_name = "P", default_value_t = 0.0, help_heading = "Model")]
    pub dropout: f64,
    /// Bidirectional recurrent layers (such a model cannot generate sensible text).
    #[arg(long, help_heading = "Model")]
    pub bidirectional: bool,
    /// LSTM projection size (0: none).
    #[arg(long, value_name = "P", default_value_t = 0, help_heading = "Model")]
    pub proj_size: usize,
    /// Recurrent layers without biases.
    #[arg(long, help_heading = "Model")]
    pub no_bias: bool,
    /// Draw every parameter from U(-A, A) instead of PyTorch's default init.
    #[arg(long, value_name = "A", help_heading = "Model")]
    pub init_range: Option<f64>,
}

/// Training options of `seqlm train` that a checkpoint fixes (defaults: [`TrainConfig::d2l`]).
#[derive(Debug, Clone, clap::Args)]
pub struct RecipeArgs {
    /// Sequences per minibatch.
    #[arg(long, value_name = "B", default_value_t = TrainConfig::d2l().batch_size, help_heading = "Training")]
    pub batch: usize,
    /// Time steps per minibatch (truncated BPTT length).
    #[arg(long, value_name = "T", default_value_t = TrainConfig::d2l().num_steps, help_heading = "Training")]
    pub steps: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd, help_heading = "Training")]
    pub optimizer: OptimizerKind,
    /// SGD momentum.
    #[arg(long, value_name = "M", default_value_t = 0.0, help_heading = "Training")]
    pub momentum: f64,
    /// Weight decay (L2 for sgd/adam, decoupled for adamw) [default: 0; 0.01 for adamw].
    #[arg(long, value_name = "W", help_heading = "Training")]
    pub weight_decay: Option<f64>,
    /// Divide the learning rate by X every epoch after epoch --lr-decay-after.
    #[arg(long, value_name = "X", conflicts_with = "lr_plateau", help_heading = "Training")]
    pub lr_decay: Option<f64>,
    /// The last epoch trained at the initial rate when --lr-decay is given.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "lr_decay", help_heading = "Training")]
    pub lr_decay_after: usize,
    /// Divide the learning rate by X whenever the validation perplexity does not improve.
    #[arg(long, value_name = "X", help_heading = "Training")]
    pub lr_plateau: Option<f64>,
    /// Clip gradients to this global L2 norm (0: no clipping).
    #[arg(long, value_name = "C", default_value_t = TrainConfig::d2l().clip, help_heading = "Training")]
    pub clip: f64,
    /// Minibatch sampling.
    #[arg(long, value_enum, default_value_t = Sampling::Sequential, help_heading = "Training")]
    pub sampling: Sampling,
    /// Seed of the initial weights, the data order and the dropout masks.
    #[arg(long, value_name = "S", default_value_t = TrainConfig::d2l().seed, help_heading = "Training")]
    pub seed: u64,
}

/// Training options of `seqlm train` that a resumed run may change.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    /// Epochs in total (with --resume: train until this many).
    #[arg(long, value_name = "N", default_value_t = TrainConfig::d2l().epochs, help_heading = "Training")]
    pub epochs: usize,
    /// Learning rate (with --resume: the rate from now on).
    #[arg(long, value_name = "LR", default_value_t = TrainConfig::d2l().lr, help_heading = "Training")]
    pub lr: f64,
    /// Device: cpu, or cuda / cuda:N in a CUDA build of candle.
    #[arg(long, value_name = "cpu|cuda[:N]", default_value = "cpu", help_heading = "Training")]
    pub device: DeviceChoice,
    /// Implementation of the recurrent layers: auto (the fused kernels on the CPU, composed on
    /// CUDA), fused or composed (same results within float tolerance; allowed with --resume).
    #[arg(long = "impl", value_enum, default_value_t = Implementation::Auto, help_heading = "Training")]
    pub implementation: Implementation,
}

/// Run directory and output options of `seqlm train`.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Run directory (metrics.jsonl, perplexity.png, checkpoint/) [default: runs/CORPUS-MODEL,
    /// or the first free runs/CORPUS-MODEL-N; with --resume: the resumed run's directory].
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub out: Option<PathBuf>,
    /// Replace a previous run in --out instead of refusing to (fresh or resumed).
    #[arg(long, help_heading = "Output")]
    pub overwrite: bool,
    /// Continue the run whose checkpoint (or run directory) is DIR, exactly where it stopped.
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub resume: Option<PathBuf>,
    /// Generate a sample every N epochs (0: never).
    #[arg(long, value_name = "N", default_value_t = 50, help_heading = "Output")]
    pub sample_every: usize,
    /// Prefix of the samples and of the final continuation.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "time traveller",
        allow_hyphen_values = true,
        help_heading = "Output"
    )]
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

impl TrainArgs {
    /// The options given on the command line that a checkpoint fixes, as `--name` (they are an
    /// error with `--resume`): every option of [`DataArgs`], [`ModelArgs`] and [`RecipeArgs`].
    pub fn given_fixed_options(&self) -> Vec<String> {
        let mut fixed = clap::Command::new("train");
        fixed = DataArgs::augment_args(fixed);
        fixed = ModelArgs::augment_args(fixed);
        fixed = RecipeArgs::augment_args(fixed);
        fixed
            .get_arguments()
            .filter(|a| self.given.contains(a.get_id().as_str()))
            .map(|a| format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())))
            .collect()
    }
}

/// How the data was prepared (stored in `trainer.json` to rebuild it on `--resume`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

fn parse_max_tokens(s: &str) -> anyhow::Result<Option<usize>> {
    match s {
        "all" => Ok(None),
        v => match v.parse::<usize>() {
            Ok(0) => Err(Error::option("max-tokens", "at least 1, or `all`", 0).into()),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(Error::option("max-tokens", "a number of tokens or `all`", v).into()),
        },
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl DataArgs {
    /// The data options of a fresh run.
    fn spec(&self) -> anyhow::Result<DataSpec> {
        let corpus = if named_corpus(&self.corpus).is_some() {
            self.corpus.clone()
        } else {
            absolute(Path::new(&self.corpus)).display().to_string()
        };
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(Error::option("val-fraction", "a fraction in [0, 1)", self.val_fraction).into());
        }
        Ok(DataSpec {
            corpus,
            valid: self.valid.as_deref().map(absolute),
            test: self.test.as_deref().map(absolute),
            val_fraction: self.val_fraction,
            max_tokens: parse_max_tokens(&self.max_tokens)?,
            bpe_vocab: self.bpe_vocab,
        })
    }

    /// The tokenizer of a fresh run.
    fn tokenizer(&self) -> anyhow::Result<TokenizerSpec> {
        let tok = TokenizerSpec {
            kind: self.tokenizer,
            cleaning: self.clean.unwrap_or_else(|| default_cleaning(&self.corpus)),
            eos: self.eos.then(|| "<eos>".to_string()),
        };
        tok.validate()?;
        Ok(tok)
    }
}

impl RecipeArgs {
    fn optimizer(&self) -> anyhow::Result<OptimConfig> {
        let kind = self.optimizer;
        if kind != OptimizerKind::Sgd && self.momentum != 0.0 {
            return Err(Error::option("momentum", "--optimizer sgd (Adam has beta1 instead)", self.momentum).into());
        }
        let mut optimizer = OptimConfig::new(kind);
        optimizer.momentum = self.momentum;
        if let Some(w) = self.weight_decay {
            optimizer.weight_decay = w;
        }
        Ok(optimizer)
    }

    fn schedule(&self, data: &DataSpec) -> anyhow::Result<LrSchedule> {
        let schedule = match (self.lr_decay, self.lr_plateau) {
            (Some(factor), _) => LrSchedule::StepDecay { factor, after: self.lr_decay_after },
            (None, Some(factor)) => LrSchedule::Plateau { factor },
            (None, None) => LrSchedule::Constant,
        };
        if matches!(schedule, LrSchedule::Plateau { .. }) && data.valid.is_none() && data.val_fraction == 0.0 {
            return Err(Error::option(
                "lr-plateau",
                "validation data (--valid, or a --val-fraction above 0)",
                "no validation data",
            )
            .into());
        }
        Ok(schedule)
    }
}

impl TrainArgs {
    /// The training configuration of a fresh run.
    fn train_config(&self, data: &DataSpec) -> anyhow::Result<TrainConfig> {
        let (r, s) = (&self.recipe, &self.session);
        let train = TrainConfig {
            batch_size: r.batch,
            num_steps: r.steps,
            epochs: s.epochs,
            lr: s.lr,
            optimizer: r.optimizer()?,
            schedule: r.schedule(data)?,
            clip: r.clip,
            sampling: r.sampling,
            seed: r.seed,
            init: self.model.init_range.map_or(InitScheme::Pytorch, InitScheme::Uniform),
        };
        train.validate()?;
        Ok(train)
    }

    /// The model of a fresh run over a vocabulary of `vocab_size` tokens.
    fn model_config(&self, vocab_size: usize) -> anyhow::Result<LmConfig> {
        let m = &self.model;
        let kind = match (m.model, m.nonlinearity) {
            (CellKind::RnnTanh | CellKind::RnnRelu, NonlinearityArg::Relu) => CellKind::RnnRelu,
            (CellKind::RnnTanh | CellKind::RnnRelu, NonlinearityArg::Tanh) => CellKind::RnnTanh,
            (other, _) if self.given.contains("nonlinearity") => {
                return Err(Error::option(
                    "nonlinearity",
                    "--model rnn (it has no other use)",
                    format!("--model {}", other.short_name()),
                )
                .into())
            }
            (other, _) => other,
        };
        let cfg = LmConfig {
            vocab_size,
            embed: m.embed,
            rnn: RnnConfig {
                kind,
                input_size: m.embed.unwrap_or(vocab_size),
                hidden_size: m.hidden,
                num_layers: m.layers,
                bias: !m.no_bias,
                batch_first: false,
                dropout: m.dropout,
                bidirectional: m.bidirectional,
                proj_size: m.proj_size,
            },
            dropout: m.dropout,
            tie_weights: m.tie_weights,
        };
        match cfg.validate() {
            Err(e @ Error::Model(seqmodels::Error::Config(_))) => Err(super::Usage(e).into()),
            other => Ok(other.map(|()| cfg)?),
        }
    }
}

/// `runs/CORPUS-MODEL`, or the first free `runs/CORPUS-MODEL-N`.
fn default_out(corpus: &str, model: &LmConfig) -> PathBuf {
    let stem =
        Path::new(corpus).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "corpus".into());
    run_dir::first_free(&format!("runs/{stem}-{}", model.rnn.kind.layer_name().to_lowercase()))
}

impl OutputArgs {
    /// Checks the output options before anything is trained.
    fn validate(&self) -> anyhow::Result<()> {
        if self.checkpoint_every == 0 {
            return Err(Error::option("checkpoint-every", "at least 1", 0).into());
        }
        check_generation_len("sample-len", self.sample_len)?;
        Ok(())
    }
}

/// Ctrl-C raises the returned flag (the trainer stops after the current step); a second
/// Ctrl-C exits at once with status 130.
fn ctrl_c_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    stop
}

/// Runs `seqlm train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    args.output.validate()?;
    let device = args.session.device.open()?;
    let started = Instant::now();
    let mut run = match &args.output.resume {
        Some(from) => TrainRun::resume(args, from, &device)?,
        None => TrainRun::fresh(args, &device)?,
    };
    run.set_implementation(args.session.implementation);
    run.print_summary();
    if run.finished() {
        run.print_already_done();
        return Ok(());
    }
    match run.train(&args.output, &ctrl_c_flag())? {
        Ended::Finished => run.report(&args.output, started),
        Ended::Interrupted => {
            run.checkpoint_interrupted()?;
            std::process::exit(130);
        }
    }
}
