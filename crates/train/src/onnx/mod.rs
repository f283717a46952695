//! ONNX export and import of recurrent layers and language models.
//!
//! Export ([`export_module`], [`export_language_model`]) writes each layer as ONNX's own
//! `LSTM`, `GRU` or `RNN` operator; import ([`import()`]) reads graphs written by
//! `torch.onnx.export` (or by the export here) back into PyTorch-named parameters. The protobuf
//! messages are declared by hand for `prost` ([`proto`]): no `protoc`, no build script.
//!
//! ```
//! use std::collections::HashMap;
//! use candle_core::{DType, Device};
//! use seqmodels::{init::seeded_parameters, RnnConfig};
//! use seqmodels_train::onnx::{export_module, import, Imported, ModuleExportOptions};
//!
//! let cfg = RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::gru(3, 4) };
//! let params: HashMap<_, _> =
//!     seeded_parameters(&cfg.parameter_shapes(), 4, 0, DType::F32, &Device::Cpu)?.into_iter().collect();
//! let model = export_module(&cfg, &params, ModuleExportOptions::default())?;
//! let Imported::Module(back) = import(&model)? else { panic!("a module") };
//! assert_eq!(back.config, cfg);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod export;
pub mod gates;
pub mod import;
pub mod proto;
pub mod tensor;

use std::path::Path;

use prost::Message;

pub use error::{OnnxError, Result};
pub use export::{export_language_model, export_module, ModuleExportOptions};
pub use import::{import, Imported, ImportedLanguageModel, ImportedModule};
pub use proto::ModelProto;

/// Writes `model` to `path` (a temporary file renamed into place).
pub fn write_model(model: &ModelProto, path: &Path) -> Result<()> {
    crate::checkpoint::write_atomic(path, &model.encode_to_vec()).map_err(|e| match e {
        crate::Error::Io { action, path, source } => OnnxError::Io { action, path, source },
        other => OnnxError::Train(other),
    })
}

/// Reads an ONNX model file.
pub fn read_model(path: &Path) -> Result<ModelProto> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io { action: "read", path: path.into(), source })?;
    ModelProto::decode(bytes.as_slice()).map_err(|e| OnnxError::Decode { path: path.into(), reason: e.to_string() })
}
