//! One recurrent layer's parameters in PyTorch's form and in ONNX's.
//!
//! PyTorch keeps per direction `weight_ih` (G*H, I), `weight_hh` (G*H, H), `bias_ih` and
//! `bias_hh` (G*H), gates stacked i, f, g, o (LSTM) or r, z, n (GRU). ONNX's `LSTM`, `GRU` and
//! `RNN` operators take `W` (D, G*H, I), `R` (D, G*H, H) and `B` (D, 2*G*H) = [input biases,
//! recurrent biases], gates stacked i, o, f, c (LSTM) or z, r, h (GRU). The same equations hold
//! once the gates are reordered (GRU with `linear_before_reset = 1`, which is PyTorch's formula).

use std::collections::HashMap;

use candle_core::Tensor;
use seqmodels::config::param_suffix;
use seqmodels::{CellKind, RnnConfig};

use super::error::{OnnxError, Result};

/// ONNX's gates as PyTorch gate indices: ONNX gate `j` is PyTorch gate `onnx_gates(kind)[j]`.
fn onnx_gates(kind: CellKind) -> &'static [usize] {
    match kind {
        CellKind::Lstm => &[0, 3, 1, 2], // i, o, f, c  <-  i, f, g, o
        CellKind::Gru => &[1, 0, 2],     // z, r, h     <-  r, z, n
        CellKind::RnnTanh | CellKind::RnnRelu => &[0],
    }
}

/// PyTorch's gates as ONNX gate indices (the inverse permutation of [`onnx_gates`]).
fn torch_gates(kind: CellKind) -> Vec<usize> {
    let onnx = onnx_gates(kind);
    (0..onnx.len()).map(|t| onnx.iter().position(|&o| o == t).expect("a permutation")).collect()
}

/// The blocks of `h` rows of `t` (stacked gates along dimension 0) in the order `order`.
fn reorder(t: &Tensor, order: &[usize], h: usize) -> Result<Tensor> {
    let blocks = order.iter().map(|&g| t.narrow(0, g * h, h)).collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&blocks, 0)?)
}

/// `W`, `R` and `B` of one layer, both directions stacked along dimension 0.
#[derive(Clone, Debug)]
pub struct OnnxLayerWeights {
    /// Input weights (D, G*H, I).
    pub w: Tensor,
    /// Recurrent weights (D, G*H, H).
    pub r: Tensor,
    /// Biases (D, 2*G*H), or `None` for a layer without biases (ONNX's default is zero).
    pub b: Option<Tensor>,
}

/// Layer `layer` of `cfg` in ONNX's form, from PyTorch-named parameters (`weight_ih_l0`, ...).
pub fn to_onnx(cfg: &RnnConfig, params: &HashMap<String, Tensor>, layer: usize) -> Result<OnnxLayerWeights> {
    let get = |name: String| {
        params.get(&name).ok_or_else(|| OnnxError::Malformed(format!("missing parameter `{name}`"))).cloned()
    };
    let (order, h) = (onnx_gates(cfg.kind), cfg.hidden_size);
    let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for direction in 0..cfg.num_directions() {
        let sfx = param_suffix(layer, direction);
        w.push(reorder(&get(format!("weight_ih{sfx}"))?, order, h)?);
        r.push(reorder(&get(format!("weight_hh{sfx}"))?, order, h)?);
        if cfg.bias {
            let ih = reorder(&get(format!("bias_ih{sfx}"))?, order, h)?;
            let hh = reorder(&get(format!("bias_hh{sfx}"))?, order, h)?;
            b.push(Tensor::cat(&[ih, hh], 0)?);
        }
    }
    Ok(OnnxLayerWeights {
        w: Tensor::stack(&w, 0)?,
        r: Tensor::stack(&r, 0)?,
        b: if cfg.bias { Some(Tensor::stack(&b, 0)?) } else { None },
    })
}

/// Layer `layer`'s PyTorch-named parameters (in `state_dict` order) from ONNX's `W`, `R` and
/// `B` of a layer of `kind` with `hidden` units. With `bias` false, `B` must be absent or zero.
pub fn from_onnx(
    kind: CellKind,
    hidden: usize,
    layer: usize,
    weights: &OnnxLayerWeights,
    bias: bool,
) -> Result<Vec<(String, Tensor)>> {
    let order = torch_gates(kind);
    let gh = order.len() * hidden;
    let directions = weights.w.dim(0)?;
    let mut out = Vec::new();
    for direction in 0..directions {
        let sfx = param_suffix(layer, direction);
        out.push((format!("weight_ih{sfx}"), reorder(&weights.w.get(direction)?, &order, hidden)?));
        out.push((format!("weight_hh{sfx}"), reorder(&weights.r.get(direction)?, &order, hidden)?));
        if let (true, Some(b)) = (bias, &weights.b) {
            let b = b.get(direction)?;
            out.push((format!("bias_ih{sfx}"), reorder(&b.narrow(0, 0, gh)?, &order, hidden)?));
            out.push((format!("bias_hh{sfx}"), reorder(&b.narrow(0, gh, gh)?, &order, hidden)?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn lstm_gates_follow_onnx_order_and_round_trip() {
        let cfg = RnnConfig { bidirectional: true, ..RnnConfig::lstm(2, 1) };
        // Gate g of direction d holds the value 10*d + g in every entry.
        let mut params = HashMap::new();
        for d in 0..2 {
            let sfx = param_suffix(0, d);
            let rows = |cols: usize, offset: f32| {
                let v: Vec<f32> = (0..4).flat_map(|g| vec![10.0 * d as f32 + g as f32 + offset; cols]).collect();
                Tensor::from_vec(v, (4, cols), &Device::Cpu).unwrap()
            };
            params.insert(format!("weight_ih{sfx}"), rows(2, 0.0));
            params.insert(format!("weight_hh{sfx}"), rows(1, 0.0));
            params.insert(format!("bias_ih{sfx}"), rows(1, 0.5).flatten_all().unwrap());
            params.insert(format!("bias_hh{sfx}"), rows(1, 0.25).flatten_all().unwrap());
        }
        let onnx = to_onnx(&cfg, &params, 0).unwrap();
        assert_eq!(onnx.w.dims(), &[2, 4, 2]);
        let first_column: Vec<f32> =
            onnx.w.get(1).unwrap().narrow(1, 0, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(first_column, vec![10.0, 13.0, 11.0, 12.0]); // i, o, f, g of the reverse direction
        let b: Vec<f32> = onnx.b.as_ref().unwrap().get(0).unwrap().to_vec1().unwrap();
        assert_eq!(b, vec![0.5, 3.5, 1.5, 2.5, 0.25, 3.25, 1.25, 2.25]);
        for (name, t) in from_onnx(CellKind::Lstm, 1, 0, &onnx, true).unwrap() {
            let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let e: Vec<f32> = params[&name].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a, e, "{name}");
        }
    }

    #[test]
    fn gru_swaps_reset_and_update_gates() {
        assert_eq!(onnx_gates(CellKind::Gru), &[1, 0, 2]);
        assert_eq!(torch_gates(CellKind::Lstm), vec![0, 2, 3, 1]);
    }
}
