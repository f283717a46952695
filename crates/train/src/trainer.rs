//! The autoregressive training loop, as d2l's `train_ch8` with the classic additions.
//!
//! Every epoch draws its minibatches from a seeded [`SeqDataLoader`]: sequential partitioning
//! (the hidden state is carried from one minibatch to the next and detached, truncated BPTT
//! over `num_steps`) or random sampling (state reset for every minibatch). Each step computes
//! the mean cross-entropy of the time-major logits, backpropagates, clips the gradients by
//! their global L2 norm and applies the optimizer with the scheduled learning rate. After each
//! epoch the validation perplexity is computed and the schedule advances.
//!
//! Runs are repeatable: the initial weights come from the seed, the data order from a loader
//! seeded with the seed, and the dropout masks of step `s` from a generator seeded with
//! `(seed, s)`. With the checkpointed optimizer buffers, schedule and (mid-epoch) carried
//! state, a resumed run computes exactly what an uninterrupted run computes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use seqmodels::StackedState;
use seqmodels_data::{Sampling, SeqDataLoader};
use serde::{Deserialize, Serialize};

use crate::checkpoint::TrainingFiles;
use crate::error::{Error, Result};
use crate::metrics::EpochMetrics;
use crate::model::{init_parameters, InitScheme, LanguageModel, LmConfig};
use crate::optim::{clip_grad_norm, OptimConfig, Optimizer, OptimizerKind};
use crate::predictor::Predictor;
use crate::schedule::{LrSchedule, LrScheduler};

/// Training hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Sequences per minibatch.
    pub batch_size: usize,
    /// Time steps per minibatch (truncated BPTT length).
    pub num_steps: usize,
    /// Epochs to train in total.
    pub epochs: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// The optimizer.
    pub optimizer: OptimConfig,
    /// The learning-rate schedule.
    pub schedule: LrSchedule,
    /// Maximum global L2 norm of the gradients (0: no clipping).
    pub clip: f64,
    /// Sequential partitioning (state carried) or random sampling (state reset).
    pub sampling: Sampling,
    /// Seed of the initial weights, the data order and the dropout masks.
    pub seed: u64,
    /// Initialisation of the weights.
    pub init: InitScheme,
}

impl TrainConfig {
    /// d2l's concise RNN/LSTM recipe: batch 32, 35 steps, 500 epochs, SGD with lr 1, clipping
    /// at 1, sequential partitioning, PyTorch's default init.
    pub fn d2l() -> Self {
        TrainConfig {
            batch_size: 32,
            num_steps: 35,
            epochs: 500,
            lr: 1.0,
            optimizer: OptimConfig::new(OptimizerKind::Sgd),
            schedule: LrSchedule::Constant,
            clip: 1.0,
            sampling: Sampling::Sequential,
            seed: 0,
            init: InitScheme::Pytorch,
        }
    }

    /// Checks every value's range; errors name the option, the valid range and the value.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::option("batch", "at least 1 sequence per minibatch", 0));
        }
        if self.num_steps == 0 {
            return Err(Error::option("steps", "at least 1 time step per minibatch", 0));
        }
        if self.epochs == 0 {
            return Err(Error::option("epochs", "at least 1", 0));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::option("lr", "a positive finite learning rate", self.lr));
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return Err(Error::option("clip", "a finite norm >= 0 (0: no clipping)", self.clip));
        }
        if let InitScheme::Uniform(a) = self.init {
            if !(a.is_finite() && a > 0.0) {
                return Err(Error::option("init-range", "a positive finite number", a));
            }
        }
        self.optimizer.validate()?;
        self.schedule.validate()
    }
}

/// Where training stands; saved in `trainer.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Completed epochs.
    pub epoch: usize,
    /// Minibatches done in the current, unfinished epoch (0 at an epoch boundary).
    pub batch: usize,
    /// Optimizer steps taken in total.
    pub step: u64,
    /// Sum over the current epoch's minibatches of mean loss x tokens.
    pub loss_sum: f64,
    /// Tokens predicted so far in the current epoch.
    pub tokens: usize,
    /// Seconds spent in the current epoch's steps.
    pub seconds: f64,
}

