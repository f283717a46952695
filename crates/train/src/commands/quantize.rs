//! `seqlm quantize`: a checkpoint with bf16 or int8 weights for inference, written beside the
//! f32 checkpoint it is made from (which stays untouched).

use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use seqmodels::quantized::Precision;

use crate::checkpoint::{load, save_quantized};
use crate::error::Error;
use crate::inference_lm::InferenceLm;

/// What `seqlm quantize --help` prints after the options.
const AFTER_HELP: &str = "\
bf16: every weight of W_ih, W_hh (each layer) and the decoder rounded to the nearest bfloat16. \
int8: each row r of those matrices stored as round(W[r] / s_r) in -127..=127 with s_r = max|W[r]| / 127, \
the scales as f32 tensors named <weight>.row_scale. The embedding, the biases and every activation stay f32. \
seqlm generate and seqlm eval read the new checkpoint directly; training and export need the f32 one.";

/// Arguments of `seqlm quantize`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct QuantizeArgs {
    /// The f32 checkpoint directory (or run directory holding checkpoint/).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// The precision of the new checkpoint's weights.
    #[arg(long, value_enum)]
    pub precision: Precision,
    /// The new checkpoint directory (must not exist).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `seqlm quantize`.
pub fn run(args: &QuantizeArgs) -> anyhow::Result<()> {
    if args.precision == Precision::F32 {
        return Err(Error::option("precision", "bf16 or int8 (the checkpoint is f32 already)", "f32").into());
    }
    let loaded = load(&args.checkpoint, &Device::Cpu)
        .with_context(|| format!("loading checkpoint {}", args.checkpoint.display()))?;
    let model = InferenceLm::from_model(&loaded.model, args.precision)
        .with_context(|| format!("converting {} to {}", loaded.dir.display(), args.precision.name()))?;
    save_quantized(&args.out, &loaded.config, &model, &loaded.tokenizer)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let f32_bytes = 4 * (model.config().num_parameters());
    println!(
        "wrote {} ({} weights: {:.1} MiB of converted matrices; the f32 model holds {:.1} MiB in all)",
        args.out.display(),
        args.precision.name(),
        model.weight_bytes() as f64 / (1 << 20) as f64,
        f32_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
