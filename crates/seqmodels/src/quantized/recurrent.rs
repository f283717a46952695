//! Stacked unidirectional recurrent layers for inference, with W_ih and W_hh in a
//! [`Precision`]: per layer one product for the input side of all steps, then per step the
//! recurrent product and the fused gate pass of the f32 kernels.

use std::collections::HashMap;

use crate::config::{CellKind, RnnConfig};
use crate::error::{Error, Result};
use crate::fused::row::{gate_pass, GateRow, RowOut};
use crate::fused::sequence::Biases;
use crate::rnn_base::RnnBase;
use crate::simd::Simd;

use super::matrix::QuantMatrix;
use super::product::product;
use super::store::Stored;
use super::Precision;

/// One layer: its weights in the chosen precision and its biases in f32 (zeros without bias).
#[derive(Clone, Debug)]
struct Layer {
    w_ih: QuantMatrix,
    w_hh: QuantMatrix,
    /// b_ih and b_hh as stored (absent with `bias=False`).
    b_ih: Option<Vec<f32>>,
    b_hh: Option<Vec<f32>>,
}

/// The recurrent state of [`QuantizedRnn`]: h (L, N, H) and, for LSTM, c (L, N, H), f32.
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrentState {
    /// Hidden states, layer after layer, row after row.
    pub h: Vec<f32>,
    /// Cell states (LSTM), laid out as `h`; empty for the other kinds.
    pub c: Vec<f32>,
}

/// The layers of an [`RnnBase`] for inference in a reduced precision.
#[derive(Clone, Debug)]
pub struct QuantizedRnn {
    config: RnnConfig,
    layers: Vec<Layer>,
}

