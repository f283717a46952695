//! Behaviour beyond the PyTorch fixtures: dropout in training only and seedable, training
//! through the layers with a `VarMap`, unbatched = batch of one, lengths = shorter sequences.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap, SGD};
use seqmodels::init::uniform_parameters;
use seqmodels::{ForwardOptions, RnnBase, RnnConfig, GRU, LSTM};

fn uniform(dims: &[usize], seed: u64) -> Tensor {
    uniform_parameters(&[("t".into(), dims.to_vec())], 1.0, seed, DType::F32, &Device::Cpu).unwrap().remove(0).1
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

fn layer(cfg: RnnConfig) -> RnnBase {
    let varmap = VarMap::new();
    RnnBase::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap()
}

#[test]
fn dropout_applies_in_training_only_and_is_seedable() {
    let lstm = layer(RnnConfig { num_layers: 3, dropout: 0.5, ..RnnConfig::lstm(4, 16) });
    let x = uniform(&[6, 3, 4], 1);
    let eval_a = lstm.forward(&x, None, ForwardOptions::default()).unwrap().output;
    let eval_b = lstm.forward(&x, None, ForwardOptions::default()).unwrap().output;
    assert_eq!(max_diff(&eval_a, &eval_b), 0.0);

    lstm.set_dropout_seed(42);
    let train_a = lstm.forward(&x, None, ForwardOptions::training()).unwrap().output;
    let train_b = lstm.forward(&x, None, ForwardOptions::training()).unwrap().output;
    lstm.set_dropout_seed(42);
    let train_a_again = lstm.forward(&x, None, ForwardOptions::training()).unwrap().output;
    assert!(max_diff(&train_a, &eval_a) > 1e-3, "training mode drops units");
    assert!(max_diff(&train_a, &train_b) > 1e-3, "masks change between calls");
    assert_eq!(max_diff(&train_a, &train_a_again), 0.0, "same seed, same masks");

    // No dropout after the last layer: a 1-layer module is unaffected.
    let single = layer(RnnConfig { dropout: 0.5, ..RnnConfig::gru(4, 8) });
    let a = single.forward(&x, None, ForwardOptions::training()).unwrap().output;
    let b = single.forward(&x, None, ForwardOptions::default()).unwrap().output;
    assert_eq!(max_diff(&a, &b), 0.0);
}

#[test]
fn dropout_drops_the_expected_fraction() {
    let dropout = seqmodels::dropout::SeededDropout::new(0.3, Some(3));
    let y = dropout.apply(&Tensor::ones(100_000, DType::F32, &Device::Cpu).unwrap()).unwrap();
    let values = y.to_vec1::<f32>().unwrap();
    let dropped = values.iter().filter(|v| **v == 0.0).count() as f64 / values.len() as f64;
    assert!((dropped - 0.3).abs() < 0.01, "dropped fraction {dropped}");
    let kept_value = values.iter().find(|v| **v != 0.0).unwrap();
    assert!((kept_value - 1.0 / 0.7).abs() < 1e-6);
}

#[test]
fn training_with_a_varmap_reduces_the_loss() {
    // Seeded PyTorch-style init: a fresh VarMap would draw from candle's unseeded generator, and
    // how far 50 steps get depends on the draw.
    let cfg = RnnConfig { num_layers: 2, ..RnnConfig::lstm(3, 8) };
    let params = seqmodels::init::seeded_parameters(&cfg.parameter_shapes(), 8, 3, DType::F32, &Device::Cpu).unwrap();
    let varmap = seqmodels::varmap_from_parameters(params.into_iter().collect(), "").unwrap();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let lstm = LSTM::new(cfg, vb).unwrap();
    assert_eq!(varmap.all_vars().len(), 8);
    let x = uniform(&[5, 4, 3], 1);
    let target = Tensor::full(0.3f32, (5, 4, 8), &Device::Cpu).unwrap();
    let loss_of = || {
        let (out, _) = lstm.forward(&x, None).unwrap();
        (out - &target).unwrap().sqr().unwrap().mean_all().unwrap()
    };
    let first = loss_of().to_scalar::<f32>().unwrap();
    let mut sgd = SGD::new(varmap.all_vars(), 1.0).unwrap();
    for _ in 0..50 {
        sgd.backward_step(&loss_of()).unwrap();
    }
    let last = loss_of().to_scalar::<f32>().unwrap();
    println!("loss went from {first} to {last}");
    assert!(last < 0.1 * first, "loss went from {first} to {last}");
}

#[test]
fn unbatched_input_equals_a_batch_of_one() {
    let cfg = RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::gru(3, 5) };
    let varmap = VarMap::new();
    let gru = GRU::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let x = uniform(&[7, 3], 1);
    let h0 = uniform(&[4, 5], 2);
    let (out, h_n) = gru.forward(&x, Some(&h0)).unwrap();
    let (out_b, h_n_b) = gru.forward(&x.unsqueeze(1).unwrap(), Some(&h0.unsqueeze(1).unwrap())).unwrap();
    assert_eq!(out.dims(), &[7, 10]);
    assert_eq!(h_n.dims(), &[4, 5]);
    assert_eq!(max_diff(&out, &out_b.squeeze(1).unwrap()), 0.0);
    assert_eq!(max_diff(&h_n, &h_n_b.squeeze(1).unwrap()), 0.0);
}