/// Token counts and hashes of the training and validation data, to check that a resumed run
/// sees the same data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFingerprint {
    /// Training tokens.
    pub train_tokens: usize,
    /// FNV-1a hash of the training indices (hex).
    pub train_hash: String,
    /// Validation tokens (0: none).
    pub valid_tokens: usize,
    /// FNV-1a hash of the validation indices (hex).
    pub valid_hash: String,
}

impl DataFingerprint {
    /// The fingerprint of a training and validation set.
    pub fn of(train: &[u32], valid: Option<&[u32]>) -> Self {
        let v = valid.unwrap_or(&[]);
        DataFingerprint {
            train_tokens: train.len(),
            train_hash: format!("{:016x}", fnv1a(train)),
            valid_tokens: v.len(),
            valid_hash: format!("{:016x}", fnv1a(v)),
        }
    }
}

fn fnv1a(ids: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for b in id.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// `trainer.json`: everything besides tensors that an exact resume needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// The hyperparameters.
    pub config: TrainConfig,
    /// Where training stands.
    pub progress: Progress,
    /// The learning-rate schedule and its state.
    pub scheduler: LrScheduler,
    /// Steps taken by the optimizer (Adam's bias correction uses it).
    pub optimizer_step: u64,
    /// Whether `carry.safetensors` holds the state carried into the next minibatch.
    pub carry: bool,
    /// The data the run trains and validates on.
    pub data: DataFingerprint,
    /// Whatever the caller stores with the run (the `seqlm train` data options).
    #[serde(default)]
    pub extra: serde_json::Value,
}

impl TrainerState {
    /// Parses and checks the text of a `trainer.json` (`path` names it in errors).
    pub fn from_json(text: &str, path: &std::path::Path) -> Result<Self> {
        let state: TrainerState =
            serde_json::from_str(text).map_err(|e| Error::Json { path: path.into(), reason: e.to_string() })?;
        let bad = |problem: String| Err(Error::Checkpoint { path: path.into(), problem });
        if let Err(e) = state.config.validate() {
            return bad(e.to_string());
        }
        if state.progress.epoch > state.config.epochs {
            return bad(format!(
                "progress.epoch is {}: expected at most config.epochs ({})",
                state.progress.epoch, state.config.epochs
            ));
        }
        if !(state.progress.loss_sum.is_finite() && state.progress.seconds.is_finite()) {
            return bad("progress.loss_sum and progress.seconds must be finite".into());
        }
        Ok(state)
    }
}

/// Perplexity of a model on a text.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    /// Mean cross-entropy per predicted token (nats).
    pub loss: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Tokens predicted.
    pub tokens: usize,
}

/// Perplexity of `model` on `ids`, in evaluation mode (no dropout).
///
/// The `n - 1` predictions (each token from the ones before it) are laid out as `batch`
/// contiguous rows of `(n - 1) / batch` tokens (fewer rows when the text is shorter; the last
/// `(n - 1) % rows` predictions are left out). Each row is read left to right in windows of
/// `steps` tokens (the last window may be shorter), the state carried from window to window,
/// so with `batch = 1` every token is predicted from the whole text before it.
pub fn evaluate(model: &dyn Predictor, ids: &[u32], batch: usize, steps: usize) -> Result<Eval> {
    if batch == 0 {
        return Err(Error::option("batch", "at least 1", 0));
    }
    if steps == 0 {
        return Err(Error::option("steps", "at least 1", 0));
    }
    if ids.len() < 2 {
        return Err(Error::TooFewTokens { what: "the evaluation text".into(), needed: 2 });
    }
    let m = ids.len() - 1;
    let rows = batch.min(m);
    model.config().check_activation_memory(rows, steps.min(m / rows), false)?;
    let row_len = m / rows;
    let device = model.device().clone();
    let mut state: Option<StackedState> = None;
    let (mut loss_sum, mut count) = (0f64, 0usize);
    let mut start = 0;
    while start < row_len {
        let w = steps.min(row_len - start);
        let mut x = Vec::with_capacity(rows * w);
        let mut y = Vec::with_capacity(rows * w);
        for r in 0..rows {
            let s = r * row_len + start;
            x.extend_from_slice(&ids[s..s + w]);
            y.extend_from_slice(&ids[s + 1..s + 1 + w]);
        }
        let x = Tensor::from_vec(x, (rows, w), &device)?;
        let y = Tensor::from_vec(y, (rows, w), &device)?.t()?.contiguous()?.flatten_all()?;
        let (loss, s) = model.mean_loss(&x, &y, state.as_ref())?;
        let loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        loss_sum += loss * (rows * w) as f64;
        count += rows * w;
        state = Some(detach(&s));
        start += w;
    }
    let loss = loss_sum / count as f64;
    Ok(Eval { loss, perplexity: loss.exp(), tokens: count })
}

