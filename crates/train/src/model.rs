//! The recurrent language model: embedding (or one-hot input, as d2l does) -> any
//! [`seqmodels::RnnBase`] -> dropout -> linear decoder, with optional weight tying.
//!
//! Parameter names are those of the PyTorch module in `scripts/torch_lm.py`
//! (`embedding.weight`, `rnn.weight_ih_l0`, ..., `decoder.weight`, `decoder.bias`), so the two
//! load each other's state dicts with strict checking.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use seqmodels::RnnConfig;
//! use seqmodels_train::model::{LanguageModel, LmConfig};
//!
//! let cfg = LmConfig::d2l(28); // one-hot input, LSTM H=256, as in d2l
//! let varmap = VarMap::new();
//! let model = LanguageModel::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
//! let tokens = Tensor::new(&[[1u32, 2, 3], [4, 5, 6]], &Device::Cpu)?; // (N=2, T=3)
//! let (logits, state) = model.forward(&tokens, None, false)?;
//! assert_eq!(logits.dims(), &[6, 28]); // (T*N, V), time-major rows
//! assert_eq!(state.h.dims(), &[1, 2, 256]);
//! # Ok::<(), seqmodels_train::Error>(())
//! ```

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::StandardNormal;
use seqmodels::dropout::SeededDropout;
use seqmodels::memory;
use seqmodels::spec::TorchArgs;
use seqmodels::{CellKind, ForwardOptions, ModuleSpec, RnnBase, RnnConfig, StackedState};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Configuration of a [`LanguageModel`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "LmConfigJson", try_from = "LmConfigJson")]
pub struct LmConfig {
    /// Number of tokens in the vocabulary (input one-hot size and decoder outputs).
    pub vocab_size: usize,
    /// Embedding size; `None` feeds one-hot vectors of size `vocab_size`, as d2l does.
    pub embed: Option<usize>,
    /// The recurrent layers; `input_size` must be `embed` or `vocab_size`.
    pub rnn: RnnConfig,
    /// Dropout probability on the embedding output and on the recurrent output (before the
    /// decoder), in training only. Dropout between recurrent layers is `rnn.dropout`.
    pub dropout: f64,
    /// Share the embedding matrix with the decoder (needs `embed == D * H_out`).
    pub tie_weights: bool,
}

impl LmConfig {
    /// d2l's concise LSTM language model: one-hot input, one LSTM layer with H=256.
    pub fn d2l(vocab_size: usize) -> Self {
        LmConfig { vocab_size, embed: None, rnn: RnnConfig::lstm(vocab_size, 256), dropout: 0.0, tie_weights: false }
    }

    /// Size of the decoder's input: D * H_out.
    pub fn decoder_input_size(&self) -> usize {
        self.rnn.num_directions() * self.rnn.output_size()
    }

