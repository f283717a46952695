//! `seqlm init`: write PyTorch-default-initialised weights for a module, under PyTorch's names.

use std::path::PathBuf;

use anyhow::Context;
use candle_core::{DType, Device};
use seqmodels::{init::seeded_parameters, ModuleSpec};

/// Arguments of `seqlm init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// PyTorch constructor arguments as JSON (see `seqlm forward --help`).
    #[arg(long)]
    pub config: PathBuf,
    /// Output safetensors file, loadable with `module.load_state_dict(safetensors.torch.load_file(path))`.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the uniform initialisation U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Store the weights as f64 instead of f32.
    #[arg(long)]
    pub f64: bool,
}

/// Runs `seqlm init`.
pub fn run(args: &InitArgs) -> anyhow::Result<()> {
    let spec = ModuleSpec::from_file(&args.config)?;
    let dtype = if args.f64 { DType::F64 } else { DType::F32 };
    let params = seeded_parameters(&spec.parameter_shapes(), spec.hidden_size(), args.seed, dtype, &Device::Cpu)?;
    seqmodels::save_state_dict(&params, "", &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {} parameters to {}", params.len(), args.out.display());
    Ok(())
}