/// A batch with lengths gives, for each sequence, what that sequence alone (cut to its
/// length) gives: outputs, zero padding, and final states of both directions.
#[test]
fn lengths_equal_running_each_sequence_alone() {
    let lstm = layer(RnnConfig { num_layers: 2, bidirectional: true, batch_first: true, ..RnnConfig::lstm(3, 4) });
    let x = uniform(&[3, 6, 3], 1);
    let lengths = [4usize, 6, 1];
    let batch = lstm.forward(&x, None, ForwardOptions::default().with_lengths(&lengths)).unwrap();
    for (b, &len) in lengths.iter().enumerate() {
        let alone = x.narrow(0, b, 1).unwrap().narrow(1, 0, len).unwrap();
        let single = lstm.forward(&alone, None, ForwardOptions::default()).unwrap();
        let out_b = batch.output.narrow(0, b, 1).unwrap();
        assert!(max_diff(&out_b.narrow(1, 0, len).unwrap(), &single.output) < 1e-6);
        if len < 6 {
            assert_eq!(
                out_b.narrow(1, len, 6 - len).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap(),
                0.0
            );
        }
        assert!(max_diff(&batch.state.h.narrow(1, b, 1).unwrap(), &single.state.h) < 1e-6);
        let c_n = batch.state.c.as_ref().unwrap();
        assert!(max_diff(&c_n.narrow(1, b, 1).unwrap(), single.state.c.as_ref().unwrap()) < 1e-6);
    }
}

#[test]
fn state_dict_round_trip_preserves_the_module() {
    let cfg = RnnConfig { num_layers: 2, proj_size: 2, bidirectional: true, ..RnnConfig::lstm(3, 4) };
    let original = layer(cfg.clone());
    let path = std::env::temp_dir().join(format!("seqmodels-roundtrip-{}.safetensors", std::process::id()));
    seqmodels::save_state_dict(&original.named_parameters(), "", &path).unwrap();
    let loaded =
        seqmodels::load_state_dict(&path, &cfg.parameter_shapes(), &Default::default(), DType::F32, &Device::Cpu)
            .unwrap();
    let copy = RnnBase::new(cfg, VarBuilder::from_tensors(loaded, DType::F32, &Device::Cpu)).unwrap();
    let x = uniform(&[4, 2, 3], 3);
    let a = original.forward(&x, None, ForwardOptions::default()).unwrap();
    let b = copy.forward(&x, None, ForwardOptions::default()).unwrap();
    assert_eq!(max_diff(&a.output, &b.output), 0.0);
    let names: Vec<String> = copy.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[..5], ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]);
    let _ = std::fs::remove_file(path);
    // PyTorch's default init: every value within 1/sqrt(hidden_size).
    for (name, p) in original.named_parameters() {
        let max = p.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max <= 0.5 && max > 0.1, "{name}: max |value| {max}");
    }
}
