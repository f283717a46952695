//! Training and inference throughput of the language model, in the contract shared with
//! `scripts/bench_torch.py`: `seqlm bench` is the command-line front end.
//!
//! The model is [`crate::model::LanguageModel`]: embedding (or one-hot input when `embed` is 0)
//! -> `layers` recurrent layers of `arch` -> linear decoder, with cross-entropy against
//! time-major labels. Parameters get PyTorch's default initialisation from a generator seeded
//! with `seed`. Before any timing, `warmup + iters` random batches are drawn from a generator
//! seeded with `seed`: each row is `steps + 1` uniform tokens, the inputs its first `steps` and
//! the labels its last `steps`. The initial state is zeros in every iteration.
//!
//! Lengths ([`LengthsMode`]): every sequence has `steps` steps, or (`random`) each has its own
//! length, drawn once from `seed` by [`crate::bench_lengths::random_lengths`] (the generator
//! `scripts/bench_torch.py` implements too) and used in every iteration. Then the recurrent
//! layers stop each sequence at its length, and the decoder and the loss run on the valid tokens
//! only ([`LanguageModel::loss_with_lengths`], [`LanguageModel::forward_with_lengths`]), as
//! PyTorch's packed sequences do.
//!
//! Timed, each iteration on its own with [`std::time::Instant`]:
//! - training: `warmup` untimed then `iters` timed iterations of forward, loss, backward and a
//!   plain SGD step (the trainer's [`crate::optim::Optimizer`], which follows `torch.optim.SGD`);
//!   gradients are fresh every iteration, as with `zero_grad(set_to_none=True)`;
//! - inference: the trained parameters, detached (no autodiff graph, so the fused kernels keep
//!   nothing for a backward pass, as under `torch.no_grad()`), run by the model `seqlm generate`
//!   and `seqlm eval` would run at this batch, number of steps and `precision`
//!   ([`crate::predictor::for_inference`]),
//!   `warmup` untimed then `iters` timed forwards to the logits (no loss). With random lengths
//!   f32 inference always runs the detached [`LanguageModel`] (the fused kernels on the CPU, or
//!   `implementation`; the streaming model has no per-sequence lengths), and bf16 or int8 is refused by [`BenchConfig::validate`].
//!
//! With `skip_training` the training phase is left out (its figures are `None`) and inference runs
//! on the initial parameters.
//!
//! Throughput is the tokens of one iteration (`batch * steps`, or the sum of the lengths) over
//! the median iteration time.
//!
//! Threads: candle and the fused kernels use `candle_core::utils::get_num_threads()`, which is
//! `RAYON_NUM_THREADS` when set (and positive), else the physical cores this process may run on
//! (its CPU affinity mask), like PyTorch's default. The library does not change it; `seqlm bench
//! --threads N` sets `RAYON_NUM_THREADS` before any work starts. The value in force is reported.
//!
//! ```no_run
//! use seqmodels::CellKind;
//! use seqmodels_train::throughput::{run_bench, BenchConfig};
//!
//! let cfg = BenchConfig { arch: CellKind::Gru, iters: 5, ..BenchConfig::default() };
//! let report = run_bench(&cfg)?;
//! println!("{}", serde_json::to_string(&report).unwrap());
//! # Ok::<(), seqmodels_train::Error>(())
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use rand::{rngs::StdRng, Rng, SeedableRng};
use seqmodels::quantized::Precision;
use seqmodels::{CellKind, Implementation, RnnConfig};
use serde::Serialize;

use crate::bench_lengths::LengthsMode;
use crate::device::DeviceChoice;
use crate::error::{Error, Result};
use crate::model::{init_parameters, InitScheme, LanguageModel, LmConfig};
use crate::optim::{OptimConfig, Optimizer, OptimizerKind};
use crate::predictor::{for_inference, Predictor};

