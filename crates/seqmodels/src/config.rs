//! PyTorch's constructor arguments for the recurrent layers and cells.

use crate::error::{Error, Result};

/// The recurrence computed at each time step. Everything else (layers, directions,
/// dropout, lengths, state shapes) is shared by all kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// Elman RNN with `tanh`: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh).
    RnnTanh,
    /// Elman RNN with `relu`.
    RnnRelu,
    /// LSTM with gates stacked in PyTorch's order i, f, g, o.
    Lstm,
    /// GRU with gates stacked in PyTorch's order r, z, n.
    Gru,
}

impl CellKind {
    /// Number of gates stacked in `weight_ih`/`weight_hh` (1, 4 or 3).
    pub fn num_gates(self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// Whether the kind carries a cell state `c` besides `h` (LSTM only).
    pub fn has_cell_state(self) -> bool {
        self == CellKind::Lstm
    }

    /// The short name used on the command line and in reports: `rnn` (tanh), `rnn-relu`,
    /// `lstm`, `gru`.
    pub fn short_name(self) -> &'static str {
        match self {
            CellKind::RnnTanh => "rnn",
            CellKind::RnnRelu => "rnn-relu",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }

    /// PyTorch's name of the sequence layer (`RNN`, `LSTM`, `GRU`).
    pub fn layer_name(self) -> &'static str {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => "RNN",
            CellKind::Lstm => "LSTM",
            CellKind::Gru => "GRU",
        }
    }
}

/// On the command line a cell kind is `lstm`, `gru` or `rnn` (tanh; relu through a separate
/// nonlinearity option, as PyTorch's `nonlinearity` argument).
#[cfg(feature = "clap")]
impl clap::ValueEnum for CellKind {
    fn value_variants<'a>() -> &'a [Self] {
        &[CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            CellKind::Lstm => "LSTM (nn.LSTM)",
            CellKind::Gru => "GRU (nn.GRU)",
            CellKind::RnnTanh => "Elman RNN (nn.RNN)",
            CellKind::RnnRelu => return None,
        };
        Some(clap::builder::PossibleValue::new(self.short_name()).help(help))
    }
}

/// Constructor arguments of a multi-layer sequence module (`nn.RNN`, `nn.LSTM`, `nn.GRU`),
/// with PyTorch's defaults.
///
/// ```
/// use seqmodels::RnnConfig;
/// let cfg = RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::lstm(10, 20) };
/// assert_eq!(cfg.output_size(), 20);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RnnConfig {
    /// The recurrence (and, for RNN, the nonlinearity).
    pub kind: CellKind,
    /// Features of each input element.
    pub input_size: usize,
    /// Features of the hidden state `h` (and of `c` for LSTM).
    pub hidden_size: usize,
    /// Number of stacked layers (default 1).
    pub num_layers: usize,
    /// Whether the layers have `bias_ih`/`bias_hh` (default true).
    pub bias: bool,
    /// Input and output as (batch, seq, feature) instead of (seq, batch, feature) (default false).
    pub batch_first: bool,
    /// Dropout probability on the outputs of every layer but the last, in training only (default 0).
    pub dropout: f64,
    /// Run a second, reversed direction per layer and concatenate (default false).
    pub bidirectional: bool,
    /// LSTM only: project `h` to this size with `weight_hr` (default 0: no projection).
    pub proj_size: usize,
}

impl RnnConfig {
    /// A single-layer configuration of the given kind with PyTorch's defaults.
    pub fn new(kind: CellKind, input_size: usize, hidden_size: usize) -> Self {
        RnnConfig {
            kind,
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            proj_size: 0,
        }
    }

    /// `nn.RNN(input_size, hidden_size)` (tanh).
    pub fn rnn(input_size: usize, hidden_size: usize) -> Self {
        Self::new(CellKind::RnnTanh, input_size, hidden_size)
    }

    /// `nn.LSTM(input_size, hidden_size)`.
    pub fn lstm(input_size: usize, hidden_size: usize) -> Self {
        Self::new(CellKind::Lstm, input_size, hidden_size)
    }

    /// `nn.GRU(input_size, hidden_size)`.
    pub fn gru(input_size: usize, hidden_size: usize) -> Self {
        Self::new(CellKind::Gru, input_size, hidden_size)
    }

