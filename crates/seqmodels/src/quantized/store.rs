//! Reduced-precision tensors in safetensors files: f32, bf16 (`BF16`) and int8 (`I8`) as the
//! format defines them, so that any safetensors reader (`safetensors.torch.load_file`) opens
//! them. An int8 matrix is stored as two tensors: `NAME` (I8, rows x cols) and
//! `NAME.row_scale` (F32, rows), with `NAME[r][k] ~ NAME[r][k] * NAME.row_scale[r]`.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

use super::matrix::{QuantMatrix, Values};

/// One stored tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    /// f32 values.
    F32 {
        /// The shape.
        shape: Vec<usize>,
        /// The values, row-major.
        data: Vec<f32>,
    },
    /// bfloat16 bit patterns.
    Bf16 {
        /// The shape.
        shape: Vec<usize>,
        /// The bits, row-major.
        data: Vec<u16>,
    },
    /// int8 values.
    I8 {
        /// The shape.
        shape: Vec<usize>,
        /// The values, row-major.
        data: Vec<i8>,
    },
}

impl Stored {
    /// The tensors of a matrix: its values, and for int8 its row scales.
    pub fn from_matrix(m: &QuantMatrix) -> (Stored, Option<Stored>) {
        let shape = vec![m.rows(), m.cols()];
        match m.values() {
            Values::F32(v) => (Stored::F32 { shape, data: v.clone() }, None),
            Values::Bf16(v) => (Stored::Bf16 { shape, data: v.clone() }, None),
            Values::Int8 { q, scales } => (
                Stored::I8 { shape, data: q.clone() },
                Some(Stored::F32 { shape: vec![m.rows()], data: scales.clone() }),
            ),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Stored::F32 { shape, .. } | Stored::Bf16 { shape, .. } | Stored::I8 { shape, .. } => shape,
        }
    }

    /// The matrix `name` of shape (rows, cols), with its row scales when it is int8.
    pub fn into_matrix(self, name: &str, rows: usize, cols: usize, scale: Option<Stored>) -> Result<QuantMatrix> {
        self.check_shape(name, &[rows, cols])?;
        let values = match (self, scale) {
            (Stored::F32 { data, .. }, None) => Values::F32(data),
            (Stored::Bf16 { data, .. }, None) => Values::Bf16(data),
            (Stored::I8 { data, .. }, Some(scale)) => {
                let scales = scale.into_f32(&format!("{name}.row_scale"), &[rows])?;
                Values::Int8 { q: data, scales }
            }
            (Stored::I8 { .. }, None) => {
                return Err(Error::Keys { missing: vec![format!("{name}.row_scale")], unexpected: vec![] })
            }
            (_, Some(_)) => return Err(Error::Keys { missing: vec![], unexpected: vec![format!("{name}.row_scale")] }),
        };
        QuantMatrix::from_values(rows, cols, values)
    }

    /// The f32 values of the tensor `name`, which must have `shape`.
    pub fn into_f32(self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.check_shape(name, shape)?;
        match self {
            Stored::F32 { data, .. } => Ok(data),
            other => Err(Error::BadInput {
                name: name.into(),
                problem: format!("expected dtype F32, found {}", other.dtype_name()),
            }),
        }
    }

    fn check_shape(&self, name: &str, shape: &[usize]) -> Result<()> {
        if self.shape() != shape {
            return Err(Error::KeyShape { key: name.into(), expected: shape.to_vec(), found: self.shape().to_vec() });
        }
        Ok(())
    }

    fn dtype_name(&self) -> &'static str {
        match self {
            Stored::F32 { .. } => "F32",
            Stored::Bf16 { .. } => "BF16",
            Stored::I8 { .. } => "I8",
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Stored::F32 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Stored::Bf16 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Stored::I8 { data, .. } => data.iter().map(|v| v.to_le_bytes()[0]).collect(),
        }
    }
}

/// The bytes of a safetensors file holding `tensors`.
pub fn serialize(tensors: &[(String, Stored)]) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let dtype = match t {
                Stored::F32 { .. } => Dtype::F32,
                Stored::Bf16 { .. } => Dtype::BF16,
                Stored::I8 { .. } => Dtype::I8,
            };
            (name.clone(), dtype, t.shape().to_vec(), t.bytes())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, dtype, shape, data)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).map(|v| (name.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("cannot lay out the tensors: {e}")))?;
    safetensors::serialize(views, None).map_err(|e| Error::Config(format!("cannot serialize the tensors: {e}")))
}

/// Every tensor of the bytes of a safetensors file (F32, BF16 and I8 only); `path` names the
/// source in errors.
pub fn deserialize(bytes: &[u8], path: &Path) -> Result<Vec<(String, Stored)>> {
    let bad = |reason: String| Error::SafeTensors { path: path.to_path_buf(), reason };
    let file = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in file.tensors() {
        let (shape, data) = (view.shape().to_vec(), view.data());
        let stored = match view.dtype() {
            Dtype::F32 => Stored::F32 {
                shape,
                data: data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            },
            Dtype::BF16 => {
                Stored::Bf16 { shape, data: data.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect() }
            }
            Dtype::I8 => Stored::I8 { shape, data: data.iter().map(|b| i8::from_le_bytes([*b])).collect() },
            other => return Err(bad(format!("tensor `{name}`: expected dtype F32, BF16 or I8, found {other:?}"))),
        };
        out.push((name, stored));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Precision;
    use super::*;

    #[test]
    fn matrices_round_trip_through_the_file_format() {
        let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 3.0).collect();
        for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
            let m = QuantMatrix::quantize(&w, 3, 4, precision).unwrap();
            let (values, scale) = Stored::from_matrix(&m);
            let mut named = vec![("w".to_string(), values)];
            named.extend(scale.map(|s| ("w.row_scale".to_string(), s)));
            let bytes = serialize(&named).unwrap();
            let mut back = deserialize(&bytes, Path::new("mem")).unwrap().into_iter();
            let (_, values) = back.next().unwrap();
            let scale = back.next().map(|(n, s)| {
                assert_eq!(n, "w.row_scale");
                s
            });
            assert_eq!(values.into_matrix("w", 3, 4, scale).unwrap(), m, "{precision:?}");
        }
    }

    #[test]
    fn wrong_shapes_and_missing_scales_name_the_tensor() {
        let m = QuantMatrix::quantize(&[1.0; 6], 2, 3, Precision::Int8).unwrap();
        let (values, _) = Stored::from_matrix(&m);
        let err = values.clone().into_matrix("rnn.weight_hh_l0", 2, 3, None).unwrap_err().to_string();
        assert!(err.contains("rnn.weight_hh_l0.row_scale"), "{err}");
        let err = values.into_matrix("w", 3, 2, None).unwrap_err().to_string();
        assert!(err.contains("expected shape [3, 2]"), "{err}");
    }
}
