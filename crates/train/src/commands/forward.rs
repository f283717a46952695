//! `seqlm forward`: run a PyTorch-described module on saved inputs (the parity tool).

use std::path::PathBuf;

use anyhow::{bail, Context};
use seqmodels::parity::{compare, run_module, Mode, RunOptions, Tolerances};
use seqmodels::{state_dict::read_safetensors, Implementation, ModuleSpec};

use crate::device::DeviceChoice;

/// Arguments of `seqlm forward`.
#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// PyTorch constructor arguments as JSON: {"type": "LSTM", "input_size": 10, "hidden_size": 20, ...};
    /// type is one of RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell; omitted keys take PyTorch's defaults.
    #[arg(long)]
    pub config: PathBuf,
    /// State dict saved by `safetensors.torch.save_file(module.state_dict(), path)` (strict: every key must match).
    #[arg(long)]
    pub weights: PathBuf,
    /// Inputs: `input`; optional `h0`, `c0` (cells: `hx`, `cx`), `lengths` (int64), and
    /// `grad_output`, `grad_h_n`, `grad_c_n` (cells: `grad_h`, `grad_c`) to run backward.
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where to write `output`, `h_n`, `c_n` (cells: `h`, `c`) and, after backward, `grad.*`.
    #[arg(long)]
    pub out: PathBuf,
    /// Training mode: dropout between layers is applied (default: evaluation mode).
    #[arg(long)]
    pub train: bool,
    /// Seed of the dropout masks in training mode.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also compare with an expected-results file and fail beyond tolerance
    /// (1e-5 for outputs, 1e-4 for gradients in f32; 1e-10 / 1e-9 in f64).
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Where the module runs: cpu, cuda or cuda:N (needs a build with the `cuda` feature).
    #[arg(long, value_name = "cpu|cuda[:N]", default_value = "cpu")]
    pub device: DeviceChoice,
    /// Implementation of the recurrence of layers: auto (the fused kernels on the CPU, composed on
    /// CUDA), fused or composed.
    #[arg(long = "impl", value_enum, default_value_t = Implementation::Auto)]
    pub implementation: Implementation,
}

/// Runs `seqlm forward`.
pub fn run(args: &ForwardArgs) -> anyhow::Result<()> {
    let spec = ModuleSpec::from_file(&args.config)?;
    let weights = read_safetensors(&args.weights).context("reading --weights")?;
    let inputs = read_safetensors(&args.inputs).context("reading --inputs")?;
    let mode = if args.train { Mode::Train { seed: args.seed } } else { Mode::Eval };
    let options = RunOptions { mode, device: args.device.open()?, implementation: args.implementation };
    let results = run_module(&spec, weights, &inputs, &options)
        .with_context(|| format!("running {} on {}", args.config.display(), args.inputs.display()))?;
    let named: Vec<_> = results.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    seqmodels::save_state_dict(&named, "", &args.out).context("writing --out")?;
    println!("wrote {} tensors to {}", named.len(), args.out.display());

    let Some(expected_path) = &args.compare else { return Ok(()) };
    let expected = read_safetensors(expected_path).context("reading --compare")?;
    let dtype = inputs.get("input").map(|t| t.dtype()).unwrap_or(candle_core::DType::F32);
    let rows = compare(&results, &expected, Tolerances::for_dtype(dtype))?;
    println!("{:<28} {:<16} {:>12} {:>10}  result", "tensor", "shape", "max abs err", "tolerance");
    for row in &rows {
        let err = row.max_abs_error.map_or("-".to_string(), |e| format!("{e:.3e}"));
        let verdict =
            if row.ok() { "OK".to_string() } else { format!("FAIL {}", row.problem.clone().unwrap_or_default()) };
        println!("{:<28} {:<16} {:>12} {:>10.0e}  {verdict}", row.name, format!("{:?}", row.shape), err, row.tolerance);
    }
    let failed = rows.iter().filter(|r| !r.ok()).count();
    println!("{} passed, {} failed", rows.len() - failed, failed);
    if failed > 0 {
        bail!("{failed} tensors differ from {} beyond tolerance", expected_path.display());
    }
    Ok(())
}