fn detach(s: &StackedState) -> StackedState {
    StackedState { h: s.h.detach(), c: s.c.as_ref().map(|c| c.detach()) }
}

/// The dropout seed of global step `step` (SplitMix64 of the run seed and the step).
fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Reported after every optimizer step.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Minibatch within the epoch (1-based).
    pub batch: usize,
    /// Minibatches in this epoch.
    pub num_batches: usize,
    /// Global step (1-based).
    pub step: u64,
    /// This minibatch's mean loss.
    pub loss: f64,
    /// Mean loss of the epoch so far.
    pub epoch_loss: f64,
    /// Training tokens per second in this epoch so far.
    pub tokens_per_s: f64,
}

/// How [`Trainer::run_epoch`] ended.
#[derive(Clone, Debug)]
pub enum EpochEnd {
    /// The epoch finished; its metrics (not yet written anywhere).
    Finished(EpochMetrics),
    /// The stop flag was raised; the trainer stopped between two steps and can be checkpointed.
    Interrupted,
}

/// A model, its optimizer, schedule, data and progress.
pub struct Trainer {
    cfg: TrainConfig,
    model: LanguageModel,
    varmap: VarMap,
    optimizer: Optimizer,
    scheduler: LrScheduler,
    loader: SeqDataLoader,
    valid: Option<Vec<u32>>,
    fingerprint: DataFingerprint,
    progress: Progress,
    carry: Option<StackedState>,
    /// The minibatches of the current epoch, once drawn (kept across an interruption).
    pending: Option<Vec<seqmodels_data::Batch>>,
}

