//! The fused whole-sequence kernels against the composed path (the specification): outputs,
//! final states and every gradient, on every option combination; and a 100,000-step sequence.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use seqmodels::init::{seeded_parameters, uniform_parameters};
use seqmodels::{varmap_from_parameters, CellKind, Implementation, RnnBase, RnnConfig};

fn uniform(dims: &[usize], seed: u64, dtype: DType) -> Tensor {
    uniform_parameters(&[("t".into(), dims.to_vec())], 1.0, seed, dtype, &Device::Cpu).unwrap().remove(0).1
}

/// Output, h_n, c_n and the gradients of a weighted-sum loss w.r.t. input, h0, c0 and every
/// parameter, under one implementation.
fn run(
    cfg: &RnnConfig,
    imp: Implementation,
    lengths: Option<&[usize]>,
    with_state: bool,
    dtype: DType,
) -> Vec<(String, Tensor)> {
    let (seq_len, batch) = (5, 3);
    let params = seeded_parameters(&cfg.parameter_shapes(), cfg.hidden_size, 9, dtype, &Device::Cpu).unwrap();
    let varmap = varmap_from_parameters(params.into_iter().collect(), "").unwrap();
    let layer = RnnBase::new(cfg.clone(), VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu))
        .unwrap()
        .with_implementation(imp);
    let x_dims = if cfg.batch_first { [batch, seq_len, cfg.input_size] } else { [seq_len, batch, cfg.input_size] };
    let x = Var::from_tensor(&uniform(&x_dims, 1, dtype)).unwrap();
    let stacked = cfg.num_layers * cfg.num_directions();
    let h0 = with_state.then(|| Var::from_tensor(&uniform(&[stacked, batch, cfg.output_size()], 2, dtype)).unwrap());
    let c0 = (with_state && cfg.kind == CellKind::Lstm)
        .then(|| Var::from_tensor(&uniform(&[stacked, batch, cfg.hidden_size], 3, dtype)).unwrap());
    let out = layer
        .forward_states(
            x.as_tensor(),
            h0.as_ref().map(|v| v.as_tensor()),
            c0.as_ref().map(|v| v.as_tensor()),
            lengths,
            false,
        )
        .unwrap();
    let mut loss = ((&out.output * uniform(out.output.dims(), 4, dtype)).unwrap().sum_all().unwrap()
        + (&out.h_n * uniform(out.h_n.dims(), 5, dtype)).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(c) = &out.c_n {
        loss = (loss + (c * uniform(c.dims(), 6, dtype)).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut results = vec![("output".to_string(), out.output.clone()), ("h_n".to_string(), out.h_n.clone())];
    results.extend(out.c_n.clone().map(|c| ("c_n".to_string(), c)));
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
    results
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn compare(cfg: &RnnConfig, lengths: Option<&[usize]>, with_state: bool, dtype: DType, tol: f64) {
    let composed = run(cfg, Implementation::Composed, lengths, with_state, dtype);
    let fused = run(cfg, Implementation::Fused, lengths, with_state, dtype);
    assert_eq!(composed.len(), fused.len());
    for ((name, a), (name_b, b)) in composed.iter().zip(&fused) {
        assert_eq!(name, name_b);
        assert_eq!(a.dims(), b.dims(), "{name}");
        let err = max_diff(a, b);
        assert!(err <= tol, "{cfg:?} lengths={lengths:?} state={with_state}: {name} differs by {err}");
    }
}

#[test]
fn every_option_combination_matches_the_composed_path() {
    let mut cases = 0;
    for kind in [CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru] {
        let projections: &[usize] = if kind == CellKind::Lstm { &[0, 2] } else { &[0] };
        for &proj_size in projections {
            for num_layers in [1, 2] {
                for bidirectional in [false, true] {
                    for bias in [true, false] {
                        for batch_first in [false, true] {
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
                                    compare(&cfg, lengths, with_state, DType::F32, 2e-5);
                                    cases += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 320);
}

#[test]
fn f64_matches_to_rounding() {
    for kind in [CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::new(kind, 3, 4) };
        compare(&cfg, Some(&[3, 5, 1]), true, DType::F64, 1e-12);
    }
    let cfg = RnnConfig { proj_size: 3, bidirectional: true, ..RnnConfig::lstm(3, 5) };
    compare(&cfg, Some(&[3, 5, 1]), true, DType::F64, 1e-12);
}

/// candle-nn's LSTM overflows the stack at 20,000 steps because its graph grows per step;
/// the fused kernel keeps a few nodes per layer.
#[test]
fn hundred_thousand_steps_forward_and_backward() {
    let cfg = RnnConfig::lstm(2, 8);
    let params = seeded_parameters(&cfg.parameter_shapes(), 8, 1, DType::F32, &Device::Cpu).unwrap();
    let varmap = varmap_from_parameters(params.into_iter().collect(), "").unwrap();
    let lstm = RnnBase::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let x = Var::from_tensor(&uniform(&[100_000, 2, 2], 1, DType::F32)).unwrap();
    let out = lstm.forward_states(x.as_tensor(), None, None, None, true).unwrap();
    assert_eq!(out.output.dims(), &[100_000, 2, 8]);
    let grads = out.output.sum_all().unwrap().backward().unwrap();
    let gx = grads.get(x.as_tensor()).unwrap();
    let total: f32 = gx.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert!(total.is_finite() && total > 0.0, "input gradient {total}");
    let w = &lstm.named_parameters()[1].1;
    assert!(grads.get(w).is_some(), "weight_hh_l0 has a gradient");
}
