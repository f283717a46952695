//! The fused whole-sequence kernels against the composed path (the specification): outputs,
//! final states and every gradient, on every option combination; and a 100,000-step sequence.

mod common;

use candle_core::{DType, Device, Var};
use candle_nn::VarBuilder;
use common::{compare, uniform};
use seqmodels::init::seeded_parameters;
use seqmodels::{varmap_from_parameters, CellKind, ForwardOptions, RnnBase, RnnConfig};

#[test]
fn every_option_combination_matches_the_composed_path() {
    let cases = common::option_combinations(&[false, true]);
    for (cfg, lengths, with_state) in &cases {
        compare(cfg, *lengths, *with_state, DType::F32, 2e-5);
    }
    assert_eq!(cases.len(), 320);
}

/// Hidden sizes that split the units between threads, evenly and unevenly.
#[test]
fn units_split_between_threads_match() {
    for kind in [CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru] {
        for hidden in [32, 40, 33] {
            let cfg = RnnConfig { bidirectional: true, ..RnnConfig::new(kind, 5, hidden) };
            compare(&cfg, Some(&[5, 3, 4]), true, DType::F32, 2e-5);
            compare(&cfg, None, false, DType::F32, 2e-5);
        }
    }
}

/// Rows split between threads instead of units (see the helper).
#[test]
fn rows_split_between_threads_match() {
    common::rows_split_against_the_composed_path();
}

/// An input wide enough (W_ih over 256 KiB) that the vectorised engine projects it over all
/// steps at once instead of step by step, with the units split between threads.
#[test]
fn wide_inputs_projected_over_all_steps_match() {
    for kind in [CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru] {
        let cfg = RnnConfig { bidirectional: true, ..RnnConfig::new(kind, 2100, 33) };
        compare(&cfg, Some(&[5, 3, 4]), true, DType::F32, 2e-5);
        compare(&cfg, None, false, DType::F32, 2e-5);
    }
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
    let out = lstm.forward(x.as_tensor(), None, ForwardOptions::training()).unwrap();
    assert_eq!(out.output.dims(), &[100_000, 2, 8]);
    let grads = out.output.sum_all().unwrap().backward().unwrap();
    let gx = grads.get(x.as_tensor()).unwrap();
    let total: f32 = gx.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert!(total.is_finite() && total > 0.0, "input gradient {total}");
    let w = &lstm.named_parameters()[1].1;
    assert!(grads.get(w).is_some(), "weight_hh_l0 has a gradient");
}
