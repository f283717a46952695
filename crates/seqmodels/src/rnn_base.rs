//! PyTorch's `RNNBase` idea: one sequence layer for every cell kind. Layers, directions,
//! dropout, variable lengths and the shapes of initial and final states are written once;
//! the kinds differ only in [`cell::step`].

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::cell::{self, CellShape, CellWeights, State};
use crate::config::{param_suffix, RnnConfig};
use crate::dropout::SeededDropout;
use crate::error::{Error, Result};
use crate::fused;
use crate::lengths::{validate_lengths, StepMasks};

/// The states of every layer and direction of a sequence layer, stacked on the first dimension
/// (index = layer * D + direction): `h` (D*num_layers, N, H_out) and, for LSTM only, `c`
/// (D*num_layers, N, H); unbatched, without the N dimension. Both the initial state a forward
/// pass starts from and the final state it ends with.
#[derive(Clone, Debug)]
pub struct StackedState {
    /// Hidden states (PyTorch's `h_0` / `h_n`).
    pub h: Tensor,
    /// Cell states (PyTorch's `c_0` / `c_n`), LSTM only.
    pub c: Option<Tensor>,
}

impl StackedState {
    /// The state as separately given tensors: `None` when neither is given, an error when only
    /// `c` is (PyTorch takes an LSTM's initial state as the pair `(h_0, c_0)`).
    pub fn from_parts(h: Option<&Tensor>, c: Option<&Tensor>) -> Result<Option<Self>> {
        match (h, c) {
            (None, None) => Ok(None),
            (Some(h), c) => Ok(Some(StackedState { h: h.clone(), c: c.cloned() })),
            (None, Some(_)) => Err(Error::State("c0 was given without h0: an LSTM takes both or neither".into())),
        }
    }
}

/// Output of a sequence layer, shaped as PyTorch shapes it.
#[derive(Clone, Debug)]
pub struct SeqOutput {
    /// (L, N, D*H_out), or (N, L, D*H_out) with `batch_first`, or (L, D*H_out) unbatched.
    /// Positions past a sequence's length are zero.
    pub output: Tensor,
    /// The final states (PyTorch's `h_n`, and `c_n` for LSTM).
    pub state: StackedState,
}

/// How a sequence layer runs, besides its input and initial state. The default: evaluation
/// mode, every sequence as long as the input.
///
/// ```
/// use seqmodels::ForwardOptions;
/// let lengths = [5, 2, 4];
/// let options = ForwardOptions::training().with_lengths(&lengths);
/// assert!(options.train && options.lengths == Some(&lengths[..]));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardOptions<'a> {
    /// One length in 1..=L per batch element, with PyTorch's packed-sequence semantics: each
    /// sequence stops at its length, the reverse direction starts at its last valid step,
    /// outputs past the length are zero. `None`: every sequence has length L.
    pub lengths: Option<&'a [usize]>,
    /// Training mode: dropout between layers is applied.
    pub train: bool,
}

impl<'a> ForwardOptions<'a> {
    /// Training mode (dropout between layers), full lengths.
    pub fn training() -> Self {
        ForwardOptions { lengths: None, train: true }
    }

    /// These options with variable sequence `lengths`.
    pub fn with_lengths(self, lengths: &'a [usize]) -> Self {
        ForwardOptions { lengths: Some(lengths), ..self }
    }
}

/// Which code runs the recurrence of a layer (`auto`, `fused` or `composed` on the command line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Implementation {
    /// The fused whole-sequence kernels on the CPU (f32 or f64), else the composed path (also on
    /// CUDA for now: see docs/cuda.md).
    #[default]
    Auto,
    /// Candle ops per time step, differentiated by autodiff: the readable specification, and
    /// the path for devices without fused kernels.
    Composed,
    /// The fused kernels ([`crate::fused`]): on the CPU, or on CUDA with the `cuda` feature; an
    /// error where they cannot run.
    Fused,
}

/// A multi-layer, optionally bidirectional recurrent layer of any [`crate::CellKind`].
///
/// [`crate::RNN`], [`crate::LSTM`] and [`crate::GRU`] wrap it with typed states; use it
/// directly when the kind is only known at run time.
#[derive(Clone, Debug)]
pub struct RnnBase {
    config: RnnConfig,
    /// One entry per layer and direction, index = layer * D + direction.
    weights: Vec<CellWeights>,
    dropout: SeededDropout,
    implementation: Implementation,
}

impl Implementation {
    /// `auto`, `fused` or `composed`, as on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Auto => "auto",
            Implementation::Fused => "fused",
            Implementation::Composed => "composed",
        }
    }
}