fn named_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: Vec<(String, candle_core::Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

impl Trainer {
    /// A fresh run: weights drawn from `cfg.seed`, the loader seeded with `cfg.seed`.
    ///
    /// Fails on invalid hyperparameters and when the training data cannot fill one minibatch.
    pub fn new(
        model_cfg: LmConfig,
        cfg: TrainConfig,
        train: Vec<u32>,
        valid: Option<Vec<u32>>,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        model_cfg.validate()?;
        let params = init_parameters(&model_cfg, cfg.init, cfg.seed, DType::F32, device)?;
        let (model, varmap) = LanguageModel::from_parameters(model_cfg, params.into_iter().collect())?;
        let scheduler = LrScheduler::new(cfg.schedule, cfg.lr)?;
        Self::assemble(cfg, model, varmap, scheduler, train, valid, Progress::default())
    }

    fn assemble(
        cfg: TrainConfig,
        model: LanguageModel,
        varmap: VarMap,
        scheduler: LrScheduler,
        train: Vec<u32>,
        valid: Option<Vec<u32>>,
        progress: Progress,
    ) -> Result<Self> {
        let vocab = model.config().vocab_size;
        for (what, ids) in [("training data", Some(&train)), ("validation data", valid.as_ref())] {
            if let Some(&bad) = ids.and_then(|ids| ids.iter().find(|&&i| i as usize >= vocab)) {
                return Err(Error::Mismatch {
                    what: format!("{what}: token index"),
                    expected: format!("below the vocabulary size {vocab}"),
                    found: bad.to_string(),
                });
            }
        }
        model.config().check_activation_memory(cfg.batch_size, cfg.num_steps, true)?;
        let fingerprint = DataFingerprint::of(&train, valid.as_deref());
        let loader = SeqDataLoader::new(train, cfg.batch_size, cfg.num_steps, cfg.sampling, cfg.seed)?;
        let optimizer = Optimizer::new(named_vars(&varmap), cfg.optimizer.clone())?;
        Ok(Trainer {
            cfg,
            model,
            varmap,
            optimizer,
            scheduler,
            loader,
            valid,
            fingerprint,
            progress,
            carry: None,
            pending: None,
        })
    }

    /// Continues a run from a checkpoint's model, `trainer.json`, optimizer buffers and carried
    /// state, on the same data (checked against the saved fingerprint).
    pub fn resume(
        model: LanguageModel,
        varmap: VarMap,
        state: TrainerState,
        optimizer_state: HashMap<String, Tensor>,
        carry: HashMap<String, Tensor>,
        train: Vec<u32>,
        valid: Option<Vec<u32>>,
    ) -> Result<Self> {
        state
            .config
            .validate()
            .map_err(|e| Error::Checkpoint { path: "trainer.json".into(), problem: e.to_string() })?;
        let found = DataFingerprint::of(&train, valid.as_deref());
        if found != state.data {
            return Err(Error::Mismatch {
                what: "training/validation data of the resumed run".into(),
                expected: format!(
                    "{} training and {} validation tokens (hashes {} {})",
                    state.data.train_tokens, state.data.valid_tokens, state.data.train_hash, state.data.valid_hash
                ),
                found: format!(
                    "{} and {} tokens (hashes {} {}): the corpus or its options changed",
                    found.train_tokens, found.valid_tokens, found.train_hash, found.valid_hash
                ),
            });
        }
        let mut t = Self::assemble(state.config, model, varmap, state.scheduler, train, valid, state.progress)?;
        t.optimizer.load_state(optimizer_state, state.optimizer_step)?;
        if state.carry {
            let device = t.model.device().clone();
            let get = |k: &str| carry.get(k).map(|x| x.to_dtype(DType::F32).and_then(|x| x.to_device(&device)));
            let h = get("h").transpose()?.ok_or_else(|| Error::Mismatch {
                what: "carry.safetensors".into(),
                expected: "tensor `h` (trainer.json says a state is carried)".into(),
                found: format!("keys {:?}", carry.keys().collect::<Vec<_>>()),
            })?;
            t.carry = Some(StackedState { h, c: get("c").transpose()? });
        }
        for _ in 0..t.progress.epoch {
            let _ = t.loader.epoch();
        }
        Ok(t)
    }

    /// The model.
    pub fn model(&self) -> &LanguageModel {
        &self.model
    }

    /// Chooses the code that runs the recurrent layers from now on (default `Auto`: the fused
    /// kernels on the CPU, the composed path on CUDA). Results agree within float tolerance.
    pub fn set_implementation(&mut self, implementation: seqmodels::Implementation) {
        self.model = self.model.clone().with_implementation(implementation);
    }

    /// The model's variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The hyperparameters.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Where training stands.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.scheduler.lr()
    }

    /// Replaces the learning rate from now on (the schedule continues from it).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::option("lr", "a positive finite learning rate", lr));
        }
        self.scheduler.lr = lr;
        self.scheduler.base_lr = lr;
        self.cfg.lr = lr;
        Ok(())
    }

    /// Changes the total number of epochs (to continue a finished run).
    pub fn set_epochs(&mut self, epochs: usize) -> Result<()> {
        if epochs == 0 {
            return Err(Error::option("epochs", "at least 1", 0));
        }
        self.cfg.epochs = epochs;
        Ok(())
    }

    /// Whether all epochs are done.
    pub fn finished(&self) -> bool {
        self.progress.epoch >= self.cfg.epochs
    }

    /// The data fingerprint.
    pub fn fingerprint(&self) -> &DataFingerprint {
        &self.fingerprint
    }

    /// Validation perplexity (batch and steps of training), if there is validation data.
    pub fn validate(&self) -> Result<Option<Eval>> {
        match &self.valid {
            Some(v) => Ok(Some(evaluate(&self.model, v, self.cfg.batch_size, self.cfg.num_steps)?)),
            None => Ok(None),
        }
    }

    /// Runs (the rest of) the current epoch. Stops between two steps when `stop` is raised,
    /// and with [`Error::NonFinite`] before applying an update whose loss or gradient norm is
    /// NaN or infinite (the weights stay those of the last good step).
    pub fn run_epoch(&mut self, stop: &AtomicBool, on_step: &mut dyn FnMut(&StepReport)) -> Result<EpochEnd> {
        let epoch = self.progress.epoch + 1;
        let batches = match self.pending.take() {
            Some(b) => b,
            None => self.loader.epoch().collect::<Vec<_>>(),
        };
        let num_batches = batches.len();
        let device = self.model.device().clone();
        let sequential = self.cfg.sampling == Sampling::Sequential;
        let lr = self.scheduler.lr();
        for i in self.progress.batch..num_batches {
            if stop.load(Ordering::SeqCst) {
                self.pending = Some(batches);
                return Ok(EpochEnd::Interrupted);
            }
            let b = &batches[i];
            let started = Instant::now();
            let step = self.progress.step + 1;
            self.model.set_dropout_seed(step_seed(self.cfg.seed, step));
            let (n, t) = (b.batch_size, b.num_steps);
            let x = Tensor::from_slice(&b.inputs, (n, t), &device)?;
            let y = Tensor::from_slice(&b.targets, (n, t), &device)?.t()?.contiguous()?.flatten_all()?;
            let state = if sequential { self.carry.as_ref() } else { None };
            let (loss, new_state) = self.model.loss(&x, &y, state, true)?;
            let loss_v = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !loss_v.is_finite() {
                return Err(Error::NonFinite { what: "loss", value: loss_v, step, epoch, batch: i + 1 });
            }
            let mut grads = loss.backward()?;
            let norm = clip_grad_norm(&mut grads, self.optimizer.params(), self.cfg.clip)?;
            if !norm.is_finite() {
                return Err(Error::NonFinite { what: "gradient norm", value: norm, step, epoch, batch: i + 1 });
            }
            self.optimizer.step(&grads, lr)?;
            self.carry = if sequential { Some(detach(&new_state)) } else { None };
            let p = &mut self.progress;
            p.batch = i + 1;
            p.step = step;
            p.loss_sum += loss_v * (n * t) as f64;
            p.tokens += n * t;
            p.seconds += started.elapsed().as_secs_f64();
            on_step(&StepReport {
                epoch,
                batch: i + 1,
                num_batches,
                step,
                loss: loss_v,
                epoch_loss: p.loss_sum / p.tokens as f64,
                tokens_per_s: p.tokens as f64 / p.seconds.max(1e-9),
            });
        }
        if num_batches == 0 || self.progress.tokens == 0 {
            return Err(Error::option("batch/steps", "a corpus that fills at least one minibatch", "no minibatch"));
        }
        // An update can overflow even when its loss and gradient were finite (a huge learning
        // rate): never let such weights reach a checkpoint.
        if let Some(bad) = self.first_non_finite_parameter()? {
            return Err(Error::NonFinite {
                what: "a parameter",
                value: bad,
                step: self.progress.step,
                epoch,
                batch: self.progress.batch,
            });
        }
        let val = self.validate()?;
        let p = &self.progress;
        let train_loss = p.loss_sum / p.tokens as f64;
        // A finite loss can still have an infinite perplexity (a loss above ln(f64::MAX)).
        let perplexities =
            [("training perplexity", Some(train_loss.exp())), ("validation perplexity", val.map(|v| v.perplexity))];
        if let Some((what, value)) =
            perplexities.iter().find_map(|(w, v)| v.filter(|v| !v.is_finite()).map(|v| (*w, v)))
        {
            return Err(Error::NonFinite { what, value, step: p.step, epoch, batch: p.batch });
        }
        let metrics = EpochMetrics {
            epoch,
            step: p.step,
            lr,
            train_loss,
            train_ppl: train_loss.exp(),
            val_loss: val.map(|v| v.loss),
            val_ppl: val.map(|v| v.perplexity),
            tokens: p.tokens,
            seconds: p.seconds,
            tokens_per_s: p.tokens as f64 / p.seconds.max(1e-9),
            sample: None,
        };
        self.scheduler.end_epoch(epoch, metrics.val_ppl);
        self.progress = Progress { epoch, batch: 0, step: self.progress.step, loss_sum: 0.0, tokens: 0, seconds: 0.0 };
        self.carry = None;
        Ok(EpochEnd::Finished(metrics))
    }

    /// A NaN or infinite value among the parameters, if there is one.
    fn first_non_finite_parameter(&self) -> Result<Option<f64>> {
        for (_, v) in self.optimizer.params() {
            // 0 * x is 0 for every finite x and NaN for NaN and infinities.
            let t = v.as_tensor();
            let probe = (t * 0.0)?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !probe.is_finite() {
                let max = t.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                return Ok(Some(if max.is_infinite() { max } else { f64::NAN }));
            }
        }
        Ok(None)
    }

    /// `trainer.json` contents and the tensors of a checkpoint; `extra` is stored as is.
    pub fn training_files(&self, extra: serde_json::Value) -> Result<TrainingFiles> {
        let state = TrainerState {
            config: self.cfg.clone(),
            progress: self.progress.clone(),
            scheduler: self.scheduler.clone(),
            optimizer_step: self.optimizer.step_count(),
            carry: self.carry.is_some(),
            data: self.fingerprint.clone(),
            extra,
        };
        let json = serde_json::to_string_pretty(&state)
            .map_err(|e| Error::Json { path: "trainer.json".into(), reason: e.to_string() })?;
        let mut carry = Vec::new();
        if let Some(s) = &self.carry {
            carry.push(("h".to_string(), s.h.clone()));
            if let Some(c) = &s.c {
                carry.push(("c".to_string(), c.clone()));
            }
        }
        Ok(TrainingFiles { trainer_json: Some(json), optimizer: self.optimizer.state_tensors(), carry })
    }
}