impl QuantizedRnn {
    /// Converts the f32 weights of `rnn` (on the CPU or any device) to `precision`. Refuses what
    /// the inference layers do not run: bidirectional layers and LSTM projections.
    pub fn from_rnn(rnn: &RnnBase, precision: Precision) -> Result<Self> {
        let config = rnn.config().clone();
        check_supported(&config)?;
        let (g, h) = (config.kind.num_gates() * config.hidden_size, config.hidden_size);
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let w = rnn.weights(l, 0).ok_or_else(|| Error::Config(format!("layer {l} has no weights")))?;
            let values = |t: &candle_core::Tensor| -> Result<Vec<f32>> {
                Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
            };
            let input = if l == 0 { config.input_size } else { h };
            layers.push(Layer {
                w_ih: QuantMatrix::quantize(&values(&w.weight_ih)?, g, input, precision)?,
                w_hh: QuantMatrix::quantize(&values(&w.weight_hh)?, g, h, precision)?,
                b_ih: w.bias_ih.as_ref().map(values).transpose()?,
                b_hh: w.bias_hh.as_ref().map(values).transpose()?,
            });
        }
        Ok(QuantizedRnn { config, layers })
    }

    /// The layers of `config` from stored tensors under PyTorch's names (`weight_ih_l0`,
    /// `weight_ih_l0.row_scale` for int8, `bias_ih_l0`, ...), as [`Self::stored`] writes them.
    /// Every tensor must be present with its shape, and no other.
    pub fn from_stored(config: RnnConfig, mut tensors: HashMap<String, Stored>) -> Result<Self> {
        check_supported(&config)?;
        let (g, h) = (config.kind.num_gates() * config.hidden_size, config.hidden_size);
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let input = if l == 0 { config.input_size } else { h };
            let mut matrix = |name: String, cols: usize| -> Result<QuantMatrix> {
                let w = tensors.remove(&name).ok_or_else(|| missing(&name))?;
                let scale = tensors.remove(&format!("{name}{ROW_SCALE}"));
                w.into_matrix(&name, g, cols, scale)
            };
            let (w_ih, w_hh) = (matrix(format!("weight_ih_l{l}"), input)?, matrix(format!("weight_hh_l{l}"), h)?);
            let mut bias = |name: String| -> Result<Option<Vec<f32>>> {
                if !config.bias {
                    return Ok(None);
                }
                let b = tensors.remove(&name).ok_or_else(|| missing(&name))?;
                b.into_f32(&name, &[g]).map(Some)
            };
            let (b_ih, b_hh) = (bias(format!("bias_ih_l{l}"))?, bias(format!("bias_hh_l{l}"))?);
            layers.push(Layer { w_ih, w_hh, b_ih, b_hh });
        }
        if !tensors.is_empty() {
            let mut unexpected: Vec<String> = tensors.into_keys().collect();
            unexpected.sort();
            return Err(Error::Keys { missing: vec![], unexpected });
        }
        Ok(QuantizedRnn { config, layers })
    }

    /// The tensors that [`Self::from_stored`] reads back, in PyTorch's order.
    pub fn stored(&self) -> Vec<(String, Stored)> {
        let mut out = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            for (name, w) in [(format!("weight_ih_l{l}"), &layer.w_ih), (format!("weight_hh_l{l}"), &layer.w_hh)] {
                let (values, scale) = Stored::from_matrix(w);
                out.push((name.clone(), values));
                if let Some(scale) = scale {
                    out.push((format!("{name}{ROW_SCALE}"), scale));
                }
            }
            for (name, b) in [(format!("bias_ih_l{l}"), &layer.b_ih), (format!("bias_hh_l{l}"), &layer.b_hh)] {
                if let Some(b) = b {
                    out.push((name, Stored::F32 { shape: vec![b.len()], data: b.clone() }));
                }
            }
        }
        out
    }

    /// The name of the first weight or bias holding a NaN or an infinity, if any.
    pub fn first_non_finite(&self) -> Option<String> {
        for (l, layer) in self.layers.iter().enumerate() {
            let biases = [("bias_ih", &layer.b_ih), ("bias_hh", &layer.b_hh)];
            if !layer.w_ih.is_finite() {
                return Some(format!("weight_ih_l{l}"));
            }
            if !layer.w_hh.is_finite() {
                return Some(format!("weight_hh_l{l}"));
            }
            for (name, b) in biases {
                if b.as_ref().is_some_and(|b| b.iter().any(|x| !x.is_finite())) {
                    return Some(format!("{name}_l{l}"));
                }
            }
        }
        None
    }

    /// The constructor arguments of the layers.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }

    /// The precision of the weights.
    pub fn precision(&self) -> Precision {
        self.layers.first().map_or(Precision::F32, |l| l.w_hh.precision())
    }

    /// Bytes of the weights (and scales) of all layers.
    pub fn weight_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.w_ih.bytes() + l.w_hh.bytes()).sum()
    }

    /// A zero state for `batch` sequences.
    pub fn zero_state(&self, batch: usize) -> RecurrentState {
        let len = self.config.num_layers * batch * self.config.hidden_size;
        let c = if self.config.kind == CellKind::Lstm { len } else { 0 };
        RecurrentState { h: vec![0.0; len], c: vec![0.0; c] }
    }

    /// Runs the layers over `x`, (T, N, I) time-major and row-major, from `state`, which it
    /// leaves at the final state. Returns the last layer's output (T, N, H).
    pub fn forward(&self, x: &[f32], seq_len: usize, batch: usize, state: &mut RecurrentState) -> Result<Vec<f32>> {
        let c = &self.config;
        let (h, g) = (c.hidden_size, c.kind.num_gates() * c.hidden_size);
        let expected = self.zero_state(batch);
        if x.len() != seq_len * batch * c.input_size
            || state.h.len() != expected.h.len()
            || state.c.len() != expected.c.len()
        {
            return Err(Error::Shape {
                what: "quantized recurrent input and state".into(),
                expected: format!(
                    "x of {seq_len} x {batch} x {}, h of {} and c of {} values",
                    c.input_size,
                    expected.h.len(),
                    expected.c.len()
                ),
                found: vec![x.len(), state.h.len(), state.c.len()],
            });
        }
        let simd = Simd::detect();
        let (tn, nh) = (seq_len * batch, batch * h);
        let mut input = x.to_vec();
        let (mut gx, mut gh) = (vec![0f32; tn * g], vec![0f32; batch * g]);
        // What the gate pass writes for backward, unused here.
        let (mut act, mut tanh_c, mut ghn) = (vec![0f32; g.max(4 * h)], vec![0f32; h], vec![0f32; h]);
        for (l, layer) in self.layers.iter().enumerate() {
            let biases = Biases::new(g, layer.b_ih.as_deref(), layer.b_hh.as_deref());
            product(&layer.w_ih, &input, tn, &mut gx)?;
            let mut output = vec![0f32; tn * h];
            let h_state = &mut state.h[l * nh..(l + 1) * nh];
            let c_state = if c.kind == CellKind::Lstm { &mut state.c[l * nh..(l + 1) * nh] } else { &mut [][..] };
            for t in 0..seq_len {
                product(&layer.w_hh, h_state, batch, &mut gh)?;
                let out_t = &mut output[t * nh..(t + 1) * nh];
                for n in 0..batch {
                    let (gh_n, gx_n) = (&gh[n * g..(n + 1) * g], &gx[(t * batch + n) * g..(t * batch + n + 1) * g]);
                    let h_prev = &h_state[n * h..(n + 1) * h];
                    let h_next = &mut out_t[n * h..(n + 1) * h];
                    let c_row = if c_state.is_empty() { &mut [][..] } else { &mut c_state[n * h..(n + 1) * h] };
                    let mut acts = act.chunks_exact_mut(h);
                    let act4 = std::array::from_fn(|_| acts.next().expect("four gate rows"));
                    let row_out = RowOut { act: act4, tanh_c: &mut tanh_c, ghn: &mut ghn };
                    let (kind, u0) = (c.kind, 0);
                    let row = GateRow {
                        kind,
                        gh: gh_n,
                        gx: gx_n,
                        gx_stride: h,
                        biases: &biases,
                        u0,
                        h_prev,
                        c: c_row,
                        out: row_out,
                        h_next,
                    };
                    gate_pass(simd, row);
                }
                h_state.copy_from_slice(out_t);
            }
            input = output;
        }
        Ok(input)
    }
}

