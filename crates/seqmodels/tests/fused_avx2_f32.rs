//! The vectorised engine of the fused kernels compiled for AVX2 + FMA against the composed path,
//! also on a CPU with AVX-512 (where the other tests run the AVX-512 variant). This test binary is
//! its own process, so the variable that caps the instruction set affects nothing else.

mod common;

use seqmodels::simd::Simd;

#[test]
fn avx2_f32_kernels_match_the_composed_path() {
    std::env::set_var("SEQMODELS_SIMD", "avx2");
    match Simd::detect() {
        Some(simd) => assert_eq!(simd.name(), "avx2"),
        None => println!("skipped: this CPU has no AVX2 + FMA; fused_generic_f32 covers the engine it runs"),
    }
    common::every_kind_against_the_composed_path();
}
