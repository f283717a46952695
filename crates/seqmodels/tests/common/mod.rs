//! Shared by the fused-kernel tests: run one layer under an implementation and compare.
// Each test file uses a part of these helpers.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use seqmodels::init::{seeded_parameters, uniform_parameters};
use seqmodels::{varmap_from_parameters, CellKind, ForwardOptions, Implementation, RnnBase, RnnConfig, StackedState};

pub fn uniform(dims: &[usize], seed: u64, dtype: DType) -> Tensor {
    uniform_on(dims, seed, dtype, &Device::Cpu)
}

/// U(-1, 1) values drawn on the CPU from `seed` (the same on every device), then moved to `dev`.
pub fn uniform_on(dims: &[usize], seed: u64, dtype: DType, dev: &Device) -> Tensor {
    let t = uniform_parameters(&[("t".into(), dims.to_vec())], 1.0, seed, dtype, &Device::Cpu).unwrap();
    t.into_iter().next().unwrap().1.to_device(dev).unwrap()
}

/// Output, h_n, c_n and the gradients of a weighted-sum loss w.r.t. input, h0, c0 and every
/// parameter, under one implementation, on the CPU with 5 steps of 3 sequences.
pub fn run(
    cfg: &RnnConfig,
    imp: Implementation,
    lengths: Option<&[usize]>,
    with_state: bool,
    dtype: DType,
) -> Vec<(String, Tensor)> {
    run_on(cfg, imp, lengths, with_state, dtype, &Device::Cpu, (5, 3))
}

