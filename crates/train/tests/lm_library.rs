//! The trainer as a library: the model's layout, exact resume from a checkpoint written
//! mid-epoch, NaN detection, the checkpoint format on disk, evaluation and generation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};
use seqmodels::{CellKind, RnnConfig};
use seqmodels_data::{Cleaning, Sampling};
use seqmodels_train::checkpoint::{self, CheckpointConfig};
use seqmodels_train::generate::{generate, SamplingOptions};
use seqmodels_train::model::{init_parameters, InitScheme, LanguageModel, LmConfig};
use seqmodels_train::optim::{OptimConfig, OptimizerKind};
use seqmodels_train::schedule::LrSchedule;
use seqmodels_train::tokenizer::{TextTokenizer, TokenizerKind, TokenizerSpec};
use seqmodels_train::trainer::{evaluate, read_training_files, EpochEnd, TrainConfig, Trainer};
use seqmodels_train::Error;

fn fixture_text() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lm/text.txt");
    std::fs::read_to_string(p).expect("fixture text")
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqlm-lib-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn char_data() -> (TextTokenizer, Vec<u32>, Vec<u32>) {
    let spec = TokenizerSpec { kind: TokenizerKind::Char, cleaning: Cleaning::D2l, eos: None };
    let (tok, ids) = TextTokenizer::fit(&fixture_text(), &spec, 0).unwrap();
    let n = ids.len();
    (tok, ids[..n - 200].to_vec(), ids[n - 200..].to_vec())
}

fn small_model(vocab: usize, kind: CellKind) -> LmConfig {
    LmConfig {
        vocab_size: vocab,
        embed: Some(8),
        rnn: RnnConfig { num_layers: 2, dropout: 0.2, ..RnnConfig::new(kind, 8, 12) },
        dropout: 0.1,
        tie_weights: false,
    }
}

fn small_train(optimizer: OptimizerKind, sampling: Sampling) -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        num_steps: 9,
        epochs: 3,
        lr: if optimizer == OptimizerKind::Sgd { 0.5 } else { 0.01 },
        optimizer: OptimConfig {
            momentum: if optimizer == OptimizerKind::Sgd { 0.5 } else { 0.0 },
            ..OptimConfig::new(optimizer)
        },
        schedule: LrSchedule::StepDecay { factor: 2.0, after: 1 },
        clip: 1.0,
        sampling,
        seed: 11,
        init: InitScheme::Pytorch,
    }
}

fn losses(metrics: &[seqmodels_train::metrics::EpochMetrics]) -> Vec<(f64, Option<f64>)> {
    metrics.iter().map(|m| (m.train_loss, m.val_loss)).collect()
}

fn run_to_end(t: &mut Trainer) -> Vec<seqmodels_train::metrics::EpochMetrics> {
    let stop = AtomicBool::new(false);
    let mut out = Vec::new();
    while !t.finished() {
        match t.run_epoch(&stop, &mut |_| {}).unwrap() {
            EpochEnd::Finished(m) => out.push(m),
            EpochEnd::Interrupted => unreachable!(),
        }
    }
    out
}

#[test]
fn logits_are_time_major_and_state_carries() {
    let cfg = LmConfig { vocab_size: 7, embed: None, rnn: RnnConfig::gru(7, 5), dropout: 0.0, tie_weights: false };
    let params = init_parameters(&cfg, InitScheme::Pytorch, 1, DType::F32, &Device::Cpu).unwrap();
    let (model, _) = LanguageModel::from_parameters(cfg, params.into_iter().collect()).unwrap();
    let tokens = Tensor::new(&[[1u32, 2, 3, 4], [5, 6, 0, 1]], &Device::Cpu).unwrap();
    let (logits, state) = model.forward(&tokens, None, false).unwrap();
    assert_eq!(logits.dims(), &[8, 7]);
    // Row t*N + n is sequence n at step t: sequence 1 alone gives the odd rows.
    let one = Tensor::new(&[[5u32, 6, 0, 1]], &Device::Cpu).unwrap();
    let (alone, _) = model.forward(&one, None, false).unwrap();
    for t in 0..4 {
        let a = logits.get(2 * t + 1).unwrap().to_vec1::<f32>().unwrap();
        let b = alone.get(t).unwrap().to_vec1::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "step {t}: {x} vs {y}");
        }
    }
    // Two halves with the state carried equal the whole sequence.
    let first = Tensor::new(&[[1u32, 2], [5, 6]], &Device::Cpu).unwrap();
    let second = Tensor::new(&[[3u32, 4], [0, 1]], &Device::Cpu).unwrap();
    let (_, s1) = model.forward(&first, None, false).unwrap();
    let (l2, s2) = model.forward(&second, Some(&s1), false).unwrap();
    let whole_tail = logits.narrow(0, 4, 4).unwrap();
    let diff = (l2 - whole_tail).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff < 1e-5, "{diff}");
    let diff = (s2.h - state.h).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff < 1e-5);
    // Bad tokens are typed errors.
    let bad = Tensor::new(&[[9u32]], &Device::Cpu).unwrap();
    assert!(matches!(model.forward(&bad, None, false), Err(Error::TokenOutOfRange { index: 9, vocab_size: 7 })));
}

