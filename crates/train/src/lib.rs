//! Training and command-line tooling for seqmodels: the library behind the `seqlm` program.
#![warn(missing_docs)]

pub mod bench_lengths;
pub mod checkpoint;
pub mod commands;
pub mod device;
pub mod error;
pub mod generate;
pub mod inference_lm;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod optim;
pub mod predictor;
pub mod run_dir;
pub mod schedule;
pub mod throughput;
pub mod tokenizer;
pub mod trainer;

pub use error::{Error, Result};
