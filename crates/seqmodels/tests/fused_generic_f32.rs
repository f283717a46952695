//! The generic engine of the fused kernels in f32 (what CPUs without AVX-512F or AVX2 + FMA
//! run) against the composed path. This test binary is its own process, so the variable that selects them affects nothing
//! else.

mod common;

#[test]
fn generic_f32_kernels_match_the_composed_path() {
    std::env::set_var("SEQMODELS_SIMD", "none");
    assert_eq!(seqmodels::simd::Simd::detect(), None);
    common::every_kind_against_the_composed_path();
}