    /// Checks the arguments as PyTorch's constructor does.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.input_size == 0 {
            return bad("input_size must be positive, found 0".into());
        }
        if self.hidden_size == 0 {
            return bad("hidden_size must be positive, found 0".into());
        }
        if self.num_layers == 0 {
            return bad("num_layers must be at least 1, found 0".into());
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return bad(format!("dropout must be a probability in [0, 1], found {}", self.dropout));
        }
        if self.proj_size > 0 && self.kind != CellKind::Lstm {
            return bad(format!(
                "proj_size is only supported for LSTM, not {} (found proj_size={})",
                self.kind.layer_name(),
                self.proj_size
            ));
        }
        if self.proj_size >= self.hidden_size && self.proj_size > 0 {
            return bad(format!(
                "proj_size must be smaller than hidden_size ({}), found {}",
                self.hidden_size, self.proj_size
            ));
        }
        let what = format!(
            "the parameters of {} layer(s) of {} (input_size {}, hidden_size {})",
            self.num_layers,
            self.kind.layer_name(),
            self.input_size,
            self.hidden_size
        );
        let count = self.checked_parameter_count().ok_or_else(|| Error::TooLarge {
            what: what.clone(),
            bytes: None,
            available: crate::memory::available_bytes(),
        })?;
        crate::memory::check_bytes(&what, count.saturating_mul(F32_BYTES))
    }

    /// The number of parameters, `None` when it overflows a 64-bit count.
    fn checked_parameter_count(&self) -> Option<u64> {
        let g = (self.kind.num_gates() as u64).checked_mul(self.hidden_size as u64)?;
        let h_out = self.output_size() as u64;
        let proj = (self.proj_size as u64).checked_mul(self.hidden_size as u64)?;
        let bias = if self.bias { g.checked_mul(2)? } else { 0 };
        let per_direction = |input: u64| -> Option<u64> {
            g.checked_mul(input)?.checked_add(g.checked_mul(h_out)?)?.checked_add(bias)?.checked_add(proj)
        };
        let upper_input = (self.num_directions() as u64).checked_mul(h_out)?;
        let upper = per_direction(upper_input)?.checked_mul(self.num_layers as u64 - 1)?;
        per_direction(self.input_size as u64)?.checked_add(upper)?.checked_mul(self.num_directions() as u64)
    }

    /// D: 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// H_out: the size of `h` (proj_size when projecting, else hidden_size).
    pub fn output_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    /// Rows of `weight_ih`/`weight_hh`: gates x hidden_size.
    pub fn gate_size(&self) -> usize {
        self.kind.num_gates() * self.hidden_size
    }

    /// Input features of layer `layer` (input_size for layer 0, D * H_out above it).
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.num_directions() * self.output_size()
        }
    }

    /// Every parameter's PyTorch name and shape, in PyTorch's `state_dict` order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::new();
        let (g, h, h_out) = (self.gate_size(), self.hidden_size, self.output_size());
        for layer in 0..self.num_layers {
            for direction in 0..self.num_directions() {
                let sfx = param_suffix(layer, direction);
                shapes.push((format!("weight_ih{sfx}"), vec![g, self.layer_input_size(layer)]));
                shapes.push((format!("weight_hh{sfx}"), vec![g, h_out]));
                if self.bias {
                    shapes.push((format!("bias_ih{sfx}"), vec![g]));
                    shapes.push((format!("bias_hh{sfx}"), vec![g]));
                }
                if self.proj_size > 0 {
                    shapes.push((format!("weight_hr{sfx}"), vec![self.proj_size, h]));
                }
            }
        }
        shapes
    }
}

/// PyTorch's parameter-name suffix of one layer and direction: `_l0`, `_l1_reverse`, ...
pub fn param_suffix(layer: usize, direction: usize) -> String {
    if direction == 0 {
        format!("_l{layer}")
    } else {
        format!("_l{layer}_reverse")
    }
}

/// Bytes of an f32, the smallest element the parameters are held in.
const F32_BYTES: u64 = 4;

/// Constructor arguments of a single-step cell (`nn.RNNCell`, `nn.LSTMCell`, `nn.GRUCell`).
#[derive(Clone, Debug, PartialEq)]
pub struct CellConfig {
    /// The recurrence (and, for RNNCell, the nonlinearity).
    pub kind: CellKind,
    /// Features of the input.
    pub input_size: usize,
    /// Features of `h` (and `c`).
    pub hidden_size: usize,
    /// Whether the cell has `bias_ih`/`bias_hh` (default true).
    pub bias: bool,
}

impl CellConfig {
    /// A cell of the given kind with PyTorch's defaults.
    pub fn new(kind: CellKind, input_size: usize, hidden_size: usize) -> Self {
        CellConfig { kind, input_size, hidden_size, bias: true }
    }

    /// Checks the arguments.
    pub fn validate(&self) -> Result<()> {
        if self.input_size == 0 || self.hidden_size == 0 {
            return Err(Error::Config(format!(
                "input_size and hidden_size must be positive, found {} and {}",
                self.input_size, self.hidden_size
            )));
        }
        let what = format!(
            "the parameters of {}Cell (input_size {}, hidden_size {})",
            self.kind.layer_name(),
            self.input_size,
            self.hidden_size
        );
        let count = (|| {
            let g = (self.kind.num_gates() as u64).checked_mul(self.hidden_size as u64)?;
            let inputs = (self.input_size as u64).checked_add(self.hidden_size as u64)?.checked_add(2)?;
            g.checked_mul(inputs)
        })();
        let count = count.ok_or_else(|| Error::TooLarge {
            what: what.clone(),
            bytes: None,
            available: crate::memory::available_bytes(),
        })?;
        crate::memory::check_bytes(&what, count.saturating_mul(F32_BYTES))
    }

    /// Every parameter's PyTorch name and shape, in PyTorch's `state_dict` order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let g = self.kind.num_gates() * self.hidden_size;
        let mut shapes = vec![
            ("weight_ih".to_string(), vec![g, self.input_size]),
            ("weight_hh".to_string(), vec![g, self.hidden_size]),
        ];
        if self.bias {
            shapes.push(("bias_ih".to_string(), vec![g]));
            shapes.push(("bias_hh".to_string(), vec![g]));
        }
        shapes
    }
}

impl CellConfig {
    /// `nn.RNNCell(input_size, hidden_size)` (tanh).
    pub fn rnn(input_size: usize, hidden_size: usize) -> Self {
        Self::new(CellKind::RnnTanh, input_size, hidden_size)
    }

    /// `nn.LSTMCell(input_size, hidden_size)`.
    pub fn lstm(input_size: usize, hidden_size: usize) -> Self {
        Self::new(CellKind::Lstm, input_size, hidden_size)
    }

    /// `nn.GRUCell(input_size, hidden_size)`.
    pub fn gru(input_size: usize, hidden_size: usize) -> Self {
        Self::new(CellKind::Gru, input_size, hidden_size)
    }
}