    /// Checks the sizes against each other; errors name expected and found values.
    pub fn validate(&self) -> Result<()> {
        if self.vocab_size == 0 {
            return Err(Error::option("vocab_size", "at least 1", 0));
        }
        if self.embed == Some(0) {
            return Err(Error::option("embed", "at least 1 (or one-hot input)", 0));
        }
        let input = self.embed.unwrap_or(self.vocab_size);
        if self.rnn.input_size != input {
            let what = if self.embed.is_some() { "the embedding size" } else { "the vocabulary size (one-hot input)" };
            return Err(Error::Mismatch {
                what: "rnn.input_size".into(),
                expected: format!("{input}, {what}"),
                found: self.rnn.input_size.to_string(),
            });
        }
        self.rnn.validate()?;
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::option("dropout", "a probability in [0, 1)", self.dropout));
        }
        if self.tie_weights {
            let d = self.decoder_input_size();
            match self.embed {
                None => {
                    return Err(Error::option(
                        "tie_weights",
                        "an embedding layer (tied weights need --embed, not one-hot input)",
                        "one-hot input",
                    ))
                }
                Some(e) if e != d => {
                    return Err(Error::option(
                        "tie_weights",
                        format!("an embedding size of {d} (the decoder input size, directions x hidden or proj size)"),
                        format!("embedding size {e}"),
                    ))
                }
                _ => {}
            }
        }
        let what = format!(
            "the parameters of the language model (vocabulary {}, {}, {} layer(s) of {} hidden {})",
            self.vocab_size,
            self.embed.map_or("one-hot input".to_string(), |e| format!("embedding {e}")),
            self.rnn.num_layers,
            self.rnn.kind.layer_name(),
            self.rnn.hidden_size
        );
        let sizes = self
            .parameter_shapes()
            .iter()
            .map(|(_, shape)| memory::bytes_of(&what, shape, F32_BYTES))
            .collect::<seqmodels::Result<Vec<u64>>>()?;
        memory::check_bytes(&what, memory::sum_bytes(&what, &sizes)?)?;
        Ok(())
    }

    /// Every state-dict entry's name and shape, in PyTorch's order (embedding, rnn, decoder).
    /// With tied weights `decoder.weight` is listed too (PyTorch's state dict holds both keys).
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::new();
        if let Some(e) = self.embed {
            shapes.push(("embedding.weight".to_string(), vec![self.vocab_size, e]));
        }
        shapes.extend(self.rnn.parameter_shapes().into_iter().map(|(n, s)| (format!("rnn.{n}"), s)));
        shapes.push(("decoder.weight".to_string(), vec![self.vocab_size, self.decoder_input_size()]));
        shapes.push(("decoder.bias".to_string(), vec![self.vocab_size]));
        shapes
    }

    /// The trainable parameters (as [`Self::parameter_shapes`], without `decoder.weight` when
    /// it is tied to `embedding.weight`).
    pub fn trainable_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut shapes = self.parameter_shapes();
        if self.tie_weights {
            shapes.retain(|(n, _)| n != "decoder.weight");
        }
        shapes
    }

    /// Refuses a forward pass over `batch` x `steps` tokens (with backward when `training`)
    /// whose activations would not fit in memory. Per token: the input vector, every layer's
    /// gates and states, and the logits; training keeps about three times that (gradients,
    /// softmax). An estimate from below: what it refuses can never fit.
    pub fn check_activation_memory(&self, batch: usize, steps: usize, training: bool) -> Result<()> {
        let r = &self.rnn;
        let what = format!(
            "the activations of {} x {batch} sequences x {steps} steps (--batch, --steps; vocabulary {}, hidden {})",
            if training { "training on" } else { "running" },
            self.vocab_size,
            r.hidden_size
        );
        let per_token = memory::sum_bytes(
            &what,
            &[
                memory::bytes_of(&what, &[self.embed.unwrap_or(self.vocab_size)], 1)?,
                memory::bytes_of(&what, &[r.num_layers, r.num_directions(), r.kind.num_gates() + 3, r.hidden_size], 1)?,
                memory::bytes_of(&what, &[self.vocab_size], 1)?,
            ],
        )?;
        let factor = if training { 3 } else { 1 };
        let per_token = usize::try_from(per_token).unwrap_or(usize::MAX);
        memory::check_elements(&what, &[batch, steps, per_token, factor], F32_BYTES)?;
        Ok(())
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> usize {
        self.trainable_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }
}

/// Bytes of an f32 parameter.
const F32_BYTES: usize = 4;

/// How parameters are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// PyTorch's defaults: Embedding N(0, 1); Linear weight and bias U(-1/sqrt(in), 1/sqrt(in));
    /// recurrent weights and biases U(-1/sqrt(H), 1/sqrt(H)).
    Pytorch,
    /// Every parameter from U(-a, a).
    Uniform(f64),
}

/// Draws the trainable parameters of `cfg` from a generator seeded with `seed`, in state-dict
/// order, so that the same seed always gives the same model.
pub fn init_parameters(
    cfg: &LmConfig,
    scheme: InitScheme,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Vec<(String, Tensor)>> {
    cfg.validate()?;
    if let InitScheme::Uniform(a) = scheme {
        if !(a.is_finite() && a > 0.0) {
            return Err(Error::option("init_range", "a positive finite number", a));
        }
    }
    // Each tensor is drawn as f64 values before it is converted: the model plus its largest
    // tensor in f64.
    let largest = cfg.trainable_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).max().unwrap_or(0);
    let what = "initialising the parameters";
    let bytes = memory::sum_bytes(
        what,
        &[
            memory::bytes_of(what, &[cfg.num_parameters()], dtype.size_in_bytes())?,
            memory::bytes_of(what, &[largest], 8)?,
        ],
    )?;
    memory::check_bytes(what, bytes)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let rnn_bound = 1.0 / (cfg.rnn.hidden_size as f64).sqrt();
    let linear_bound = 1.0 / (cfg.decoder_input_size() as f64).sqrt();
    let mut out = Vec::new();
    for (name, shape) in cfg.trainable_shapes() {
        let n: usize = shape.iter().product();
        let values: Vec<f64> = match scheme {
            InitScheme::Uniform(a) => (0..n).map(|_| rng.random_range(-a..=a)).collect(),
            InitScheme::Pytorch if name == "embedding.weight" => (0..n).map(|_| rng.sample(StandardNormal)).collect(),
            InitScheme::Pytorch => {
                let b = if name.starts_with("rnn.") { rnn_bound } else { linear_bound };
                (0..n).map(|_| rng.random_range(-b..=b)).collect()
            }
        };
        out.push((name, Tensor::from_vec(values, shape.as_slice(), device)?.to_dtype(dtype)?));
    }
    Ok(out)
}