/// The training state of a checkpoint, as [`read_training_files`] reads it.
#[derive(Debug)]
pub struct SavedTraining {
    /// `trainer.json`.
    pub state: TrainerState,
    /// `optimizer.safetensors` (empty when absent).
    pub optimizer: HashMap<String, Tensor>,
    /// `carry.safetensors` (empty when absent).
    pub carry: HashMap<String, Tensor>,
}

/// Reads `trainer.json`, `optimizer.safetensors` and `carry.safetensors` of a checkpoint
/// directory (the last two may be absent).
pub fn read_training_files(dir: &std::path::Path) -> Result<SavedTraining> {
    let path = dir.join("trainer.json");
    if !path.is_file() {
        return Err(Error::Checkpoint {
            path: dir.into(),
            problem: "no trainer.json: this checkpoint holds a model only (for eval and generate), not a run to resume"
                .into(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let state = TrainerState::from_json(&text, &path)?;
    let read_opt = |name: &str| -> Result<HashMap<String, Tensor>> {
        let p = dir.join(name);
        if p.is_file() {
            crate::checkpoint::read_tensors(&p)
        } else {
            Ok(HashMap::new())
        }
    };
    let optimizer = read_opt("optimizer.safetensors")?;
    let carry = read_opt("carry.safetensors")?;
    if state.carry && carry.is_empty() {
        return Err(Error::Checkpoint {
            path: dir.into(),
            problem: "trainer.json says a hidden state is carried, but carry.safetensors is missing".into(),
        });
    }
    Ok(SavedTraining { state, optimizer, carry })
}
