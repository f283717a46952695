//! The trainer on a GPU (build with `--features cuda`; skipped, with a message, where no GPU
//! is present): the same seeds give the same training run on CUDA as on the CPU, within float
//! tolerance, and a checkpoint written from the GPU evaluates the same on the CPU.
//! `scripts/gpu_check.sh` runs it on the GPU machine.
#![cfg(feature = "cuda")]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use seqmodels::{CellKind, RnnConfig};
use seqmodels_data::{Cleaning, Sampling};
use seqmodels_train::checkpoint::{self, CheckpointConfig};
use seqmodels_train::metrics::EpochMetrics;
use seqmodels_train::model::LmConfig;
use seqmodels_train::optim::{OptimConfig, OptimizerKind};
use seqmodels_train::schedule::LrSchedule;
use seqmodels_train::tokenizer::{TextTokenizer, TokenizerKind, TokenizerSpec};
use seqmodels_train::trainer::{evaluate, EpochEnd, TrainConfig, Trainer};

fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("skipped: no usable GPU ({e})");
            None
        }
    }
}

fn data() -> (TextTokenizer, Vec<u32>, Vec<u32>) {
    // CARGO_MANIFEST_DIR at run time when set (scripts/gpu_check.sh sets it for a carried binary).
    let root =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let p = root.join("../../tests/fixtures/lm/text.txt");
    let text = std::fs::read_to_string(p).expect("fixture text");
    let spec = TokenizerSpec { kind: TokenizerKind::Char, cleaning: Cleaning::D2l, eos: None };
    let (tok, ids) = TextTokenizer::fit(&text, &spec, 0).unwrap();
    let n = ids.len();
    (tok, ids[..n - 200].to_vec(), ids[n - 200..].to_vec())
}

fn configs(vocab: usize, kind: CellKind) -> (LmConfig, TrainConfig) {
    let model = LmConfig {
        vocab_size: vocab,
        embed: Some(8),
        rnn: RnnConfig { num_layers: 2, dropout: 0.2, ..RnnConfig::new(kind, 8, 16) },
        dropout: 0.1,
        tie_weights: false,
    };
    let train = TrainConfig {
        batch_size: 4,
        num_steps: 9,
        epochs: 3,
        lr: 0.01,
        optimizer: OptimConfig::new(OptimizerKind::Adam),
        schedule: LrSchedule::StepDecay { factor: 2.0, after: 1 },
        clip: 1.0,
        sampling: Sampling::Sequential,
        ..TrainConfig::d2l()
    };
    (model, train)
}

fn run(t: &mut Trainer) -> Vec<EpochMetrics> {
    let stop = AtomicBool::new(false);
    let mut out = Vec::new();
    while !t.finished() {
        match t.run_epoch(&stop, &mut |_| {}).unwrap() {
            EpochEnd::Finished(m) => out.push(m),
            EpochEnd::Interrupted => unreachable!("nothing raises the stop flag"),
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-4 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn training_on_cuda_matches_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let (tok, train, valid) = data();
    for kind in [CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh] {
        let (model, cfg) = configs(tok.vocab_size(), kind);
        let mut cpu =
            Trainer::new(model.clone(), cfg.clone(), train.clone(), Some(valid.clone()), &Device::Cpu).unwrap();
        let mut cuda = Trainer::new(model.clone(), cfg, train.clone(), Some(valid.clone()), &gpu).unwrap();
        let (on_cpu, on_gpu) = (run(&mut cpu), run(&mut cuda));
        assert_eq!(on_cpu.len(), on_gpu.len());
        for (a, b) in on_cpu.iter().zip(&on_gpu) {
            println!("{kind:?} epoch {}: loss cpu {:.6} cuda {:.6}", a.epoch, a.train_loss, b.train_loss);
            assert!(close(a.train_loss, b.train_loss), "{kind:?} epoch {}: {a:?} vs {b:?}", a.epoch);
            assert!(close(a.val_loss.unwrap(), b.val_loss.unwrap()), "{kind:?} epoch {}", a.epoch);
        }

        // A checkpoint written from the GPU, loaded on the CPU, evaluates as the GPU model does.
        let dir = std::env::temp_dir().join(format!("seqlm-cuda-{kind:?}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = cuda.training_files(serde_json::json!({})).unwrap();
        checkpoint::save(&dir, &CheckpointConfig::new(model, tok.spec().clone()), cuda.model(), &tok, &files).unwrap();
        let loaded = checkpoint::load(&dir, &Device::Cpu).unwrap();
        let (on_cpu, on_gpu) =
            (evaluate(&loaded.model, &valid, 2, 10).unwrap(), evaluate(cuda.model(), &valid, 2, 10).unwrap());
        assert!(close(on_cpu.loss, on_gpu.loss), "{kind:?}: {on_cpu:?} vs {on_gpu:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