/// The language model. Cheap to clone (tensors are shared).
#[derive(Clone, Debug)]
pub struct LanguageModel {
    cfg: LmConfig,
    embedding: Option<Tensor>,
    rnn: RnnBase,
    decoder_weight: Tensor,
    decoder_bias: Tensor,
    dropout: SeededDropout,
}

impl LanguageModel {
    /// Builds the model, taking its parameters from `vb` under the PyTorch names. With a
    /// `VarMap`-backed builder, missing parameters are created with PyTorch's default init
    /// (candle's generator, not seeded: use [`init_parameters`] and [`Self::from_parameters`]
    /// for repeatable weights).
    pub fn new(cfg: LmConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let embedding = match cfg.embed {
            Some(e) => Some(vb.get_with_hints(
                (cfg.vocab_size, e),
                "embedding.weight",
                Init::Randn { mean: 0.0, stdev: 1.0 },
            )?),
            None => None,
        };
        let rnn = RnnBase::new(cfg.rnn.clone(), vb.pp("rnn"))?;
        let d_in = cfg.decoder_input_size();
        let bound = 1.0 / (d_in as f64).sqrt();
        let uniform = Init::Uniform { lo: -bound, up: bound };
        let decoder_weight = match (&embedding, cfg.tie_weights) {
            (Some(e), true) => e.clone(),
            _ => vb.get_with_hints((cfg.vocab_size, d_in), "decoder.weight", uniform)?,
        };
        let decoder_bias = vb.get_with_hints(cfg.vocab_size, "decoder.bias", uniform)?;
        let dropout = SeededDropout::new(cfg.dropout, Some(0));
        Ok(LanguageModel { cfg, embedding, rnn, decoder_weight, decoder_bias, dropout })
    }

    /// A trainable model from named parameters (as [`init_parameters`] or a state dict gives
    /// them): returns the model and the `VarMap` holding its variables.
    pub fn from_parameters(cfg: LmConfig, params: HashMap<String, Tensor>) -> Result<(Self, VarMap)> {
        let (dtype, device) = match params.values().next() {
            Some(t) => (t.dtype(), t.device().clone()),
            None => (DType::F32, Device::Cpu),
        };
        let varmap = seqmodels::varmap_from_parameters(params, "")?;
        let model = Self::new(cfg, VarBuilder::from_varmap(&varmap, dtype, &device))?;
        Ok((model, varmap))
    }

    /// Loads a state dict (safetensors, PyTorch names) strictly: every key must be present with
    /// its shape and no other key may be. With tied weights both `embedding.weight` and
    /// `decoder.weight` must be present and equal.
    pub fn load(
        cfg: LmConfig,
        path: impl AsRef<std::path::Path>,
        dtype: DType,
        device: &Device,
    ) -> Result<(Self, VarMap)> {
        cfg.validate()?;
        let path = path.as_ref();
        let tensors = seqmodels::state_dict::read_safetensors(path)?;
        let options = seqmodels::LoadOptions::default();
        let mut params =
            seqmodels::state_dict::select_parameters(tensors, &cfg.parameter_shapes(), &options, dtype, device)?;
        if cfg.tie_weights {
            let (Some(dec), Some(emb)) = (params.remove("decoder.weight"), params.get("embedding.weight")) else {
                return Err(Error::Checkpoint { path: path.into(), problem: "tied weights missing".into() });
            };
            let diff = (dec - emb)?.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if diff != 0.0 {
                return Err(Error::Mismatch {
                    what: format!("{}: tied decoder.weight", path.display()),
                    expected: "equal to embedding.weight (tie_weights is set)".into(),
                    found: format!("a different matrix (max abs difference {diff:e})"),
                });
            }
        }
        Self::from_parameters(cfg, params)
    }

