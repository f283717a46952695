//! GFLOP/s of the crate's GEMM ([`seqmodels::fused::gemm::matmul`], all pool threads) on the
//! large products of the benchmark table, one JSON line per shape; `scripts/gemm_compare.py`
//! runs it against `torch.matmul` on the same shapes.
//!
//! `cargo run --release -p seqmodels --example gemm_shapes`

use std::time::{Duration, Instant};

use seqmodels::fused::gemm::{matmul, Init, Stored};

/// (name, m, k, n, lhs stored transposed, rhs stored transposed): dst (m x n) = lhs (m x k) rhs (k x n).
const SHAPES: [(&str, usize, usize, usize, bool, bool); 12] = [
    ("(a) dW_hh", 1024, 1120, 256, false, false),
    ("(a) dW_ih", 1024, 1120, 28, false, false),
    ("(b) decoder", 400, 200, 10000, false, true),
    ("(b) decoder dx", 400, 10000, 200, false, false),
    ("(b) decoder dW", 10000, 400, 200, true, false),
    ("medium step dh", 20, 2600, 650, false, false),
    ("medium input projection", 700, 650, 2600, false, true),
    ("medium dW_hh", 2600, 700, 650, false, false),
    ("large step", 64, 1024, 4096, false, true),
    ("large decoder", 2240, 1024, 10000, false, true),
    ("large decoder dW", 10000, 2240, 1024, true, false),
    ("large dW_hh", 4096, 2240, 1024, false, false),
];

fn main() {
    let threads = candle_core::utils::get_num_threads();
    for (name, m, k, n, lhs_t, rhs_t) in SHAPES {
        let value = |i: usize| ((i * 7919) % 17) as f32 / 8.0 - 1.0;
        let (a, b): (Vec<f32>, Vec<f32>) = ((0..m * k).map(value).collect(), (0..k * n).map(value).collect());
        let stored = |t: bool| if t { Stored::Transposed } else { Stored::AsIs };
        let mut c = vec![0f32; m * n];
        let mut times = Vec::new();
        let start = Instant::now();
        // At least 5 timed runs after one warm-up, and at least 0.3 s of them.
        while times.len() < 6 || start.elapsed() < Duration::from_millis(300) {
            let t0 = Instant::now();
            matmul((m, n, k), &mut c, Init::Zero, (&a, stored(lhs_t)), (&b, stored(rhs_t)), threads);
            times.push(t0.elapsed().as_secs_f64());
        }
        times.remove(0);
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{{\"shape\": \"{name}\", \"m\": {m}, \"k\": {k}, \"n\": {n}, \"lhs_transposed\": {lhs_t}, \"rhs_transposed\": {rhs_t}, \"gflops\": {:.1}, \"threads\": {threads}}}",
            2.0 * (m * n * k) as f64 / median / 1e9
        );
    }
}
