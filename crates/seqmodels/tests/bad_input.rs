//! Bad input gets an error that names the problem, never a panic.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use seqmodels::init::seeded_parameters;
use seqmodels::state_dict::{read_safetensors, select_parameters};
use seqmodels::{
    load_state_dict, save_state_dict, Cell, CellConfig, Error, ForwardOptions, LoadOptions, ModuleSpec, RnnBase,
    RnnConfig, StackedState, LSTM,
};

fn layer(cfg: RnnConfig) -> RnnBase {
    let varmap = VarMap::new();
    RnnBase::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap()
}

fn zeros(dims: &[usize]) -> Tensor {
    Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap()
}

fn message<T: std::fmt::Debug>(r: seqmodels::Result<T>) -> String {
    r.expect_err("bad input must be refused").to_string()
}

#[test]
fn wrong_input_rank_is_refused() {
    let lstm = layer(RnnConfig::lstm(3, 4));
    let msg = message(lstm.forward(&zeros(&[2, 2, 2, 3]), None, ForwardOptions::default()));
    assert!(msg.contains("input") && msg.contains("[2, 2, 2, 3]") && msg.contains("(L, N, input_size)"), "{msg}");
}

#[test]
fn wrong_feature_size_is_refused() {
    let gru = layer(RnnConfig::gru(3, 4));
    let msg = message(gru.forward(&zeros(&[5, 2, 7]), None, ForwardOptions::default()));
    assert!(msg.contains("input_size = 3") && msg.contains("[5, 2, 7]"), "{msg}");
}

#[test]
fn wrong_initial_state_shapes_are_refused() {
    let lstm = layer(RnnConfig { num_layers: 2, ..RnnConfig::lstm(3, 4) });
    let x = zeros(&[5, 2, 3]);
    let state = |h: &[usize], c: Option<&[usize]>| StackedState { h: zeros(h), c: c.map(zeros) };
    let msg = message(lstm.forward(&x, Some(&state(&[1, 2, 4], Some(&[2, 2, 4]))), ForwardOptions::default()));
    assert!(msg.starts_with("h0") && msg.contains("[2, 2, 4]") && msg.contains("[1, 2, 4]"), "{msg}");
    let msg = message(lstm.forward(&x, Some(&state(&[2, 2, 4], Some(&[2, 3, 4]))), ForwardOptions::default()));
    assert!(msg.starts_with("c0") && msg.contains("[2, 2, 4]") && msg.contains("[2, 3, 4]"), "{msg}");
    let gru = layer(RnnConfig::gru(3, 4));
    let msg = message(gru.forward(&x, Some(&state(&[1, 2, 4], Some(&[1, 2, 4]))), ForwardOptions::default()));
    assert!(msg.contains("c0") && msg.contains("GRU"), "{msg}");
}

