//! `seqlm bench`: training and inference throughput of the language model, in the contract
//! shared with `scripts/bench_torch.py` (see [`crate::throughput`]).

use anyhow::Context;
use seqmodels::quantized::Precision;
use seqmodels::{CellKind, Implementation};

use crate::bench_lengths::LengthsMode;
use crate::device::DeviceChoice;
use crate::throughput::{run_bench, BenchConfig};

/// What `seqlm bench --help` prints after the options.
const AFTER_HELP: &str = "\
Model: embedding (V, E) -> L recurrent layers (hidden H) -> linear decoder (H -> V) -> cross-entropy, \
f32 on --device (default the CPU), PyTorch's default initialisation seeded with --seed, zero initial state.
Tokens: warmup + iters random batches drawn before timing (rows of T+1 uniform tokens; inputs the \
first T, labels the last T).
Lengths: --lengths full (every sequence T steps) or random: each of the B sequences gets a length \
lo + splitmix64() % (T - lo + 1), lo = ceil(T/4), from a SplitMix64 seeded with --seed, sorted in decreasing \
order; one draw serves every iteration. The recurrent layers stop each sequence at its length and the \
decoder and the cross-entropy run on the valid tokens only (as PyTorch's pack_padded_sequence). \
scripts/bench_torch.py draws the same lengths.
Training: --warmup untimed, then --iters timed iterations of forward, loss, backward and SGD step \
(fresh gradients every iteration, as zero_grad(set_to_none=True)).
Inference: the trained parameters without autodiff graph (as torch.no_grad()), in --precision, run as seqlm \
generate and eval would run them at this batch and number of steps (the streaming inference model in bf16 and \
int8, and in f32 for small batches of large models; else the fused kernels), --warmup untimed, then --iters timed \
forwards to the logits. With --lengths random, f32 inference runs the language model itself at every batch \
size (the fused kernels on the CPU, or --impl), to the logits of the valid tokens, and --precision bf16 or int8 is refused (the streaming inference model has no \
per-sequence lengths).
Tokens/s = tokens per iteration (batch * steps, or the sum of the lengths; tokens_per_iter in the JSON) / median \
iteration time. GFLOP/s are nominal: per token \
sum_l 2*G*H*(I_l + H) + 2*H*V (G = 4 LSTM, 3 GRU, 1 RNN; I_0 = E, or V when E = 0; I_l = H above), \
training counted 3x.
scripts/bench_torch.py takes the same options for PyTorch; scripts/bench_compare.sh runs both.";

/// Arguments of `seqlm bench` (the model and the timing are described in [`crate::throughput`]).
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct BenchArgs {
    /// Recurrent layer (rnn: tanh).
    #[arg(long, value_enum, default_value_t = CellKind::Lstm)]
    pub arch: CellKind,
    /// Vocabulary size V.
    #[arg(long, default_value_t = 28)]
    pub vocab: usize,
    /// Embedding size E; 0 feeds one-hot vectors of size V instead (as d2l does).
    #[arg(long, default_value_t = 28)]
    pub embed: usize,
    /// Hidden size H.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Number of recurrent layers L.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Sequences per batch B.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Time steps per sequence T (tokens per iteration: B * T).
    #[arg(long, default_value_t = 35)]
    pub steps: usize,
    /// Timed iterations of each phase (training, then inference); the median is reported.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed warm-up iterations before each phase.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Seed of the parameters and of the random tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// SGD learning rate (as torch.optim.SGD; no momentum, no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub lr: f64,
    /// Implementation of the recurrence: auto (the fused kernels on the CPU, composed on CUDA), fused
    /// or composed.
    #[arg(long = "impl", value_enum, default_value_t = Implementation::Auto)]
    pub implementation: Implementation,
    /// Where the model runs: cpu, cuda or cuda:N (needs a build with the `cuda` feature).
    #[arg(long, value_name = "cpu|cuda[:N]", default_value = "cpu")]
    pub device: DeviceChoice,
    /// Precision of the weights in the inference phase: f32, or bf16 / int8 on the CPU (the trained
    /// model converted as `seqlm quantize` does); training is always f32.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Sequence lengths: full (all T steps) or random (drawn from --seed; see below).
    #[arg(long, value_enum, default_value_t = LengthsMode::Full)]
    pub lengths: LengthsMode,
    /// Leave the training phase out (its figures are null); inference runs on the initial weights.
    #[arg(long)]
    pub skip_training: bool,
    /// Worker threads: sets RAYON_NUM_THREADS, which candle and the fused kernels read.
    /// Default: RAYON_NUM_THREADS if set, else the physical cores this process may use (as PyTorch).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON line ({"arch", "impl", "device", "train_tokens_per_s", "infer_tokens_per_s", "threads",
    /// "train_ms_median", "infer_ms_median", "train_gflops_per_s", "infer_gflops_per_s", "loss", "precision",
    /// "skip_training", "lengths", "tokens_per_iter" and the configuration; the training figures and
    /// "loss" are null with --skip-training}) instead of a readable line.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The library configuration these arguments describe.
    pub fn config(&self) -> BenchConfig {
        BenchConfig {
            arch: self.arch,
            vocab: self.vocab,
            embed: self.embed,
            hidden: self.hidden,
            layers: self.layers,
            batch: self.batch,
            steps: self.steps,
            iters: self.iters,
            warmup: self.warmup,
            seed: self.seed,
            lr: self.lr,
            implementation: self.implementation,
            device: self.device,
            precision: self.precision,
            skip_training: self.skip_training,
            lengths: self.lengths,
        }
    }
}

/// Runs `seqlm bench`. Call it before any other candle work when `--threads` is given: the
/// thread pool reads RAYON_NUM_THREADS once, when it starts.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(crate::Error::option("threads", "an integer >= 1", n).into());
        }
        // The process is still single-threaded here: no candle or rayon work has run yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let report = run_bench(&args.config()).context("seqlm bench")?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.summary());
    }
    Ok(())
}