/// What to benchmark. The default is configuration (a) of BENCHMARKS.md, the d2l character model with
/// an embedding: LSTM, V=28, E=28, H=256, 1 layer, B=32, T=35, 20 iterations after 3 warm-up,
/// on the CPU. It serialises into the report, so the JSON line says what was measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchConfig {
    /// The recurrent layer.
    #[serde(serialize_with = "as_str")]
    pub arch: CellKind,
    /// Vocabulary size V.
    pub vocab: usize,
    /// Embedding size E; 0 feeds one-hot vectors of size V (as d2l does).
    pub embed: usize,
    /// Hidden size H.
    pub hidden: usize,
    /// Number of recurrent layers L.
    pub layers: usize,
    /// Sequences per batch B.
    pub batch: usize,
    /// Time steps per sequence T.
    pub steps: usize,
    /// Timed iterations of each phase (training, then inference).
    pub iters: usize,
    /// Untimed iterations before each phase.
    pub warmup: usize,
    /// Seed of the parameters and of the random tokens.
    pub seed: u64,
    /// SGD learning rate.
    pub lr: f64,
    /// The code that runs the recurrence.
    #[serde(rename = "impl", serialize_with = "as_str")]
    pub implementation: Implementation,
    /// Where the model runs.
    #[serde(serialize_with = "as_str")]
    pub device: DeviceChoice,
    /// The precision of the weights in the inference phase (training is always f32): bf16 and
    /// int8 run the trained model converted as [`crate::predictor::for_inference`] does, on the CPU.
    #[serde(serialize_with = "as_str")]
    pub precision: Precision,
    /// Time the inference phase only, on the initial (seeded) parameters.
    pub skip_training: bool,
    /// Full-length sequences, or random lengths drawn from `seed`.
    pub lengths: LengthsMode,
}

/// Serialises a value through its name on the command line (`lstm`, `auto`, `cuda:1`, ...).
fn as_str<T: Named, S: serde::Serializer>(value: &T, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&value.name())
}

/// Values the report shows by their command-line name.
trait Named {
    fn name(&self) -> String;
}
impl Named for CellKind {
    fn name(&self) -> String {
        self.short_name().into()
    }
}
impl Named for Implementation {
    fn name(&self) -> String {
        Implementation::name(*self).into()
    }
}
impl Named for Precision {
    fn name(&self) -> String {
        Precision::name(*self).into()
    }
}
impl Named for DeviceChoice {
    fn name(&self) -> String {
        self.to_string()
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            arch: CellKind::Lstm,
            vocab: 28,
            embed: 28,
            hidden: 256,
            layers: 1,
            batch: 32,
            steps: 35,
            iters: 20,
            warmup: 3,
            seed: 0,
            lr: 1.0,
            implementation: Implementation::Auto,
            device: DeviceChoice::Cpu,
            precision: Precision::F32,
            skip_training: false,
            lengths: LengthsMode::Full,
        }
    }
}

impl BenchConfig {
    /// Checks the ranges; errors name the option, the valid range and the value.
    pub fn validate(&self) -> Result<()> {
        let positive = [("vocab", self.vocab), ("hidden", self.hidden), ("layers", self.layers), ("batch", self.batch)];
        for (name, value) in positive.into_iter().chain([("steps", self.steps), ("iters", self.iters)]) {
            if value == 0 {
                return Err(Error::option(name, "an integer >= 1", value));
            }
        }
        if u32::try_from(self.vocab).is_err() {
            return Err(Error::option("vocab", "at most 2^32 (u32 token indices)", self.vocab));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::option("lr", "a positive finite number", self.lr));
        }
        if self.precision != Precision::F32 && self.device != DeviceChoice::Cpu {
            return Err(Error::option(
                "precision",
                "f32 on this device (bf16 and int8 run on the CPU)",
                self.precision.name(),
            ));
        }
        if self.lengths != LengthsMode::Full && self.precision != Precision::F32 {
            return Err(Error::option(
                "lengths",
                "full with --precision bf16 or int8 (their inference model runs whole batches, without \
                 per-sequence lengths)",
                self.lengths.name(),
            ));
        }
        let lm = self.lm_config();
        lm.validate()?;
        lm.check_activation_memory(self.batch, self.steps, true)?;
        let rounds = self.warmup.saturating_add(self.iters);
        seqmodels::memory::check_elements(
            "the random token batches (--warmup + --iters, --batch, --steps)",
            &[rounds, self.batch, self.steps.saturating_add(1), 2],
            4,
        )?;
        Ok(())
    }

    /// The language model's configuration: no dropout, no tied weights, time-major layers.
    pub fn lm_config(&self) -> LmConfig {
        let embed = (self.embed > 0).then_some(self.embed);
        let mut rnn = RnnConfig::new(self.arch, embed.unwrap_or(self.vocab), self.hidden);
        rnn.num_layers = self.layers;
        LmConfig { vocab_size: self.vocab, embed, rnn, dropout: 0.0, tie_weights: false }
    }

    /// The sequence lengths of every batch: `None` when all are `steps` long.
    pub fn sequence_lengths(&self) -> Option<Vec<usize>> {
        self.lengths.draw(self.batch, self.steps, self.seed)
    }

    /// Tokens per iteration: `batch * steps`, or the sum of the lengths.
    pub fn tokens_per_iter(&self) -> usize {
        self.sequence_lengths().map_or(self.batch * self.steps, |l| l.iter().sum())
    }
}

