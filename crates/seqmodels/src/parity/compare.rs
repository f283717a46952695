//! Max-abs-error comparison of two sets of named tensors (ours against PyTorch's).

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Tensor};

use crate::error::Result;

/// One compared tensor.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The tensor's key.
    pub name: String,
    /// Its shape in `actual` (empty when missing there).
    pub shape: Vec<usize>,
    /// Max absolute difference; `None` when the key is missing on one side or shapes differ.
    pub max_abs_error: Option<f64>,
    /// The tolerance applied.
    pub tolerance: f64,
    /// Why the comparison failed without a number, if it did.
    pub problem: Option<String>,
}

impl Comparison {
    /// Within tolerance, with no missing key or shape mismatch.
    pub fn ok(&self) -> bool {
        self.max_abs_error.is_some_and(|e| e <= self.tolerance)
    }
}

/// Tolerances: `output` for outputs and states, `grad` for tensors named `grad.*`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerances {
    /// For outputs and final states.
    pub output: f64,
    /// For gradients.
    pub grad: f64,
}

impl Tolerances {
    /// The project's parity contract: 1e-5 / 1e-4 in f32, 1e-10 / 1e-9 in f64.
    pub fn for_dtype(dtype: DType) -> Self {
        match dtype {
            DType::F64 => Tolerances { output: 1e-10, grad: 1e-9 },
            _ => Tolerances { output: 1e-5, grad: 1e-4 },
        }
    }
}

/// Compares every key of `expected` and `actual` (keys on only one side fail).
pub fn compare(
    actual: &HashMap<String, Tensor>,
    expected: &HashMap<String, Tensor>,
    tol: Tolerances,
) -> Result<Vec<Comparison>> {
    let keys: BTreeSet<&String> = actual.keys().chain(expected.keys()).collect();
    let mut rows = Vec::with_capacity(keys.len());
    for name in keys {
        let tolerance = if name.starts_with("grad.") { tol.grad } else { tol.output };
        let (a, e) = (actual.get(name), expected.get(name));
        let shape = a.map(|t| t.dims().to_vec()).unwrap_or_default();
        let (max_abs_error, problem) = match (a, e) {
            (None, _) => (None, Some("missing from our results".to_string())),
            (_, None) => (None, Some("missing from the expected results".to_string())),
            (Some(a), Some(e)) if a.dims() != e.dims() => {
                (None, Some(format!("shape {:?}, expected {:?}", a.dims(), e.dims())))
            }
            (Some(a), Some(e)) => {
                let diff = (a.to_dtype(DType::F64)? - e.to_dtype(DType::F64)?)?.abs()?;
                let max = if diff.elem_count() == 0 { 0.0 } else { diff.flatten_all()?.max(0)?.to_scalar::<f64>()? };
                // NaN anywhere must fail, and `max` would hide it.
                let nan = diff.flatten_all()?.to_vec1::<f64>()?.iter().any(|v| v.is_nan());
                (Some(if nan { f64::NAN } else { max }), None)
            }
        };
        rows.push(Comparison { name: name.clone(), shape, max_abs_error, tolerance, problem });
    }
    Ok(rows)
}