    /// The configuration.
    pub fn config(&self) -> &LmConfig {
        &self.cfg
    }

    /// The recurrent layers.
    pub fn rnn(&self) -> &RnnBase {
        &self.rnn
    }

    /// The name of the first parameter holding a NaN or an infinity, if any.
    pub fn first_non_finite_parameter(&self) -> Result<Option<String>> {
        for (name, t) in self.named_parameters() {
            // 0 * x is 0 for every finite x and NaN for NaN and infinities.
            let probe = (t * 0.0)?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !probe.is_finite() {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Every state-dict entry under its PyTorch name, in order (with tied weights,
    /// `decoder.weight` is the embedding matrix).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        if let Some(e) = &self.embedding {
            out.push(("embedding.weight".to_string(), e.clone()));
        }
        out.extend(self.rnn.named_parameters().into_iter().map(|(n, t)| (format!("rnn.{n}"), t)));
        out.push(("decoder.weight".to_string(), self.decoder_weight.clone()));
        out.push(("decoder.bias".to_string(), self.decoder_bias.clone()));
        out
    }

    /// Writes the state dict as a safetensors file that PyTorch's
    /// `module.load_state_dict(safetensors.torch.load_file(path))` accepts (atomic write).
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        Ok(seqmodels::save_state_dict(&self.named_parameters(), "", path)?)
    }

    /// The same model on plain tensors instead of variables: nothing it computes records an
    /// autodiff graph (as under `torch.no_grad()`), so states carried from call to call do not
    /// keep every earlier call alive.
    pub fn detached(&self) -> Result<Self> {
        let params: HashMap<String, Tensor> =
            self.named_parameters().into_iter().map(|(n, t)| (n, t.detach())).collect();
        let vb = VarBuilder::from_tensors(params, self.dtype(), self.device());
        Ok(LanguageModel::new(self.cfg.clone(), vb)?.with_implementation(self.rnn.implementation()))
    }

    /// Chooses the code that runs the recurrent layers (default: fused kernels where they run).
    pub fn with_implementation(mut self, implementation: seqmodels::Implementation) -> Self {
        self.rnn = self.rnn.with_implementation(implementation);
        self
    }

    /// Makes the dropout masks (embedding/output dropout and between-layer dropout) repeatable.
    pub fn set_dropout_seed(&self, seed: u64) {
        self.dropout.reseed(seed);
        self.rnn.set_dropout_seed(seed ^ 0x9e37_79b9_7f4a_7c15);
    }

    /// The dtype of the parameters.
    pub fn dtype(&self) -> DType {
        self.decoder_bias.dtype()
    }

    /// The device of the parameters.
    pub fn device(&self) -> &Device {
        self.decoder_bias.device()
    }

    /// A zero state for `batch` sequences: h (D*L, N, H_out) and, for LSTM, c (D*L, N, H).
    pub fn zero_state(&self, batch: usize) -> Result<StackedState> {
        let r = &self.cfg.rnn;
        let stacked = r.num_directions() * r.num_layers;
        let h = Tensor::zeros((stacked, batch, r.output_size()), self.dtype(), self.device())?;
        let c = if r.kind == CellKind::Lstm {
            Some(Tensor::zeros((stacked, batch, r.hidden_size), self.dtype(), self.device())?)
        } else {
            None
        };
        Ok(StackedState { h, c })
    }

    /// Runs the model on `tokens` (N, T) of u32 indices.
    ///
    /// `state` is the stacked initial state (h (D*L, N, H_out), and c for LSTM; zeros when
    /// `None`); `train` turns dropout on. Returns the logits (T*N, V) with time-major rows (row
    /// `t*N + n` is sequence `n` at step `t`, as d2l lays them out) and the final state.
    pub fn forward(
        &self,
        tokens: &Tensor,
        state: Option<&StackedState>,
        train: bool,
    ) -> Result<(Tensor, StackedState)> {
        let (y, state) = self.features(tokens, None, state, train)?;
        let y = y.reshape((y.dim(0)? * y.dim(1)?, y.dim(2)?))?;
        let logits = seqmodels::linear::linear(&y, &self.decoder_weight, &self.decoder_bias)?;
        Ok((logits, state))
    }

    /// The mean cross-entropy of the logits [`Self::forward`] would return against `targets`
    /// ((T*N,) time-major class indices), and the final state. The decoder and the loss run as
    /// one op ([`seqmodels::loss::linear_cross_entropy`]): the logits never enter the autodiff
    /// graph, which saves several passes over them in training (the trainer and `seqlm bench`
    /// use this).
    pub fn loss(
        &self,
        tokens: &Tensor,
        targets: &Tensor,
        state: Option<&StackedState>,
        train: bool,
    ) -> Result<(Tensor, StackedState)> {
        let (y, state) = self.features(tokens, None, state, train)?;
        let loss = seqmodels::loss::linear_cross_entropy(&y, &self.decoder_weight, &self.decoder_bias, targets)?;
        Ok((loss, state))
    }

    /// [`Self::forward`] on sequences of variable `lengths` (one per sequence, each in 1..=T;
    /// PyTorch's packed-sequence semantics, so the final state is each sequence's state at its
    /// last step): the logits of the valid tokens only, (P, V) with P the sum of `lengths`, rows
    /// in the order of [`packed_rows`].
    pub fn forward_with_lengths(
        &self,
        tokens: &Tensor,
        lengths: &[usize],
        state: Option<&StackedState>,
        train: bool,
    ) -> Result<(Tensor, StackedState)> {
        let (y, _, state) = self.packed_features(tokens, lengths, state, train)?;
        let logits = seqmodels::linear::linear(&y, &self.decoder_weight, &self.decoder_bias)?;
        Ok((logits, state))
    }

    /// [`Self::loss`] on sequences of variable `lengths` (as [`Self::forward_with_lengths`]):
    /// the mean cross-entropy over the valid tokens only. `targets` are the (T*N,) time-major
    /// labels of the whole batch; those past each sequence's end are left out.
    pub fn loss_with_lengths(
        &self,
        tokens: &Tensor,
        targets: &Tensor,
        lengths: &[usize],
        state: Option<&StackedState>,
        train: bool,
    ) -> Result<(Tensor, StackedState)> {
        if targets.dims() != [tokens.elem_count()] {
            return Err(Error::Model(seqmodels::Error::Shape {
                what: "targets".into(),
                expected: "(T*N,): one time-major label per token of the batch".into(),
                found: targets.dims().to_vec(),
            }));
        }
        let (y, rows, state) = self.packed_features(tokens, lengths, state, train)?;
        let targets = targets.index_select(&rows, 0)?;
        let loss = seqmodels::loss::linear_cross_entropy(&y, &self.decoder_weight, &self.decoder_bias, &targets)?;
        Ok((loss, state))
    }

    /// The decoder's input at the valid positions only, (P, D*H_out) in the order of
    /// [`packed_rows`], those rows as an index tensor, and the final state.
    fn packed_features(
        &self,
        tokens: &Tensor,
        lengths: &[usize],
        state: Option<&StackedState>,
        train: bool,
    ) -> Result<(Tensor, Tensor, StackedState)> {
        let (y, state) = self.features(tokens, Some(lengths), state, train)?;
        let (t, n, k) = y.dims3()?;
        let rows = packed_rows(lengths, t);
        let count = rows.len();
        let rows = Tensor::from_vec(rows, count, y.device())?;
        let y = y.reshape((t * n, k))?.index_select(&rows, 0)?;
        Ok((y, rows, state))
    }

    /// Everything before the decoder: its input (T, N, D*H_out), time-major, and the final state;
    /// with `lengths`, zero past each sequence's end. Not reshaped to (T*N, D*H_out): the loss
    /// takes it as it is (a reshape would be one more node of this size in the autodiff graph).
    fn features(
        &self,
        tokens: &Tensor,
        lengths: Option<&[usize]>,
        state: Option<&StackedState>,
        train: bool,
    ) -> Result<(Tensor, StackedState)> {
        let (n, t) = check_tokens(tokens, self.cfg.vocab_size)?;
        let time_major = tokens.t()?.contiguous()?; // (T, N)
        let mut x = match &self.embedding {
            Some(e) => e.index_select(&time_major.flatten_all()?, 0)?.reshape((t, n, e.dim(1)?))?,
            None => {
                candle_nn::encoding::one_hot(time_major, self.cfg.vocab_size, 1f32, 0f32)?.to_dtype(self.dtype())?
            }
        };
        if train && self.embedding.is_some() && self.cfg.dropout > 0.0 {
            x = self.dropout.apply(&x)?;
        }
        if self.cfg.rnn.batch_first {
            x = x.transpose(0, 1)?;
        }
        let out = self.rnn.forward(&x, state, ForwardOptions { lengths, train })?;
        let mut y = out.output;
        if self.cfg.rnn.batch_first {
            y = y.transpose(0, 1)?;
        }
        if train && self.cfg.dropout > 0.0 {
            y = self.dropout.apply(&y)?;
        }
        Ok((y, out.state))
    }
}

/// The valid positions of a batch of sequences of `lengths` (N of them) padded to `steps`
/// steps, as rows of its time-major (T*N, ...) layout: `t*N + n` for every step t and, within
/// it, every sequence n with `t < lengths[n]`, in increasing order. With lengths sorted in
/// decreasing order this is the order of PyTorch's `pack_padded_sequence(...).data`.
pub fn packed_rows(lengths: &[usize], steps: usize) -> Vec<i64> {
    let n = lengths.len();
    (0..steps)
        .flat_map(|t| lengths.iter().enumerate().filter(move |&(_, &l)| t < l).map(move |(i, _)| (t * n + i) as i64))
        .collect()
}

/// Checks that `tokens` is (N, T) u32 indices below `vocab_size`, with N, T >= 1; returns (N, T).
pub(crate) fn check_tokens(tokens: &Tensor, vocab_size: usize) -> Result<(usize, usize)> {
    let (n, t) = match tokens.dims() {
        &[n, t] if n > 0 && t > 0 => (n, t),
        d => {
            return Err(Error::Model(seqmodels::Error::Shape {
                what: "tokens".into(),
                expected: "(N, T) token indices with N, T >= 1".into(),
                found: d.to_vec(),
            }))
        }
    };
    if tokens.dtype() != DType::U32 {
        return Err(Error::Model(seqmodels::Error::DType {
            what: "tokens".into(),
            expected: "u32 token indices".into(),
            found: tokens.dtype(),
        }));
    }
    let max = tokens.max_all()?.to_scalar::<u32>()?;
    if max as usize >= vocab_size {
        return Err(Error::TokenOutOfRange { index: max, vocab_size });
    }
    Ok((n, t))
}

/// The JSON form of [`LmConfig`] (in `config.json`): the recurrent part holds PyTorch's
/// constructor arguments ([`TorchArgs`]), so that `getattr(torch.nn, type)(**args)` rebuilds it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LmConfigJson {
    vocab_size: usize,
    embed: Option<usize>,
    rnn: TorchArgs,
    #[serde(default)]
    dropout: f64,
    #[serde(default)]
    tie_weights: bool,
}

