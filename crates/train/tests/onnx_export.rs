//! ONNX export: exported graphs read back with the expected structure (operators, attributes,
//! gate order, bias split), import back to the same configuration and weights, and refuse what
//! ONNX cannot express. Their numbers are checked against onnxruntime by scripts/onnx_check.py.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use prost::Message;
use seqmodels::init::seeded_parameters;
use seqmodels::{CellKind, RnnConfig};
use seqmodels_train::model::{init_parameters, InitScheme, LanguageModel, LmConfig};
use seqmodels_train::onnx::proto::{ModelProto, NodeProto, TensorProto};
use seqmodels_train::onnx::tensor::to_f32;
use seqmodels_train::onnx::{
    export_language_model, export_module, import, read_model, Imported, ModuleExportOptions, OnnxError,
};

fn params_of(cfg: &RnnConfig, seed: u64) -> HashMap<String, Tensor> {
    seeded_parameters(&cfg.parameter_shapes(), cfg.hidden_size, seed, DType::F32, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect()
}

/// Encodes and decodes, as writing the file and reading it back does.
fn through_bytes(model: &ModelProto) -> ModelProto {
    ModelProto::decode(model.encode_to_vec().as_slice()).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn initializer<'a>(model: &'a ModelProto, name: &str) -> &'a TensorProto {
    let graph = model.graph.as_ref().unwrap();
    graph.initializer.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no initializer {name}"))
}

fn nodes<'a>(model: &'a ModelProto, op: &str) -> Vec<&'a NodeProto> {
    model.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == op).collect()
}

fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn configs() -> Vec<RnnConfig> {
    let mut out = Vec::new();
    for kind in [CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh, CellKind::RnnRelu] {
        for (layers, bidirectional, batch_first, bias) in
            [(1, false, false, true), (2, true, true, true), (3, true, false, false), (2, false, true, false)]
        {
            out.push(RnnConfig { num_layers: layers, bidirectional, batch_first, bias, ..RnnConfig::new(kind, 3, 4) });
        }
    }
    out
}

#[test]
fn exported_modules_import_back_to_the_same_module() {
    for (i, cfg) in configs().into_iter().enumerate() {
        let params = params_of(&cfg, i as u64);
        for lengths in [false, true] {
            let model = through_bytes(&export_module(&cfg, &params, ModuleExportOptions { lengths }).unwrap());
            let Imported::Module(back) = import(&model).unwrap() else { panic!("{cfg:?}: not a module") };
            assert_eq!(back.config, cfg);
            let expected: Vec<String> = cfg.parameter_shapes().into_iter().map(|(n, _)| n).collect();
            assert_eq!(back.parameters.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), expected);
            for (name, t) in &back.parameters {
                assert_eq!(values(t), values(&params[name]), "{cfg:?}: {name}");
            }
            let inputs: Vec<&str> = model.graph.as_ref().unwrap().input.iter().map(|v| v.name.as_str()).collect();
            let mut want = vec!["input", "h0"];
            if cfg.kind == CellKind::Lstm {
                want.push("c0");
            }
            if lengths {
                want.push("sequence_lens");
            }
            assert_eq!(inputs, want);
        }
    }
}

#[test]
fn exported_layers_use_onnx_gate_order_and_split_biases() {
    let h = 4;
    let block = |t: &Tensor, g: usize| values(&t.narrow(0, g * h, h).unwrap());
    // LSTM: ONNX stacks i, o, f, c; PyTorch i, f, g, o. The reverse direction of layer 1.
    let cfg = RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::lstm(3, h) };
    let params = params_of(&cfg, 7);
    let model = export_module(&cfg, &params, ModuleExportOptions::default()).unwrap();
    let w = to_f32(initializer(&model, "W_l1")).unwrap().get(1).unwrap();
    let b = to_f32(initializer(&model, "B_l1")).unwrap().get(1).unwrap();
    let (w_ih, b_ih, b_hh) =
        (&params["weight_ih_l1_reverse"], &params["bias_ih_l1_reverse"], &params["bias_hh_l1_reverse"]);
    for (onnx_gate, torch_gate) in [(0, 0), (1, 3), (2, 1), (3, 2)] {
        assert_eq!(block(&w, onnx_gate), block(w_ih, torch_gate));
        assert_eq!(block(&b, onnx_gate), block(b_ih, torch_gate));
        assert_eq!(block(&b, 4 + onnx_gate), block(b_hh, torch_gate));
    }
    let lstm = nodes(&model, "LSTM");
    assert_eq!(lstm.len(), 2);
    assert_eq!(int_attr(lstm[0], "hidden_size"), Some(h as i64));
    let direction = lstm[1].attribute.iter().find(|a| a.name == "direction").unwrap();
    assert_eq!(direction.s, b"bidirectional");

    // GRU: ONNX stacks z, r, h; PyTorch r, z, n; linear_before_reset = 1 is PyTorch's formula.
    let cfg = RnnConfig { bias: true, ..RnnConfig::gru(3, h) };
    let params = params_of(&cfg, 8);
    let model = export_module(&cfg, &params, ModuleExportOptions::default()).unwrap();
    let r = to_f32(initializer(&model, "R_l0")).unwrap().get(0).unwrap();
    for (onnx_gate, torch_gate) in [(0, 1), (1, 0), (2, 2)] {
        assert_eq!(block(&r, onnx_gate), block(&params["weight_hh_l0"], torch_gate));
    }
    assert_eq!(int_attr(nodes(&model, "GRU")[0], "linear_before_reset"), Some(1));

    // RNN with relu names its activation; without biases there is no B input.
    let cfg = RnnConfig { kind: CellKind::RnnRelu, bias: false, ..RnnConfig::rnn(3, h) };
    let model = export_module(&cfg, &params_of(&cfg, 9), ModuleExportOptions::default()).unwrap();
    let rnn = nodes(&model, "RNN")[0];
    assert_eq!(rnn.input[3], "");
    let activations = rnn.attribute.iter().find(|a| a.name == "activations").unwrap();
    assert_eq!(activations.strings, vec![b"Relu".to_vec()]);
}

