//! `seqlm forward` and `seqlm init` as a user runs them: success on a PyTorch fixture, and
//! clear errors (non-zero exit, a message naming the problem) on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn seqlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqlm")).args(args).output().expect("seqlm runs")
}

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/modules").join(case)
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqlm-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn forward(case_dir: &Path, inputs: &Path, config: &Path, out: &Path) -> Output {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    seqlm(&[
        "forward",
        "--config",
        &s(config),
        "--weights",
        &s(&case_dir.join("weights.safetensors")),
        "--inputs",
        &s(inputs),
        "--out",
        &s(out),
        "--compare",
        &s(&case_dir.join("expected.safetensors")),
    ])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn forward_matches_a_pytorch_fixture() {
    let case = fixture("lstm_l3_bidir_batchfirst_h0");
    let out = temp("ok").join("out.safetensors");
    let o = forward(&case, &case.join("inputs.safetensors"), &case.join("module.json"), &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", stderr(&o));
    assert!(stdout.contains("grad.weight_hh_l2_reverse") && stdout.contains(" 0 failed"), "{stdout}");
    assert!(out.exists());
}

#[test]
fn unknown_module_type_is_reported() {
    let case = fixture("gru_l1");
    let config = temp("type").join("module.json");
    std::fs::write(&config, r#"{"type": "Mamba", "input_size": 3, "hidden_size": 4}"#).unwrap();
    let o = forward(&case, &case.join("inputs.safetensors"), &config, &temp("type").join("o.safetensors"));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("unknown module type \"Mamba\"") && err.contains("module.json"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn integer_input_and_missing_input_are_reported() {
    let case = fixture("gru_l1");
    let dir = temp("inputs");
    let device = candle_core::Device::Cpu;
    let int_input = candle_core::Tensor::zeros((5, 3, 4), candle_core::DType::I64, &device).unwrap();
    let cases = [
        ("int.safetensors", vec![("input".to_string(), int_input)], "expected f32 or f64, found I64"),
        (
            "none.safetensors",
            vec![("h0".to_string(), candle_core::Tensor::zeros(3, candle_core::DType::F32, &device).unwrap())],
            "missing tensor `input`",
        ),
    ];
    for (file, tensors, expected) in cases {
        let path = dir.join(file);
        seqmodels::save_state_dict(&tensors, "", &path).unwrap();
        let o = forward(&case, &path, &case.join("module.json"), &dir.join("o.safetensors"));
        assert!(!o.status.success());
        assert!(stderr(&o).contains(expected), "{file}: {}", stderr(&o));
    }
}

#[test]
fn truncated_weights_are_reported() {
    let case = fixture("gru_l1");
    let dir = temp("trunc");
    let bytes = std::fs::read(case.join("weights.safetensors")).unwrap();
    let weights = dir.join("weights.safetensors");
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let o = seqlm(&[
        "forward",
        "--config",
        &s(&case.join("module.json")),
        "--weights",
        &s(&weights),
        "--inputs",
        &s(&case.join("inputs.safetensors")),
        "--out",
        &s(&dir.join("o.safetensors")),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("--weights") && err.contains("weights.safetensors"), "{err}");
}

#[test]
fn init_writes_loadable_pytorch_names() {
    let dir = temp("init");
    let config = dir.join("module.json");
    std::fs::write(&config, r#"{"type": "LSTM", "input_size": 3, "hidden_size": 4, "num_layers": 2, "bidirectional": true, "proj_size": 2}"#).unwrap();
    let out = dir.join("sd.safetensors");
    let o = seqlm(&["init", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sd = seqmodels::state_dict::read_safetensors(&out).unwrap();
    assert_eq!(sd.len(), 20);
    assert_eq!(sd["weight_hh_l1_reverse"].dims(), &[16, 2]);
    assert_eq!(sd["weight_ih_l1"].dims(), &[16, 4]);
    assert_eq!(sd["weight_hr_l0"].dims(), &[2, 4]);
}

/// The inputs of a fixture with some tensors renamed (`Some(new)`) or dropped (`None`), saved
/// under `dir`.
fn edited_inputs(case: &Path, dir: &Path, edits: &[(&str, Option<&str>)]) -> PathBuf {
    let mut tensors = seqmodels::state_dict::read_safetensors(case.join("inputs.safetensors")).unwrap();
    for (name, new_name) in edits {
        let t = tensors.remove(*name).unwrap_or_else(|| panic!("the fixture has `{name}`"));
        if let Some(new_name) = new_name {
            tensors.insert(new_name.to_string(), t);
        }
    }
    let path = dir.join("edited.safetensors");
    let named: Vec<_> = tensors.into_iter().collect();
    seqmodels::save_state_dict(&named, "", &path).unwrap();
    path
}

#[test]
fn an_unknown_input_tensor_is_refused_with_the_allowed_names() {
    let case = fixture("gru_l1");
    let dir = temp("misspelt");
    let inputs = edited_inputs(&case, &dir, &[("grad_output", Some("grad_ouptut"))]);
    let o = forward(&case, &inputs, &case.join("module.json"), &dir.join("o.safetensors"));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("unknown tensor `grad_ouptut`"), "{err}");
    assert!(err.contains("input, h0, lengths, grad_output, grad_h_n"), "{err}");
}

#[test]
fn an_lstm_needs_h0_and_c0_together() {
    let case = fixture("lstm_l1_h0");
    let dir = temp("h0-only");
    for (dropped, given) in [("c0", "h0"), ("h0", "c0")] {
        let inputs = edited_inputs(&case, &dir, &[(dropped, None)]);
        let o = forward(&case, &inputs, &case.join("module.json"), &dir.join("o.safetensors"));
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains(&format!("{given} was given without {dropped}")), "{err}");
    }
    let cell = fixture("lstmcell_hx");
    let inputs = edited_inputs(&cell, &dir, &[("cx", None)]);
    let o = forward(&cell, &inputs, &cell.join("module.json"), &dir.join("o.safetensors"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("hx was given without cx"), "{}", stderr(&o));
}

#[test]
fn an_unknown_module_json_key_is_refused_with_the_allowed_keys() {
    let case = fixture("gru_l1");
    let dir = temp("key");
    let config = dir.join("module.json");
    std::fs::write(&config, r#"{"type": "GRU", "input_size": 4, "hidden_size": 5, "num_layer": 2}"#).unwrap();
    let o = forward(&case, &case.join("inputs.safetensors"), &config, &dir.join("o.safetensors"));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("unknown field `num_layer`") && err.contains("`num_layers`"), "{err}");
}
