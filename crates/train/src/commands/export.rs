//! `seqlm export`: write a checkpoint's language model, or a module described by `module.json`
//! and its weights, as an ONNX model.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use seqmodels::{state_dict, LoadOptions, ModuleSpec};

use crate::checkpoint;
use crate::onnx::{export_language_model, export_module, write_model, ModuleExportOptions};

/// Arguments of `seqlm export`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["checkpoint", "config"])))]
pub struct ExportArgs {
    /// Checkpoint directory (or run directory holding checkpoint/) of a language model.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Or a recurrent module: PyTorch constructor arguments as JSON (see `seqlm forward --help`),
    /// with --weights.
    #[arg(long, value_name = "FILE", requires = "weights")]
    pub config: Option<PathBuf>,
    /// The module's state dict (safetensors, PyTorch names; strict).
    #[arg(long, value_name = "FILE", requires = "config")]
    pub weights: Option<PathBuf>,
    /// Modules only: add a `sequence_lens` input (int32, one length per sequence) with PyTorch's
    /// packed-sequence semantics.
    #[arg(long, requires = "config")]
    pub lengths: bool,
    /// The ONNX file to write.
    #[arg(long, value_name = "FILE")]
    pub onnx: PathBuf,
}

/// Runs `seqlm export`.
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let model = match (&args.checkpoint, &args.config, &args.weights) {
        (Some(dir), _, _) => {
            let loaded =
                checkpoint::load(dir, &Device::Cpu).with_context(|| format!("loading checkpoint {}", dir.display()))?;
            export_language_model(&loaded.model).with_context(|| format!("exporting {}", dir.display()))?
        }
        (None, Some(config), Some(weights)) => {
            let cfg = match ModuleSpec::from_file(config)? {
                ModuleSpec::Layer(cfg) => cfg,
                ModuleSpec::Cell(_) => {
                    bail!(
                        "{}: a cell; expected RNN, LSTM or GRU (ONNX's operators run whole sequences)",
                        config.display()
                    )
                }
            };
            let tensors = state_dict::read_safetensors(weights).context("reading --weights")?;
            let params: HashMap<_, _> = state_dict::select_parameters(
                tensors,
                &cfg.parameter_shapes(),
                &LoadOptions::default(),
                DType::F32,
                &Device::Cpu,
            )
            .with_context(|| format!("loading {}", weights.display()))?;
            export_module(&cfg, &params, ModuleExportOptions { lengths: args.lengths })
                .with_context(|| format!("exporting {}", config.display()))?
        }
        _ => bail!("expected --checkpoint DIR, or --config FILE with --weights FILE"),
    };
    write_model(&model, &args.onnx)?;
    let graph = model.graph.as_ref().map_or(0, |g| g.node.len());
    println!("wrote {} ({graph} nodes, opset {})", args.onnx.display(), crate::onnx::export::OPSET);
    Ok(())
}
