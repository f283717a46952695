//! PyTorch state dicts in safetensors files: strict loading and saving under PyTorch's names.
//!
//! A file written by `safetensors.torch.save_file(module.state_dict(), path)` loads here with
//! no renaming, and [`save_state_dict`] writes files that
//! `module.load_state_dict(safetensors.torch.load_file(path))` accepts.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::error::{Error, Result};

/// How to match a file's keys to a module's parameters.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Prefix of the module's keys in the file, e.g. `rnn.` for a submodule named `rnn`.
    pub prefix: String,
    /// Fail on missing or unexpected keys (PyTorch's `strict=True`, the default). Non-strict
    /// loading ignores unexpected keys and leaves missing ones out (a `VarMap`-backed builder
    /// then initialises them).
    pub strict: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { prefix: String::new(), strict: true }
    }
}

impl LoadOptions {
    /// Strict loading of the keys under `prefix`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        LoadOptions { prefix: prefix.into(), strict: true }
    }
}

/// Reads every tensor of a safetensors file onto the CPU, with errors that name the file.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    parse_safetensors(&bytes, path)
}

/// Every tensor of the bytes of a safetensors file, onto the CPU; `path` names the source in
/// errors.
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| Error::SafeTensors { path: path.to_path_buf(), reason: e.to_string() })
}

/// Loads the parameters `expected` (name and shape, as from `RnnConfig::parameter_shapes`)
/// from a state-dict file, converting float tensors (f16, bf16, f32, f64) to `dtype`.
///
/// Errors list every missing and unexpected key (strict mode), name the key and both shapes
/// on a shape mismatch, and name the key of a non-float tensor.
pub fn load_state_dict(
    path: impl AsRef<Path>,
    expected: &[(String, Vec<usize>)],
    options: &LoadOptions,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let file = read_safetensors(path)?;
    select_parameters(file, expected, options, dtype, device)
}

/// [`load_state_dict`] on tensors already in memory (keys as stored, prefix included).
pub fn select_parameters(
    mut tensors: HashMap<String, Tensor>,
    expected: &[(String, Vec<usize>)],
    options: &LoadOptions,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let wanted: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let unexpected: Vec<String> = {
        let mut keys: Vec<String> = tensors
            .keys()
            .filter(|k| k.strip_prefix(options.prefix.as_str()).is_none_or(|n| !wanted.contains(n)))
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    let missing: Vec<String> =
        expected.iter().map(|(n, _)| format!("{}{n}", options.prefix)).filter(|k| !tensors.contains_key(k)).collect();
    if options.strict && (!missing.is_empty() || !unexpected.is_empty()) {
        return Err(Error::Keys { missing, unexpected });
    }
    let mut out = HashMap::with_capacity(expected.len());
    for (name, shape) in expected {
        let Some(t) = tensors.remove(&format!("{}{name}", options.prefix)) else { continue };
        if t.dims() != shape.as_slice() {
            return Err(Error::KeyShape { key: name.clone(), expected: shape.clone(), found: t.dims().to_vec() });
        }
        if !matches!(t.dtype(), DType::F16 | DType::BF16 | DType::F32 | DType::F64) {
            return Err(Error::DType {
                what: format!("state dict key `{name}`"),
                expected: "a float tensor (f16, bf16, f32 or f64)".into(),
                found: t.dtype(),
            });
        }
        out.insert(name.clone(), t.to_dtype(dtype)?.to_device(device)?);
    }
    Ok(out)
}

/// Wraps loaded parameters as trainable variables in a new `VarMap`, under `prefix` + name,
/// so that `VarBuilder::from_varmap` builds a module from them and an optimizer can train it.
pub fn varmap_from_parameters(params: HashMap<String, Tensor>, prefix: &str) -> Result<VarMap> {
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        for (name, t) in params {
            data.insert(format!("{prefix}{name}"), Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// Writes `params` (name, tensor) under `prefix` + name as a safetensors file that PyTorch's
/// `safetensors.torch.load_file` reads. The write is atomic: a temporary file, then a rename.
pub fn save_state_dict(params: &[(String, Tensor)], prefix: &str, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let mut map = HashMap::with_capacity(params.len());
    for (name, t) in params {
        map.insert(format!("{prefix}{name}"), t.to_device(&Device::Cpu)?.contiguous()?);
    }
    let tmp = path.with_extension("safetensors.tmp");
    candle_core::safetensors::save(&map, &tmp)
        .map_err(|e| Error::SafeTensorsWrite { path: tmp.clone(), reason: e.to_string() })?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}
