//! Training and command-line tooling for seqmodels: the library behind the `seqlm` program.
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod commands;
pub mod compare;
pub mod device;
pub mod error;
pub mod forward;
pub mod generate;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod run_dir;
pub mod schedule;
pub mod tokenizer;
pub mod trainer;

pub use error::{Error, Result};
