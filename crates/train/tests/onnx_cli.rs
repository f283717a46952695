//! `seqlm import` and `seqlm export` as a user runs them, on the PyTorch-exported fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn seqlm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqlm")).args(args).output().expect("seqlm runs")
}

fn fixture(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
    dir.join(name).to_str().unwrap().to_string()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqlm-onnx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "seqlm failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn import_writes_module_json_and_pytorch_named_weights() {
    let out = temp("module");
    let dir = out.to_str().unwrap();
    ok(&seqlm(&["import", "--onnx", &fixture("lstm_l2_bidir_batchfirst_h0.onnx"), "--out", dir]));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("module.json")).unwrap()).unwrap();
    assert_eq!(json["type"], "LSTM");
    assert_eq!((json["num_layers"].as_u64(), json["bidirectional"].as_bool()), (Some(2), Some(true)));
    assert_eq!(json["batch_first"], true);
    let weights = seqmodels::state_dict::read_safetensors(out.join("model.safetensors")).unwrap();
    assert!(weights.contains_key("weight_hh_l1_reverse") && weights.contains_key("bias_ih_l0"));

    // The module exports back to ONNX from module.json and the weights.
    let onnx = out.join("again.onnx");
    let weights = out.join("model.safetensors");
    let config = out.join("module.json");
    let (c, w, o) = (config.to_str().unwrap(), weights.to_str().unwrap(), onnx.to_str().unwrap());
    ok(&seqlm(&["export", "--config", c, "--weights", w, "--onnx", o, "--lengths"]));
    assert!(std::fs::metadata(&onnx).unwrap().len() > 0);
}

#[test]
fn imported_language_model_is_a_checkpoint() {
    let out = temp("lm");
    let vocab = out.join("vocab.json");
    let tokens: Vec<String> = std::iter::once("<unk>".to_string()).chain("abcdef".chars().map(String::from)).collect();
    std::fs::write(&vocab, serde_json::json!({"unk_token": "<unk>", "tokens": tokens}).to_string()).unwrap();
    let ckpt = out.join("ckpt");
    let (v, c) = (vocab.to_str().unwrap(), ckpt.to_str().unwrap());
    let onnx = fixture("lm_embed_lstm_l2_state.onnx");

    let refused = seqlm(&["import", "--onnx", &onnx, "--out", c]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--vocab"));

    ok(&seqlm(&["import", "--onnx", &onnx, "--vocab", v, "--clean", "none", "--out", c]));
    let text = out.join("text.txt");
    std::fs::write(&text, "abcfedcab").unwrap();
    let eval = ok(&seqlm(&["eval", "--checkpoint", c, "--text", text.to_str().unwrap(), "--json"]));
    let report: serde_json::Value = serde_json::from_str(eval.trim()).unwrap();
    assert!(report["perplexity"].as_f64().unwrap().is_finite());
    ok(&seqlm(&["generate", "--checkpoint", c, "--prefix", "abc", "--len", "5"]));

    let exported = out.join("lm.onnx");
    ok(&seqlm(&["export", "--checkpoint", c, "--onnx", exported.to_str().unwrap()]));
    let model = seqmodels_train::onnx::read_model(&exported).unwrap();
    assert!(matches!(
        seqmodels_train::onnx::import(&model).unwrap(),
        seqmodels_train::onnx::Imported::LanguageModel(_)
    ));
}