/// The suffix of the name of an int8 matrix's row scales.
pub const ROW_SCALE: &str = ".row_scale";

fn missing(name: &str) -> Error {
    Error::Keys { missing: vec![name.to_string()], unexpected: vec![] }
}

fn check_supported(config: &RnnConfig) -> Result<()> {
    if config.bidirectional {
        return Err(Error::Config(
            "reduced-precision inference runs unidirectional layers (it reads text left to right): found bidirectional=True"
                .into(),
        ));
    }
    if config.proj_size > 0 {
        return Err(Error::Config(format!(
            "reduced-precision inference runs LSTM layers without projection: found proj_size={}",
            config.proj_size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    use super::*;
    use crate::rnn_base::{ForwardOptions, StackedState};

    /// The f32 layers and their output on a random input from a random state.
    fn reference(kind: CellKind, bias: bool) -> (RnnBase, Vec<f32>, RecurrentState, Vec<f32>, RecurrentState) {
        let (t, n, i, h, layers) = (6, 3, 5, 40, 2);
        let mut config = RnnConfig::new(kind, i, h);
        config.num_layers = layers;
        config.bias = bias;
        let varmap = VarMap::new();
        let rnn = RnnBase::new(config, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
        let x = Tensor::randn(0f32, 1.0, (t, n, i), &Device::Cpu).unwrap();
        let h0 = Tensor::randn(0f32, 0.5, (layers, n, h), &Device::Cpu).unwrap();
        let c0 = (kind == CellKind::Lstm).then(|| Tensor::randn(0f32, 0.5, (layers, n, h), &Device::Cpu).unwrap());
        let start = StackedState { h: h0, c: c0 };
        let out = rnn.forward(&x, Some(&start), ForwardOptions::default()).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let state = |s: &StackedState| RecurrentState { h: flat(&s.h), c: s.c.as_ref().map(flat).unwrap_or_default() };
        (rnn, flat(&x), state(&start), flat(&out.output), state(&out.state))
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn every_kind_and_precision_follows_the_f32_layers() {
        for kind in [CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh, CellKind::RnnRelu] {
            for bias in [true, false] {
                let (rnn, x, start, want, want_state) = reference(kind, bias);
                // f32: the same arithmetic but for the order of the sums and the activations'
                // polynomials; bf16 and int8: weights off by up to 2^-9 and 1/254 of their row's
                // largest magnitude, through two layers and six steps.
                for (precision, bound) in [(Precision::F32, 2e-5), (Precision::Bf16, 2e-2), (Precision::Int8, 4e-2)] {
                    let q = QuantizedRnn::from_rnn(&rnn, precision).unwrap();
                    assert_eq!(q.precision(), precision);
                    let mut state = start.clone();
                    let got = q.forward(&x, 6, 3, &mut state).unwrap();
                    let what = format!("{kind:?} bias={bias} {precision:?}");
                    assert!(max_diff(&got, &want) <= bound, "{what}: output off by {}", max_diff(&got, &want));
                    assert!(max_diff(&state.h, &want_state.h) <= bound, "{what}: h_n");
                    assert!(max_diff(&state.c, &want_state.c) <= bound * 4.0, "{what}: c_n");
                    let back =
                        QuantizedRnn::from_stored(rnn.config().clone(), q.stored().into_iter().collect()).unwrap();
                    let mut again = start.clone();
                    assert_eq!(back.forward(&x, 6, 3, &mut again).unwrap(), got, "{what}: stored and read back");
                }
            }
        }
    }

    #[test]
    fn unsupported_layers_and_bad_inputs_are_errors() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mut config = RnnConfig::lstm(3, 4);
        config.bidirectional = true;
        let rnn = RnnBase::new(config.clone(), vb.pp("a")).unwrap();
        assert!(QuantizedRnn::from_rnn(&rnn, Precision::Int8).unwrap_err().to_string().contains("bidirectional"));
        config.bidirectional = false;
        config.proj_size = 2;
        let rnn = RnnBase::new(config, vb.pp("b")).unwrap();
        assert!(QuantizedRnn::from_rnn(&rnn, Precision::Bf16).unwrap_err().to_string().contains("proj_size=2"));
        let rnn = RnnBase::new(RnnConfig::gru(3, 4), vb.pp("c")).unwrap();
        let q = QuantizedRnn::from_rnn(&rnn, Precision::Bf16).unwrap();
        let mut state = q.zero_state(2);
        assert!(q.forward(&[0.0; 5], 1, 2, &mut state).is_err());
        let mut stored: HashMap<String, Stored> = q.stored().into_iter().collect();
        stored.insert("weight_hh_l1".into(), Stored::F32 { shape: vec![1], data: vec![0.0] });
        let err = QuantizedRnn::from_stored(rnn.config().clone(), stored).unwrap_err().to_string();
        assert!(err.contains("weight_hh_l1"), "{err}");
    }
}
