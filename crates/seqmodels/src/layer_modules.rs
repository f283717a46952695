//! `RNN`, `LSTM` and `GRU`: [`RnnBase`] with the state types PyTorch's classes use.

use std::ops::Deref;

use candle_core::{ModuleT, Tensor};
use candle_nn::VarBuilder;

use crate::config::{CellKind, RnnConfig};
use crate::error::{Error, Result};
use crate::rnn_base::{ForwardOptions, RnnBase, StackedState};

/// The initial (or final) states of every layer and direction of an LSTM, stacked:
/// `h` (D*num_layers, N, H_out), `c` (D*num_layers, N, H); PyTorch's `(h_0, c_0)` pair.
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

/// The forward of the kinds whose state is `h` alone (RNN, GRU): `(output, h_n)`.
fn forward_hidden(
    base: &RnnBase,
    input: &Tensor,
    h0: Option<&Tensor>,
    options: ForwardOptions,
) -> Result<(Tensor, Tensor)> {
    let initial = h0.map(|h| StackedState { h: h.clone(), c: None });
    let out = base.forward(input, initial.as_ref(), options)?;
    Ok((out.output, out.state.h))
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
        self.forward_with(input, h0, ForwardOptions::default())
    }

    /// Forward with variable lengths or in training mode (dropout); returns `(output, h_n)`.
    pub fn forward_with(
        &self,
        input: &Tensor,
        h0: Option<&Tensor>,
        options: ForwardOptions,
    ) -> Result<(Tensor, Tensor)> {
        forward_hidden(&self.0, input, h0, options)
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
        self.forward_with(input, h0, ForwardOptions::default())
    }

    /// Forward with variable lengths or in training mode (dropout); returns `(output, h_n)`.
    pub fn forward_with(
        &self,
        input: &Tensor,
        h0: Option<&Tensor>,
        options: ForwardOptions,
    ) -> Result<(Tensor, Tensor)> {
        forward_hidden(&self.0, input, h0, options)
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
        self.forward_with(input, state, ForwardOptions::default())
    }

    /// Forward with variable lengths or in training mode (dropout).
    pub fn forward_with(
        &self,
        input: &Tensor,
        state: Option<&LstmState>,
        options: ForwardOptions,
    ) -> Result<(Tensor, LstmState)> {
        let initial = state.map(|s| StackedState { h: s.h.clone(), c: Some(s.c.clone()) });
        let out = self.0.forward(input, initial.as_ref(), options)?;
        let c = out.state.c.ok_or_else(|| Error::Config("LSTM produced no cell state".into()))?;
        Ok((out.output, LstmState { h: out.state.h, c }))
    }
}

// Each layer type is its base plus a typed forward: `Deref` exposes the shared API
// (`config`, `named_parameters`, `ModuleT` through `&*layer`, and the untyped forward as
// `RnnBase::forward(&layer, ..)`).
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
        let options = ForwardOptions { lengths: None, train };
        Ok(RnnBase::forward(self, xs, None, options)?.output)
    }
}
