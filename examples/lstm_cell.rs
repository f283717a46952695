//! The PyTorch snippet this project started from:
//!
//! ```python
//! rnn = nn.LSTMCell(10, 20)
//! input = torch.randn(2, 3, 10)   # (time_steps, batch, input_size)
//! hx = torch.randn(3, 20); cx = torch.randn(3, 20)
//! output = []
//! for i in range(input.size()[0]):
//!     hx, cx = rnn(input[i], (hx, cx))
//!     output.append(hx)
//! output = torch.stack(output, dim=0)   # (2, 3, 20)
//! ```
//!
//! First with fresh weights, then with the weights, inputs and results of a PyTorch run (the
//! committed fixture `tests/fixtures/seed_lstm_cell`), compared side by side.
//!
//! `cargo run --release --example lstm_cell -- [--quick] [--out DIR]`

mod common;

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use plotters::prelude::*;
use seqmodels_workspace::seqmodels::state_dict::read_safetensors;
use seqmodels_workspace::seqmodels::{load_state_dict, CellConfig, LSTMCell, LoadOptions};

/// The loop of the snippet: one cell step per time step, the hidden states stacked.
fn run_cell(cell: &LSTMCell, input: &Tensor, hx: &Tensor, cx: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (mut hx, mut cx) = (hx.clone(), cx.clone());
    let mut output = Vec::new();
    for i in 0..input.dim(0)? {
        (hx, cx) = cell.forward(&input.get(i)?, Some((&hx, &cx)))?;
        output.push(hx.clone());
    }
    Ok((Tensor::stack(&output, 0)?, hx, cx))
}

fn main() -> Result<()> {
    let args = common::Args::parse("lstm_cell")?;
    let dev = Device::Cpu;

    // rnn = nn.LSTMCell(10, 20): weights drawn with PyTorch's init, U(-1/sqrt(20), 1/sqrt(20)).
    let varmap = VarMap::new();
    let rnn = LSTMCell::new(CellConfig::lstm(10, 20), VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    // input = torch.randn(2, 3, 10); hx = torch.randn(3, 20); cx = torch.randn(3, 20)
    let input = Tensor::randn(0f32, 1f32, (2, 3, 10), &dev)?;
    let hx = Tensor::randn(0f32, 1f32, (3, 20), &dev)?;
    let cx = Tensor::randn(0f32, 1f32, (3, 20), &dev)?;
    let (output, _, _) = run_cell(&rnn, &input, &hx, &cx)?;
    println!("fresh LSTMCell(10, 20): output.shape = {:?}", output.dims());
    println!("output[1][0][:5] = {:?}", output.get(1)?.get(0)?.narrow(0, 0, 5)?.to_vec1::<f32>()?);

    // The same cell with PyTorch's weights (its state dict saved as safetensors).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed_lstm_cell");
    let config = CellConfig::lstm(10, 20);
    let weights = load_state_dict(
        fixture.join("weights.safetensors"),
        &config.parameter_shapes(),
        &LoadOptions::default(),
        DType::F32,
        &dev,
    )?;
    let cell = LSTMCell::new(config, VarBuilder::from_tensors(weights, DType::F32, &dev))?;
    let inputs = read_safetensors(fixture.join("inputs.safetensors"))?;
    let expected = read_safetensors(fixture.join("expected.safetensors"))?;
    let get = |m: &std::collections::HashMap<String, Tensor>, k: &str| -> Result<Tensor> {
        m.get(k).cloned().ok_or_else(|| anyhow::anyhow!("the fixture has no tensor {k:?}"))
    };
    let (output, h, c) = run_cell(&cell, &get(&inputs, "input")?, &get(&inputs, "hx")?, &get(&inputs, "cx")?)?;

    // Side by side: the first values of the last time step of the first sequence.
    let ours = output.get(1)?.get(0)?.to_vec1::<f32>()?;
    let torch = get(&expected, "output")?.get(1)?.get(0)?.to_vec1::<f32>()?;
    println!("\nPyTorch weights and inputs, output[1][0]:");
    println!("{:>4}  {:>12}  {:>12}  {:>10}", "j", "PyTorch", "seqmodels", "|diff|");
    for j in 0..8 {
        println!("{j:>4}  {:>12.7}  {:>12.7}  {:>10.2e}", torch[j], ours[j], (torch[j] - ours[j]).abs());
    }
    let mut worst = 0f32;
    for (name, got) in [("output", &output), ("h", &h), ("c", &c)] {
        let want = get(&expected, name)?;
        let diff = (got - &want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        println!("{name:>6}: shape {:?}, max |seqmodels - PyTorch| = {diff:.3e}", got.dims());
        worst = worst.max(diff);
    }
    println!("max abs difference {worst:.3e} ({})", if worst < 1e-5 { "matches PyTorch" } else { "MISMATCH" });

    let plot = args.out.join("lstm_cell_vs_pytorch.png");
    let all_ours = output.flatten_all()?.to_vec1::<f32>()?;
    let all_torch = get(&expected, "output")?.flatten_all()?.to_vec1::<f32>()?;
    plot_comparison(&plot, &all_torch, &all_ours)?;
    println!("wrote {}", plot.display());
    anyhow::ensure!(worst < 1e-5, "the cell does not match PyTorch (max difference {worst})");
    Ok(())
}

/// Every output value of the PyTorch run against ours: points on the diagonal agree.
fn plot_comparison(path: &PathBuf, torch: &[f32], ours: &[f32]) -> Result<()> {
    seqmodels_workspace::data::plot::register_fonts();
    let root = BitMapBackend::new(path, (700, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let lim = torch.iter().chain(ours).fold(0f32, |m, v| m.max(v.abs())) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("LSTMCell(10, 20) output: seqmodels vs PyTorch", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-lim..lim, -lim..lim)?;
    chart.configure_mesh().x_desc("PyTorch output value").y_desc("seqmodels output value").draw()?;
    chart
        .draw_series(LineSeries::new([(-lim, -lim), (lim, lim)], BLACK.mix(0.4)))?
        .label("y = x")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
    chart
        .draw_series(torch.iter().zip(ours).map(|(&t, &o)| Circle::new((t, o), 3, BLUE.filled())))?
        .label("the 120 values of output (2, 3, 20)")
        .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}
