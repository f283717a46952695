//! `RNN`, `LSTM` and `GRU`: [`RnnBase`] with the state types PyTorch's classes use.

use std::ops::Deref;

use candle_core::{ModuleT, Tensor};
use candle_nn::VarBuilder;

use crate::config::{CellKind, RnnConfig};
use crate::error::{Error, Result};
use crate::layer::RnnBase;

/// The final (or initial) states of an LSTM: `h` (D*num_layers, N, H_out), `c` (D*num_layers, N, H).
#[derive(Clone, Debug)]
pub struct LstmState {
    /// Hidden states.
    pub h: Tensor,
    /// Cell states.
    pub c: Tensor,
}

fn base_of_kind(config: RnnConfig, allowed: &[CellKind], vb: VarBuilder) -> Result<RnnBase> {
    if !allowed.contains(&config.kind) {
        return Err(Error::Config(format!("this layer type needs kind {allowed:?}, found {:?}", config.kind)));
    }
    RnnBase::new(config, vb)
}

/// `nn.RNN`: a multi-layer Elman RNN with tanh or relu.
///
/// ```
/// # use candle_core::{DType, Device, Tensor};
/// # use candle_nn::{VarBuilder, VarMap};
/// # use seqmodels::{RnnConfig, RNN};
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let rnn = RNN::new(RnnConfig { num_layers: 2, ..RnnConfig::rnn(3, 5) }, vb)?;
/// let x = Tensor::zeros((7, 4, 3), DType::F32, &Device::Cpu)?; // (L, N, input_size)
/// let (output, h_n) = rnn.forward(&x, None)?;
/// assert_eq!(output.dims(), &[7, 4, 5]);
/// assert_eq!(h_n.dims(), &[2, 4, 5]);
/// # Ok::<(), seqmodels::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RNN(RnnBase);

impl RNN {
    /// Builds the layer; `config.kind` must be `RnnTanh` or `RnnRelu`.
    pub fn new(config: RnnConfig, vb: VarBuilder) -> Result<Self> {
        base_of_kind(config, &[CellKind::RnnTanh, CellKind::RnnRelu], vb).map(RNN)
    }

    /// Evaluation-mode forward: returns `(output, h_n)`.
    pub fn forward(&self, input: &Tensor, h0: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.forward_with(input, h0, None, false)
    }

    /// Forward with variable `lengths` and training mode (dropout); returns `(output, h_n)`.
    pub fn forward_with(
        &self,
        input: &Tensor,
        h0: Option<&Tensor>,
        lengths: Option<&[usize]>,
        train: bool,
    ) -> Result<(Tensor, Tensor)> {
        self.0.forward_hidden(input, h0, lengths, train)
    }
}

/// `nn.GRU`: a multi-layer gated recurrent unit (PyTorch's equations, gates r, z, n).
#[derive(Clone, Debug)]
pub struct GRU(RnnBase);

impl GRU {
    /// Builds the layer; `config.kind` must be `Gru`.
    pub fn new(config: RnnConfig, vb: VarBuilder) -> Result<Self> {
        base_of_kind(config, &[CellKind::Gru], vb).map(GRU)
    }

    /// Evaluation-mode forward: returns `(output, h_n)`.
    pub fn forward(&self, input: &Tensor, h0: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.forward_with(input, h0, None, false)
    }

    /// Forward with variable `lengths` and training mode (dropout); returns `(output, h_n)`.
    pub fn forward_with(
        &self,
        input: &Tensor,
        h0: Option<&Tensor>,
        lengths: Option<&[usize]>,
        train: bool,
    ) -> Result<(Tensor, Tensor)> {
        self.0.forward_hidden(input, h0, lengths, train)
    }
}

/// `nn.LSTM`: a multi-layer long short-term memory, optionally with projection (`proj_size`).
#[derive(Clone, Debug)]
pub struct LSTM(RnnBase);

impl LSTM {
    /// Builds the layer; `config.kind` must be `Lstm`.
    pub fn new(config: RnnConfig, vb: VarBuilder) -> Result<Self> {
        base_of_kind(config, &[CellKind::Lstm], vb).map(LSTM)
    }

    /// Evaluation-mode forward: returns `(output, (h_n, c_n))`.
    pub fn forward(&self, input: &Tensor, state: Option<&LstmState>) -> Result<(Tensor, LstmState)> {
        self.forward_with(input, state, None, false)
    }

    /// Forward with variable `lengths` and training mode (dropout).
    pub fn forward_with(
        &self,
        input: &Tensor,
        state: Option<&LstmState>,
        lengths: Option<&[usize]>,
        train: bool,
    ) -> Result<(Tensor, LstmState)> {
        let (h0, c0) = (state.map(|s| &s.h), state.map(|s| &s.c));
        let out = self.0.forward_states(input, h0, c0, lengths, train)?;
        let c = out.c_n.ok_or_else(|| Error::Config("LSTM produced no cell state".into()))?;
        Ok((out.output, LstmState { h: out.h_n, c }))
    }
}

// Each layer type is its base plus a typed forward: `Deref` exposes the shared API
// (`config`, `named_parameters`, `forward_states`, and `ModuleT` through `&*layer`).
impl Deref for RNN {
    type Target = RnnBase;
    fn deref(&self) -> &RnnBase {
        &self.0
    }
}

impl Deref for GRU {
    type Target = RnnBase;
    fn deref(&self) -> &RnnBase {
        &self.0
    }
}

impl Deref for LSTM {
    type Target = RnnBase;
    fn deref(&self) -> &RnnBase {
        &self.0
    }
}

/// The output sequence only, with zero initial states.
impl ModuleT for RnnBase {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Ok(self.forward_states(xs, None, None, None, train)?.output)
    }
}
