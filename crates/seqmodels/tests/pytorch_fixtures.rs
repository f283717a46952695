//! Every module fixture that PyTorch produced (`scripts/make_fixtures.py`) must be matched:
//! outputs and states within 1e-5, every gradient within 1e-4 (f32).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use seqmodels::parity::{compare, run_module, RunOptions, Tolerances};
use seqmodels::state_dict::read_safetensors;
use seqmodels::{CellConfig, LSTMCell, LoadOptions, ModuleSpec};

/// The repository's `tests/fixtures`, found through CARGO_MANIFEST_DIR at run time when set (cargo
/// sets it; so does scripts/gpu_check.sh for a test binary carried to another machine), else where
/// it was built.
fn fixtures() -> PathBuf {
    let root =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    root.join("../../tests/fixtures")
}

fn load(dir: &Path, file: &str) -> HashMap<String, Tensor> {
    read_safetensors(dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[test]
fn every_module_fixture_matches_pytorch() {
    check_every_fixture(&RunOptions::default());
}

/// Runs every fixture case with `options` and fails listing each tensor beyond tolerance.
fn check_every_fixture(options: &RunOptions) {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join("modules"))
        .expect("tests/fixtures/modules exists")
        .map(|e| e.expect("readable entry").path())
        .collect();
    dirs.sort();
    // The case list of make_fixtures.py: a lost directory must not pass silently.
    assert!(dirs.len() >= 44, "expected at least 44 fixture cases, found {}", dirs.len());

    let mut failures = Vec::new();
    let mut worst = (0.0f64, String::new());
    for dir in &dirs {
        let spec = ModuleSpec::from_file(dir.join("module.json")).expect("valid module.json");
        let inputs = load(dir, "inputs.safetensors");
        let actual = run_module(&spec, load(dir, "weights.safetensors"), &inputs, options)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let expected = load(dir, "expected.safetensors");
        let rows = compare(&actual, &expected, Tolerances::for_dtype(DType::F32)).expect("comparable");
        assert!(rows.iter().any(|r| r.name.starts_with("grad.weight_hh")), "{}: gradients were checked", dir.display());
        for row in rows {
            if let Some(err) = row.max_abs_error.filter(|e| *e > worst.0) {
                worst = (err, format!("{} {}", dir.display(), row.name));
            }
            if !row.ok() {
                failures.push(format!("{}: {} {:?} {:?}", dir.display(), row.name, row.max_abs_error, row.problem));
            }
        }
    }
    let (device, implementation) = (options.device.location(), options.implementation);
    println!("{} cases on {device:?} ({implementation:?}); largest error {:.2e} at {}", dirs.len(), worst.0, worst.1);
    assert!(failures.is_empty(), "mismatches with PyTorch:\n{}", failures.join("\n"));
}

/// The same fixtures on a GPU (build with `--features cuda`; skipped where no GPU is present):
/// candle's own ops (the composed path), then the fused CUDA kernels.
#[cfg(feature = "cuda")]
#[test]
fn every_module_fixture_matches_pytorch_on_cuda() {
    let device = match Device::new_cuda(0) {
        Ok(d) => d,
        Err(e) => return println!("skipped: no usable GPU ({e})"),
    };
    for implementation in [seqmodels::Implementation::Composed, seqmodels::Implementation::Fused] {
        check_every_fixture(&RunOptions { device: device.clone(), implementation, ..RunOptions::default() });
    }
}

/// The example this project started from: `nn.LSTMCell(10, 20)`, input (2, 3, 10), hx and cx
/// (3, 20), a loop over the 2 time steps collecting hx, stacked into (2, 3, 20).
#[test]
fn seed_lstm_cell_loop_matches_pytorch() {
    let dir = fixtures().join("seed_lstm_cell");
    let spec = ModuleSpec::from_file(dir.join("module.json")).unwrap();
    let device = Device::Cpu;
    let params = seqmodels::load_state_dict(
        dir.join("weights.safetensors"),
        &spec.parameter_shapes(),
        &LoadOptions::default(),
        DType::F32,
        &device,
    )
    .unwrap();
    let rnn = LSTMCell::new(CellConfig::lstm(10, 20), VarBuilder::from_tensors(params, DType::F32, &device)).unwrap();

    let inputs = load(&dir, "inputs.safetensors");
    let input = &inputs["input"];
    let (mut hx, mut cx) = (inputs["hx"].clone(), inputs["cx"].clone());
    let mut output = Vec::new();
    for i in 0..input.dim(0).unwrap() {
        (hx, cx) = rnn.forward(&input.get(i).unwrap(), Some((&hx, &cx))).unwrap();
        output.push(hx.clone());
    }
    let output = Tensor::stack(&output, 0).unwrap();
    assert_eq!(output.dims(), &[2, 3, 20]);

    let actual = HashMap::from([("output".to_string(), output), ("h".to_string(), hx), ("c".to_string(), cx)]);
    let rows = compare(&actual, &load(&dir, "expected.safetensors"), Tolerances::for_dtype(DType::F32)).unwrap();
    for row in &rows {
        assert!(row.ok(), "{}: {:?} {:?}", row.name, row.max_abs_error, row.problem);
    }
    assert_eq!(rows.len(), 3);
}
