//! The PyTorch parity engine behind `seqlm forward`: runs a module described as PyTorch would
//! construct it on saved inputs, and computes the gradients of a weighted-sum loss;
//! [`compare`] measures the results against PyTorch's. The fixture tests and
//! `scripts/parity.py` check the modules of this crate with it.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::{state_dict, Cell, ForwardOptions, Implementation, LoadOptions, ModuleSpec, RnnBase, StackedState};

mod compare;
pub use compare::{compare, Comparison, Tolerances};

/// Evaluation, or training with dropout masks drawn from a seed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No dropout (PyTorch's `module.eval()`).
    #[default]
    Eval,
    /// Dropout between layers, masks from `seed` (PyTorch's `module.train()`).
    Train {
        /// Seed of the dropout masks.
        seed: u64,
    },
}

/// How and where [`run_module`] runs. The default: evaluation on the CPU, implementation `Auto`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Evaluation or training mode.
    pub mode: Mode,
    /// The device the module and its inputs are moved to; results come back on the CPU.
    pub device: Device,
    /// The code that runs the recurrence of layers (cells have one path).
    pub implementation: Implementation,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { mode: Mode::Eval, device: Device::Cpu, implementation: Implementation::Auto }
    }
}

/// Tensor names of the forward tool's files for one kind of module.
struct Names {
    /// Initial-state inputs (`h0`, `c0` or `hx`, `cx`).
    h0: &'static str,
    c0: &'static str,
    /// Final-state outputs (`h_n`, `c_n` or `h`, `c`) and their loss weights.
    h: &'static str,
    c: &'static str,
    grad_h: &'static str,
    grad_c: &'static str,
    /// Whether the module runs a sequence: it then takes `lengths` and has an `output`.
    sequence: bool,
}

const LAYER_NAMES: Names =
    Names { h0: "h0", c0: "c0", h: "h_n", c: "c_n", grad_h: "grad_h_n", grad_c: "grad_c_n", sequence: true };
const CELL_NAMES: Names =
    Names { h0: "hx", c0: "cx", h: "h", c: "c", grad_h: "grad_h", grad_c: "grad_c", sequence: false };

impl Names {
    /// Every input name a module of this shape takes (the cell-state ones only with a cell state).
    fn allowed(&self, has_cell_state: bool) -> Vec<&'static str> {
        let mut names = vec!["input", self.h0];
        names.extend(has_cell_state.then_some(self.c0));
        names.extend(self.sequence.then_some("lengths"));
        names.extend(self.sequence.then_some("grad_output"));
        names.push(self.grad_h);
        names.extend(has_cell_state.then_some(self.grad_c));
        names
    }
}

/// Refuses an input the module does not take: a misspelt `grad_output` would otherwise
/// silently run no backward pass.
fn check_names(spec: &ModuleSpec, names: &Names, inputs: &HashMap<String, Tensor>) -> Result<()> {
    let has_cell_state = spec.kind().has_cell_state();
    let allowed = names.allowed(has_cell_state);
    let mut given: Vec<&String> = inputs.keys().collect();
    given.sort();
    for name in given {
        if allowed.contains(&name.as_str()) {
            continue;
        }
        if name == "lengths" {
            return Err(Error::BadInput { name: name.clone(), problem: "cells take no lengths".into() });
        }
        if !has_cell_state && (name == names.c0 || name == names.grad_c) {
            let problem = format!("only LSTM modules have a cell state, this is a {}", spec.kind().layer_name());
            return Err(Error::BadInput { name: name.clone(), problem });
        }
        return Err(Error::UnknownInput { name: name.clone(), allowed: allowed.join(", ") });
    }
    Ok(())
}