#[test]
fn evaluation_partitions_like_the_documentation() {
    let (tok, train, _) = char_data();
    let cfg = LmConfig::d2l(tok.vocab_size());
    let cfg = LmConfig { rnn: RnnConfig::lstm(tok.vocab_size(), 16), ..cfg };
    let params = init_parameters(&cfg, InitScheme::Pytorch, 4, DType::F32, &Device::Cpu).unwrap();
    let (model, _) = LanguageModel::from_parameters(cfg, params.into_iter().collect()).unwrap();
    let ids = &train[..301];
    // The window length only changes speed: the state is carried.
    let a = evaluate(&model, ids, 1, 7).unwrap();
    let b = evaluate(&model, ids, 1, 300).unwrap();
    assert_eq!(a.tokens, 300);
    assert!((a.loss - b.loss).abs() < 1e-5, "{a:?} {b:?}");
    // 3 rows of 100 tokens.
    let c = evaluate(&model, ids, 3, 40).unwrap();
    assert_eq!(c.tokens, 300);
    // An untrained model is near uniform: perplexity near the vocabulary size.
    assert!(a.perplexity > 0.5 * tok.vocab_size() as f64 && a.perplexity < 2.0 * tok.vocab_size() as f64);
    assert!(matches!(evaluate(&model, &ids[..1], 1, 5), Err(Error::TooFewTokens { .. })));
}