#[test]
fn an_lstm_state_needs_both_h0_and_c0() {
    let lstm = layer(RnnConfig::lstm(3, 4));
    let x = zeros(&[5, 2, 3]);
    let only_h = StackedState { h: zeros(&[1, 2, 4]), c: None };
    let msg = message(lstm.forward(&x, Some(&only_h), ForwardOptions::default()));
    assert!(msg.contains("h0 was given without c0"), "{msg}");
    let msg = message(StackedState::from_parts(None, Some(&zeros(&[1, 2, 4]))));
    assert!(msg.contains("c0 was given without h0"), "{msg}");
    let varmap = VarMap::new();
    let cell = Cell::new(CellConfig::lstm(3, 4), VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let msg = message(cell.forward_state(&zeros(&[2, 3]), Some(&zeros(&[2, 4])), None));
    assert!(msg.contains("hx was given without cx"), "{msg}");
    let msg = message(cell.forward_state(&zeros(&[2, 3]), None, Some(&zeros(&[2, 4]))));
    assert!(msg.contains("cx was given without hx"), "{msg}");
}

#[test]
fn bad_lengths_are_refused() {
    let rnn = layer(RnnConfig::rnn(3, 4));
    let x = zeros(&[5, 2, 3]);
    let msg = message(rnn.forward(&x, None, ForwardOptions::default().with_lengths(&[0, 5])));
    assert!(msg.contains("lengths[0] = 0"), "{msg}");
    let msg = message(rnn.forward(&x, None, ForwardOptions::default().with_lengths(&[3, 6])));
    assert!(msg.contains("lengths[1] = 6") && msg.contains("sequence length 5"), "{msg}");
    let msg = message(rnn.forward(&x, None, ForwardOptions::default().with_lengths(&[3])));
    assert!(msg.contains("one length per batch element (2), found 1"), "{msg}");
}

#[test]
fn integer_input_is_refused() {
    let rnn = layer(RnnConfig::rnn(3, 4));
    let x = Tensor::zeros((5, 2, 3), DType::I64, &Device::Cpu).unwrap();
    let msg = message(rnn.forward(&x, None, ForwardOptions::default()));
    assert!(msg.contains("input") && msg.contains("I64"), "{msg}");
}

#[test]
fn bad_cell_inputs_are_refused() {
    let varmap = VarMap::new();
    let cell = Cell::new(CellConfig::lstm(3, 4), VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    let msg = message(cell.forward_state(&zeros(&[2, 5]), None, None));
    assert!(msg.contains("(N, 3)") && msg.contains("[2, 5]"), "{msg}");
    let msg = message(cell.forward_state(&zeros(&[2, 3]), Some(&zeros(&[3, 4])), None));
    assert!(msg.starts_with("hx") && msg.contains("[2, 4]"), "{msg}");
}

#[test]
fn invalid_configurations_are_refused() {
    let cases = [
        (r#"{"type": "Transformer", "input_size": 3, "hidden_size": 4}"#, "unknown module type \"Transformer\""),
        (r#"{"type": "LSTM", "input_size": 3, "hidden_size": 4, "proj_size": 4}"#, "proj_size must be smaller"),
        (r#"{"type": "GRU", "input_size": 3, "hidden_size": 4, "proj_size": 2}"#, "only supported for LSTM"),
        (r#"{"type": "RNN", "input_size": 3, "hidden_size": 4, "nonlinearity": "gelu"}"#, "unknown nonlinearity"),
        (r#"{"type": "LSTM", "input_size": 3, "hidden_size": 4, "nonlinearity": "relu"}"#, "only applies to RNN"),
        (r#"{"type": "LSTM", "input_size": 3, "hidden_size": 4, "dropout": 1.5}"#, "dropout must be"),
        (r#"{"type": "GRUCell", "input_size": 3, "hidden_size": 4, "num_layers": 2}"#, "`num_layers` does not apply"),
        (r#"{"type": "LSTM", "input_size": 3, "hidden_size": 0}"#, "hidden_size must be positive"),
        (r#"{"type": "LSTM", "input_size": 3, "hidden_size": 4, "layers": 2}"#, "unknown field `layers`"),
        (r#"{"type": "LSTM", "input_size": 3}"#, "missing field `hidden_size`"),
    ];
    for (json, expected) in cases {
        let msg = message(ModuleSpec::from_json(json));
        assert!(msg.contains(expected), "{json}: {msg}");
    }
}

fn write_lstm_weights(dir: &std::path::Path, prefix: &str) -> (std::path::PathBuf, Vec<(String, Vec<usize>)>) {
    let cfg = RnnConfig::lstm(3, 4);
    let shapes = cfg.parameter_shapes();
    let params = seeded_parameters(&shapes, 4, 1, DType::F32, &Device::Cpu).unwrap();
    let path = dir.join("sd.safetensors");
    save_state_dict(&params, prefix, &path).unwrap();
    (path, shapes)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("seqmodels-bad-input-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn missing_and_unexpected_keys_are_listed() {
    let dir = temp_dir("keys");
    let (path, _) = write_lstm_weights(&dir, "");
    // The file holds a 1-layer LSTM; ask for a 2-layer one without biases.
    let wanted = RnnConfig { num_layers: 2, bias: false, ..RnnConfig::lstm(3, 4) }.parameter_shapes();
    let err = load_state_dict(&path, &wanted, &LoadOptions::default(), DType::F32, &Device::Cpu).unwrap_err();
    match &err {
        Error::Keys { missing, unexpected } => {
            assert_eq!(missing, &["weight_ih_l1", "weight_hh_l1"]);
            assert_eq!(unexpected, &["bias_hh_l0", "bias_ih_l0"]);
        }
        other => panic!("expected a key error, found {other}"),
    }
    // Non-strict loading skips both lists.
    let loose = LoadOptions { strict: false, ..LoadOptions::default() };
    let got = load_state_dict(&path, &wanted, &loose, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(got.len(), 2);
}

#[test]
fn misshaped_key_names_key_and_shapes() {
    let dir = temp_dir("shape");
    let (path, _) = write_lstm_weights(&dir, "");
    let wanted = RnnConfig::lstm(5, 4).parameter_shapes();
    let msg =
        load_state_dict(&path, &wanted, &LoadOptions::default(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("weight_ih_l0") && msg.contains("[16, 5]") && msg.contains("[16, 3]"), "{msg}");
}

#[test]
fn prefix_selects_submodule_keys() {
    let dir = temp_dir("prefix");
    let (path, shapes) = write_lstm_weights(&dir, "rnn.");
    let msg =
        load_state_dict(&path, &shapes, &LoadOptions::default(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("rnn.weight_ih_l0"), "{msg}");
    let got = load_state_dict(&path, &shapes, &LoadOptions::with_prefix("rnn."), DType::F32, &Device::Cpu).unwrap();
    let lstm = LSTM::new(RnnConfig::lstm(3, 4), VarBuilder::from_tensors(got, DType::F32, &Device::Cpu)).unwrap();
    assert_eq!(lstm.named_parameters().len(), 4);
}

#[test]
fn truncated_and_corrupt_files_are_refused() {
    let dir = temp_dir("corrupt");
    let (path, shapes) = write_lstm_weights(&dir, "");
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let msg = load_state_dict(&truncated, &shapes, &LoadOptions::default(), DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("truncated.safetensors"), "{msg}");
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header").unwrap();
    let msg = read_safetensors(&corrupt).unwrap_err().to_string();
    assert!(msg.contains("corrupt.safetensors"), "{msg}");
    let msg = read_safetensors(dir.join("absent.safetensors")).unwrap_err().to_string();
    assert!(msg.contains("absent.safetensors"), "{msg}");
}

#[test]
fn float_tensors_are_converted_and_integer_ones_refused() {
    let shapes = RnnConfig::gru(2, 3).parameter_shapes();
    let params = seeded_parameters(&shapes, 3, 5, DType::F64, &Device::Cpu).unwrap();
    for dtype in [DType::F16, DType::BF16, DType::F64] {
        let file = params.iter().map(|(k, v)| (k.clone(), v.to_dtype(dtype).unwrap())).collect();
        let got = select_parameters(file, &shapes, &LoadOptions::default(), DType::F32, &Device::Cpu).unwrap();
        let (a, b) = (&got["weight_hh_l0"], &params[1].1.to_dtype(DType::F32).unwrap());
        let err: f32 = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(err < 1e-2, "{dtype:?} converted within its precision: {err}");
        assert_eq!(a.dtype(), DType::F32);
    }
    let mut file: std::collections::HashMap<_, _> = params.into_iter().collect();
    file.insert("bias_hh_l0".into(), Tensor::zeros(9, DType::I64, &Device::Cpu).unwrap());
    let msg =
        select_parameters(file, &shapes, &LoadOptions::default(), DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("bias_hh_l0") && msg.contains("I64"), "{msg}");
}