#[test]
fn exported_language_models_import_back() {
    let lm =
        |vocab_size, embed, rnn: RnnConfig, tie_weights| LmConfig { vocab_size, embed, rnn, dropout: 0.0, tie_weights };
    let cases = [
        lm(11, Some(6), RnnConfig { num_layers: 2, ..RnnConfig::lstm(6, 5) }, false),
        lm(11, Some(8), RnnConfig { bidirectional: true, ..RnnConfig::gru(8, 4) }, true),
        lm(9, None, RnnConfig { kind: CellKind::RnnRelu, batch_first: true, ..RnnConfig::rnn(9, 5) }, false),
    ];
    for (seed, cfg) in cases.into_iter().enumerate() {
        let params = init_parameters(&cfg, InitScheme::Pytorch, seed as u64, DType::F32, &Device::Cpu).unwrap();
        let (model, _) = LanguageModel::from_parameters(cfg.clone(), params.into_iter().collect()).unwrap();
        let onnx = through_bytes(&export_language_model(&model).unwrap());
        let ops: Vec<&str> = onnx.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.as_str()).collect();
        assert!(ops.contains(&if cfg.embed.is_some() { "Gather" } else { "OneHot" }), "{ops:?}");
        assert_eq!(ops.last(), Some(&"Gemm"), "{ops:?}");
        assert_eq!(nodes(&onnx, "Gemm").len(), 1);
        let Imported::LanguageModel(back) = import(&onnx).unwrap() else { panic!("not a language model") };
        // The graph does not record batch_first: the language model's results do not depend on it.
        assert_eq!(back.config, LmConfig { rnn: RnnConfig { batch_first: false, ..cfg.rnn.clone() }, ..cfg.clone() });
        let ours: HashMap<String, Tensor> = model.named_parameters().into_iter().collect();
        assert_eq!(back.parameters.len(), ours.len());
        for (name, t) in &back.parameters {
            assert_eq!(values(t), values(&ours[name]), "{name}");
        }
        if cfg.tie_weights {
            let graph = onnx.graph.as_ref().unwrap();
            assert!(graph.initializer.iter().all(|t| t.name != "decoder.weight"), "tied weights are stored once");
        }
    }
}

#[test]
fn pytorch_fixtures_export_back_to_the_same_weights() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx");
    for case in ["lstm_l2_bidir_batchfirst_h0", "gru_l3_bidir", "rnn_relu_l2_bidir_nobias_h0"] {
        let Imported::Module(m) = import(&read_model(&dir.join(format!("{case}.onnx"))).unwrap()).unwrap() else {
            panic!("{case}: not a module")
        };
        let params: HashMap<_, _> = m.parameters.iter().cloned().collect();
        let ours = export_module(&m.config, &params, ModuleExportOptions::default()).unwrap();
        let Imported::Module(back) = import(&ours).unwrap() else { panic!("{case}: not a module") };
        assert_eq!(back.config, m.config);
        for ((n, a), (_, b)) in back.parameters.iter().zip(&m.parameters) {
            assert_eq!(values(a), values(b), "{case}: {n}");
        }
    }
}

#[test]
fn lstm_projection_is_a_clear_error() {
    let cfg = RnnConfig { proj_size: 2, ..RnnConfig::lstm(3, 4) };
    let err = export_module(&cfg, &params_of(&cfg, 0), ModuleExportOptions::default()).unwrap_err();
    assert!(matches!(err, OnnxError::Inexpressible(_)), "{err}");
    assert!(err.to_string().contains("proj_size = 2"), "{err}");
}

#[test]
fn unsupported_nodes_are_named() {
    let cfg = RnnConfig::gru(3, 4);
    let mut model = export_module(&cfg, &params_of(&cfg, 0), ModuleExportOptions::default()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    graph.node.insert(
        0,
        NodeProto {
            name: "my_relu".into(),
            op_type: "Relu".into(),
            input: vec!["input".into()],
            output: vec!["relu_out".into()],
            ..Default::default()
        },
    );
    let err = import(&model).unwrap_err().to_string();
    assert!(err.contains("my_relu") && err.contains("Relu"), "{err}");

    // A GRU with the reset gate applied before the recurrent product is another model.
    let mut model = export_module(&cfg, &params_of(&cfg, 0), ModuleExportOptions::default()).unwrap();
    let gru = model.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type == "GRU").unwrap();
    gru.attribute.iter_mut().find(|a| a.name == "linear_before_reset").unwrap().i = 0;
    let err = import(&model).unwrap_err().to_string();
    assert!(err.contains("linear_before_reset"), "{err}");

    let err = import(&ModelProto::default()).unwrap_err().to_string();
    assert!(err.contains("no graph"), "{err}");
}
