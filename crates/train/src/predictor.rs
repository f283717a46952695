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

/// When f32 inference runs on [`InferenceLm`] instead of the fused kernels (on the CPU, for
/// unidirectional layers without projection): batches of at most [`STREAMING_MAX_BATCH`]
/// sequences, and either calls of at most [`STREAMING_MAX_STEPS`] steps (generation: the fused
/// kernels pack their weights on every call) or recurrent weights of at least
/// [`STREAMING_MIN_WEIGHT_BYTES`] (which no cache holds, so packing them does not pay).
///
/// Measured on a Zen 3 at batch 1: generation one token per call, 2 to 18 times faster at every
/// size tried (hidden 256 to 1024); 64 steps per call, faster with 2 x 1024 units (59 MB of
/// recurrent weights) and slower with 256 or 512 units in one layer and with 2 x 200 (at most
/// 4.2 MB); at batch 64, slower with 2 x 1024.
pub const STREAMING_MAX_BATCH: usize = 16;
/// See [`STREAMING_MAX_BATCH`].
pub const STREAMING_MAX_STEPS: usize = 8;
/// See [`STREAMING_MAX_BATCH`].
pub const STREAMING_MIN_WEIGHT_BYTES: usize = 16 << 20;

/// The model that runs inference on `batch` sequences of `steps` steps per call in
/// `precision`: bf16 and int8 are always [`InferenceLm`] (on the CPU only); f32 is
/// [`InferenceLm`] where [`STREAMING_MAX_BATCH`] says, else `model` on plain tensors
/// ([`LanguageModel::detached`]).
pub fn for_inference(
    model: LanguageModel,
    precision: Precision,
    batch: usize,
    steps: usize,
) -> Result<Box<dyn Predictor>> {
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
    let recurrent_bytes: usize = r.parameter_shapes().iter().map(|(_, s)| 4 * s.iter().product::<usize>()).sum();
    let runs = cpu && !r.bidirectional && r.proj_size == 0;
    let pays =
        batch <= STREAMING_MAX_BATCH && (steps <= STREAMING_MAX_STEPS || recurrent_bytes >= STREAMING_MIN_WEIGHT_BYTES);
    if runs && pays {
        return Ok(Box::new(InferenceLm::from_model(&model, Precision::F32)?));
    }
    Ok(Box::new(model.detached()?))
}