/// Runs `spec` with the state-dict tensors `weights` (PyTorch names, strict) on `inputs`.
///
/// `inputs` holds `input`; optional `h0`, `c0` (cells: `hx`, `cx`); optional `lengths`
/// (integers, one per batch element); optional `grad_output`, `grad_h_n`, `grad_c_n`
/// (cells: `grad_h`, `grad_c`). Returns `output`, `h_n`, `c_n` (cells: `h`, `c`) and, when
/// any grad tensor is given, the gradients of
/// loss = sum(output*grad_output) + sum(h_n*grad_h_n) + sum(c_n*grad_c_n):
/// `grad.input`, `grad.h0`, `grad.c0` (cells: `grad.hx`, `grad.cx`) and `grad.<parameter>`.
/// Everything is computed in the dtype of `input` (f32 or f64), on `options.device`; the results
/// are returned on the CPU.
pub fn run_module(
    spec: &ModuleSpec,
    weights: HashMap<String, Tensor>,
    inputs: &HashMap<String, Tensor>,
    options: &RunOptions,
) -> Result<HashMap<String, Tensor>> {
    let device = &options.device;
    let input = inputs
        .get("input")
        .ok_or_else(|| Error::MissingInput { name: "input".into(), why: "the module's input".into() })?;
    let dtype = input.dtype();
    if !matches!(dtype, DType::F32 | DType::F64) {
        return Err(Error::BadInput { name: "input".into(), problem: format!("expected f32 or f64, found {dtype:?}") });
    }
    let names = match spec {
        ModuleSpec::Layer(_) => &LAYER_NAMES,
        ModuleSpec::Cell(_) => &CELL_NAMES,
    };
    check_names(spec, names, inputs)?;
    let shapes = spec.parameter_shapes();
    let params = state_dict::select_parameters(weights, &shapes, &LoadOptions::default(), dtype, device)?;
    let varmap = state_dict::varmap_from_parameters(params, "")?;
    let vb = VarBuilder::from_varmap(&varmap, dtype, device);

    // Inputs become variables so that their gradients can be reported.
    let as_var = |name: &str| -> Result<Option<Var>> {
        let var = |t: Tensor| Ok(Var::from_tensor(&t.to_device(device)?)?);
        inputs.get(name).map(|t| float_input(name, t, dtype).and_then(var)).transpose()
    };
    let x = Var::from_tensor(&input.to_device(device)?)?;
    let (h0, c0) = (as_var(names.h0)?, as_var(names.c0)?);
    let run = forward(spec, vb, options, &x, h0.as_ref(), c0.as_ref(), inputs)?;

    let mut results = HashMap::new();
    let mut loss_terms = Vec::new();
    let outputs =
        [("output", "grad_output", run.output), (names.h, names.grad_h, Some(run.h)), (names.c, names.grad_c, run.c)];
    for (name, grad_name, value) in outputs {
        let Some(value) = value else { continue };
        if let Some(weight) = inputs.get(grad_name) {
            let weight = float_input(grad_name, weight, dtype)?.to_device(device)?;
            if weight.dims() != value.dims() {
                let problem = format!("expected the shape of `{name}` {:?}, found {:?}", value.dims(), weight.dims());
                return Err(Error::BadInput { name: grad_name.into(), problem });
            }
            loss_terms.push((&value * &weight)?.sum_all()?);
        }
        results.insert(name.to_string(), value);
    }
    if loss_terms.is_empty() {
        return on_cpu(results);
    }

    let loss = loss_terms.iter().skip(1).try_fold(loss_terms[0].clone(), |acc, t| acc + t)?;
    let grads = loss.backward()?;
    let grad_or_zeros = |t: &Tensor| -> Result<Tensor> {
        Ok(match grads.get(t) {
            Some(g) => g.clone(),
            None => t.zeros_like()?,
        })
    };
    results.insert("grad.input".into(), grad_or_zeros(x.as_tensor())?);
    for (name, var) in [(names.h0, &h0), (names.c0, &c0)] {
        if let Some(var) = var {
            results.insert(format!("grad.{name}"), grad_or_zeros(var.as_tensor())?);
        }
    }
    for (name, p) in &run.parameters {
        results.insert(format!("grad.{name}"), grad_or_zeros(p)?);
    }
    on_cpu(results)
}

/// What one forward pass of the module gives: the output sequence (layers only), the final
/// state, and the parameters whose gradients are reported.
struct ForwardRun {
    output: Option<Tensor>,
    h: Tensor,
    c: Option<Tensor>,
    parameters: Vec<(String, Tensor)>,
}

/// Builds the module from `vb` and runs it on `x` from the initial state `h0`, `c0`.
fn forward(
    spec: &ModuleSpec,
    vb: VarBuilder,
    options: &RunOptions,
    x: &Var,
    h0: Option<&Var>,
    c0: Option<&Var>,
    inputs: &HashMap<String, Tensor>,
) -> Result<ForwardRun> {
    let (h0, c0) = (h0.map(|v| v.as_tensor()), c0.map(|v| v.as_tensor()));
    match spec {
        ModuleSpec::Layer(cfg) => {
            let module = RnnBase::new(cfg.clone(), vb)?.with_implementation(options.implementation);
            if let Mode::Train { seed } = options.mode {
                module.set_dropout_seed(seed);
            }
            let lengths = inputs.get("lengths").map(lengths_of).transpose()?;
            let train = matches!(options.mode, Mode::Train { .. });
            let initial = StackedState::from_parts(h0, c0)?;
            let out = module.forward(x, initial.as_ref(), ForwardOptions { lengths: lengths.as_deref(), train })?;
            let parameters = module.named_parameters();
            Ok(ForwardRun { output: Some(out.output), h: out.state.h, c: out.state.c, parameters })
        }
        ModuleSpec::Cell(cfg) => {
            let cell = Cell::new(cfg.clone(), vb)?;
            let next = cell.forward_state(x, h0, c0)?;
            Ok(ForwardRun { output: None, h: next.h, c: next.c, parameters: cell.named_parameters() })
        }
    }
}

/// The results moved to the CPU, where they are compared and saved.
fn on_cpu(results: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    results.into_iter().map(|(k, v)| Ok((k, v.to_device(&Device::Cpu)?))).collect()
}

/// A float input converted to the run's dtype; integer tensors are refused.
fn float_input(name: &str, t: &Tensor, dtype: DType) -> Result<Tensor> {
    if !t.dtype().is_float() {
        let problem = format!("expected a float tensor ({dtype:?}), found {:?}", t.dtype());
        return Err(Error::BadInput { name: name.into(), problem });
    }
    Ok(t.to_dtype(dtype)?)
}

/// `lengths` as sizes: an integer vector with no negative entries.
fn lengths_of(t: &Tensor) -> Result<Vec<usize>> {
    let bad = |problem: String| Error::BadInput { name: "lengths".into(), problem };
    if t.rank() != 1 || t.dtype().is_float() {
        return Err(bad(format!("expected a 1-D integer tensor, found {:?} of shape {:?}", t.dtype(), t.dims())));
    }
    let values: Vec<i64> = t.to_dtype(DType::I64)?.to_vec1()?;
    values
        .iter()
        .map(|&v| usize::try_from(v).map_err(|_| bad(format!("lengths must be positive, found {v}"))))
        .collect()
}