/// Nominal FLOPs per token of one forward pass: the recurrent GEMMs and the decoder,
/// `sum_l 2*G*H*(I_l + H) + 2*H*V` with G gates (4 LSTM, 3 GRU, 1 RNN) and I_l the input size of
/// layer l (E, or V with one-hot input, for l = 0; H above). Training counts 3x this (the
/// backward pass as twice the forward). The same formula is in `scripts/bench_torch.py`.
pub fn flops_per_token(cfg: &BenchConfig) -> f64 {
    let gates = cfg.arch.num_gates() as f64;
    let h = cfg.hidden as f64;
    let first_input = if cfg.embed > 0 { cfg.embed } else { cfg.vocab } as f64;
    let recurrent: f64 = (0..cfg.layers)
        .map(|l| {
            let input = if l == 0 { first_input } else { h };
            2.0 * gates * h * (input + h)
        })
        .sum();
    recurrent + 2.0 * h * cfg.vocab as f64
}

/// The result of [`run_bench`]; serialises to the JSON line of `seqlm bench --json`: the
/// configuration's fields (`arch`, `impl`, `device`, `vocab`, ...) then the measurements.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// What was measured.
    #[serde(flatten)]
    pub config: BenchConfig,
    /// Tokens computed per iteration ([`BenchConfig::tokens_per_iter`]).
    pub tokens_per_iter: usize,
    /// Training tokens per second: `tokens_per_iter` over the median training iteration (`None`,
    /// `null` in JSON, with `skip_training`, as for the other training figures).
    pub train_tokens_per_s: Option<f64>,
    /// Inference tokens per second: `tokens_per_iter` over the median forward.
    pub infer_tokens_per_s: f64,
    /// Threads candle and the fused kernels use (`candle_core::utils::get_num_threads()`).
    pub threads: usize,
    /// Median training iteration (forward, loss, backward, SGD step), milliseconds.
    pub train_ms_median: Option<f64>,
    /// Median inference forward, milliseconds.
    pub infer_ms_median: f64,
    /// Nominal training GFLOP/s (3 x [`flops_per_token`] per token).
    pub train_gflops_per_s: Option<f64>,
    /// Nominal inference GFLOP/s ([`flops_per_token`] per token).
    pub infer_gflops_per_s: f64,
    /// The loss of the last training iteration (a diverging run shows here).
    pub loss: Option<f64>,
}

impl BenchReport {
    /// One readable line: tokens/s, milliseconds per iteration and GFLOP/s of both phases.
    pub fn summary(&self) -> String {
        let train = match (self.train_tokens_per_s, self.train_ms_median, self.train_gflops_per_s, self.loss) {
            (Some(t), Some(ms), Some(g), Some(loss)) => {
                format!("train {t:.0} tokens/s ({ms:.2} ms/iter, {g:.1} GFLOP/s, loss {loss:.4})")
            }
            _ => "train skipped".to_string(),
        };
        format!(
            "seqlm {} ({}, {}, {} lengths, {} tokens/iter): {train}, infer {} {:.0} tokens/s ({:.2} ms/iter, \
             {:.1} GFLOP/s), {} threads",
            self.config.arch.short_name(),
            self.config.implementation.name(),
            self.config.device,
            self.config.lengths.name(),
            self.tokens_per_iter,
            self.config.precision.name(),
            self.infer_tokens_per_s,
            self.infer_ms_median,
            self.infer_gflops_per_s,
            self.threads,
        )
    }
}