/// Trains, interrupts mid-epoch through the stop flag, writes a checkpoint, resumes from disk
/// in a new trainer and checks every epoch's losses against an uninterrupted run, bit for bit.
fn check_exact_resume(kind: CellKind, optimizer: OptimizerKind, sampling: Sampling, stop_after: u64) {
    let (tok, train, valid) = char_data();
    let model_cfg = small_model(tok.vocab_size(), kind);
    let train_cfg = small_train(optimizer, sampling);
    let mut reference =
        Trainer::new(model_cfg.clone(), train_cfg.clone(), train.clone(), Some(valid.clone()), &Device::Cpu).unwrap();
    let expected = run_to_end(&mut reference);
    assert_eq!(expected.len(), 3);

    let dir = temp(&format!("resume-{kind:?}-{optimizer:?}-{sampling}"));
    let mut first =
        Trainer::new(model_cfg.clone(), train_cfg, train.clone(), Some(valid.clone()), &Device::Cpu).unwrap();
    let stop = AtomicBool::new(false);
    let mut done = Vec::new();
    loop {
        let end = first
            .run_epoch(&stop, &mut |r| {
                if r.step == stop_after {
                    stop.store(true, Ordering::SeqCst);
                }
            })
            .unwrap();
        match end {
            EpochEnd::Finished(m) => done.push(m),
            EpochEnd::Interrupted => break,
        }
    }
    assert_eq!(first.progress().step, stop_after);
    let config = CheckpointConfig::new(model_cfg, tok.spec().clone());
    let files = first.training_files(serde_json::json!({"note": "test"})).unwrap();
    checkpoint::save(&dir, &config, first.model(), &tok, &files).unwrap();
    drop(first);

    let loaded = checkpoint::load(&dir, &Device::Cpu).unwrap();
    let saved = read_training_files(&loaded.dir).unwrap();
    assert_eq!(saved.state.extra["note"], "test");
    assert_eq!(saved.state.carry, sampling == Sampling::Sequential && saved.state.progress.batch > 0);
    let mut resumed =
        Trainer::resume(loaded.model, loaded.varmap, saved.state, saved.optimizer, saved.carry, train, Some(valid))
            .unwrap();
    done.extend(run_to_end(&mut resumed));
    assert_eq!(losses(&done), losses(&expected), "{kind:?} {optimizer:?} {sampling}");
    assert_eq!(done.iter().map(|m| m.lr).collect::<Vec<_>>(), expected.iter().map(|m| m.lr).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_mid_epoch_is_exact_lstm_adam_sequential() {
    // About 66 minibatches per epoch: step 70 is early in epoch 2, with a carried state.
    check_exact_resume(CellKind::Lstm, OptimizerKind::Adam, Sampling::Sequential, 70);
}

#[test]
fn resume_mid_epoch_is_exact_gru_sgd_momentum_random() {
    check_exact_resume(CellKind::Gru, OptimizerKind::Sgd, Sampling::Random, 30);
}

#[test]
fn resume_at_epoch_boundary_is_exact_rnn_adamw() {
    let (tok, train, _) = char_data();
    let steps_per_epoch = {
        let cfg = small_train(OptimizerKind::Adamw, Sampling::Sequential);
        let mut t =
            Trainer::new(small_model(tok.vocab_size(), CellKind::RnnTanh), cfg, train, None, &Device::Cpu).unwrap();
        let stop = AtomicBool::new(false);
        t.run_epoch(&stop, &mut |_| {}).unwrap();
        t.progress().step
    };
    check_exact_resume(CellKind::RnnTanh, OptimizerKind::Adamw, Sampling::Sequential, steps_per_epoch);
}

#[test]
fn nan_loss_stops_with_the_step() {
    let (tok, train, valid) = char_data();
    let cfg = TrainConfig { clip: 0.0, ..small_train(OptimizerKind::Sgd, Sampling::Sequential) };
    let mut t =
        Trainer::new(small_model(tok.vocab_size(), CellKind::Lstm), cfg, train, Some(valid), &Device::Cpu).unwrap();
    let stop = AtomicBool::new(false);
    assert!(matches!(t.run_epoch(&stop, &mut |_| {}).unwrap(), EpochEnd::Finished(_)));
    let before: Vec<f32> = t.model().named_parameters()[0].1.flatten_all().unwrap().to_vec1().unwrap();
    t.set_lr(1e38).unwrap();
    let err = t.run_epoch(&stop, &mut |_| {}).unwrap_err();
    match &err {
        Error::NonFinite { step, epoch, .. } => {
            assert_eq!(*epoch, 2);
            assert_eq!(*step, t.progress().step + 1, "{err}");
        }
        other => panic!("expected NonFinite, found {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("became") && msg.contains("at step"), "{msg}");
    // The update with the bad value was not applied: parameters are finite.
    for (name, p) in t.model().named_parameters() {
        let v: Vec<f32> = p.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name} has non-finite values");
    }
    assert_eq!(before.len(), t.model().named_parameters()[0].1.elem_count());
}

#[test]
fn checkpoint_files_and_strict_loading() {
    let (tok, train, valid) = char_data();
    let model_cfg = LmConfig {
        vocab_size: tok.vocab_size(),
        embed: Some(6),
        rnn: RnnConfig { proj_size: 6, ..RnnConfig::lstm(6, 10) },
        dropout: 0.0,
        tie_weights: true,
    };
    let cfg = TrainConfig { epochs: 1, ..small_train(OptimizerKind::Adam, Sampling::Sequential) };
    let mut t = Trainer::new(model_cfg.clone(), cfg, train, Some(valid), &Device::Cpu).unwrap();
    run_to_end(&mut t);
    let dir = temp("files");
    let files = t.training_files(serde_json::Value::Null).unwrap();
    let ck =
        checkpoint::save(&dir, &CheckpointConfig::new(model_cfg.clone(), tok.spec().clone()), t.model(), &tok, &files)
            .unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&ck).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["config.json", "model.safetensors", "optimizer.safetensors", "trainer.json", "vocab.json"]);
    assert!(!dir.join("checkpoint.tmp").exists() && !dir.join("checkpoint.prev").exists());
    // The state dict holds both tied keys, PyTorch's names, and nothing else.
    let sd = seqmodels::state_dict::read_safetensors(ck.join("model.safetensors")).unwrap();
    let mut keys: Vec<&String> = sd.keys().collect();
    keys.sort();
    let mut expected: Vec<String> = model_cfg.parameter_shapes().into_iter().map(|(n, _)| n).collect();
    expected.sort();
    assert_eq!(keys, expected.iter().collect::<Vec<_>>());
    assert!(expected.contains(&"rnn.weight_hr_l0".to_string()));
    // Loading by run directory or checkpoint directory gives the same model.
    let a = checkpoint::load(&dir, &Device::Cpu).unwrap();
    let b = checkpoint::load(&ck, &Device::Cpu).unwrap();
    assert_eq!(a.dir, b.dir);
    // The optimizer buffers are keyed by parameter name.
    let opt = seqmodels::state_dict::read_safetensors(ck.join("optimizer.safetensors")).unwrap();
    assert!(opt.contains_key("decoder.bias.exp_avg") && opt.contains_key("embedding.weight.exp_avg_sq"));
    assert!(!opt.keys().any(|k| k.starts_with("decoder.weight")), "tied decoder.weight is not a separate variable");

    // A second save replaces the first atomically.
    checkpoint::save(&dir, &CheckpointConfig::new(model_cfg, tok.spec().clone()), t.model(), &tok, &files).unwrap();
    // An interrupted swap (only checkpoint.prev left) is still found.
    std::fs::rename(dir.join("checkpoint"), dir.join("checkpoint.prev")).unwrap();
    assert!(checkpoint::resolve_dir(&dir).unwrap().ends_with("checkpoint.prev"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn greedy_and_sampled_generation() {
    let (tok, train, _) = char_data();
    let cfg = LmConfig { rnn: RnnConfig::lstm(tok.vocab_size(), 16), ..LmConfig::d2l(tok.vocab_size()) };
    let params = init_parameters(&cfg, InitScheme::Uniform(0.3), 2, DType::F32, &Device::Cpu).unwrap();
    let (model, _) = LanguageModel::from_parameters(cfg, params.into_iter().collect()).unwrap();
    let prefix = &train[..5];
    let g1 = generate(&model, prefix, 20, &SamplingOptions::greedy()).unwrap();
    let g2 = generate(&model, prefix, 20, &SamplingOptions::greedy()).unwrap();
    assert_eq!(g1, g2);
    assert_eq!(g1.len(), 20);
    let s = |seed| SamplingOptions { temperature: Some(1.5), top_k: Some(5), top_p: Some(0.9), seed };
    assert_eq!(generate(&model, prefix, 30, &s(1)).unwrap(), generate(&model, prefix, 30, &s(1)).unwrap());
    assert_ne!(generate(&model, prefix, 30, &s(1)).unwrap(), generate(&model, prefix, 30, &s(2)).unwrap());
    // top-k 1 is greedy.
    let k1 = SamplingOptions { temperature: Some(1.0), top_k: Some(1), top_p: None, seed: 9 };
    assert_eq!(generate(&model, prefix, 20, &k1).unwrap(), g1);
    assert!(generate(&model, &[], 5, &SamplingOptions::greedy()).is_err());
    let bad = SamplingOptions { top_p: Some(1.5), ..SamplingOptions::greedy() };
    assert!(generate(&model, prefix, 5, &bad).unwrap_err().to_string().contains("top_p"));
}

#[test]
fn invalid_hyperparameters_are_typed_errors() {
    let (tok, train, _) = char_data();
    let m = small_model(tok.vocab_size(), CellKind::Lstm);
    let base = small_train(OptimizerKind::Sgd, Sampling::Sequential);
    let cases: Vec<(TrainConfig, &str)> = vec![
        (TrainConfig { batch_size: 0, ..base.clone() }, "batch"),
        (TrainConfig { num_steps: 0, ..base.clone() }, "steps"),
        (TrainConfig { lr: -1.0, ..base.clone() }, "lr"),
        (TrainConfig { lr: f64::NAN, ..base.clone() }, "lr"),
        (TrainConfig { clip: -1.0, ..base.clone() }, "clip"),
        (TrainConfig { epochs: 0, ..base.clone() }, "epochs"),
    ];
    for (cfg, name) in cases {
        let err = Trainer::new(m.clone(), cfg, train.clone(), None, &Device::Cpu).err().expect("must fail");
        assert!(matches!(&err, Error::InvalidOption { name: n, .. } if n == name), "{name}: {err}");
    }
    // Steps longer than the corpus: the data crate names the sizes.
    let long = TrainConfig { num_steps: 5000, ..base };
    let err = Trainer::new(m, long, train, None, &Device::Cpu).err().expect("must fail");
    assert!(err.to_string().contains("too short"), "{err}");
}

/// The trainer on the composed path (candle ops per step) gives the losses of the fused kernels,
/// within float tolerance: `seqlm train --impl` changes speed, not results.
#[test]
fn composed_and_fused_training_agree() {
    let (tok, train, valid) = char_data();
    let model_cfg = small_model(tok.vocab_size(), CellKind::Lstm);
    let train_cfg = small_train(OptimizerKind::Sgd, Sampling::Sequential);
    let mut fused =
        Trainer::new(model_cfg.clone(), train_cfg.clone(), train.clone(), Some(valid.clone()), &Device::Cpu).unwrap();
    let mut composed = Trainer::new(model_cfg, train_cfg, train, Some(valid), &Device::Cpu).unwrap();
    composed.set_implementation(seqmodels::Implementation::Composed);
    for (a, b) in run_to_end(&mut fused).iter().zip(&run_to_end(&mut composed)) {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-4 * x.abs().max(1.0);
        assert!(close(a.train_loss, b.train_loss), "epoch {}: {} vs {}", a.epoch, a.train_loss, b.train_loss);
        assert!(close(a.val_loss.unwrap(), b.val_loss.unwrap()), "epoch {}", a.epoch);
    }
}
