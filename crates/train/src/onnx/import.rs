//! Reading ONNX graphs of recurrent models (as `torch.onnx.export` writes them, or as
//! [`super::export`] does) into this project's modules, under PyTorch's state-dict names.
//!
//! The importer looks for the nodes that carry weights: the recurrent `LSTM`, `GRU` and `RNN`
//! nodes (one per layer, in order), and for a language model an embedding (`Gather` from a
//! constant matrix) or one-hot input (`OneHot`) before them and a linear decoder (`Gemm`, or
//! `MatMul` then `Add`) after them. The shape bookkeeping around them (transposes, reshapes,
//! slices of the stacked states, concatenations, casts) is accepted as it is; any other
//! operator is an error that names the node.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use seqmodels::{CellKind, RnnConfig};

use super::error::{OnnxError, Result};
use super::gates::{from_onnx, OnnxLayerWeights};
use super::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use super::tensor::{dims, to_f32, to_i64};
use crate::model::LmConfig;

/// Operators that only move, reshape or select values (shapes, states, layouts).
const SHAPE_OPS: &[&str] = &[
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Reshape",
    "Flatten",
    "Concat",
    "Split",
    "Slice",
    "Shape",
    "Gather",
    "Constant",
    "ConstantOfShape",
    "Identity",
    "Cast",
    "Expand",
];

/// A recurrent module read from ONNX: `nn.RNN`, `nn.LSTM` or `nn.GRU`.
#[derive(Clone, Debug)]
pub struct ImportedModule {
    /// PyTorch's constructor arguments.
    pub config: RnnConfig,
    /// The state dict under PyTorch's names, in `state_dict` order.
    pub parameters: Vec<(String, Tensor)>,
}

/// A language model read from ONNX: embedding or one-hot input -> recurrent layers -> linear.
#[derive(Clone, Debug)]
pub struct ImportedLanguageModel {
    /// The model's configuration (no dropout: the graph is an inference graph).
    pub config: LmConfig,
    /// The state dict under the names of [`crate::model::LanguageModel`], in order.
    pub parameters: Vec<(String, Tensor)>,
}

/// What an ONNX graph holds.
#[derive(Clone, Debug)]
pub enum Imported {
    /// A lone recurrent module.
    Module(ImportedModule),
    /// A language model.
    LanguageModel(ImportedLanguageModel),
}

/// Reads the model in `model`: a lone recurrent module or a language model.
pub fn import(model: &ModelProto) -> Result<Imported> {
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::Malformed("the model has no graph".into()))?;
    let values = Values::new(graph)?;
    let parts = Parts::find(graph, &values)?;
    let (config, rnn_params) = recurrent(&parts.layers, &values)?;
    let has_input_layer = parts.embedding.is_some() || parts.one_hot.is_some();
    match (has_input_layer, &parts.decoder) {
        (false, None) => Ok(Imported::Module(ImportedModule { config, parameters: rnn_params })),
        (true, Some(decoder)) => language_model(config, rnn_params, &parts, decoder, &values),
        (true, None) => Err(OnnxError::Graph(
            "an embedding or one-hot input but no linear decoder after the recurrent layers: expected a lone \
             recurrent module or embedding -> recurrent layers -> linear"
                .into(),
        )),
        (false, Some(_)) => Err(OnnxError::Graph(
            "a linear decoder but no embedding (Gather from a weight matrix) or OneHot before the recurrent \
             layers: expected a lone recurrent module or embedding -> recurrent layers -> linear"
                .into(),
        )),
    }
}

/// The graph's constant values (initializers and `Constant` nodes) and the producer of every
/// value, looking through `Identity` nodes.
struct Values<'a> {
    constants: HashMap<&'a str, &'a TensorProto>,
    producers: HashMap<&'a str, &'a NodeProto>,
    aliases: HashMap<&'a str, &'a str>,
}

impl<'a> Values<'a> {
    fn new(graph: &'a GraphProto) -> Result<Self> {
        let mut constants: HashMap<&str, &TensorProto> =
            graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let (mut producers, mut aliases) = (HashMap::new(), HashMap::new());
        for node in &graph.node {
            for out in &node.output {
                producers.insert(out.as_str(), node);
            }
            match node.op_type.as_str() {
                "Constant" => {
                    if let (Some(out), Some(t)) =
                        (node.output.first(), attribute(node, "value").and_then(|a| a.t.as_ref()))
                    {
                        constants.insert(out.as_str(), t);
                    }
                }
                "Identity" => {
                    if let (Some(out), Some(inp)) = (node.output.first(), node.input.first()) {
                        aliases.insert(out.as_str(), inp.as_str());
                    }
                }
                _ => {}
            }
        }
        Ok(Values { constants, producers, aliases })
    }

