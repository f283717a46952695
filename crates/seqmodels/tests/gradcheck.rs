//! f64 finite-difference checks of the layer and cell gradients: central differences of a
//! weighted-sum loss against `backward()`. Layers run their default implementation, the fused
//! kernels with hand-written BPTT (the composed path is checked against them in
//! `fused_vs_composed.rs`); cells run the composed step under candle's autodiff.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use seqmodels::init::{seeded_parameters, uniform_parameters};
use seqmodels::{varmap_from_parameters, Cell, CellConfig, CellKind, ForwardOptions, RnnBase, RnnConfig, StackedState};

const EPS: f64 = 1e-6;

fn uniform(dims: &[usize], seed: u64) -> Tensor {
    uniform_parameters(&[("t".into(), dims.to_vec())], 1.0, seed, DType::F64, &Device::Cpu).unwrap().remove(0).1
}

/// Compares analytic and central-difference derivatives of `loss` for a few elements of every
/// variable (evenly spread, always including the first and last element).
fn check(vars: &[(String, Var)], loss: &dyn Fn() -> Tensor) {
    let grads = loss().backward().unwrap();
    for (name, var) in vars {
        let analytic = grads.get(var.as_tensor()).map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap());
        let original = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let n = original.len();
        let picks: Vec<usize> = if n <= 6 { (0..n).collect() } else { (0..6).map(|k| k * (n - 1) / 5).collect() };
        for i in picks {
            let eval_at = |delta: f64| {
                let mut values = original.clone();
                values[i] += delta;
                var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap()).unwrap();
                loss().to_scalar::<f64>().unwrap()
            };
            let numeric = (eval_at(EPS) - eval_at(-EPS)) / (2.0 * EPS);
            eval_at(0.0);
            let analytic = analytic.as_ref().map_or(0.0, |g| g[i]);
            let err = (numeric - analytic).abs();
            assert!(err <= 1e-6 * numeric.abs().max(1.0), "{name}[{i}]: analytic {analytic}, numeric {numeric}");
        }
    }
}

fn check_layer(cfg: RnnConfig, batch: usize, lengths: Option<Vec<usize>>, with_state: bool) {
    let seq_len = 4;
    let device = Device::Cpu;
    let params = seeded_parameters(&cfg.parameter_shapes(), cfg.hidden_size, 7, DType::F64, &device).unwrap();
    let varmap = varmap_from_parameters(params.into_iter().collect(), "").unwrap();
    let layer = RnnBase::new(cfg.clone(), VarBuilder::from_varmap(&varmap, DType::F64, &device)).unwrap();

    let x_dims = if cfg.batch_first { [batch, seq_len, cfg.input_size] } else { [seq_len, batch, cfg.input_size] };
    let stacked = cfg.num_layers * cfg.num_directions();
    let mut vars = vec![("input".to_string(), Var::from_tensor(&uniform(&x_dims, 1)).unwrap())];
    if with_state {
        vars.push(("h0".into(), Var::from_tensor(&uniform(&[stacked, batch, cfg.output_size()], 2)).unwrap()));
        if cfg.kind == CellKind::Lstm {
            vars.push(("c0".into(), Var::from_tensor(&uniform(&[stacked, batch, cfg.hidden_size], 3)).unwrap()));
        }
    }
    let mut named: Vec<(String, Var)> =
        varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    vars.extend(named);

    let out_dims = if cfg.batch_first {
        [batch, seq_len, cfg.num_directions() * cfg.output_size()]
    } else {
        [seq_len, batch, cfg.num_directions() * cfg.output_size()]
    };
    let w_out = uniform(&out_dims, 4);
    let w_h = uniform(&[stacked, batch, cfg.output_size()], 5);
    let w_c = uniform(&[stacked, batch, cfg.hidden_size], 6);
    let state = |name: &str| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_tensor().clone());
    let (x, h0, c0) = (state("input").unwrap(), state("h0"), state("c0"));
    let loss = || {
        let initial = StackedState::from_parts(h0.as_ref(), c0.as_ref()).unwrap();
        let options = ForwardOptions { lengths: lengths.as_deref(), train: false };
        let out = layer.forward(&x, initial.as_ref(), options).unwrap();
        let mut loss = ((&out.output * &w_out).unwrap().sum_all().unwrap()
            + (&out.state.h * &w_h).unwrap().sum_all().unwrap())
        .unwrap();
        if let Some(c) = &out.state.c {
            loss = (loss + (c * &w_c).unwrap().sum_all().unwrap()).unwrap();
        }
        loss
    };
    check(&vars, &loss);
}

const KINDS: [CellKind; 4] = [CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru];

#[test]
fn single_layer_gradients() {
    for kind in KINDS {
        check_layer(RnnConfig::new(kind, 3, 4), 2, None, true);
    }
}

#[test]
fn deep_bidirectional_batch_first_gradients() {
    for kind in KINDS {
        let cfg = RnnConfig { num_layers: 2, bidirectional: true, batch_first: true, ..RnnConfig::new(kind, 3, 4) };
        check_layer(cfg, 3, None, true);
    }
}

#[test]
fn variable_length_gradients() {
    for kind in KINDS {
        let cfg = RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::new(kind, 2, 3) };
        check_layer(cfg, 3, Some(vec![2, 4, 1]), kind != CellKind::Gru);
    }
}

#[test]
fn projection_and_no_bias_gradients() {
    let cfg = RnnConfig { proj_size: 2, num_layers: 2, bidirectional: true, ..RnnConfig::lstm(3, 4) };
    check_layer(cfg, 2, Some(vec![3, 4]), true);
    for kind in KINDS {
        check_layer(RnnConfig { bias: false, ..RnnConfig::new(kind, 3, 4) }, 2, None, false);
    }
}

#[test]
fn cell_gradients() {
    let device = Device::Cpu;
    for kind in KINDS {
        let cfg = CellConfig::new(kind, 3, 4);
        let params = seeded_parameters(&cfg.parameter_shapes(), 4, 11, DType::F64, &device).unwrap();
        let varmap = varmap_from_parameters(params.into_iter().collect(), "").unwrap();
        let cell = Cell::new(cfg, VarBuilder::from_varmap(&varmap, DType::F64, &device)).unwrap();
        let x = Var::from_tensor(&uniform(&[2, 3], 1)).unwrap();
        let hx = Var::from_tensor(&uniform(&[2, 4], 2)).unwrap();
        let cx = Var::from_tensor(&uniform(&[2, 4], 3)).unwrap();
        let (w_h, w_c) = (uniform(&[2, 4], 4), uniform(&[2, 4], 5));
        let lstm = kind == CellKind::Lstm;
        let loss = || {
            let next = cell.forward_state(x.as_tensor(), Some(hx.as_tensor()), lstm.then(|| cx.as_tensor())).unwrap();
            let mut loss = (&next.h * &w_h).unwrap().sum_all().unwrap();
            if let Some(c) = &next.c {
                loss = (loss + (c * &w_c).unwrap().sum_all().unwrap()).unwrap();
            }
            loss
        };
        let mut vars = vec![("input".to_string(), x.clone()), ("hx".to_string(), hx.clone())];
        if lstm {
            vars.push(("cx".into(), cx.clone()));
        }
        vars.extend(varmap.all_vars().into_iter().enumerate().map(|(i, v)| (format!("param{i}"), v)));
        check(&vars, &loss);
    }
}
