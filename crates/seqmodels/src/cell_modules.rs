//! Single-step cells: `RNNCell`, `LSTMCell`, `GRUCell`, all served by one [`Cell`].

use std::ops::Deref;

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::cell::{self, CellShape, CellWeights, State};
use crate::config::{CellConfig, CellKind};
use crate::error::{Error, Result};
use crate::rnn_base::check_dtype;

/// One recurrent step of any [`CellKind`], with parameters `weight_ih`, `weight_hh`,
/// `bias_ih`, `bias_hh` under PyTorch's names.
#[derive(Clone, Debug)]
pub struct Cell {
    config: CellConfig,
    weights: CellWeights,
}

impl Cell {
    /// Builds the cell from `vb` (a `VarMap`-backed builder creates PyTorch's default init).
    pub fn new(config: CellConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let shape = CellShape {
            kind: config.kind,
            input_size: config.input_size,
            hidden_size: config.hidden_size,
            proj_size: 0,
            bias: config.bias,
        };
        let weights = CellWeights::new(shape, "", &vb)?;
        Ok(Cell { config, weights })
    }

    /// The constructor arguments.
    pub fn config(&self) -> &CellConfig {
        &self.config
    }

    /// The weights.
    pub fn weights(&self) -> &CellWeights {
        &self.weights
    }

    /// Every parameter under its PyTorch name, in `state_dict` order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.weights.named("")
    }

    /// One step: `input` (N, input_size) or unbatched (input_size); `hx`/`cx` (N, H) or (H),
    /// zeros when `None` (`cx` only for LSTM, given together with `hx`). Returns the new state
    /// shaped like the input.
    pub fn forward_state(&self, input: &Tensor, hx: Option<&Tensor>, cx: Option<&Tensor>) -> Result<State> {
        let cfg = &self.config;
        check_dtype("input", input, self.weights.weight_ih.dtype())?;
        let batched = match input.dims() {
            [_, f] if *f == cfg.input_size => true,
            [f] if *f == cfg.input_size => false,
            dims => {
                let expected = format!("(N, {0}) or unbatched ({0})", cfg.input_size);
                return Err(Error::shape("input", expected, dims));
            }
        };
        let x = if batched { input.clone() } else { input.unsqueeze(0)? };
        let batch = x.dim(0)?;
        let state = |what: &str, given: Option<&Tensor>| -> Result<Tensor> {
            let Some(t) = given else {
                return Ok(Tensor::zeros((batch, cfg.hidden_size), x.dtype(), x.device())?);
            };
            check_dtype(what, t, x.dtype())?;
            let expected: &[usize] = if batched { &[batch, cfg.hidden_size] } else { &[cfg.hidden_size] };
            if t.dims() != expected {
                return Err(Error::shape(what, format!("{expected:?}"), t.dims()));
            }
            Ok(if batched { t.clone() } else { t.unsqueeze(0)? })
        };
        let h = state("hx", hx)?;
        let c = match (cfg.kind.has_cell_state(), cx) {
            // PyTorch takes an LSTMCell's state as the pair (hx, cx): both or neither.
            (true, None) if hx.is_some() => {
                return Err(Error::State("hx was given without cx: an LSTMCell takes both or neither".into()))
            }
            (true, Some(_)) if hx.is_none() => {
                return Err(Error::State("cx was given without hx: an LSTMCell takes both or neither".into()))
            }
            (true, cx) => Some(state("cx", cx)?),
            (false, None) => None,
            (false, Some(_)) => return Err(Error::State("cx was given, but only LSTMCell has a cell state".into())),
        };
        let gi = self.weights.input_gates(&x)?;
        let next = cell::step(cfg.kind, &self.weights, &gi, &State { h, c })?;
        if batched {
            return Ok(next);
        }
        Ok(State { h: next.h.squeeze(0)?, c: next.c.map(|c| c.squeeze(0)).transpose()? })
    }
}

fn cell_of_kind(config: CellConfig, allowed: &[CellKind], vb: VarBuilder) -> Result<Cell> {
    if !allowed.contains(&config.kind) {
        return Err(Error::Config(format!("this cell type needs kind {allowed:?}, found {:?}", config.kind)));
    }
    Cell::new(config, vb)
}

/// `nn.RNNCell`: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh or relu.
#[derive(Clone, Debug)]
pub struct RNNCell(Cell);

impl RNNCell {
    /// Builds the cell; `config.kind` must be `RnnTanh` or `RnnRelu`.
    pub fn new(config: CellConfig, vb: VarBuilder) -> Result<Self> {
        cell_of_kind(config, &[CellKind::RnnTanh, CellKind::RnnRelu], vb).map(RNNCell)
    }

    /// One step: returns h' with the shape of `hx`.
    pub fn forward(&self, input: &Tensor, hx: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.0.forward_state(input, hx, None)?.h)
    }
}

/// `nn.GRUCell`.
#[derive(Clone, Debug)]
pub struct GRUCell(Cell);

impl GRUCell {
    /// Builds the cell; `config.kind` must be `Gru`.
    pub fn new(config: CellConfig, vb: VarBuilder) -> Result<Self> {
        cell_of_kind(config, &[CellKind::Gru], vb).map(GRUCell)
    }

    /// One step: returns h'.
    pub fn forward(&self, input: &Tensor, hx: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.0.forward_state(input, hx, None)?.h)
    }
}

/// `nn.LSTMCell`.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use candle_nn::{VarBuilder, VarMap};
/// # use seqmodels::{CellConfig, LSTMCell};
/// let varmap = VarMap::new();
/// let cell = LSTMCell::new(CellConfig::lstm(10, 20), VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
/// let x = Tensor::randn(0f32, 1., (2, 3, 10), &Device::Cpu)?;
/// let (mut hx, mut cx) = (Tensor::zeros((3, 20), DType::F32, &Device::Cpu)?, Tensor::zeros((3, 20), DType::F32, &Device::Cpu)?);
/// let mut output = Vec::new();
/// for t in 0..2 {
///     (hx, cx) = cell.forward(&x.get(t)?, Some((&hx, &cx)))?;
///     output.push(hx.clone());
/// }
/// assert_eq!(Tensor::stack(&output, 0)?.dims(), &[2, 3, 20]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct LSTMCell(Cell);

impl LSTMCell {
    /// Builds the cell; `config.kind` must be `Lstm`.
    pub fn new(config: CellConfig, vb: VarBuilder) -> Result<Self> {
        cell_of_kind(config, &[CellKind::Lstm], vb).map(LSTMCell)
    }

    /// One step: returns `(h', c')`.
    pub fn forward(&self, input: &Tensor, state: Option<(&Tensor, &Tensor)>) -> Result<(Tensor, Tensor)> {
        let next = self.0.forward_state(input, state.map(|s| s.0), state.map(|s| s.1))?;
        let c = next.c.ok_or_else(|| Error::Config("LSTMCell produced no cell state".into()))?;
        Ok((next.h, c))
    }
}

impl Deref for RNNCell {
    type Target = Cell;
    fn deref(&self) -> &Cell {
        &self.0
    }
}

impl Deref for GRUCell {
    type Target = Cell;
    fn deref(&self) -> &Cell {
        &self.0
    }
}

impl Deref for LSTMCell {
    type Target = Cell;
    fn deref(&self) -> &Cell {
        &self.0
    }
}
