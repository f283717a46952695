//! Training and command-line tooling for seqmodels: the library behind the `seqlm` program.
#![warn(missing_docs)]

pub mod commands;
pub mod compare;
pub mod error;
pub mod forward;

pub use error::{Error, Result};