    /// `name` with `Identity` nodes looked through.
    fn resolve<'b>(&'b self, mut name: &'b str) -> &'b str {
        while let Some(&next) = self.aliases.get(name) {
            name = next;
        }
        name
    }

    fn constant(&self, name: &str) -> Option<&'a TensorProto> {
        self.constants.get(self.resolve(name)).copied()
    }

    /// Input `index` of `node` as a float tensor; `None` when absent or empty.
    fn float_input(&self, node: &NodeProto, index: usize, what: &str) -> Result<Option<Tensor>> {
        let Some(name) = node.input.get(index).filter(|n| !n.is_empty()) else { return Ok(None) };
        match self.constant(name) {
            Some(t) => Ok(Some(to_f32(t)?)),
            None => Err(unsupported(
                node,
                format!(
                    "its {what} `{name}` is computed in the graph: expected a constant (export with constant folding)"
                ),
            )),
        }
    }

    /// The node that produces `name`, looking through `Identity` nodes.
    fn producer(&self, name: &str) -> Option<&'a NodeProto> {
        self.producers.get(self.resolve(name)).copied()
    }
}

/// The weight-carrying nodes of the graph.
struct Parts<'a> {
    layers: Vec<&'a NodeProto>,
    embedding: Option<Tensor>,
    one_hot: Option<&'a NodeProto>,
    decoder: Option<Decoder>,
}