impl RnnBase {
    /// Builds the layer, taking its parameters from `vb` under PyTorch's names
    /// (`weight_ih_l0`, `bias_hh_l1_reverse`, ...). With a `VarMap`-backed builder, missing
    /// parameters are created with PyTorch's default init.
    pub fn new(config: RnnConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let mut weights = Vec::with_capacity(config.num_layers * config.num_directions());
        for layer in 0..config.num_layers {
            for direction in 0..config.num_directions() {
                let shape = CellShape {
                    kind: config.kind,
                    input_size: config.layer_input_size(layer),
                    hidden_size: config.hidden_size,
                    proj_size: config.proj_size,
                    bias: config.bias,
                };
                weights.push(CellWeights::new(shape, &param_suffix(layer, direction), &vb)?);
            }
        }
        let dropout = SeededDropout::new(config.dropout, None);
        Ok(RnnBase { config, weights, dropout, implementation: Implementation::Auto })
    }

    /// The constructor arguments.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// Chooses the code that runs the recurrence (default [`Implementation::Auto`]).
    pub fn with_implementation(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }

    /// The chosen implementation.
    pub fn implementation(&self) -> Implementation {
        self.implementation
    }

    /// The weights of one layer and direction.
    pub fn weights(&self, layer: usize, direction: usize) -> Option<&CellWeights> {
        if direction >= self.config.num_directions() {
            return None;
        }
        self.weights.get(layer * self.config.num_directions() + direction)
    }

