//! The language model for inference on the CPU, with its recurrent and decoder weights in f32,
//! bf16 or int8 ([`seqmodels::quantized`] says exactly what is converted and how); the
//! embedding, the biases and every activation stay f32.
//!
//! Its products stream each weight row once per step with the rows of the batch, instead of
//! packing the weights for the fused kernels on every call: with few sequences at a time (text
//! generation runs one, one step per call) that is several times faster than
//! [`LanguageModel::forward`], and bf16 and int8 halve and quarter the bytes each step reads.
//! [`crate::predictor::for_inference`] says when it is used.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use seqmodels::quantized::Precision;
//! use seqmodels_train::model::{init_parameters, InitScheme, LanguageModel, LmConfig};
//! use seqmodels_train::inference_lm::InferenceLm;
//!
//! let cfg = LmConfig::d2l(28);
//! let params = init_parameters(&cfg, InitScheme::Pytorch, 0, DType::F32, &Device::Cpu)?;
//! let (model, _) = LanguageModel::from_parameters(cfg, params.into_iter().collect())?;
//! let small = InferenceLm::from_model(&model, Precision::Int8)?;
//! let tokens = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu)?; // (N=1, T=3)
//! let (logits, state) = small.forward(&tokens, None)?;
//! assert_eq!(logits.dims(), &[3, 28]);
//! assert_eq!(state.h.dims(), &[1, 1, 256]);
//! # Ok::<(), seqmodels_train::Error>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use seqmodels::quantized::{self, product, Precision, QuantMatrix, QuantizedRnn, RecurrentState, Stored, ROW_SCALE};
use seqmodels::StackedState;

use crate::error::{Error, Result};
use crate::model::{check_tokens, LanguageModel, LmConfig};

/// The language model for inference (see the module documentation).
#[derive(Clone, Debug)]
pub struct InferenceLm {
    cfg: LmConfig,
    /// (V, E) f32 rows; `None` feeds one-hot vectors (as d2l does).
    embedding: Option<Vec<f32>>,
    rnn: QuantizedRnn,
    decoder: QuantMatrix,
    decoder_bias: Vec<f32>,
    device: Device,
}

