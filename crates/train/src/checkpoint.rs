//! Checkpoint directories: the model under PyTorch's names, everything needed to rebuild it
//! and its tokenizer, and the optimizer and trainer state for an exact resume.
//!
//! ```text
//! RUN/checkpoint/
//!   config.json            {"format":"seqlm-checkpoint","version":1,"model":{..},"tokenizer":{..}}
//!   model.safetensors      state dict, PyTorch names (embedding.weight, rnn.weight_ih_l0, decoder.*)
//!   vocab.json | tokenizer.json
//!   optimizer.safetensors  optimizer buffers (<param>.momentum_buffer, .exp_avg, .exp_avg_sq)   [training only]
//!   trainer.json           hyperparameters, progress, schedule, data fingerprint              [training only]
//!   carry.safetensors      hidden state carried mid-epoch (sequential sampling)               [mid-epoch only]
//! ```
//!
//! A checkpoint is written whole into `RUN/checkpoint.tmp/` (every file synced), then swapped
//! in with renames (`checkpoint` -> `checkpoint.prev`, `checkpoint.tmp` -> `checkpoint`, then
//! `checkpoint.prev` is removed), so an interruption at any moment leaves a complete checkpoint
//! at `checkpoint/` or `checkpoint.prev/`; [`resolve_dir`] finds either. The format is
//! documented in `docs/checkpoint.md`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use seqmodels::quantized::Precision;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::inference_lm::InferenceLm;
use crate::model::{LanguageModel, LmConfig};
use crate::predictor::{for_inference, Predictor};
use crate::tokenizer::{TextTokenizer, TokenizerSpec};

/// The `format` field of `config.json`.
pub const FORMAT: &str = "seqlm-checkpoint";
/// The version of the format this code writes and reads.
pub const VERSION: u32 = 1;
/// The checkpoint sub-directory of a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// `config.json`: what rebuilds the model and the tokenizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The model.
    pub model: LmConfig,
    /// The tokenizer (its vocabulary is in `vocab.json` or `tokenizer.json`).
    pub tokenizer: TokenizerSpec,
    /// Who wrote it (`seqlm` or `torch_lm.py`), informative.
    #[serde(default)]
    pub producer: String,
    /// How `model.safetensors` stores the weights: f32 (the default, absent from the file), or
    /// bf16 / int8 for inference only (written by `seqlm quantize`, see [`crate::inference_lm`]).
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: Precision,
}

fn is_f32(p: &Precision) -> bool {
    *p == Precision::F32
}

impl CheckpointConfig {
    /// A config for `model` and `tokenizer`, written by `seqlm`.
    pub fn new(model: LmConfig, tokenizer: TokenizerSpec) -> Self {
        CheckpointConfig {
            format: FORMAT.into(),
            version: VERSION,
            model,
            tokenizer,
            producer: format!("seqlm {}", env!("CARGO_PKG_VERSION")),
            precision: Precision::F32,
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", path, e));
    }
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))
}

/// Writes named tensors as a safetensors file, atomically.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut map = HashMap::with_capacity(tensors.len());
    for (k, t) in tensors {
        map.insert(k.clone(), t.to_device(&Device::Cpu)?.contiguous()?);
    }
    let bytes = safetensors::serialize(map.iter().map(|(k, t)| (k.as_str(), t)), None)
        .map_err(|e| Error::Checkpoint { path: path.into(), problem: format!("cannot serialize tensors: {e}") })?;
    write_atomic(path, &bytes)
}

/// Reads a safetensors file of a checkpoint (errors name the file).
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    seqmodels::state_dict::read_safetensors(path)
        .map_err(|e| Error::Checkpoint { path: path.into(), problem: format!("unreadable or corrupt: {e}") })
}

/// The checkpoint directory named by `path`: `path` itself when it holds `config.json`, else
/// `path/checkpoint` (a run directory), else `path/checkpoint.prev` (a swap that was
/// interrupted).
pub fn resolve_dir(path: &Path) -> Result<PathBuf> {
    if !path.exists() {
        return Err(Error::Checkpoint { path: path.into(), problem: "no such directory".into() });
    }
    for candidate in [path.to_path_buf(), path.join(CHECKPOINT_DIR), path.join(format!("{CHECKPOINT_DIR}.prev"))] {
        if candidate.join("config.json").is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Checkpoint {
        path: path.into(),
        problem: format!(
            "not a checkpoint: expected config.json in {} or in {}",
            path.display(),
            path.join(CHECKPOINT_DIR).display()
        ),
    })
}

/// Reads `config.json` of a checkpoint directory.
pub fn read_config(dir: &Path) -> Result<CheckpointConfig> {
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    parse_config(&text, &path)
}