    /// Every parameter under its PyTorch name, in `state_dict` order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let d = self.config.num_directions();
        self.weights.iter().enumerate().flat_map(|(i, w)| w.named(&param_suffix(i / d, i % d))).collect()
    }

    /// Makes the between-layer dropout masks repeatable from `seed`.
    pub fn set_dropout_seed(&self, seed: u64) {
        self.dropout.reseed(seed);
    }

    /// Runs the whole sequence.
    ///
    /// - `input`: (L, N, input_size), (N, L, input_size) with `batch_first`, or (L, input_size).
    /// - `initial`: the stacked initial state ([`StackedState`]); zeros when `None`. An LSTM
    ///   needs both `h` and `c`, the other kinds only `h`.
    /// - `options`: variable lengths and training mode ([`ForwardOptions`]).
    pub fn forward(
        &self,
        input: &Tensor,
        initial: Option<&StackedState>,
        options: ForwardOptions,
    ) -> Result<SeqOutput> {
        let cfg = &self.config;
        let (x, batched) = self.time_major(input)?;
        let (seq_len, batch, _) = x.dims3()?;
        if options.lengths.is_some() && !batched {
            return Err(Error::Lengths("lengths need a batched input (unbatched input has one sequence)".into()));
        }
        let fused = self.runs_fused(&x)?;
        if let Some(l) = options.lengths {
            validate_lengths(l, seq_len, batch)?;
        }
        // Lengths that are all full change nothing: both paths then skip the masking.
        let lengths = options.lengths.filter(|l| l.iter().any(|&n| n < seq_len));
        let masks = match (fused, lengths) {
            (false, Some(l)) => StepMasks::new(l, seq_len, batch, x.dtype(), x.device())?,
            _ => None,
        };
        let (h0, c0) = self.initial_states(initial, batched, &x)?;

        let mut layer_input = x;
        let stacked = cfg.num_layers * cfg.num_directions();
        let (mut h_n, mut c_n) = (Vec::with_capacity(stacked), Vec::with_capacity(stacked));
        for layer in 0..cfg.num_layers {
            let mut outputs = Vec::with_capacity(cfg.num_directions());
            for direction in 0..cfg.num_directions() {
                let index = layer * cfg.num_directions() + direction;
                let w = &self.weights[index];
                let start = State { h: h0.get(index)?, c: c0.as_ref().map(|c| c.get(index)).transpose()? };
                let reverse = direction == 1;
                let (out, last) = if fused {
                    fused::run_direction(cfg.kind, w, &layer_input, &start, lengths, reverse)?
                } else {
                    let flat = layer_input.reshape((seq_len * batch, layer_input.dim(2)?))?;
                    let gi = w.input_gates(&flat)?.reshape((seq_len, batch, cfg.gate_size()))?;
                    self.run_direction(w, &gi, start, masks.as_ref(), reverse)?
                };
                outputs.push(out);
                h_n.push(last.h);
                c_n.extend(last.c);
            }
            let mut out = Tensor::cat(&outputs, 2)?;
            if options.train && cfg.dropout > 0.0 && layer + 1 < cfg.num_layers {
                out = self.dropout.apply(&out)?;
            }
            layer_input = out;
        }

        let mut output = layer_input;
        let mut h_n = Tensor::stack(&h_n, 0)?;
        let mut c_n = if c_n.is_empty() { None } else { Some(Tensor::stack(&c_n, 0)?) };
        if !batched {
            output = output.squeeze(1)?;
            h_n = h_n.squeeze(1)?;
            c_n = c_n.map(|c| c.squeeze(1)).transpose()?;
        } else if cfg.batch_first {
            output = output.transpose(0, 1)?;
        }
        Ok(SeqOutput { output, state: StackedState { h: h_n, c: c_n } })
    }

    /// The input checked and laid out as (L, N, input_size), and whether it was batched.
    fn time_major(&self, input: &Tensor) -> Result<(Tensor, bool)> {
        let cfg = &self.config;
        check_dtype("input", input, self.weights[0].weight_ih.dtype())?;
        let batched = match input.rank() {
            3 => true,
            2 => false,
            _ => {
                let expected = if cfg.batch_first { "(N, L, input_size)" } else { "(L, N, input_size)" };
                return Err(Error::shape("input", format!("{expected} or unbatched (L, input_size)"), input.dims()));
            }
        };
        let x = match (batched, cfg.batch_first) {
            (false, _) => input.unsqueeze(1)?,
            (true, true) => input.transpose(0, 1)?,
            (true, false) => input.clone(),
        };
        let (seq_len, batch, features) = x.dims3()?;
        if features != cfg.input_size || seq_len == 0 || batch == 0 {
            let expected = format!("a non-empty sequence with input_size = {} features", cfg.input_size);
            return Err(Error::shape("input", expected, input.dims()));
        }
        Ok((x, batched))
    }

    /// Whether the fused kernels run the recurrence of `x`, as [`Self::implementation`] asks.
    fn runs_fused(&self, x: &Tensor) -> Result<bool> {
        match self.implementation {
            Implementation::Composed => Ok(false),
            Implementation::Auto => Ok(fused::chosen_by_default(x)),
            Implementation::Fused if fused::supports(x) => Ok(true),
            Implementation::Fused => {
                let found = format!("{:?} on {:?}", x.dtype(), x.device().location());
                let need = "f32 or f64 on the CPU, or f32 on CUDA (with the `cuda` feature)";
                Err(Error::Config(format!("the fused kernels need {need}, found {found}")))
            }
        }
    }

    /// The initial `h0` and (LSTM) `c0`, checked and batched as (D*num_layers, N, size), zeros
    /// where not given.
    fn initial_states(
        &self,
        initial: Option<&StackedState>,
        batched: bool,
        x: &Tensor,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let cfg = &self.config;
        let (stacked, batch) = (cfg.num_layers * cfg.num_directions(), x.dim(1)?);
        let (h0, c0) = (initial.map(|s| &s.h), initial.and_then(|s| s.c.as_ref()));
        let h0 = initial_state("h0", h0, [stacked, batch, cfg.output_size()], batched, x)?;
        let c0 = match (cfg.kind.has_cell_state(), c0) {
            (true, None) if initial.is_some() => {
                return Err(Error::State("h0 was given without c0: an LSTM takes both or neither".into()))
            }
            (true, c0) => Some(initial_state("c0", c0, [stacked, batch, cfg.hidden_size], batched, x)?),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Error::State(format!("c0 was given, but {} has no cell state", cfg.kind.layer_name())))
            }
        };
        Ok((h0, c0))
    }

    /// The composed path: steps one direction through the sequence with candle ops; returns the outputs (L, N, H_out) in time
    /// order and the final state.
    fn run_direction(
        &self,
        w: &CellWeights,
        gi: &Tensor,
        mut state: State,
        masks: Option<&StepMasks>,
        reverse: bool,
    ) -> Result<(Tensor, State)> {
        let seq_len = gi.dim(0)?;
        let mut outputs = Vec::with_capacity(seq_len);
        for i in 0..seq_len {
            let t = if reverse { seq_len - 1 - i } else { i };
            let next = cell::step(self.config.kind, w, &gi.get(t)?, &state)?;
            match masks {
                None => {
                    state = next;
                    outputs.push(state.h.clone());
                }
                Some(m) => {
                    state = m.keep_finished(t, next, &state)?;
                    outputs.push(m.zero_finished(t, &state.h)?);
                }
            }
        }
        if reverse {
            outputs.reverse();
        }
        Ok((Tensor::stack(&outputs, 0)?, state))
    }
}

/// Checks that a float tensor has the parameters' dtype.
pub(crate) fn check_dtype(what: &str, t: &Tensor, params: DType) -> Result<()> {
    if t.dtype() != params {
        return Err(Error::DType {
            what: what.into(),
            expected: format!("{:?} (the parameters' dtype)", params),
            found: t.dtype(),
        });
    }
    Ok(())
}

/// Validates a given initial state (or makes zeros); returns it batched (stacked, N, size).
fn initial_state(what: &str, given: Option<&Tensor>, dims: [usize; 3], batched: bool, like: &Tensor) -> Result<Tensor> {
    let Some(t) = given else {
        return Ok(Tensor::zeros(dims.as_slice(), like.dtype(), like.device())?);
    };
    check_dtype(what, t, like.dtype())?;
    let expected: Vec<usize> = if batched { dims.to_vec() } else { vec![dims[0], dims[2]] };
    if t.dims() != expected.as_slice() {
        let words = if batched { "(D*num_layers, N, size)" } else { "(D*num_layers, size) for unbatched input" };
        return Err(Error::shape(what, format!("{expected:?} {words}"), t.dims()));
    }
    Ok(if batched { t.clone() } else { t.unsqueeze(1)? })
}
