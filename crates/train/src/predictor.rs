//! What generation and evaluation need from a model: logits from tokens with a carried state.
//! The trainable [`LanguageModel`] and the inference-only [`InferenceLm`] both provide it, and
//! [`for_inference`] picks one of them.

use candle_core::{Device, Tensor};
use seqmodels::quantized::Precision;
use seqmodels::StackedState;

use crate::error::{Error, Result};
use crate::inference_lm::InferenceLm;
use crate::model::{LanguageModel, LmConfig};

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

impl Predictor for InferenceLm {
    fn config(&self) -> &LmConfig {
        InferenceLm::config(self)
    }

    fn precision(&self) -> Precision {
        InferenceLm::precision(self)
    }

    fn device(&self) -> &Device {
        InferenceLm::device(self)
    }

    fn logits(&self, tokens: &Tensor, state: Option<&StackedState>) -> Result<(Tensor, StackedState)> {
        self.forward(tokens, state)
    }
}

/// Batches up to this many sequences run on [`InferenceLm`] in f32: measured on the
/// `--embed 512 --hidden 1024 --layers 2` LSTM, it is faster than the fused kernels at batches
/// 1, 4 and 16 and slower at 64, where the fused kernels' packed weights pay for themselves.
pub const STREAMING_MAX_BATCH: usize = 16;

/// The model that runs inference on `batch` sequences at a time in `precision`: bf16 and int8
/// are always [`InferenceLm`] (on the CPU only); f32 is [`InferenceLm`] on the CPU up to
/// [`STREAMING_MAX_BATCH`] sequences where it runs the layers (unidirectional, no projection),
/// else `model` itself.
pub fn for_inference(model: LanguageModel, precision: Precision, batch: usize) -> Result<Box<dyn Predictor>> {
    let cpu = model.device().is_cpu();
    if precision != Precision::F32 {
        if !cpu {
            return Err(Error::option(
                "precision",
                "f32 on this device (bf16 and int8 run on the CPU)",
                precision.name(),
            ));
        }
        return Ok(Box::new(InferenceLm::from_model(&model, precision)?));
    }
    let r = &model.config().rnn;
    if cpu && batch <= STREAMING_MAX_BATCH && !r.bidirectional && r.proj_size == 0 {
        return Ok(Box::new(InferenceLm::from_model(&model, Precision::F32)?));
    }
    Ok(Box::new(model))
}
