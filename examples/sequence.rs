//! d2l "Sequence Models": a noisy sine wave x_t = sin(0.01 t) + N(0, 0.2), T = 1000, predicted
//! from its tau = 4 previous values by an MLP 4-10-1 trained on the first 600 examples; then
//! one-step-ahead, multi-step (from t = 604 on, feeding the model its own predictions) and
//! k-step-ahead predictions (k = 1, 4, 16, 64).
//!
//! `cargo run --release --example sequence -- [--quick] [--out DIR]`

mod common;

use std::path::Path;

use anyhow::Result;
use candle_core::Var;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Linear, Module, Optimizer, ParamsAdamW};
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use seqmodels_workspace::data::series::{D2L_NUM_TRAIN, D2L_TAU};
use seqmodels_workspace::data::SineSeries;

/// d2l's `get_net`: Linear(4, 10), ReLU, Linear(10, 1).
struct Mlp {
    l1: Linear,
    l2: Linear,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(x)?.relu()?)
    }
}

impl Mlp {
    /// Predictions for rows of `tau` values (a flat row-major slice).
    fn predict(&self, rows: &[f32], tau: usize) -> Result<Vec<f32>> {
        let x = Tensor::from_slice(rows, (rows.len() / tau, tau), &Device::Cpu)?;
        Ok(self.forward(&x)?.squeeze(D::Minus1)?.to_vec1::<f32>()?)
    }
}

