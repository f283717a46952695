//! The machine's f32 GEMM ceiling as candle reaches it (the `gemm` crate, all threads): the
//! median GFLOP/s of a 2048 x 2048 x 2048 product, the reference for BENCHMARKS.md.
//!
//! `cargo run --release -p seqmodels --example gemm_ceiling`

use std::time::Instant;

use candle_core::{Device, Tensor};

fn main() -> candle_core::Result<()> {
    let n = 2048;
    let a = Tensor::randn(0f32, 1., (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1., (n, n), &Device::Cpu)?;
    let mut rates = Vec::new();
    for i in 0..12 {
        let start = Instant::now();
        let c = a.matmul(&b)?;
        let secs = start.elapsed().as_secs_f64();
        drop(c);
        if i >= 2 {
            rates.push(2.0 * (n * n * n) as f64 / secs / 1e9);
        }
    }
    rates.sort_by(|x, y| x.total_cmp(y));
    println!(
        "2048^3 f32 GEMM: median {:.1} GFLOP/s, best {:.1} (threads {})",
        rates[rates.len() / 2],
        rates[rates.len() - 1],
        candle_core::utils::get_num_threads()
    );
    Ok(())
}
