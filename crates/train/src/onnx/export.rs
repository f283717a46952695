//! Writing recurrent layers and language models as ONNX graphs.
//!
//! Each layer becomes one ONNX `LSTM`, `GRU` (`linear_before_reset = 1`) or `RNN` node (both
//! directions in one node); layers are chained through a transpose and a reshape that turn
//! ONNX's `Y` (T, D, N, H) into PyTorch's (T, N, D*H). The stacked initial states
//! (L*D, N, H) are sliced per layer and the final states concatenated back, so the graph's
//! states have PyTorch's layout. `batch_first` is a transpose at the input and the output
//! rather than the operators' `layout` attribute, which onnxruntime's CPU kernels refuse.

use std::collections::HashMap;

use candle_core::Tensor;
use seqmodels::{CellKind, RnnConfig};

use super::error::{OnnxError, Result};
use super::gates::to_onnx;
use super::proto::{
    attribute_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use super::tensor::{float_tensor, int64_tensor};
use crate::model::LanguageModel;

/// The ONNX operator-set version of exported graphs.
pub const OPSET: i64 = 17;
/// The ONNX IR (file format) version of exported graphs (the one that goes with opset 17).
pub const IR_VERSION: i64 = 8;

/// Options of [`export_module`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleExportOptions {
    /// Add a `sequence_lens` input (int32, one length per sequence): PyTorch's packed-sequence
    /// semantics (outputs zero past each sequence's end, the final state taken at its last step).
    pub lengths: bool,
}

/// A recurrent module (`nn.RNN`, `nn.LSTM`, `nn.GRU` as `cfg` describes it, with PyTorch-named
/// `params`) as an ONNX model.
///
/// Inputs: `input` (T, N, I), or (N, T, I) with `batch_first`; `h0` (L*D, N, H) and, for LSTM,
/// `c0`; `sequence_lens` (N) with [`ModuleExportOptions::lengths`]. Outputs: `output`
/// (T, N, D*H) or (N, T, D*H), `h_n` and, for LSTM, `c_n`: PyTorch's `module(input, h0)` in
/// evaluation mode. An LSTM with `proj_size` cannot be expressed and is an error.
pub fn export_module(
    cfg: &RnnConfig,
    params: &HashMap<String, Tensor>,
    options: ModuleExportOptions,
) -> Result<ModelProto> {
    check_expressible(cfg)?;
    let mut g = GraphBuilder::default();
    let input_dims = if cfg.batch_first { ["batch", "sequence"] } else { ["sequence", "batch"] };
    g.input("input", data_type::FLOAT, &[input_dims[0].into(), input_dims[1].into(), cfg.input_size.into()]);
    let state_dims: [Dim; 3] = [(cfg.num_layers * cfg.num_directions()).into(), "batch".into(), cfg.hidden_size.into()];
    g.input("h0", data_type::FLOAT, &state_dims);
    let lstm = cfg.kind == CellKind::Lstm;
    if lstm {
        g.input("c0", data_type::FLOAT, &state_dims);
    }
    if options.lengths {
        g.input("sequence_lens", data_type::INT32, &["batch".into()]);
    }
    let x = if cfg.batch_first { g.transpose("input", &[1, 0, 2]) } else { "input".to_string() };
    let y = if cfg.batch_first { "output_time_major" } else { "output" };
    let io = LayerIo {
        x: &x,
        h0: "h0",
        c0: lstm.then_some("c0"),
        lengths: options.lengths.then_some("sequence_lens"),
        y,
        h_n: "h_n",
        c_n: lstm.then_some("c_n"),
    };
    recurrent_layers(&mut g, cfg, params, "", &io)?;
    if cfg.batch_first {
        g.node("Transpose", &[y], &["output"], vec![ints("perm", &[1, 0, 2])]);
    }
    let output_size = cfg.num_directions() * cfg.hidden_size;
    g.output("output", data_type::FLOAT, &[input_dims[0].into(), input_dims[1].into(), output_size.into()]);
    g.output("h_n", data_type::FLOAT, &state_dims);
    if lstm {
        g.output("c_n", data_type::FLOAT, &state_dims);
    }
    Ok(g.finish(cfg.kind.layer_name()))
}