/// Parses and checks the text of a `config.json` (`path` names it in errors).
pub fn parse_config(text: &str, path: &Path) -> Result<CheckpointConfig> {
    let path = path.to_path_buf();
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::Json { path: path.clone(), reason: e.to_string() })?;
    let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if format != FORMAT {
        return Err(Error::Mismatch {
            what: format!("{}: format", path.display()),
            expected: format!("\"{FORMAT}\""),
            found: format!("{:?}", value.get("format")),
        });
    }
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version != VERSION as u64 {
        return Err(Error::Mismatch {
            what: format!("{}: version", path.display()),
            expected: VERSION.to_string(),
            found: version.to_string(),
        });
    }
    let cfg: CheckpointConfig =
        serde_json::from_value(value).map_err(|e| Error::Json { path: path.clone(), reason: e.to_string() })?;
    cfg.model.validate().map_err(|e| Error::Checkpoint { path: path.clone(), problem: e.to_string() })?;
    Ok(cfg)
}

/// A model and tokenizer loaded from a checkpoint.
pub struct Loaded {
    /// The checkpoint directory that was read.
    pub dir: PathBuf,
    /// Its `config.json`.
    pub config: CheckpointConfig,
    /// The model (trainable: its variables are in `varmap`).
    pub model: LanguageModel,
    /// The model's variables.
    pub varmap: VarMap,
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
}

/// Loads the model (strictly: every key, every shape) and the tokenizer of the checkpoint at
/// `path` (a checkpoint or run directory, see [`resolve_dir`]).
pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
    let dir = resolve_dir(path)?;
    let config = read_config(&dir)?;
    if config.precision != Precision::F32 {
        return Err(Error::Checkpoint {
            path: dir,
            problem: format!(
                "it holds {} weights for inference (seqlm generate and seqlm eval read it): expected the f32 checkpoint it was made from",
                config.precision.name()
            ),
        });
    }
    let tokenizer = load_tokenizer(&dir, &config)?;
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        return Err(Error::Checkpoint { path: dir.clone(), problem: "missing model.safetensors".into() });
    }
    let (model, varmap) =
        LanguageModel::load(config.model.clone(), &weights, DType::F32, device).map_err(|e| match e {
            Error::Model(inner) => Error::Checkpoint { path: weights.clone(), problem: inner.to_string() },
            other => other,
        })?;
    if let Some(name) = model.first_non_finite_parameter()? {
        return Err(Error::Checkpoint {
            path: weights,
            problem: format!("tensor `{name}` holds NaN or infinite values: expected finite weights"),
        });
    }
    Ok(Loaded { dir, config, model, varmap, tokenizer })
}

/// The tokenizer of the checkpoint in `dir`, checked against the model's vocabulary size.
fn load_tokenizer(dir: &Path, config: &CheckpointConfig) -> Result<TextTokenizer> {
    let vocab_path = dir.join(config.tokenizer.kind.file_name());
    if !vocab_path.is_file() {
        return Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            problem: format!(
                "missing {} (the {} tokenizer's vocabulary)",
                vocab_path.display(),
                config.tokenizer.kind.as_str()
            ),
        });
    }
    let tokenizer = TextTokenizer::load(config.tokenizer.clone(), &vocab_path)?;
    if tokenizer.vocab_size() != config.model.vocab_size {
        return Err(Error::Mismatch {
            what: format!("{}: vocabulary size", dir.display()),
            expected: format!("{} (model.vocab_size in config.json)", config.model.vocab_size),
            found: format!("{} tokens in {}", tokenizer.vocab_size(), vocab_path.display()),
        });
    }
    Ok(tokenizer)
}

/// A model for inference and its tokenizer, loaded from a checkpoint of any precision.
pub struct LoadedPredictor {
    /// The checkpoint directory that was read.
    pub dir: PathBuf,
    /// Its `config.json`.
    pub config: CheckpointConfig,
    /// The model, in the precision asked for.
    pub model: Box<dyn Predictor>,
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
}