fn main() -> Result<()> {
    let args = common::Args::parse("sequence")?;
    let dev = Device::Cpu;

    // T = 1000; time = arange(1, T + 1); x = sin(0.01 * time) + normal(0, 0.2, (T,))
    let series = SineSeries::d2l(0);
    let (t_len, tau, n_train) = (series.len(), D2L_TAU, D2L_NUM_TRAIN);
    let time = &series.time;
    let x = &series.x;
    let data: Vec<(f32, f32)> = time.iter().copied().zip(x.iter().copied()).collect();
    plot_lines(&args.out.join("data.png"), "The noisy sine series", &[("data", &data)])?;

    // features[:, i] = x[i: T - tau + i]; labels = x[tau:]; train_iter over the first 600
    let ds = series.features(tau)?;
    let (train, _) = ds.split(n_train)?;

    // net = get_net(): weights Xavier-uniform (net.apply(init_weights)), drawn from a seeded
    // generator so that every run prints the same numbers; biases start at zero.
    let mut rng = StdRng::seed_from_u64(0);
    let mut xavier = |fan_out: usize, fan_in: usize| -> Result<Var> {
        let a = (6.0 / (fan_in + fan_out) as f32).sqrt();
        let w: Vec<f32> = (0..fan_out * fan_in).map(|_| rng.random_range(-a..a)).collect();
        Ok(Var::from_tensor(&Tensor::from_vec(w, (fan_out, fan_in), &dev)?)?)
    };
    let (w1, w2) = (xavier(10, tau)?, xavier(1, 10)?);
    let (b1, b2) = (Var::zeros(10, DType::F32, &dev)?, Var::zeros(1, DType::F32, &dev)?);
    let net = Mlp {
        l1: Linear::new(w1.as_tensor().clone(), Some(b1.as_tensor().clone())),
        l2: Linear::new(w2.as_tensor().clone(), Some(b2.as_tensor().clone())),
    };
    // loss = nn.MSELoss(); trainer = torch.optim.Adam(net.parameters(), lr=0.01)
    let mut opt = AdamW::new(vec![w1, b1, w2, b2], ParamsAdamW { lr: 0.01, weight_decay: 0.0, ..Default::default() })?;
    let (batch_size, epochs) = (16, if args.quick { 2 } else { 5 });
    let mut order: Vec<usize> = (0..train.len()).collect();
    let all_x = Tensor::from_slice(&train.features, (train.len(), tau), &dev)?;
    let all_y = Tensor::from_slice(&train.labels, (train.len(), 1), &dev)?;
    for epoch in 1..=epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(batch_size) {
            let idx = Tensor::from_vec(chunk.iter().map(|&i| i as u32).collect::<Vec<_>>(), chunk.len(), &dev)?;
            let pred = net.forward(&all_x.index_select(&idx, 0)?)?;
            let loss = (pred - all_y.index_select(&idx, 0)?)?.sqr()?.mean_all()?;
            opt.backward_step(&loss)?;
        }
        // d2l.evaluate_loss: MSELoss(reduction='none') summed / count, i.e. the mean
        let loss = (net.forward(&all_x)? - &all_y)?.sqr()?.mean_all()?.to_scalar::<f32>()?;
        println!("epoch {epoch}, loss: {loss:.6}");
    }

    // onestep_preds = net(features)
    let onestep = net.predict(&ds.features, tau)?;
    let onestep_pts: Vec<(f32, f32)> = time[tau..].iter().copied().zip(onestep.iter().copied()).collect();
    plot_lines(
        &args.out.join("one_step.png"),
        "One-step-ahead predictions",
        &[("data", &data), ("1-step preds", &onestep_pts)],
    )?;

    // multistep_preds[n_train + tau:]: every prediction made from earlier predictions
    let mut multistep = vec![0f32; t_len];
    multistep[..n_train + tau].copy_from_slice(&x[..n_train + tau]);
    for i in n_train + tau..t_len {
        multistep[i] = net.predict(&multistep[i - tau..i], tau)?[0];
    }
    let multi_pts: Vec<(f32, f32)> =
        time[n_train + tau..].iter().copied().zip(multistep[n_train + tau..].iter().copied()).collect();
    plot_lines(
        &args.out.join("multi_step.png"),
        "One-step vs multi-step predictions",
        &[("data", &data), ("1-step preds", &onestep_pts), ("multistep preds", &multi_pts)],
    )?;
    let mse = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f32>() / a.len() as f32;
    println!(
        "mean squared error after t = {}: 1-step {:.4}, multi-step {:.4}",
        n_train + tau,
        mse(&onestep[n_train..], &x[n_train + tau..]),
        mse(&multistep[n_train + tau..], &x[n_train + tau..])
    );

    // k-step-ahead: features (T - tau - max_steps + 1, tau + max_steps); columns tau.. predicted
    let max_steps = 64;
    let rows = t_len - tau - max_steps + 1;
    let width = tau + max_steps;
    let mut feats = vec![0f32; rows * width];
    for r in 0..rows {
        feats[r * width..r * width + tau].copy_from_slice(&x[r..r + tau]);
    }
    for i in tau..width {
        let inputs: Vec<f32> = (0..rows).flat_map(|r| feats[r * width + i - tau..r * width + i].to_vec()).collect();
        let preds = net.predict(&inputs, tau)?;
        for r in 0..rows {
            feats[r * width + i] = preds[r];
        }
    }
    let steps = [1usize, 4, 16, 64];
    let kstep: Vec<(String, Vec<(f32, f32)>)> = steps
        .iter()
        .map(|&k| {
            let col = tau + k - 1;
            let pts = (0..rows).map(|r| (time[r + col], feats[r * width + col])).collect();
            (format!("{k}-step preds"), pts)
        })
        .collect();
    for (label, pts) in &kstep {
        let k: usize = label.split('-').next().unwrap_or("1").parse()?;
        let truth: Vec<f32> = (0..rows).map(|r| x[r + tau + k - 1]).collect();
        let pred: Vec<f32> = pts.iter().map(|p| p.1).collect();
        println!("{label}: mean squared error {:.4}", mse(&pred, &truth));
    }
    let refs: Vec<(&str, &[(f32, f32)])> = kstep.iter().map(|(l, p)| (l.as_str(), p.as_slice())).collect();
    plot_lines(&args.out.join("k_step.png"), "k-step-ahead predictions", &refs)?;
    println!("wrote data.png, one_step.png, multi_step.png and k_step.png to {}", args.out.display());
    Ok(())
}

/// A line plot of x(t) with a legend (time on the x axis), as d2l.plot draws it.
fn plot_lines(path: &Path, title: &str, series: &[(&str, &[(f32, f32)])]) -> Result<()> {
    seqmodels_workspace::data::plot::register_fonts();
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (x0, x1, y0, y1) = pts.fold((f32::MAX, f32::MIN, f32::MAX, f32::MIN), |(a, b, c, d), p| {
        (a.min(p.0), b.max(p.0), c.min(p.1), d.max(p.1))
    });
    // Diverging long-horizon predictions would squash the rest: keep the axis near the data.
    let (y0, y1) = (y0.max(-3.0), y1.min(3.0));
    let pad = (y1 - y0).max(1e-3) * 0.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
    chart.configure_mesh().x_desc("time").y_desc("x").draw()?;
    let colors = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                // Values off the axis are drawn at its edge (huge ones would overflow pixels).
                pts.iter().map(|&(t, v)| (t, if v.is_nan() { y1 + pad } else { v.clamp(y0 - pad, y1 + pad) })),
                color.stroke_width(2),
            ))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}
