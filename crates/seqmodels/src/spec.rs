//! `module.json`: a PyTorch module described by its constructor arguments.

use serde::{Deserialize, Serialize};

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

/// PyTorch's constructor arguments as JSON, plus `type`: the form of `module.json`, and of the
/// recurrent part of other files that describe a module (a language model's `config.json`), so
/// that `getattr(torch.nn, type)(**args)` rebuilds it. Omitted keys take PyTorch's defaults;
/// unknown keys are an error naming the key and the allowed ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorchArgs {
    /// `RNN`, `LSTM`, `GRU`, `RNNCell`, `LSTMCell` or `GRUCell`.
    #[serde(rename = "type")]
    pub module_type: String,
    /// `input_size`.
    pub input_size: usize,
    /// `hidden_size`.
    pub hidden_size: usize,
    /// `num_layers` (layers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_layers: Option<usize>,
    /// `nonlinearity`: `tanh` or `relu` (RNN and RNNCell only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonlinearity: Option<String>,
    /// `bias`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<bool>,
    /// `batch_first` (layers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_first: Option<bool>,
    /// `dropout` (layers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
    /// `bidirectional` (layers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bidirectional: Option<bool>,
    /// `proj_size` (LSTM only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proj_size: Option<usize>,
}

const MODULE_TYPES: &str = "RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell";

/// Every argument of a sequence layer written out, as PyTorch's constructor takes them.
impl From<&RnnConfig> for TorchArgs {
    fn from(cfg: &RnnConfig) -> Self {
        TorchArgs {
            module_type: cfg.kind.layer_name().to_string(),
            input_size: cfg.input_size,
            hidden_size: cfg.hidden_size,
            num_layers: Some(cfg.num_layers),
            nonlinearity: Some(if cfg.kind == CellKind::RnnRelu { "relu" } else { "tanh" }.to_string()),
            bias: Some(cfg.bias),
            batch_first: Some(cfg.batch_first),
            dropout: Some(cfg.dropout),
            bidirectional: Some(cfg.bidirectional),
            proj_size: Some(cfg.proj_size),
        }
    }
}

/// Checks the arguments as PyTorch's constructor does.
///
/// Keys that do not apply to the type (e.g. `num_layers` for a cell, `nonlinearity` for an
/// LSTM) are accepted only with their default value, as PyTorch rejects them otherwise.
impl TryFrom<TorchArgs> for ModuleSpec {
    type Error = Error;

    fn try_from(raw: TorchArgs) -> Result<Self> {
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
}

impl ModuleSpec {
    /// Parses `module.json` text such as `{"type": "LSTM", "input_size": 10, "hidden_size": 20}`
    /// (see [`TorchArgs`]).
    pub fn from_json(text: &str) -> Result<Self> {
        let args: TorchArgs = serde_json::from_str(text).map_err(|e| Error::Config(format!("module.json: {e}")))?;
        Self::try_from(args)
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