/// A language model as an ONNX model, with the recurrent state as explicit inputs and outputs
/// so that a runtime can carry it across calls.
///
/// Inputs: `tokens` (N, T) int64; `h0` (L*D, N, H) and, for LSTM, `c0`. Outputs: `logits`
/// (T*N, V), row `t*N + n` for sequence `n` at step `t` (as [`LanguageModel::forward`]
/// returns them); `h_n` and, for LSTM, `c_n`. Evaluation mode (no dropout). The embedding is a
/// `Gather`, one-hot input a `OneHot`, the decoder a `Gemm`; with tied weights the embedding and
/// the decoder read one initializer.
pub fn export_language_model(model: &LanguageModel) -> Result<ModelProto> {
    let cfg = model.config();
    let rnn = &cfg.rnn;
    check_expressible(rnn)?;
    let params: HashMap<String, Tensor> = model.named_parameters().into_iter().collect();
    let mut g = GraphBuilder::default();
    g.input("tokens", data_type::INT64, &["batch".into(), "sequence".into()]);
    let state_dims: [Dim; 3] = [(rnn.num_layers * rnn.num_directions()).into(), "batch".into(), rnn.hidden_size.into()];
    g.input("h0", data_type::FLOAT, &state_dims);
    let lstm = rnn.kind == CellKind::Lstm;
    if lstm {
        g.input("c0", data_type::FLOAT, &state_dims);
    }
    let time_major = g.transpose("tokens", &[1, 0]);
    let x = "rnn_input";
    match cfg.embed {
        Some(_) => {
            let weight = g.initializer("embedding.weight", &params["embedding.weight"])?;
            g.node("Gather", &[&weight, &time_major], &[x], vec![int("axis", 0)]);
        }
        None => {
            let depth = g.ints("vocab_size", &[cfg.vocab_size as i64]);
            let values = g.initializer("one_hot_values", &Tensor::new(&[0f32, 1.], &candle_core::Device::Cpu)?)?;
            g.node("OneHot", &[&time_major, &depth, &values], &[x], vec![int("axis", -1)]);
        }
    }
    let io = LayerIo {
        x,
        h0: "h0",
        c0: lstm.then_some("c0"),
        lengths: None,
        y: "rnn_output",
        h_n: "h_n",
        c_n: lstm.then_some("c_n"),
    };
    let rnn_params: HashMap<String, Tensor> =
        params.iter().filter_map(|(k, v)| k.strip_prefix("rnn.").map(|n| (n.to_string(), v.clone()))).collect();
    recurrent_layers(&mut g, rnn, &rnn_params, "rnn.", &io)?;
    let rows_shape = g.ints("decoder_rows_shape", &[-1, cfg.decoder_input_size() as i64]);
    g.node("Reshape", &["rnn_output", &rows_shape], &["decoder_input"], vec![]);
    let weight = if cfg.tie_weights {
        "embedding.weight".to_string()
    } else {
        g.initializer("decoder.weight", &params["decoder.weight"])?
    };
    let bias = g.initializer("decoder.bias", &params["decoder.bias"])?;
    g.node("Gemm", &["decoder_input", &weight, &bias], &["logits"], vec![int("transB", 1)]);
    g.output("logits", data_type::FLOAT, &["rows".into(), cfg.vocab_size.into()]);
    g.output("h_n", data_type::FLOAT, &state_dims);
    if lstm {
        g.output("c_n", data_type::FLOAT, &state_dims);
    }
    Ok(g.finish("seqlm language model"))
}

/// Refuses what ONNX's recurrent operators cannot compute.
fn check_expressible(cfg: &RnnConfig) -> Result<()> {
    cfg.validate()?;
    if cfg.proj_size > 0 {
        return Err(OnnxError::Inexpressible(format!(
            "an LSTM with proj_size = {} (ONNX's LSTM operator has no projection of h); expected proj_size = 0",
            cfg.proj_size
        )));
    }
    Ok(())
}

/// Graph values the recurrent layers read and write.
struct LayerIo<'a> {
    /// The time-major input (T, N, I).
    x: &'a str,
    /// Stacked initial states (L*D, N, H).
    h0: &'a str,
    c0: Option<&'a str>,
    /// Sequence lengths (int32, N), if any.
    lengths: Option<&'a str>,
    /// Names to give the time-major output (T, N, D*H) and the stacked final states.
    y: &'a str,
    h_n: &'a str,
    c_n: Option<&'a str>,
}

