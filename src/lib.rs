//! Facade over the seqmodels workspace: re-exports the model, data and training crates
//! so that the top-level `examples/` and `tests/` can use all three under one name.

pub use seqmodels;
pub use seqmodels_data as data;
pub use seqmodels_train as train;

/// The README, whose Rust tour compiles as a doctest so that it stays in step with the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