impl From<LmConfig> for LmConfigJson {
    fn from(c: LmConfig) -> Self {
        LmConfigJson {
            vocab_size: c.vocab_size,
            embed: c.embed,
            rnn: TorchArgs::from(&c.rnn),
            dropout: c.dropout,
            tie_weights: c.tie_weights,
        }
    }
}

impl TryFrom<LmConfigJson> for LmConfig {
    type Error = String;

    fn try_from(j: LmConfigJson) -> std::result::Result<Self, String> {
        let rnn = match ModuleSpec::try_from(j.rnn).map_err(|e| format!("rnn: {e}"))? {
            ModuleSpec::Layer(rnn) => rnn,
            ModuleSpec::Cell(cell) => {
                let found = format!("{}Cell", cell.kind.layer_name());
                return Err(format!("rnn.type: expected \"RNN\", \"LSTM\" or \"GRU\", found {found:?}"));
            }
        };
        Ok(LmConfig { vocab_size: j.vocab_size, embed: j.embed, rnn, dropout: j.dropout, tie_weights: j.tie_weights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_validation() {
        let mut cfg = LmConfig::d2l(28);
        cfg.rnn.kind = CellKind::RnnRelu;
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains("\"type\":\"RNN\"") && json.contains("\"nonlinearity\":\"relu\""), "{json}");
        let back: LmConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
        let tied = LmConfig { embed: None, tie_weights: true, ..LmConfig::d2l(28) };
        assert!(tied.validate().unwrap_err().to_string().contains("embedding"));
        let wrong_input = LmConfig { embed: Some(8), ..LmConfig::d2l(28) };
        let msg = wrong_input.validate().unwrap_err().to_string();
        assert!(msg.contains("expected 8") && msg.contains("found 28"), "{msg}");
    }

    #[test]
    fn seeded_init_is_repeatable_and_shaped() {
        let cfg =
            LmConfig { vocab_size: 10, embed: Some(6), rnn: RnnConfig::gru(6, 6), dropout: 0.0, tie_weights: true };
        let a = init_parameters(&cfg, InitScheme::Pytorch, 3, DType::F32, &Device::Cpu).unwrap();
        let b = init_parameters(&cfg, InitScheme::Pytorch, 3, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(a.len(), b.len());
        assert!(a.iter().all(|(n, _)| n != "decoder.weight"));
        for ((na, ta), (_, tb)) in a.iter().zip(&b) {
            assert_eq!(
                ta.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                tb.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{na}"
            );
        }
        let (model, _) = LanguageModel::from_parameters(cfg.clone(), a.into_iter().collect()).unwrap();
        let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
        let expected: Vec<String> = cfg.parameter_shapes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn packed_rows_are_time_major_valid_positions() {
        // lengths [3, 1, 2], N = 3: step 0 all three, step 1 sequences 0 and 2, step 2 sequence 0.
        assert_eq!(packed_rows(&[3, 1, 2], 3), [0, 1, 2, 3, 5, 6]);
        assert_eq!(packed_rows(&[2, 2], 2), [0, 1, 2, 3]);
    }

    #[test]
    fn variable_lengths_compute_each_sequence_on_its_own() {
        let cfg =
            LmConfig { vocab_size: 9, embed: Some(4), rnn: RnnConfig::lstm(4, 5), dropout: 0.0, tie_weights: false };
        let params = init_parameters(&cfg, InitScheme::Pytorch, 1, DType::F32, &Device::Cpu).unwrap();
        let (model, _) = LanguageModel::from_parameters(cfg, params.into_iter().collect()).unwrap();
        let tokens = Tensor::new(&[[1u32, 2, 3, 4], [5, 6, 7, 8], [0, 1, 2, 3]], &Device::Cpu).unwrap(); // (N=3, T=4)
        let targets = Tensor::new(&[3u32, 1, 4, 1, 5, 0, 2, 6, 5, 3, 5, 8], &Device::Cpu).unwrap(); // (T*N,)
        let lengths = [4, 2, 1];
        let (logits, state) = model.forward_with_lengths(&tokens, &lengths, None, false).unwrap();
        assert_eq!(logits.dims(), &[7, 9]);
        let rows = packed_rows(&lengths, 4);
        let logits = logits.to_vec2::<f32>().unwrap();
        for (n, &len) in lengths.iter().enumerate() {
            let alone = tokens.narrow(0, n, 1).unwrap().narrow(1, 0, len).unwrap();
            let (expected, alone_state) = model.forward(&alone, None, false).unwrap();
            let expected = expected.to_vec2::<f32>().unwrap();
            for (t, want) in expected.iter().enumerate() {
                let k = rows.iter().position(|&r| r == (t * 3 + n) as i64).unwrap();
                assert!(logits[k].iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "t {t} n {n}");
            }
            let h = state.h.narrow(1, n, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let h_alone = alone_state.h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(h.iter().zip(&h_alone).all(|(a, b)| (a - b).abs() < 1e-5), "final state of {n}");
        }
        // The loss is the mean over the valid tokens; with full lengths it is the plain loss.
        let (loss, _) = model.loss_with_lengths(&tokens, &targets, &lengths, None, false).unwrap();
        let (packed_logits, _) = model.forward_with_lengths(&tokens, &lengths, None, false).unwrap();
        let index = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
        let expected =
            candle_nn::loss::cross_entropy(&packed_logits, &targets.index_select(&index, 0).unwrap()).unwrap();
        let scalar = |t: Tensor| t.to_scalar::<f32>().unwrap();
        assert!((scalar(loss) - scalar(expected)).abs() < 1e-5);
        let (full, _) = model.loss_with_lengths(&tokens, &targets, &[4, 4, 4], None, false).unwrap();
        let (plain, _) = model.loss(&tokens, &targets, None, false).unwrap();
        assert!((scalar(full) - scalar(plain)).abs() < 1e-6);
        let short = targets.narrow(0, 0, 7).unwrap();
        let err = model.loss_with_lengths(&tokens, &short, &lengths, None, false).unwrap_err().to_string();
        assert!(err.contains("targets"), "{err}");
    }
}
