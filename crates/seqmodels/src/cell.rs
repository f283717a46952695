//! One time step of each cell kind, written with candle ops: the readable specification
//! that autodiff differentiates. Layers and cells both step through [`step`].

use candle_core::{Tensor, D};
use candle_nn::{ops::sigmoid, Init, VarBuilder};

use crate::config::CellKind;
use crate::error::{Error, Result};

/// The weights of one recurrence: one layer and direction of a sequence module, or a cell.
///
/// Shapes (G = gates x hidden_size, H_out = proj_size or hidden_size):
/// `weight_ih` (G, in), `weight_hh` (G, H_out), `bias_ih`/`bias_hh` (G), `weight_hr` (proj_size, H).
#[derive(Clone, Debug)]
pub struct CellWeights {
    /// Input-to-hidden weights, gates stacked in PyTorch's order.
    pub weight_ih: Tensor,
    /// Hidden-to-hidden weights, gates stacked in PyTorch's order.
    pub weight_hh: Tensor,
    /// Input bias (absent when `bias=False`).
    pub bias_ih: Option<Tensor>,
    /// Hidden bias (absent when `bias=False`).
    pub bias_hh: Option<Tensor>,
    /// LSTM projection (present when `proj_size > 0`).
    pub weight_hr: Option<Tensor>,
}

/// Sizes that fix the shapes of one [`CellWeights`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct CellShape {
    pub kind: CellKind,
    pub input_size: usize,
    pub hidden_size: usize,
    pub proj_size: usize,
    pub bias: bool,
}

impl CellWeights {
    /// Fetches (or, from a `VarMap`, creates with PyTorch's init U(-1/sqrt(H), 1/sqrt(H)))
    /// the parameters named `weight_ih{suffix}`, ... from `vb`.
    pub(crate) fn new(shape: CellShape, suffix: &str, vb: &VarBuilder) -> Result<Self> {
        let bound = 1.0 / (shape.hidden_size as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let gates = shape.kind.num_gates() * shape.hidden_size;
        let h_out = if shape.proj_size > 0 { shape.proj_size } else { shape.hidden_size };
        let get = |dims: &[usize], name: &str| vb.get_with_hints(dims, &format!("{name}{suffix}"), init);
        let weight_ih = get(&[gates, shape.input_size], "weight_ih")?;
        let weight_hh = get(&[gates, h_out], "weight_hh")?;
        let (bias_ih, bias_hh) =
            if shape.bias { (Some(get(&[gates], "bias_ih")?), Some(get(&[gates], "bias_hh")?)) } else { (None, None) };
        let weight_hr =
            if shape.proj_size > 0 { Some(get(&[shape.proj_size, shape.hidden_size], "weight_hr")?) } else { None };
        Ok(CellWeights { weight_ih, weight_hh, bias_ih, bias_hh, weight_hr })
    }

    /// The named parameters, with `suffix` appended to each name, in PyTorch's order.
    pub(crate) fn named(&self, suffix: &str) -> Vec<(String, Tensor)> {
        let mut out = vec![
            (format!("weight_ih{suffix}"), self.weight_ih.clone()),
            (format!("weight_hh{suffix}"), self.weight_hh.clone()),
        ];
        if let (Some(bi), Some(bh)) = (&self.bias_ih, &self.bias_hh) {
            out.push((format!("bias_ih{suffix}"), bi.clone()));
            out.push((format!("bias_hh{suffix}"), bh.clone()));
        }
        if let Some(hr) = &self.weight_hr {
            out.push((format!("weight_hr{suffix}"), hr.clone()));
        }
        out
    }

    /// `x W_ih^T + b_ih` for a matrix `x` of shape (M, in): the part of every gate that does
    /// not depend on the recurrence, so layers compute it for all time steps at once.
    pub fn input_gates(&self, x: &Tensor) -> Result<Tensor> {
        affine(x, &self.weight_ih, self.bias_ih.as_ref())
    }

    /// `h W_hh^T + b_hh` for h of shape (N, H_out).
    fn hidden_gates(&self, h: &Tensor) -> Result<Tensor> {
        affine(h, &self.weight_hh, self.bias_hh.as_ref())
    }
}

/// `x W^T + b`.
fn affine(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    Ok(match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// The recurrent state of one layer and direction (or of a cell): `h` (N, H_out) and,
/// for LSTM, `c` (N, H).
#[derive(Clone, Debug)]
pub struct State {
    /// Hidden state.
    pub h: Tensor,
    /// Cell state (LSTM only).
    pub c: Option<Tensor>,
}

/// One time step of `kind`, from the input gates `gi = x W_ih^T + b_ih` (N, G) and the
/// previous state. Equations as PyTorch's (reference.md):
/// - RNN: h' = act(gi + h W_hh^T + b_hh)
/// - LSTM: i, f, g, o = chunks of gi + h W_hh^T + b_hh; c' = f*c + i*g; h' = o*tanh(c') [W_hr^T]
/// - GRU: r, z from the sum of both halves; n = tanh(gi_n + r * (h W_hn^T + b_hn)); h' = (1-z)*n + z*h
pub fn step(kind: CellKind, w: &CellWeights, gi: &Tensor, state: &State) -> Result<State> {
    let gh = w.hidden_gates(&state.h)?;
    let new = match kind {
        CellKind::RnnTanh => State { h: (gi + gh)?.tanh()?, c: None },
        CellKind::RnnRelu => State { h: (gi + gh)?.relu()?, c: None },
        CellKind::Lstm => {
            let gates = (gi + gh)?.chunk(4, D::Minus1)?;
            let (i, f) = (sigmoid(&gates[0])?, sigmoid(&gates[1])?);
            let (g, o) = (gates[2].tanh()?, sigmoid(&gates[3])?);
            let c_prev = state.c.as_ref().ok_or_else(|| Error::Config("an LSTM step needs a cell state c".into()))?;
            let c = ((f * c_prev)? + (i * g)?)?;
            let mut h = (o * c.tanh()?)?;
            if let Some(hr) = &w.weight_hr {
                h = h.matmul(&hr.t()?)?;
            }
            State { h, c: Some(c) }
        }
        CellKind::Gru => {
            let gi = gi.chunk(3, D::Minus1)?;
            let gh = gh.chunk(3, D::Minus1)?;
            let r = sigmoid(&(&gi[0] + &gh[0])?)?;
            let z = sigmoid(&(&gi[1] + &gh[1])?)?;
            let n = (&gi[2] + (r * &gh[2])?)?.tanh()?;
            // h' = (1 - z) * n + z * h, written as n + z * (h - n).
            let h = (&n + (z * (&state.h - &n)?)?)?;
            State { h, c: None }
        }
    };
    Ok(new)
}
