//! Models exported by `torch.onnx.export` (tests/fixtures/onnx, made by
//! scripts/make_onnx_fixtures.py) import with PyTorch's configuration and state-dict names and
//! reproduce PyTorch's outputs within 1e-5.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use seqmodels::{ForwardOptions, RnnBase, StackedState};
use seqmodels_train::commands::import::module_json;
use seqmodels_train::model::LanguageModel;
use seqmodels_train::onnx::{import, read_model, Imported};

const TOLERANCE: f32 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

fn cases() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

fn assert_close(name: &str, what: &str, ours: &Tensor, torch: &Tensor) {
    let diff = max_abs_diff(ours, torch);
    assert!(diff <= TOLERANCE, "{name}: {what} differs from PyTorch by {diff:e}");
}

/// Runs a case's imported model on its inputs and compares with PyTorch.
fn check_case(case: &serde_json::Value) {
    let name = case["name"].as_str().unwrap();
    let model = read_model(&fixtures().join(format!("{name}.onnx"))).unwrap();
    let data = seqmodels::state_dict::read_safetensors(fixtures().join(format!("{name}.safetensors"))).unwrap();
    let imported = import(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
    match (case["kind"].as_str().unwrap(), imported) {
        ("module", Imported::Module(m)) => {
            assert_eq!(module_json(&m.config), case["config"], "{name}: configuration");
            let names: Vec<_> = m.parameters.iter().map(|(n, _)| n.clone()).collect();
            let expected: Vec<_> = m.config.parameter_shapes().into_iter().map(|(n, _)| n).collect();
            assert_eq!(names, expected, "{name}: state-dict names");
            let params: HashMap<_, _> = m.parameters.into_iter().collect();
            let rnn = RnnBase::new(m.config, VarBuilder::from_tensors(params, DType::F32, &Device::Cpu)).unwrap();
            let h0 = StackedState::from_parts(data.get("h0"), data.get("c0")).unwrap();
            let out = rnn.forward(&data["input"], h0.as_ref(), ForwardOptions::default()).unwrap();
            assert_close(name, "output", &out.output, &data["output"]);
            assert_close(name, "h_n", &out.state.h, &data["h_n"]);
            if let Some(c) = data.get("c_n") {
                assert_close(name, "c_n", out.state.c.as_ref().unwrap(), c);
            }
        }
        ("language_model", Imported::LanguageModel(lm)) => {
            assert_eq!(serde_json::to_value(&lm.config).unwrap(), case["config"], "{name}: configuration");
            let (model, _) = LanguageModel::from_parameters(lm.config, lm.parameters.into_iter().collect()).unwrap();
            let tokens = data["tokens"].to_dtype(DType::U32).unwrap();
            let state = data.get("h0").map(|h| StackedState { h: h.clone(), c: data.get("c0").cloned() });
            let (logits, last) = model.forward(&tokens, state.as_ref(), false).unwrap();
            assert_close(name, "logits", &logits, &data["logits"]);
            assert_close(name, "h_n", &last.h, &data["h_n"]);
            if let Some(c) = data.get("c_n") {
                assert_close(name, "c_n", last.c.as_ref().unwrap(), c);
            }
        }
        (kind, other) => panic!("{name}: expected a {kind}, imported {other:?}"),
    }
}

#[test]
fn pytorch_exported_models_match_pytorch() {
    let cases = cases();
    assert!(cases.len() >= 13, "expected every fixture case, found {}", cases.len());
    for case in &cases {
        check_case(case);
    }
}
