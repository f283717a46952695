//! The error type of the seqmodels-train library.

/// What can go wrong in the tools of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from the model crate (configuration, shapes, state dicts).
    #[error(transparent)]
    Model(#[from] seqmodels::Error),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A required tensor is missing from an inputs file.
    #[error("inputs: missing tensor `{name}` ({why})")]
    MissingInput {
        /// The tensor's key.
        name: String,
        /// What it is needed for.
        why: String,
    },
    /// A tensor of an inputs file is unusable.
    #[error("inputs: tensor `{name}`: {problem}")]
    BadInput {
        /// The tensor's key.
        name: String,
        /// What is wrong, with expected and found values.
        problem: String,
    },
}

/// Result type of the seqmodels-train library.
pub type Result<T> = std::result::Result<T, Error>;