/// [`run`] on any device with (steps, batch) of `sizes`: parameters and inputs are drawn on the CPU
/// (every device and implementation sees the same values); the results come back on the CPU.
pub fn run_on(
    cfg: &RnnConfig,
    imp: Implementation,
    lengths: Option<&[usize]>,
    with_state: bool,
    dtype: DType,
    dev: &Device,
    (seq_len, batch): (usize, usize),
) -> Vec<(String, Tensor)> {
    let uniform = |dims: &[usize], seed: u64, dtype: DType| uniform_on(dims, seed, dtype, dev);
    let params = seeded_parameters(&cfg.parameter_shapes(), cfg.hidden_size, 9, dtype, &Device::Cpu).unwrap();
    let params = params.into_iter().map(|(k, v)| (k, v.to_device(dev).unwrap())).collect();
    let varmap = varmap_from_parameters(params, "").unwrap();
    let layer =
        RnnBase::new(cfg.clone(), VarBuilder::from_varmap(&varmap, dtype, dev)).unwrap().with_implementation(imp);
    let x_dims = if cfg.batch_first { [batch, seq_len, cfg.input_size] } else { [seq_len, batch, cfg.input_size] };
    let x = Var::from_tensor(&uniform(&x_dims, 1, dtype)).unwrap();
    let stacked = cfg.num_layers * cfg.num_directions();
    let h0 = with_state.then(|| Var::from_tensor(&uniform(&[stacked, batch, cfg.output_size()], 2, dtype)).unwrap());
    let c0 = (with_state && cfg.kind == CellKind::Lstm)
        .then(|| Var::from_tensor(&uniform(&[stacked, batch, cfg.hidden_size], 3, dtype)).unwrap());
    let out = layer
        .forward(
            x.as_tensor(),
            StackedState::from_parts(h0.as_ref().map(|v| v.as_tensor()), c0.as_ref().map(|v| v.as_tensor()))
                .unwrap()
                .as_ref(),
            ForwardOptions { lengths, train: false },
        )
        .unwrap();
    let mut loss = ((&out.output * uniform(out.output.dims(), 4, dtype)).unwrap().sum_all().unwrap()
        + (&out.state.h * uniform(out.state.h.dims(), 5, dtype)).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(c) = &out.state.c {
        loss = (loss + (c * uniform(c.dims(), 6, dtype)).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut results = vec![("output".to_string(), out.output.clone()), ("h_n".to_string(), out.state.h.clone())];
    results.extend(out.state.c.clone().map(|c| ("c_n".to_string(), c)));
    let mut inputs = vec![("input", Some(x)), ("h0", h0), ("c0", c0)];
    for (name, var) in inputs.drain(..) {
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

pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

pub fn compare(cfg: &RnnConfig, lengths: Option<&[usize]>, with_state: bool, dtype: DType, tol: f64) {
    compare_sized(cfg, lengths, with_state, (dtype, tol), (5, 3));
}

/// [`compare`] with (steps, batch) of `sizes`.
pub fn compare_sized(
    cfg: &RnnConfig,
    lengths: Option<&[usize]>,
    with_state: bool,
    (dtype, tol): (DType, f64),
    sizes: (usize, usize),
) {
    let cpu = Device::Cpu;
    let composed = run_on(cfg, Implementation::Composed, lengths, with_state, dtype, &cpu, sizes);
    let fused = run_on(cfg, Implementation::Fused, lengths, with_state, dtype, &cpu, sizes);
    assert_eq!(composed.len(), fused.len());
    for ((name, a), (name_b, b)) in composed.iter().zip(&fused) {
        assert_eq!(name, name_b);
        assert_eq!(a.dims(), b.dims(), "{name}");
        let err = max_diff(a, b);
        assert!(err <= tol, "{cfg:?} lengths={lengths:?} state={with_state}: {name} differs by {err}");
    }
}

/// The option combinations of the fused-kernel tests, as (configuration, lengths, whether to pass
/// initial states): every cell kind (LSTM with and without a projection), 1 and 2 layers, uni-
/// and bidirectional, with and without biases, each `batch_first` value given, with and without
/// lengths (for a batch of 3) and initial states. Input size 3, hidden size 4.
pub fn option_combinations(batch_first: &[bool]) -> Vec<(RnnConfig, Option<&'static [usize]>, bool)> {
    let mut cases = Vec::new();
    for kind in [CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru] {
        let projections: &[usize] = if kind == CellKind::Lstm { &[0, 2] } else { &[0] };
        for &proj_size in projections {
            for num_layers in [1, 2] {
                for bidirectional in [false, true] {
                    for bias in [true, false] {
                        for &batch_first in batch_first {
                            let cfg = RnnConfig {
                                num_layers,
                                bidirectional,
                                bias,
                                batch_first,
                                proj_size,
                                ..RnnConfig::new(kind, 3, 4)
                            };
                            for lengths in [None, Some(&[5usize, 2, 4][..])] {
                                for with_state in [false, true] {
                                    cases.push((cfg.clone(), lengths, with_state));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    cases
}

/// Every kind, one and two directions, with and without lengths and initial states, in f32:
/// what each instruction-set variant of the kernels is checked on.
/// A batch large enough (at least 16 rows per thread) that the vectorised engine splits the rows
/// between threads instead of the units in training (these runs track gradients), and the
/// threads run them without meeting: 35 rows split unevenly, some ending early in each part.
pub fn rows_split_against_the_composed_path() {
    let lengths: Vec<usize> = (0..35).map(|n| 6 - n / 7).collect();
    for kind in [CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig { bidirectional: true, ..RnnConfig::new(kind, 5, 24) };
        compare_sized(&cfg, Some(&lengths), true, (DType::F32, 2e-5), (6, 35));
        compare_sized(&cfg, None, false, (DType::F32, 2e-5), (6, 35));
    }
}

pub fn every_kind_against_the_composed_path() {
    for kind in [CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru] {
        for bidirectional in [false, true] {
            let cfg = RnnConfig { num_layers: 2, bidirectional, ..RnnConfig::new(kind, 3, 36) };
            compare(&cfg, Some(&[5, 2, 4]), true, DType::F32, 2e-5);
            compare(&cfg, None, false, DType::F32, 2e-5);
        }
    }
    rows_split_against_the_composed_path();
}