/// Loads the checkpoint at `path` for inference on `batch` sequences of `steps` steps per call in
/// `precision`:
/// the checkpoint's own precision when `None`. An f32 checkpoint becomes the model
/// [`crate::predictor::for_inference`] picks (converted to bf16 or int8 on the CPU as it loads,
/// when asked); a bf16 or int8 checkpoint runs only in its own precision.
pub fn load_predictor(
    path: &Path,
    device: &Device,
    precision: Option<Precision>,
    (batch, steps): (usize, usize),
) -> Result<LoadedPredictor> {
    let dir = resolve_dir(path)?;
    let config = read_config(&dir)?;
    let wanted = precision.unwrap_or(config.precision);
    if wanted != Precision::F32 && !device.is_cpu() {
        return Err(Error::option("precision", "f32 on this device (bf16 and int8 run on the CPU)", wanted.name()));
    }
    if config.precision == Precision::F32 {
        let loaded = load(&dir, device)?;
        let model = for_inference(loaded.model, wanted, batch, steps)?;
        return Ok(LoadedPredictor { dir, config, model, tokenizer: loaded.tokenizer });
    }
    if wanted != config.precision {
        return Err(Error::Mismatch {
            what: format!("{}: precision", dir.display()),
            expected: format!("{} (--precision)", wanted.name()),
            found: format!(
                "{} weights (quantize the f32 checkpoint it was made from to get another precision)",
                config.precision.name()
            ),
        });
    }
    let tokenizer = load_tokenizer(&dir, &config)?;
    let weights = dir.join("model.safetensors");
    let model = InferenceLm::load(config.model.clone(), config.precision, &weights).map_err(|e| match e {
        Error::Model(inner) => Error::Checkpoint { path: weights.clone(), problem: inner.to_string() },
        other => other,
    })?;
    Ok(LoadedPredictor { dir, config, model: Box::new(model), tokenizer })
}

/// Writes a reduced-precision checkpoint of `model` into the new directory `out` (which must
/// not exist): `config.json` naming the precision, `model.safetensors` and the tokenizer's
/// file. It is written into `out.tmp` first and renamed, so `out` is complete or absent.
pub fn save_quantized(
    out: &Path,
    config: &CheckpointConfig,
    model: &InferenceLm,
    tokenizer: &TextTokenizer,
) -> Result<()> {
    if out.exists() {
        return Err(Error::Checkpoint {
            path: out.into(),
            problem: "already exists: expected a new directory (nothing was written)".into(),
        });
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = out.with_file_name(format!("{name}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let config = CheckpointConfig { precision: model.precision(), ..config.clone() };
    let json = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::Json { path: tmp.join("config.json"), reason: e.to_string() })?;
    write_atomic(&tmp.join("config.json"), json.as_bytes())?;
    model.save(&tmp.join("model.safetensors"))?;
    tokenizer.save(&tmp.join(tokenizer.file_name()))?;
    fs::rename(&tmp, out).map_err(|e| Error::io("rename", &tmp, e))
}

/// What a checkpoint holds besides the model: training state, when written by the trainer.
#[derive(Debug, Default)]
pub struct TrainingFiles {
    /// `trainer.json` contents.
    pub trainer_json: Option<String>,
    /// Optimizer buffers.
    pub optimizer: Vec<(String, Tensor)>,
    /// Hidden state carried mid-epoch (`h`, and `c` for LSTM).
    pub carry: Vec<(String, Tensor)>,
}

/// Writes a whole checkpoint into `run_dir/checkpoint` (see the module documentation for the
/// atomic swap). Returns the checkpoint directory.
pub fn save(
    run_dir: &Path,
    config: &CheckpointConfig,
    model: &LanguageModel,
    tokenizer: &TextTokenizer,
    training: &TrainingFiles,
) -> Result<PathBuf> {
    let final_dir = run_dir.join(CHECKPOINT_DIR);
    let tmp = run_dir.join(format!("{CHECKPOINT_DIR}.tmp"));
    let prev = run_dir.join(format!("{CHECKPOINT_DIR}.prev"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let json = serde_json::to_string_pretty(config)
        .map_err(|e| Error::Json { path: tmp.join("config.json"), reason: e.to_string() })?;
    write_atomic(&tmp.join("config.json"), json.as_bytes())?;
    write_tensors(&tmp.join("model.safetensors"), &model.named_parameters())?;
    tokenizer.save(&tmp.join(tokenizer.file_name()))?;
    if !training.optimizer.is_empty() {
        write_tensors(&tmp.join("optimizer.safetensors"), &training.optimizer)?;
    }
    if !training.carry.is_empty() {
        write_tensors(&tmp.join("carry.safetensors"), &training.carry)?;
    }
    if let Some(t) = &training.trainer_json {
        write_atomic(&tmp.join("trainer.json"), t.as_bytes())?;
    }
    if let Ok(d) = fs::File::open(&tmp) {
        let _ = d.sync_all();
    }
    if prev.exists() && final_dir.join("config.json").is_file() {
        // A previous swap stopped after its rename; `checkpoint` is complete, `prev` is stale.
        fs::remove_dir_all(&prev).map_err(|e| Error::io("remove", &prev, e))?;
    }
    if final_dir.exists() {
        fs::rename(&final_dir, &prev).map_err(|e| Error::io("rename", &final_dir, e))?;
    }
    fs::rename(&tmp, &final_dir).map_err(|e| Error::io("rename", &tmp, e))?;
    if prev.exists() {
        fs::remove_dir_all(&prev).map_err(|e| Error::io("remove", &prev, e))?;
    }
    if let Ok(d) = fs::File::open(run_dir) {
        let _ = d.sync_all();
    }
    Ok(final_dir)
}