/// Appends the nodes of `cfg`'s layers; initializers are named `{prefix}W_l{k}` and so on.
fn recurrent_layers(
    g: &mut GraphBuilder,
    cfg: &RnnConfig,
    params: &HashMap<String, Tensor>,
    prefix: &str,
    io: &LayerIo,
) -> Result<()> {
    let d = cfg.num_directions();
    let mut x = io.x.to_string();
    let (mut h_finals, mut c_finals) = (Vec::new(), Vec::new());
    for layer in 0..cfg.num_layers {
        let weights = to_onnx(cfg, params, layer)?;
        let w = g.initializer(&format!("{prefix}W_l{layer}"), &weights.w)?;
        let r = g.initializer(&format!("{prefix}R_l{layer}"), &weights.r)?;
        let b = match &weights.b {
            Some(b) => g.initializer(&format!("{prefix}B_l{layer}"), b)?,
            None => String::new(),
        };
        let h_init = g.slice_layer(io.h0, layer, d);
        let mut inputs = vec![x.clone(), w, r, b, io.lengths.unwrap_or("").to_string(), h_init];
        let mut outputs = vec![format!("Y_l{layer}"), format!("Y_h_l{layer}")];
        if let Some(c0) = io.c0 {
            inputs.push(g.slice_layer(c0, layer, d));
            outputs.push(format!("Y_c_l{layer}"));
        }
        let direction = if cfg.bidirectional { "bidirectional" } else { "forward" };
        let mut attrs = vec![int("hidden_size", cfg.hidden_size as i64), string("direction", direction)];
        match cfg.kind {
            CellKind::Gru => attrs.push(int("linear_before_reset", 1)),
            CellKind::RnnRelu => attrs.push(strings("activations", &vec!["Relu"; d])),
            CellKind::RnnTanh => attrs.push(strings("activations", &vec!["Tanh"; d])),
            CellKind::Lstm => {}
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let outputs_ref: Vec<&str> = outputs.iter().map(String::as_str).collect();
        g.node(cfg.kind.layer_name(), &inputs, &outputs_ref, attrs);
        // Y (T, D, N, H) -> (T, N, D, H) -> (T, N, D*H), PyTorch's layout of the directions.
        let transposed = g.transpose(&outputs[0], &[0, 2, 1, 3]);
        let shape = g.ints("merge_directions_shape", &[0, 0, -1]);
        x = if layer + 1 == cfg.num_layers { io.y.to_string() } else { format!("X_l{}", layer + 1) };
        g.node("Reshape", &[&transposed, &shape], &[&x], vec![]);
        h_finals.push(outputs[1].clone());
        if let Some(c) = outputs.get(2) {
            c_finals.push(c.clone());
        }
    }
    let h: Vec<&str> = h_finals.iter().map(String::as_str).collect();
    g.node("Concat", &h, &[io.h_n], vec![int("axis", 0)]);
    if let Some(c_n) = io.c_n {
        let c: Vec<&str> = c_finals.iter().map(String::as_str).collect();
        g.node("Concat", &c, &[c_n], vec![int("axis", 0)]);
    }
    Ok(())
}

/// A dimension of a graph input or output: fixed or symbolic.
enum Dim {
    Fixed(usize),
    Named(&'static str),
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::Fixed(n)
    }
}

impl From<&'static str> for Dim {
    fn from(name: &'static str) -> Self {
        Dim::Named(name)
    }
}

/// Accumulates nodes, initializers, inputs and outputs, handing out unique value names.
#[derive(Default)]
struct GraphBuilder {
    graph: GraphProto,
    /// Integer constants already added, by value, so each is stored once.
    int_constants: HashMap<Vec<i64>, String>,
    next_id: usize,
}

impl GraphBuilder {
    fn fresh(&mut self, stem: &str) -> String {
        self.next_id += 1;
        format!("{stem}_{}", self.next_id)
    }

    fn initializer(&mut self, name: &str, t: &Tensor) -> Result<String> {
        self.graph.initializer.push(float_tensor(name, t)?);
        Ok(name.to_string())
    }

    /// A 1-D int64 initializer (shared with any earlier one of the same values).
    fn ints(&mut self, stem: &str, values: &[i64]) -> String {
        if let Some(name) = self.int_constants.get(values) {
            return name.clone();
        }
        let name = self.fresh(stem);
        self.graph.initializer.push(int64_tensor(&name, &[values.len()], values));
        self.int_constants.insert(values.to_vec(), name.clone());
        name
    }

    fn node(&mut self, op_type: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) {
        let name = format!("{op_type}_{}", self.graph.node.len());
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
    }

    fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        let out = self.fresh(&format!("{x}_transposed"));
        self.node("Transpose", &[x], &[&out], vec![ints("perm", perm)]);
        out
    }

    /// Rows `layer*d .. (layer+1)*d` of a stacked state; the state itself for a single layer.
    fn slice_layer(&mut self, state: &str, layer: usize, d: usize) -> String {
        let starts = self.ints("slice_start", &[(layer * d) as i64]);
        let ends = self.ints("slice_end", &[((layer + 1) * d) as i64]);
        let axes = self.ints("slice_axes", &[0]);
        let out = format!("{state}_l{layer}");
        self.node("Slice", &[state, &starts, &ends, &axes], &[&out], vec![]);
        out
    }

    fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Dimension { dim_value: Some(*n as i64), dim_param: None },
                Dim::Named(s) => Dimension { dim_value: None, dim_param: Some(s.to_string()) },
            })
            .collect();
        let tensor_type = TensorTypeProto { elem_type, shape: Some(TensorShapeProto { dim }) };
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto { tensor_type: Some(tensor_type) }),
            ..Default::default()
        }
    }

    fn input(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.graph.input.push(Self::value_info(name, elem_type, dims));
    }

    fn output(&mut self, name: &str, elem_type: i32, dims: &[Dim]) {
        self.graph.output.push(Self::value_info(name, elem_type, dims));
    }

    fn finish(mut self, name: &str) -> ModelProto {
        self.graph.name = name.into();
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "seqlm".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::INT, i, ..Default::default() }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::INTS, ints: values.to_vec(), ..Default::default() }
}

fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::STRING, s: s.as_bytes().to_vec(), ..Default::default() }
}

fn strings(name: &str, values: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRINGS,
        strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}
