//! What generation and evaluation need from a model: logits from tokens with a carried state.
//! The f32 [`LanguageModel`] and the reduced-precision [`QuantizedLm`] both provide it.

use candle_core::{Device, Tensor};
use seqmodels::quantized::Precision;
use seqmodels::StackedState;

use crate::error::Result;
use crate::model::{LanguageModel, LmConfig};
use crate::quantized_lm::QuantizedLm;

/// A language model that predicts the next token, for inference only.
pub trait Predictor {
    /// The configuration.
    fn config(&self) -> &LmConfig;

    /// The precision of the weights.
    fn precision(&self) -> Precision;

    /// Where the model runs (and where its inputs and outputs live).
    fn device(&self) -> &Device;

    /// The logits (T*N, V), time-major rows, of `tokens` (N, T) u32 indices from `state` (zeros
    /// when `None`), and the final state.
    fn logits(&self, tokens: &Tensor, state: Option<&StackedState>) -> Result<(Tensor, StackedState)>;

    /// The mean cross-entropy of those logits against `targets` ((T*N,) time-major indices),
    /// and the final state.
    fn mean_loss(
        &self,
        tokens: &Tensor,
        targets: &Tensor,
        state: Option<&StackedState>,
    ) -> Result<(Tensor, StackedState)> {
        let (logits, state) = self.logits(tokens, state)?;
        Ok((candle_nn::loss::cross_entropy(&logits, targets)?, state))
    }
}

impl Predictor for LanguageModel {
    fn config(&self) -> &LmConfig {
        LanguageModel::config(self)
    }

    fn precision(&self) -> Precision {
        Precision::F32
    }

    fn device(&self) -> &Device {
        LanguageModel::device(self)
    }

    fn logits(&self, tokens: &Tensor, state: Option<&StackedState>) -> Result<(Tensor, StackedState)> {
        self.forward(tokens, state, false)
    }

    fn mean_loss(
        &self,
        tokens: &Tensor,
        targets: &Tensor,
        state: Option<&StackedState>,
    ) -> Result<(Tensor, StackedState)> {
        self.loss(tokens, targets, state, false)
    }
}

impl Predictor for QuantizedLm {
    fn config(&self) -> &LmConfig {
        QuantizedLm::config(self)
    }

    fn precision(&self) -> Precision {
        QuantizedLm::precision(self)
    }

    fn device(&self) -> &Device {
        QuantizedLm::device(self)
    }

    fn logits(&self, tokens: &Tensor, state: Option<&StackedState>) -> Result<(Tensor, StackedState)> {
        self.forward(tokens, state)
    }
}
