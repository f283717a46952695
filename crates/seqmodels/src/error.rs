//! The error type of the seqmodels crate.

use std::path::PathBuf;

/// Everything that can go wrong when building, loading or running a recurrent module.
///
/// Each variant says what was expected and what was found, so that a user can fix the input
/// without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A constructor argument (or a `module.json` field) is invalid.
    #[error("invalid module configuration: {0}")]
    Config(String),

    /// A tensor does not have the shape the module needs.
    #[error("{what}: expected shape {expected}, found {found:?}")]
    Shape {
        /// Which tensor (e.g. `input`, `h0`).
        what: String,
        /// The expected shape, in words or as a list.
        expected: String,
        /// The shape that was passed.
        found: Vec<usize>,
    },

    /// A tensor has a dtype the module cannot use.
    #[error("{what}: expected dtype {expected}, found {found:?}")]
    DType {
        /// Which tensor.
        what: String,
        /// The accepted dtypes, in words.
        expected: String,
        /// The dtype that was passed.
        found: candle_core::DType,
    },

    /// An initial state is incomplete, or given to a module that has no such state.
    #[error("initial state: {0}")]
    State(String),

    /// A required tensor is missing from the inputs of a parity run ([`crate::parity`]).
    #[error("inputs: missing tensor `{name}` ({why})")]
    MissingInput {
        /// The tensor's key.
        name: String,
        /// What it is needed for.
        why: String,
    },

    /// A tensor of the inputs of a parity run is unusable.
    #[error("inputs: tensor `{name}`: {problem}")]
    BadInput {
        /// The tensor's key.
        name: String,
        /// What is wrong, with expected and found values.
        problem: String,
    },

    /// The inputs of a parity run hold a tensor the module does not take.
    #[error("inputs: unknown tensor `{name}`: expected one of {allowed}")]
    UnknownInput {
        /// The tensor's key.
        name: String,
        /// The names the module takes, comma-separated.
        allowed: String,
    },

    /// A `lengths` argument is inconsistent with the input.
    #[error("lengths: {0}")]
    Lengths(String),

    /// Strict state-dict loading found missing or unexpected keys.
    #[error("state dict does not match the module: missing keys {missing:?}, unexpected keys {unexpected:?}")]
    Keys {
        /// Parameters the module needs that the file lacks.
        missing: Vec<String>,
        /// Tensors in the file that the module has no parameter for.
        unexpected: Vec<String>,
    },

    /// A state-dict tensor has the wrong shape.
    #[error("state dict key `{key}`: expected shape {expected:?}, found {found:?}")]
    KeyShape {
        /// The parameter name (without prefix).
        key: String,
        /// Shape the module needs.
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },

    /// A safetensors file could not be read or parsed.
    #[error("cannot read safetensors file {path}: {reason}")]
    SafeTensors {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },

    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A safetensors file could not be written.
    #[error("cannot write safetensors file {path}: {reason}")]
    SafeTensorsWrite {
        /// The file.
        path: PathBuf,
        /// What the writer reported.
        reason: String,
    },

    /// A buffer would need more memory than the machine has available (or more bytes than a
    /// 64-bit count holds).
    #[error("{what} would need {}, more than the {} of memory available", .bytes.map_or("more than 2^64 bytes".to_string(), crate::memory::human_bytes), crate::memory::human_bytes(*.available))]
    TooLarge {
        /// What was to be allocated, naming the options that size it.
        what: String,
        /// The bytes it needs (`None`: the count overflows).
        bytes: Option<u64>,
        /// The bytes available.
        available: u64,
    },

    /// An error from candle itself.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result type of the seqmodels crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for a [`Error::Shape`] error.
    pub(crate) fn shape(what: impl Into<String>, expected: impl Into<String>, found: &[usize]) -> Self {
        Error::Shape { what: what.into(), expected: expected.into(), found: found.to_vec() }
    }
}

/// Lets our errors travel through candle's `Module` trait.
impl From<Error> for candle_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(inner) => inner,
            other => candle_core::Error::wrap(other),
        }
    }
}
