//! `module.json`: a PyTorch module described by its constructor arguments.

use serde::Deserialize;

use crate::config::{CellConfig, CellKind, RnnConfig};
use crate::error::{Error, Result};

/// A recurrent module as PyTorch would construct it: a sequence layer or a single cell.
#[derive(Clone, Debug, PartialEq)]
pub enum ModuleSpec {
    /// `nn.RNN`, `nn.LSTM` or `nn.GRU`.
    Layer(RnnConfig),
    /// `nn.RNNCell`, `nn.LSTMCell` or `nn.GRUCell`.
    Cell(CellConfig),
}

/// The JSON form: PyTorch's keyword arguments plus `type`. Omitted keys take PyTorch's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(rename = "type")]
    module_type: String,
    input_size: usize,
    hidden_size: usize,
    num_layers: Option<usize>,
    nonlinearity: Option<String>,
    bias: Option<bool>,
    batch_first: Option<bool>,
    dropout: Option<f64>,
    bidirectional: Option<bool>,
    proj_size: Option<usize>,
}

const MODULE_TYPES: &str = "RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell";

impl ModuleSpec {
    /// Parses `module.json` text such as `{"type": "LSTM", "input_size": 10, "hidden_size": 20}`.
    ///
    /// Keys that do not apply to the type (e.g. `num_layers` for a cell, `nonlinearity` for an
    /// LSTM) are accepted only with their default value, as PyTorch rejects them otherwise.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawSpec = serde_json::from_str(text).map_err(|e| Error::Config(format!("module.json: {e}")))?;
        let relu = match raw.nonlinearity.as_deref() {
            None | Some("tanh") => false,
            Some("relu") => true,
            Some(other) => {
                return Err(Error::Config(format!("unknown nonlinearity \"{other}\": expected \"tanh\" or \"relu\"")))
            }
        };
        let (kind, is_cell) = match raw.module_type.as_str() {
            "RNN" | "RNNCell" if relu => (CellKind::RnnRelu, raw.module_type == "RNNCell"),
            "RNN" | "RNNCell" => (CellKind::RnnTanh, raw.module_type == "RNNCell"),
            "LSTM" | "LSTMCell" => (CellKind::Lstm, raw.module_type == "LSTMCell"),
            "GRU" | "GRUCell" => (CellKind::Gru, raw.module_type == "GRUCell"),
            other => {
                return Err(Error::Config(format!("unknown module type \"{other}\": expected one of {MODULE_TYPES}")))
            }
        };
        if relu && !matches!(kind, CellKind::RnnRelu) {
            return Err(Error::Config(format!(
                "nonlinearity \"relu\" only applies to RNN and RNNCell, not {}",
                raw.module_type
            )));
        }
        let spec = if is_cell {
            let not_for_cells = [
                ("num_layers", raw.num_layers.is_some_and(|n| n != 1)),
                ("batch_first", raw.batch_first == Some(true)),
                ("dropout", raw.dropout.is_some_and(|p| p != 0.0)),
                ("bidirectional", raw.bidirectional == Some(true)),
                ("proj_size", raw.proj_size.is_some_and(|p| p != 0)),
            ];
            if let Some((key, _)) = not_for_cells.iter().find(|(_, set)| *set) {
                return Err(Error::Config(format!("`{key}` does not apply to {}", raw.module_type)));
            }
            let cfg = CellConfig {
                kind,
                input_size: raw.input_size,
                hidden_size: raw.hidden_size,
                bias: raw.bias.unwrap_or(true),
            };
            cfg.validate()?;
            ModuleSpec::Cell(cfg)
        } else {
            let defaults = RnnConfig::new(kind, raw.input_size, raw.hidden_size);
            let cfg = RnnConfig {
                num_layers: raw.num_layers.unwrap_or(defaults.num_layers),
                bias: raw.bias.unwrap_or(defaults.bias),
                batch_first: raw.batch_first.unwrap_or(defaults.batch_first),
                dropout: raw.dropout.unwrap_or(defaults.dropout),
                bidirectional: raw.bidirectional.unwrap_or(defaults.bidirectional),
                proj_size: raw.proj_size.unwrap_or(defaults.proj_size),
                ..defaults
            };
            cfg.validate()?;
            ModuleSpec::Layer(cfg)
        };
        Ok(spec)
    }

    /// Reads and parses a `module.json` file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Self::from_json(&text).map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// The recurrence of the module.
    pub fn kind(&self) -> CellKind {
        match self {
            ModuleSpec::Layer(cfg) => cfg.kind,
            ModuleSpec::Cell(cfg) => cfg.kind,
        }
    }

    /// Every parameter's PyTorch name and shape, in `state_dict` order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            ModuleSpec::Layer(cfg) => cfg.parameter_shapes(),
            ModuleSpec::Cell(cfg) => cfg.parameter_shapes(),
        }
    }

    /// The hidden size, which sets PyTorch's init bound 1/sqrt(hidden_size).
    pub fn hidden_size(&self) -> usize {
        match self {
            ModuleSpec::Layer(cfg) => cfg.hidden_size,
            ModuleSpec::Cell(cfg) => cfg.hidden_size,
        }
    }
}
