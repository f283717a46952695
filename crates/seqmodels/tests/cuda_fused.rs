//! The fused CUDA kernels (`--features cuda`) against the CPU fused kernels and candle's composed
//! path on CUDA: outputs, final states and the gradients of the input, the initial states and
//! every parameter, on every option combination. Needs a GPU: without one (no driver, no device)
//! each test prints that it is skipped and passes. See docs/fused.md ("Fused CUDA kernels").
#![cfg(feature = "cuda")]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use seqmodels::init::{seeded_parameters, uniform_parameters};
use seqmodels::{varmap_from_parameters, CellKind, Implementation, RnnBase, RnnConfig};

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

/// A tensor of U(-1, 1) values drawn on the CPU from `seed` (the same on every device), on `dev`.
fn uniform(dims: &[usize], seed: u64, dev: &Device) -> Tensor {
    let t = uniform_parameters(&[("t".into(), dims.to_vec())], 1.0, seed, DType::F32, &Device::Cpu).unwrap();
    t.into_iter().next().unwrap().1.to_device(dev).unwrap()
}

/// Sizes of one case.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    seq_len: usize,
    batch: usize,
}

/// Output, h_n, c_n and the gradients of a weighted-sum loss w.r.t. input, h0, c0 and every
/// parameter (all on the CPU), from a layer of `cfg` on `dev` under `imp`. Parameters and inputs
/// are drawn on the CPU, so every device and implementation sees the same values.
fn run(
    cfg: &RnnConfig,
    imp: Implementation,
    dev: &Device,
    sizes: Sizes,
    lengths: Option<&[usize]>,
    with_state: bool,
) -> Vec<(String, Tensor)> {
    let Sizes { seq_len, batch } = sizes;
    let params = seeded_parameters(&cfg.parameter_shapes(), cfg.hidden_size, 9, DType::F32, &Device::Cpu).unwrap();
    let params: HashMap<String, Tensor> = params.into_iter().map(|(k, v)| (k, v.to_device(dev).unwrap())).collect();
    let varmap = varmap_from_parameters(params, "").unwrap();
    let layer =
        RnnBase::new(cfg.clone(), VarBuilder::from_varmap(&varmap, DType::F32, dev)).unwrap().with_implementation(imp);
    let x = Var::from_tensor(&uniform(&[seq_len, batch, cfg.input_size], 1, dev)).unwrap();
    let stacked = cfg.num_layers * cfg.num_directions();
    let h0 = with_state.then(|| Var::from_tensor(&uniform(&[stacked, batch, cfg.output_size()], 2, dev)).unwrap());
    let c0 = (with_state && cfg.kind == CellKind::Lstm)
        .then(|| Var::from_tensor(&uniform(&[stacked, batch, cfg.hidden_size], 3, dev)).unwrap());
    let out = layer
        .forward_states(
            x.as_tensor(),
            h0.as_ref().map(|v| v.as_tensor()),
            c0.as_ref().map(|v| v.as_tensor()),
            lengths,
            false,
        )
        .unwrap();
    let mut loss = ((&out.output * uniform(out.output.dims(), 4, dev)).unwrap().sum_all().unwrap()
        + (&out.h_n * uniform(out.h_n.dims(), 5, dev)).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(c) = &out.c_n {
        loss = (loss + (c * uniform(c.dims(), 6, dev)).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut results = vec![("output".to_string(), out.output.clone()), ("h_n".to_string(), out.h_n.clone())];
    results.extend(out.c_n.clone().map(|c| ("c_n".to_string(), c)));
    for (name, var) in [("input", Some(x)), ("h0", h0), ("c0", c0)] {
        if let Some(v) = var {
            results.push((format!("grad.{name}"), grads.get(v.as_tensor()).expect("input gradient").clone()));
        }
    }
    for (name, p) in layer.named_parameters() {
        let g = grads.get(&p).cloned().unwrap_or_else(|| p.zeros_like().unwrap());
        results.push((format!("grad.{name}"), g));
    }
    results.into_iter().map(|(name, t)| (name, t.to_device(&Device::Cpu).unwrap())).collect()
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
    let mut cases = 0;
    for kind in [CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru] {
        let projections: &[usize] = if kind == CellKind::Lstm { &[0, 2] } else { &[0] };
        for &proj_size in projections {
            for num_layers in [1, 2] {
                for bidirectional in [false, true] {
                    for bias in [true, false] {
                        let cfg =
                            RnnConfig { num_layers, bidirectional, bias, proj_size, ..RnnConfig::new(kind, 3, 4) };
                        for lengths in [None, Some(&[5usize, 2, 4][..])] {
                            for with_state in [false, true] {
                                compare(&gpu, &cfg, sizes, lengths, with_state);
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 160);
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
            let x = uniform(&[7, 4, 3], 1, dev);
            let out = layer.forward_states(&x, None, None, Some(&[7, 3, 1, 6]), false).unwrap();
            let mut all = vec![("output".to_string(), out.output), ("h_n".to_string(), out.h_n)];
            all.extend(out.c_n.map(|c| ("c_n".to_string(), c)));
            all.into_iter().map(|(n, t)| (n, t.to_device(&Device::Cpu).unwrap())).collect::<Vec<_>>()
        };
        assert_close(&format!("inference {cfg:?}"), &outputs(&gpu), &outputs(&Device::Cpu));
    }
}
