//! Conversions between ONNX `TensorProto`s and candle tensors.

use candle_core::{DType, Device, Tensor};

use super::error::{OnnxError, Result};
use super::proto::{data_type, TensorProto};

/// A float tensor as an f32 `TensorProto` named `name` (data in `raw_data`, little-endian).
pub fn float_tensor(name: &str, t: &Tensor) -> Result<TensorProto> {
    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(TensorProto {
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data,
        ..Default::default()
    })
}

/// An int64 `TensorProto` named `name` with the given dimensions.
pub fn int64_tensor(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::INT64,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// The dimensions of `t`, refusing negative ones.
pub fn dims(t: &TensorProto) -> Result<Vec<usize>> {
    t.dims.iter().map(|&d| usize::try_from(d).map_err(|_| malformed(t, format!("negative dimension {d}")))).collect()
}

/// A float `TensorProto` (FLOAT or DOUBLE, in `raw_data` or the typed field) as an f32 tensor.
pub fn to_f32(t: &TensorProto) -> Result<Tensor> {
    check_location(t)?;
    let shape = dims(t)?;
    let count: usize = shape.iter().product();
    let values: Vec<f32> = match t.data_type {
        data_type::FLOAT if !t.raw_data.is_empty() => from_le::<4, f32>(t, &t.raw_data, count, f32::from_le_bytes)?,
        data_type::FLOAT => t.float_data.clone(),
        data_type::DOUBLE if !t.raw_data.is_empty() => {
            from_le::<8, f32>(t, &t.raw_data, count, |b| f64::from_le_bytes(b) as f32)?
        }
        data_type::DOUBLE => t.double_data.iter().map(|&v| v as f32).collect(),
        other => return Err(malformed(t, format!("expected a FLOAT or DOUBLE tensor, found data type {other}"))),
    };
    if values.len() != count {
        return Err(malformed(t, format!("expected {count} values for dims {shape:?}, found {}", values.len())));
    }
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// An integer `TensorProto` (INT64 or INT32) as a vector of i64.
pub fn to_i64(t: &TensorProto) -> Result<Vec<i64>> {
    check_location(t)?;
    let count: usize = dims(t)?.iter().product();
    let values = match t.data_type {
        data_type::INT64 if !t.raw_data.is_empty() => from_le::<8, i64>(t, &t.raw_data, count, i64::from_le_bytes)?,
        data_type::INT64 => t.int64_data.clone(),
        data_type::INT32 if !t.raw_data.is_empty() => {
            from_le::<4, i64>(t, &t.raw_data, count, |b| i32::from_le_bytes(b) as i64)?
        }
        data_type::INT32 => t.int32_data.iter().map(|&v| v as i64).collect(),
        other => return Err(malformed(t, format!("expected an INT64 or INT32 tensor, found data type {other}"))),
    };
    if values.len() != count {
        return Err(malformed(t, format!("expected {count} values, found {}", values.len())));
    }
    Ok(values)
}

/// Data stored outside the model file is not read.
fn check_location(t: &TensorProto) -> Result<()> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(malformed(t, "data in an external file: expected the data inside the .onnx file".into()));
    }
    Ok(())
}

/// Decodes `count` little-endian values of `N` bytes each.
fn from_le<const N: usize, T>(
    t: &TensorProto,
    raw: &[u8],
    count: usize,
    decode: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    if raw.len() != count * N {
        return Err(malformed(t, format!("expected {} bytes of raw data, found {}", count * N, raw.len())));
    }
    Ok(raw.chunks_exact(N).map(|c| decode(c.try_into().expect("chunks_exact gives N bytes"))).collect())
}

fn malformed(t: &TensorProto, problem: String) -> OnnxError {
    OnnxError::Malformed(format!("tensor `{}`: {problem}", t.name))
}