/// Builds the model, draws the tokens, times training then inference (see the module docs).
pub fn run_bench(cfg: &BenchConfig) -> Result<BenchReport> {
    cfg.validate()?;
    let device = cfg.device.open()?;
    let lm = cfg.lm_config();
    let params = init_parameters(&lm, InitScheme::Pytorch, cfg.seed, DType::F32, &device)?;
    let (model, varmap) = LanguageModel::from_parameters(lm.clone(), params.into_iter().collect())?;
    let model = model.with_implementation(cfg.implementation);
    let mut named: Vec<(String, Var)> = varmap.data().lock().expect("VarMap lock").clone().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optimizer = Optimizer::new(named, OptimConfig::new(OptimizerKind::Sgd))?;
    let batches = random_batches(cfg, &device)?;
    let lengths = cfg.sequence_lengths();

    let mut train_s = Vec::with_capacity(cfg.iters);
    let mut last_loss = None;
    for (i, (inputs, labels)) in batches.iter().enumerate().filter(|_| !cfg.skip_training) {
        let start = Instant::now();
        let (loss, _) = match &lengths {
            None => model.loss(inputs, labels, None, true)?,
            Some(l) => model.loss_with_lengths(inputs, labels, l, None, true)?,
        };
        let grads = loss.backward()?;
        optimizer.step(&grads, cfg.lr)?;
        // GPU work is asynchronous: the iteration ends when the device is done.
        device.synchronize()?;
        let elapsed = start.elapsed().as_secs_f64();
        if i >= cfg.warmup {
            train_s.push(elapsed);
        }
        last_loss = Some(loss);
    }
    let loss = last_loss.map(|l| l.to_dtype(DType::F64)?.to_scalar::<f64>()).transpose()?;

    // The trained parameters as plain tensors: no variable, so no autodiff graph.
    let inference = match lengths {
        None => Inference::Predictor(for_inference(model.detached()?, cfg.precision, cfg.batch, cfg.steps)?),
        Some(l) => Inference::Packed(Box::new(model.detached()?), l),
    };
    let mut infer_s = Vec::with_capacity(cfg.iters);
    for (i, (inputs, _)) in batches.iter().enumerate() {
        let start = Instant::now();
        let logits = inference.logits(inputs)?;
        device.synchronize()?;
        drop(logits);
        let elapsed = start.elapsed().as_secs_f64();
        if i >= cfg.warmup {
            infer_s.push(elapsed);
        }
    }

    let tokens = cfg.tokens_per_iter() as f64;
    let fpt = flops_per_token(cfg);
    let train_med = (!cfg.skip_training).then(|| median(&mut train_s));
    let infer_med = median(&mut infer_s);
    Ok(BenchReport {
        config: cfg.clone(),
        tokens_per_iter: cfg.tokens_per_iter(),
        train_tokens_per_s: train_med.map(|t| tokens / t),
        infer_tokens_per_s: tokens / infer_med,
        threads: candle_core::utils::get_num_threads(),
        train_ms_median: train_med.map(|t| t * 1e3),
        infer_ms_median: infer_med * 1e3,
        train_gflops_per_s: train_med.map(|t| 3.0 * fpt * tokens / t / 1e9),
        infer_gflops_per_s: fpt * tokens / infer_med / 1e9,
        loss,
    })
}

/// What the inference phase runs: the model `seqlm generate` and `eval` would run at this batch,
/// steps and precision, or, with variable lengths, the model itself on the valid tokens.
enum Inference {
    Predictor(Box<dyn Predictor>),
    Packed(Box<LanguageModel>, Vec<usize>),
}

impl Inference {
    /// The logits of `inputs` from a zero state: (T*B, V), or (sum of the lengths, V).
    fn logits(&self, inputs: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Inference::Predictor(p) => p.logits(inputs, None)?.0,
            Inference::Packed(model, lengths) => model.forward_with_lengths(inputs, lengths, None, false)?.0,
        })
    }
}

/// `warmup + iters` batches: inputs (B, T) and time-major labels (T*B,), from rows of T+1
/// uniform tokens.
fn random_batches(cfg: &BenchConfig, device: &Device) -> Result<Vec<(Tensor, Tensor)>> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (b, t) = (cfg.batch, cfg.steps);
    let vocab = cfg.vocab as u32;
    (0..cfg.warmup + cfg.iters)
        .map(|_| {
            let rows: Vec<u32> = (0..b * (t + 1)).map(|_| rng.random_range(0..vocab)).collect();
            let inputs: Vec<u32> = (0..b).flat_map(|n| rows[n * (t + 1)..n * (t + 1) + t].to_vec()).collect();
            let labels: Vec<u32> =
                (0..t).flat_map(|s| (0..b).map(move |n| (s, n))).map(|(s, n)| rows[n * (t + 1) + s + 1]).collect();
            Ok((Tensor::from_vec(inputs, (b, t), device)?, Tensor::from_vec(labels, t * b, device)?))
        })
        .collect()
}

/// The median of non-empty `samples` (mean of the middle two for an even count).
fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_shifted_and_time_major() {
        let cfg = BenchConfig { vocab: 7, batch: 3, steps: 4, iters: 1, warmup: 1, ..BenchConfig::default() };
        let batches = random_batches(&cfg, &Device::Cpu).unwrap();
        assert_eq!(batches.len(), 2);
        for (inputs, labels) in &batches {
            let x = inputs.to_vec2::<u32>().unwrap();
            let y = labels.to_vec1::<u32>().unwrap();
            for n in 0..3 {
                for s in 0..3 {
                    // label at step s is the input at step s + 1
                    assert_eq!(y[s * 3 + n], x[n][s + 1]);
                }
            }
            assert!(x.iter().flatten().chain(&y).all(|&v| v < 7));
        }
    }

    #[test]
    fn median_and_flops() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        // LSTM V=28 E=28 H=256: 2*4*256*(28+256) + 2*256*28
        assert_eq!(flops_per_token(&BenchConfig::default()), 595_968.0);
        let bad = BenchConfig { iters: 0, ..BenchConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("iters"));
    }
}