impl InferenceLm {
    /// Converts the weights of `model` to `precision`. Refuses what the reduced-precision layers
    /// do not run (bidirectional layers, LSTM projections) with an error that says so.
    pub fn from_model(model: &LanguageModel, precision: Precision) -> Result<Self> {
        let cfg = model.config().clone();
        let named: HashMap<String, Tensor> = model.named_parameters().into_iter().collect();
        let values = |name: &str| -> Result<Vec<f32>> {
            let t = named
                .get(name)
                .ok_or_else(|| seqmodels::Error::Keys { missing: vec![name.into()], unexpected: vec![] })?;
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let embedding = cfg.embed.map(|_| values("embedding.weight")).transpose()?;
        let rnn = QuantizedRnn::from_rnn(model.rnn(), precision)?;
        let decoder =
            QuantMatrix::quantize(&values("decoder.weight")?, cfg.vocab_size, cfg.decoder_input_size(), precision)?;
        let decoder_bias = values("decoder.bias")?;
        Ok(InferenceLm { cfg, embedding, rnn, decoder, decoder_bias, device: Device::Cpu })
    }

    /// The configuration.
    pub fn config(&self) -> &LmConfig {
        &self.cfg
    }

    /// The precision of the converted weights.
    pub fn precision(&self) -> Precision {
        self.decoder.precision()
    }

    /// The device it runs on: the CPU.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes of the converted weights (with their scales): what one step at batch 1 reads.
    pub fn weight_bytes(&self) -> usize {
        self.rnn.weight_bytes() + self.decoder.bytes()
    }

    /// Runs the model on `tokens` (N, T) of u32 indices from `state` (zeros when `None`).
    /// Returns the logits (T*N, V) with time-major rows and the final state, as
    /// [`LanguageModel::forward`] does.
    pub fn forward(&self, tokens: &Tensor, state: Option<&StackedState>) -> Result<(Tensor, StackedState)> {
        let (n, t) = check_tokens(tokens, self.cfg.vocab_size)?;
        let ids = tokens.to_vec2::<u32>()?;
        let width = self.cfg.rnn.input_size;
        let mut x = vec![0f32; t * n * width];
        for (row, seq) in ids.iter().enumerate() {
            for (step, &id) in seq.iter().enumerate() {
                let at = (step * n + row) * width;
                match &self.embedding {
                    Some(e) => x[at..at + width].copy_from_slice(&e[id as usize * width..(id as usize + 1) * width]),
                    None => x[at + id as usize] = 1.0,
                }
            }
        }
        let mut carried = self.state_in(state, n)?;
        let y = self.rnn.forward(&x, t, n, &mut carried)?;
        let v = self.cfg.vocab_size;
        let mut logits = vec![0f32; t * n * v];
        product(&self.decoder, &y, t * n, &mut logits)?;
        for row in logits.chunks_exact_mut(v) {
            row.iter_mut().zip(&self.decoder_bias).for_each(|(l, b)| *l += b);
        }
        Ok((Tensor::from_vec(logits, (t * n, v), &self.device)?, self.state_out(carried, n)?))
    }

    /// The f32 values of a stacked state, checked against the model and the batch.
    fn state_in(&self, state: Option<&StackedState>, batch: usize) -> Result<RecurrentState> {
        let zero = self.rnn.zero_state(batch);
        let Some(state) = state else { return Ok(zero) };
        let r = &self.cfg.rnn;
        let want = [r.num_layers, batch, r.hidden_size];
        let flat = |t: &Tensor, what: &str| -> Result<Vec<f32>> {
            if t.dims() != want {
                return Err(Error::Model(seqmodels::Error::Shape {
                    what: what.into(),
                    expected: format!("{want:?} (layers, batch, hidden)"),
                    found: t.dims().to_vec(),
                }));
            }
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let h = flat(&state.h, "h")?;
        let c = match (&state.c, zero.c.is_empty()) {
            (Some(c), false) => flat(c, "c")?,
            (None, true) => Vec::new(),
            (None, false) => return Err(Error::Model(seqmodels::Error::State("an LSTM state needs c".into()))),
            (Some(_), true) => {
                return Err(Error::Model(seqmodels::Error::State(format!(
                    "{} has no cell state c",
                    r.kind.layer_name()
                ))))
            }
        };
        Ok(RecurrentState { h, c })
    }

    fn state_out(&self, s: RecurrentState, batch: usize) -> Result<StackedState> {
        let shape = (self.cfg.rnn.num_layers, batch, self.cfg.rnn.hidden_size);
        let c = (!s.c.is_empty()).then(|| Tensor::from_vec(s.c, shape, &self.device)).transpose()?;
        Ok(StackedState { h: Tensor::from_vec(s.h, shape, &self.device)?, c })
    }

    /// The tensors of `model.safetensors` in a reduced-precision checkpoint, under PyTorch's
    /// names: `embedding.weight` (F32), `rnn.*` (see [`QuantizedRnn::stored`]), `decoder.weight`
    /// (BF16, or I8 with `decoder.weight.row_scale`) and `decoder.bias` (F32).
    pub fn stored(&self) -> Vec<(String, Stored)> {
        let mut out = Vec::new();
        if let (Some(e), Some(width)) = (&self.embedding, self.cfg.embed) {
            out.push((
                "embedding.weight".into(),
                Stored::F32 { shape: vec![self.cfg.vocab_size, width], data: e.clone() },
            ));
        }
        out.extend(self.rnn.stored().into_iter().map(|(n, t)| (format!("rnn.{n}"), t)));
        let (w, scale) = Stored::from_matrix(&self.decoder);
        out.push(("decoder.weight".into(), w));
        out.extend(scale.map(|s| (format!("decoder.weight{ROW_SCALE}"), s)));
        out.push((
            "decoder.bias".into(),
            Stored::F32 { shape: vec![self.cfg.vocab_size], data: self.decoder_bias.clone() },
        ));
        out
    }

    /// Writes [`Self::stored`] as a safetensors file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::checkpoint::write_atomic(path, &quantized::serialize(&self.stored())?)
    }

    /// Reads a model written by [`Self::save`], strictly: every tensor present with its shape,
    /// the precision the checkpoint's config names, no other tensor.
    pub fn load(cfg: LmConfig, precision: Precision, path: &Path) -> Result<Self> {
        cfg.validate()?;
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        let mut tensors: HashMap<String, Stored> = quantized::deserialize(&bytes, path)?.into_iter().collect();
        let mut take = |name: &str| {
            tensors
                .remove(name)
                .ok_or_else(|| seqmodels::Error::Keys { missing: vec![name.into()], unexpected: vec![] })
        };
        let embedding = match cfg.embed {
            Some(e) => Some(take("embedding.weight")?.into_f32("embedding.weight", &[cfg.vocab_size, e])?),
            None => None,
        };
        let decoder_weight = take("decoder.weight")?;
        let decoder_bias = take("decoder.bias")?.into_f32("decoder.bias", &[cfg.vocab_size])?;
        let scale = tensors.remove(&format!("decoder.weight{ROW_SCALE}"));
        let decoder = decoder_weight.into_matrix("decoder.weight", cfg.vocab_size, cfg.decoder_input_size(), scale)?;
        let mut rnn_tensors = HashMap::new();
        for (name, t) in tensors {
            match name.strip_prefix("rnn.") {
                Some(inner) => rnn_tensors.insert(inner.to_string(), t),
                None => return Err(seqmodels::Error::Keys { missing: vec![], unexpected: vec![name] }.into()),
            };
        }
        let rnn = QuantizedRnn::from_stored(cfg.rnn.clone(), rnn_tensors)?;
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        let non_finite = if !embedding.as_deref().is_none_or(finite) {
            Some("embedding.weight".to_string())
        } else if let Some(name) = rnn.first_non_finite() {
            Some(format!("rnn.{name}"))
        } else if !decoder.is_finite() {
            Some("decoder.weight".to_string())
        } else {
            (!finite(&decoder_bias)).then(|| "decoder.bias".to_string())
        };
        if let Some(name) = non_finite {
            return Err(Error::Checkpoint {
                path: path.into(),
                problem: format!("tensor `{name}` holds NaN or infinite values: expected finite weights"),
            });
        }
        for (what, found) in [("decoder.weight", decoder.precision()), ("rnn", rnn.precision())] {
            if found != precision {
                return Err(Error::Mismatch {
                    what: format!("{}: {what}", path.display()),
                    expected: format!("{} weights (config.json)", precision.name()),
                    found: format!("{} weights", found.name()),
                });
            }
        }
        Ok(InferenceLm { cfg, embedding, rnn, decoder, decoder_bias, device: Device::Cpu })
    }
}
