//! The portable f32 kernels (what CPUs without AVX-512 run) against the composed path. This
//! test binary is its own process, so the variable that forces them affects nothing else.

mod common;

use candle_core::DType;
use common::compare;
use seqmodels::{CellKind, RnnConfig};

#[test]
fn portable_f32_kernels_match_the_composed_path() {
    std::env::set_var("SEQMODELS_FUSED_GENERIC", "1");
    for kind in [CellKind::RnnTanh, CellKind::RnnRelu, CellKind::Lstm, CellKind::Gru] {
        for bidirectional in [false, true] {
            let cfg = RnnConfig { num_layers: 2, bidirectional, ..RnnConfig::new(kind, 3, 36) };
            compare(&cfg, Some(&[5, 2, 4]), true, DType::F32, 2e-5);
            compare(&cfg, None, false, DType::F32, 2e-5);
        }
    }
}