/// A linear decoder: weight (V, F) and bias (V).
struct Decoder {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl<'a> Parts<'a> {
    fn find(graph: &'a GraphProto, values: &Values<'a>) -> Result<Self> {
        let mut parts = Parts { layers: Vec::new(), embedding: None, one_hot: None, decoder: None };
        for node in &graph.node {
            let before_layers = parts.layers.is_empty();
            match node.op_type.as_str() {
                "LSTM" | "GRU" | "RNN" => {
                    if parts.decoder.is_some() {
                        return Err(unsupported(node, "a recurrent layer after the linear decoder".into()));
                    }
                    parts.layers.push(node);
                }
                "Gather" if is_matrix(node.input.first().and_then(|n| values.constant(n))) => {
                    if !before_layers || parts.embedding.is_some() || parts.one_hot.is_some() {
                        return Err(unsupported(node, "expected one embedding, before the recurrent layers".into()));
                    }
                    parts.embedding = values.float_input(node, 0, "embedding matrix")?;
                }
                "OneHot" => {
                    if !before_layers || parts.embedding.is_some() || parts.one_hot.is_some() {
                        return Err(unsupported(
                            node,
                            "expected one one-hot input, before the recurrent layers".into(),
                        ));
                    }
                    parts.one_hot = Some(node);
                }
                "Gemm" | "MatMul" if !before_layers && parts.decoder.is_none() => {
                    parts.decoder = Some(decoder(node, values)?);
                }
                "Add" if parts.decoder.as_ref().is_some_and(|d| d.bias.is_none()) => {
                    let bias = node.input.iter().find_map(|n| values.constant(n));
                    let decoder = parts.decoder.as_mut().expect("checked above");
                    match bias {
                        Some(b) if dims(b)?.len() == 1 => decoder.bias = Some(to_f32(b)?),
                        _ => return Err(unsupported(node, "expected the decoder's bias: a constant vector".into())),
                    }
                }
                op if SHAPE_OPS.contains(&op) => {}
                _ => {
                    return Err(unsupported(
                        node,
                        "expected a lone RNN/LSTM/GRU (one node per layer) or embedding -> RNN/LSTM/GRU -> linear, \
                         with only shape operators besides"
                            .into(),
                    ))
                }
            }
        }
        if parts.layers.is_empty() {
            return Err(OnnxError::Graph("no LSTM, GRU or RNN node: expected a recurrent model".into()));
        }
        Ok(parts)
    }
}

fn is_matrix(t: Option<&TensorProto>) -> bool {
    t.is_some_and(|t| t.dims.len() == 2)
}

/// The decoder of a `Gemm` (`y = x B^T + C` with `transB = 1`, or `x B + C`) or `MatMul` node.
fn decoder(node: &NodeProto, values: &Values) -> Result<Decoder> {
    let weight =
        values.float_input(node, 1, "weight")?.ok_or_else(|| unsupported(node, "expected a weight input".into()))?;
    if weight.rank() != 2 {
        return Err(unsupported(node, format!("expected a weight matrix, found dims {:?}", weight.dims())));
    }
    if node.op_type == "MatMul" {
        return Ok(Decoder { weight: weight.t()?.contiguous()?, bias: None });
    }
    let int_attr = |name: &str| attribute(node, name).map_or(0, |a| a.i);
    let float_attr = |name: &str| attribute(node, name).map_or(1.0, |a| a.f);
    if int_attr("transA") != 0 || float_attr("alpha") != 1.0 || float_attr("beta") != 1.0 {
        return Err(unsupported(node, "expected transA = 0, alpha = 1 and beta = 1 (nn.Linear)".into()));
    }
    let weight = if int_attr("transB") == 1 { weight } else { weight.t()?.contiguous()? };
    Ok(Decoder { weight, bias: values.float_input(node, 2, "bias")? })
}

/// One recurrent node read: its kind and ONNX weights.
struct Layer {
    kind: CellKind,
    hidden: usize,
    weights: OnnxLayerWeights,
}

/// The module configuration and PyTorch-named parameters of the recurrent nodes.
fn recurrent(nodes: &[&NodeProto], values: &Values) -> Result<(RnnConfig, Vec<(String, Tensor)>)> {
    let layers = nodes.iter().map(|n| layer(n, values)).collect::<Result<Vec<_>>>()?;
    let first = &layers[0];
    let directions = first.weights.w.dim(0)?;
    let input_size = first.weights.w.dim(2)?;
    let bias = first.weights.b.is_some();
    for (k, (l, node)) in layers.iter().zip(nodes).enumerate() {
        let expected_input = if k == 0 { input_size } else { directions * first.hidden };
        let found = (l.kind, l.hidden, l.weights.w.dim(0)?, l.weights.w.dim(2)?, l.weights.b.is_some());
        if found != (first.kind, first.hidden, directions, expected_input, bias) {
            return Err(unsupported(
                node,
                format!(
                    "layer {k} differs from layer 0: expected {:?} with hidden_size {}, {directions} direction(s), \
                     {expected_input} inputs and bias {bias}, found {:?}, {}, {}, {} and {}",
                    first.kind, first.hidden, l.kind, l.hidden, found.2, found.3, found.4
                ),
            ));
        }
    }
    let config = RnnConfig {
        num_layers: layers.len(),
        bias,
        batch_first: batch_first(nodes[0], values),
        bidirectional: directions == 2,
        ..RnnConfig::new(first.kind, input_size, first.hidden)
    };
    config.validate()?;
    let mut params = Vec::new();
    for (k, l) in layers.iter().enumerate() {
        params.extend(from_onnx(l.kind, l.hidden, k, &l.weights, bias)?);
    }
    Ok((config, params))
}

/// Whether the first layer reads its input through a (N, T, F) -> (T, N, F) transpose, as
/// `torch.onnx.export` writes a `batch_first` module.
fn batch_first(first: &NodeProto, values: &Values) -> bool {
    values
        .producer(&first.input[0])
        .is_some_and(|p| p.op_type == "Transpose" && attribute(p, "perm").is_some_and(|a| a.ints == [1, 0, 2]))
}

/// Reads one `LSTM`, `GRU` or `RNN` node, refusing the options PyTorch's modules do not have.
fn layer(node: &NodeProto, values: &Values) -> Result<Layer> {
    let strings = |name: &str| -> Vec<String> {
        attribute(node, name)
            .map_or(Vec::new(), |a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into()).collect())
    };
    for name in ["clip", "activation_alpha", "activation_beta"] {
        if attribute(node, name).is_some() {
            return Err(unsupported(node, format!("attribute `{name}` has no PyTorch equivalent")));
        }
    }
    let int_attr = |name: &str| attribute(node, name).map(|a| a.i);
    if int_attr("layout").unwrap_or(0) != 0 {
        return Err(unsupported(node, "layout = 1 (batch-major states): expected layout = 0".into()));
    }
    let direction =
        attribute(node, "direction").map_or("forward".to_string(), |a| String::from_utf8_lossy(&a.s).into());
    let d = match direction.as_str() {
        "forward" => 1,
        "bidirectional" => 2,
        other => return Err(unsupported(node, format!("direction \"{other}\": expected forward or bidirectional"))),
    };
    let activations = strings("activations");
    let default_activations = |per_direction: &[&str]| {
        activations.is_empty()
            || activations == per_direction.repeat(d).iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let kind = match node.op_type.as_str() {
        "LSTM" => {
            if int_attr("input_forget").unwrap_or(0) != 0 {
                return Err(unsupported(node, "input_forget = 1: expected 0 (PyTorch's LSTM)".into()));
            }
            if node.input.get(7).is_some_and(|p| !p.is_empty()) {
                return Err(unsupported(node, "peephole weights P: PyTorch's LSTM has none".into()));
            }
            if !default_activations(&["Sigmoid", "Tanh", "Tanh"]) {
                return Err(unsupported(node, format!("activations {activations:?}: expected Sigmoid, Tanh, Tanh")));
            }
            CellKind::Lstm
        }
        "GRU" => {
            if int_attr("linear_before_reset").unwrap_or(0) != 1 {
                return Err(unsupported(
                    node,
                    "linear_before_reset = 0 applies the reset gate before the recurrent product: expected 1 \
                     (PyTorch's GRU)"
                        .into(),
                ));
            }
            if !default_activations(&["Sigmoid", "Tanh"]) {
                return Err(unsupported(node, format!("activations {activations:?}: expected Sigmoid, Tanh")));
            }
            CellKind::Gru
        }
        _ if default_activations(&["Tanh"]) => CellKind::RnnTanh,
        _ if default_activations(&["Relu"]) => CellKind::RnnRelu,
        _ => return Err(unsupported(node, format!("activations {activations:?}: expected all Tanh or all Relu"))),
    };
    let hidden = int_attr("hidden_size")
        .and_then(|h| usize::try_from(h).ok())
        .filter(|&h| h > 0)
        .ok_or_else(|| unsupported(node, "expected a positive hidden_size attribute".into()))?;
    let w = values.float_input(node, 1, "W")?.ok_or_else(|| unsupported(node, "missing W".into()))?;
    let r = values.float_input(node, 2, "R")?.ok_or_else(|| unsupported(node, "missing R".into()))?;
    let b = values.float_input(node, 3, "B")?;
    let gh = kind.num_gates() * hidden;
    // Expected dimensions; `None` accepts any size.
    let check = |what: &str, t: &Tensor, expected: &[Option<usize>]| -> Result<()> {
        let ok =
            t.dims().len() == expected.len() && t.dims().iter().zip(expected).all(|(&f, e)| e.is_none_or(|e| e == f));
        if ok {
            Ok(())
        } else {
            let expected: Vec<String> = expected.iter().map(|e| e.map_or("any".into(), |e| e.to_string())).collect();
            Err(unsupported(node, format!("{what}: expected dims [{}], found {:?}", expected.join(", "), t.dims())))
        }
    };
    check("W", &w, &[Some(d), Some(gh), None])?;
    check("R", &r, &[Some(d), Some(gh), Some(hidden)])?;
    if let Some(b) = &b {
        check("B", b, &[Some(d), Some(2 * gh)])?;
    }
    Ok(Layer { kind, hidden, weights: OnnxLayerWeights { w, r, b } })
}

/// The language model around the recurrent layers.
fn language_model(
    rnn: RnnConfig,
    rnn_params: Vec<(String, Tensor)>,
    parts: &Parts,
    decoder: &Decoder,
    values: &Values,
) -> Result<Imported> {
    let (vocab_size, features) = (decoder.weight.dim(0)?, decoder.weight.dim(1)?);
    let embed = match &parts.embedding {
        Some(e) => Some(e.dim(1)?),
        None => None,
    };
    if let Some(e) = &parts.embedding {
        if e.dim(0)? != vocab_size {
            return Err(OnnxError::Graph(format!(
                "the embedding has {} rows but the decoder {vocab_size} outputs: expected one vocabulary",
                e.dim(0)?
            )));
        }
    }
    if let Some(node) = parts.one_hot {
        let depth = node.input.get(1).and_then(|n| values.constant(n)).map(to_i64).transpose()?;
        if depth.as_deref() != Some(&[vocab_size as i64][..]) {
            return Err(unsupported(
                node,
                format!("expected a constant depth equal to the vocabulary size {vocab_size}, found {depth:?}"),
            ));
        }
    }
    let bias = match &decoder.bias {
        Some(b) => b.clone(),
        None => Tensor::zeros(vocab_size, DType::F32, &candle_core::Device::Cpu)?,
    };
    let tie_weights = match &parts.embedding {
        Some(e) if e.dims() == decoder.weight.dims() => {
            (e - &decoder.weight)?.abs()?.max_all()?.to_scalar::<f32>()? == 0.0
        }
        _ => false,
    };
    let config = LmConfig { vocab_size, embed, rnn, dropout: 0.0, tie_weights };
    config.validate()?;
    if features != config.decoder_input_size() {
        return Err(OnnxError::Graph(format!(
            "the decoder takes {features} features: expected {} (directions x hidden size)",
            config.decoder_input_size()
        )));
    }
    let mut parameters = Vec::new();
    if let Some(e) = &parts.embedding {
        parameters.push(("embedding.weight".to_string(), e.clone()));
    }
    parameters.extend(rnn_params.into_iter().map(|(n, t)| (format!("rnn.{n}"), t)));
    parameters.push(("decoder.weight".to_string(), decoder.weight.clone()));
    parameters.push(("decoder.bias".to_string(), bias));
    Ok(Imported::LanguageModel(ImportedLanguageModel { config, parameters }))
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn unsupported(node: &NodeProto, reason: String) -> OnnxError {
    let name = if node.name.is_empty() { node.output.first().cloned().unwrap_or_default() } else { node.name.clone() };
    OnnxError::UnsupportedNode { node: name, op_type: node.op_type.clone(), reason }
}
