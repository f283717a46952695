//! Inference with weights in reduced precision: bf16 or int8 instead of f32.
//!
//! Generating text runs one sequence at a time, and each step then reads every weight once:
//! the speed is set by how many bytes the weights take, not by arithmetic. Storing them in
//! bf16 halves those bytes, int8 quarters them.
//!
//! What is converted, and how:
//! - the matrices `W_ih` and `W_hh` of every layer ([`QuantizedRnn`]), and the caller's other
//!   products (a language model's decoder) through [`QuantMatrix`] and [`product`];
//! - **bf16**: each weight rounded to the nearest bfloat16 (ties to even), as
//!   `tensor.to(torch.bfloat16)` does;
//! - **int8**: each row `r` of a matrix quantized symmetrically with its own scale,
//!   `s_r = max_k |W[r][k]| / 127` and `q[r][k] = round(W[r][k] / s_r)` in -127..=127, the
//!   per-channel form of PyTorch's dynamic quantization of the weights;
//! - biases, states, activations and the gate pass stay f32 (the gate pass is the one the f32
//!   kernels run). bf16 weights are widened to f32 as they are loaded and the products
//!   accumulate in f32. int8 weights multiply the activations rounded to 16-bit integers, one
//!   scale per row (PyTorch's dynamic quantization rounds them to 8 bits), with exact integer
//!   sums; the two scales multiply each sum. With many rows at once (a whole sequence's input
//!   side, the decoder over all steps) the weights are widened to f32 and the product is an f32
//!   GEMM instead.
//!
//! The products use AVX2 + FMA intrinsics where the CPU has them (AVX-512 CPUs included), else
//! portable Rust with the same results up to the order of the sums.

mod matrix;
mod product;
mod recurrent;
mod store;

pub use matrix::{bf16_bits, bf16_to_f32, QuantMatrix, Values};
pub use product::product;
pub use recurrent::{QuantizedRnn, RecurrentState, ROW_SCALE};
pub use store::{deserialize, serialize, Stored};

/// How the weights of an inference model are stored (`f32`, `bf16` or `int8` on the command line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats, as trained.
    #[default]
    F32,
    /// bfloat16: 8 bits of exponent like f32, 8 of mantissa; relative rounding error <= 2^-9.
    Bf16,
    /// Symmetric int8 with one f32 scale per output row.
    Int8,
}

impl Precision {
    /// `f32`, `bf16` or `int8`, as on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}
