//! The fused CUDA kernels (`--features cuda`) against the CPU fused kernels and candle's composed
//! path on CUDA: outputs, final states and the gradients of the input, the initial states and
//! every parameter, on every option combination. Needs a GPU: without one (no driver, no device)
//! each test prints that it is skipped and passes. See docs/fused.md ("Fused CUDA kernels").
#![cfg(feature = "cuda")]

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use seqmodels::init::seeded_parameters;
use seqmodels::{CellKind, ForwardOptions, Implementation, RnnBase, RnnConfig};

/// Absolute plus relative tolerance: |a - b| <= TOL * (1 + |b|).
const TOL: f64 = 1e-4;

/// The first CUDA device, or None (with a line saying the test is skipped) without a GPU.
fn gpu(test: &str) -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            let reason = e.to_string();
            println!("{test}: skipped (no GPU: {})", reason.lines().next().unwrap_or_default());
            None
        }
    }
}

/// Sizes of one case.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    seq_len: usize,
    batch: usize,
}

/// Output, h_n, c_n and every gradient (on the CPU) from a layer of `cfg` on `dev` under `imp`.
fn run(
    cfg: &RnnConfig,
    imp: Implementation,
    dev: &Device,
    sizes: Sizes,
    lengths: Option<&[usize]>,
    with_state: bool,
) -> Vec<(String, Tensor)> {
    common::run_on(cfg, imp, lengths, with_state, DType::F32, dev, (sizes.seq_len, sizes.batch))
}

/// The largest |a - b| / (1 + |b|) (infinite where either is NaN).
fn max_error(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) =
        (a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert_eq!(a.len(), b.len());
    let error = |x: f32, y: f32| match (x - y).abs() / (1.0 + y.abs()) {
        _ if x == y => 0.0,
        e if e.is_nan() => f32::INFINITY,
        e => e,
    };
    a.iter().zip(&b).map(|(&x, &y)| error(x, y)).fold(0.0, f32::max)
}

/// Asserts that two result lists agree within [`TOL`] (NaN fails too).
fn assert_close(what: &str, a: &[(String, Tensor)], b: &[(String, Tensor)]) {
    assert_eq!(a.len(), b.len(), "{what}: different numbers of results");
    for ((name, x), (name_b, y)) in a.iter().zip(b) {
        assert_eq!(name, name_b, "{what}");
        assert_eq!(x.dims(), y.dims(), "{what}: {name}");
        let err = max_error(x, y);
        assert!(err <= TOL as f32, "{what}: {name} differs by {err} (relative to 1 + |reference|)");
    }
}

/// CUDA fused and CUDA composed against the CPU fused kernels for one case.
fn compare(gpu: &Device, cfg: &RnnConfig, sizes: Sizes, lengths: Option<&[usize]>, with_state: bool) {
    let cpu = run(cfg, Implementation::Fused, &Device::Cpu, sizes, lengths, with_state);
    let fused = run(cfg, Implementation::Fused, gpu, sizes, lengths, with_state);
    let composed = run(cfg, Implementation::Composed, gpu, sizes, lengths, with_state);
    let case = format!("{cfg:?} {sizes:?} lengths={lengths:?} state={with_state}");
    assert_close(&format!("CUDA fused vs CPU fused, {case}"), &fused, &cpu);
    assert_close(&format!("CUDA composed vs CPU fused, {case}"), &composed, &cpu);
    assert_close(&format!("CUDA fused vs CUDA composed, {case}"), &fused, &composed);
}

/// Every kind (LSTM with and without projection, GRU, RNN tanh and relu), 1 and 2 layers,
/// uni- and bidirectional, with and without biases, lengths and initial states.
#[test]
fn every_option_combination_matches_cpu_and_composed() {
    let Some(gpu) = gpu("every_option_combination_matches_cpu_and_composed") else { return };
    let sizes = Sizes { seq_len: 5, batch: 3 };
    let cases = common::option_combinations(&[false]);
    for (cfg, lengths, with_state) in &cases {
        compare(&gpu, cfg, sizes, *lengths, *with_state);
    }
    assert_eq!(cases.len(), 160);
}

/// Sizes that fill several thread blocks (N * H > 256) and are not multiples of anything, a
/// one-step row and a longer sequence.
#[test]
fn larger_sizes_match() {
    let Some(gpu) = gpu("larger_sizes_match") else { return };
    let sizes = Sizes { seq_len: 23, batch: 9 };
    let lengths = [23usize, 1, 17, 2, 23, 5, 12, 22, 3];
    for (kind, proj_size) in
        [(CellKind::Lstm, 0), (CellKind::Lstm, 19), (CellKind::Gru, 0), (CellKind::RnnTanh, 0), (CellKind::RnnRelu, 0)]
    {
        let cfg = RnnConfig { num_layers: 2, bidirectional: true, proj_size, ..RnnConfig::new(kind, 10, 37) };
        compare(&gpu, &cfg, sizes, Some(&lengths), true);
        compare(&gpu, &cfg, sizes, None, false);
    }
}

/// Inference: without a gradient to track the forward pass saves nothing; the outputs still match.
#[test]
fn inference_matches_cpu() {
    let Some(gpu) = gpu("inference_matches_cpu") else { return };
    for (kind, proj_size) in [(CellKind::Lstm, 0), (CellKind::Lstm, 3), (CellKind::Gru, 0), (CellKind::RnnRelu, 0)] {
        let cfg = RnnConfig { num_layers: 2, bidirectional: true, proj_size, ..RnnConfig::new(kind, 3, 6) };
        let outputs = |dev: &Device| {
            let params = seeded_parameters(&cfg.parameter_shapes(), 6, 9, DType::F32, &Device::Cpu).unwrap();
            let params: HashMap<String, Tensor> =
                params.into_iter().map(|(k, v)| (k, v.to_device(dev).unwrap())).collect();
            // Plain tensors, not variables: nothing tracks a gradient.
            let layer = RnnBase::new(cfg.clone(), VarBuilder::from_tensors(params, DType::F32, dev))
                .unwrap()
                .with_implementation(Implementation::Fused);
            let x = common::uniform_on(&[7, 4, 3], 1, DType::F32, dev);
            let out = layer.forward(&x, None, ForwardOptions::default().with_lengths(&[7, 3, 1, 6])).unwrap();
            let mut all = vec![("output".to_string(), out.output), ("h_n".to_string(), out.state.h)];
            all.extend(out.state.c.map(|c| ("c_n".to_string(), c)));
            all.into_iter().map(|(n, t)| (n, t.to_device(&Device::Cpu).unwrap())).collect::<Vec<_>>()
        };
        assert_close(&format!("inference {cfg:?}"), &outputs(&gpu), &outputs(&Device::Cpu));
    }
}
