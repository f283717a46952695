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
    /// An error from the data crate (corpus, cleaning, tokenization, vocabulary, batches).
    #[error(transparent)]
    Data(#[from] seqmodels_data::Error),
    /// A file or directory could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `create`, `rename`, ...).
        action: &'static str,
        /// The file or directory involved.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A hyperparameter or option is outside its valid range.
    #[error("invalid {name}: expected {expected}, found {found}")]
    InvalidOption {
        /// The option (for example `batch`, `lr`).
        name: String,
        /// The valid range, in words.
        expected: String,
        /// The value given.
        found: String,
    },
    /// A device named with `--device` cannot be used.
    #[error("cannot use --device {device}: {reason}")]
    Device {
        /// The device as named (`cuda`, `cuda:1`).
        device: String,
        /// Why: no `cuda` feature in this build, or no such GPU.
        reason: String,
    },
    /// The training loss or the gradient norm became NaN or infinite.
    #[error("{what} became {value} at step {step} (epoch {epoch}, batch {batch}); training stopped")]
    NonFinite {
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The offending value (NaN, inf or -inf).
        value: f64,
        /// Global optimizer step (1-based) at which it happened.
        step: u64,
        /// Epoch (1-based).
        epoch: usize,
        /// Minibatch within the epoch (1-based).
        batch: usize,
    },
    /// A checkpoint directory is missing a file, unreadable, corrupt or inconsistent.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: std::path::PathBuf,
        /// What is wrong, naming what was expected and what was found.
        problem: String,
    },
    /// A checkpoint does not match what it is used with (another model, tokenizer or option).
    #[error("checkpoint mismatch: {what}: expected {expected}, found {found}")]
    Mismatch {
        /// What differs.
        what: String,
        /// The value required.
        expected: String,
        /// The value found.
        found: String,
    },
    /// A token index is not in the vocabulary of the model.
    #[error("token index {index} is out of range: expected indices below the vocabulary size {vocab_size}")]
    TokenOutOfRange {
        /// The offending index.
        index: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// A text gave no token to work with.
    #[error("{what} has no tokens after cleaning and tokenization: expected at least {needed}")]
    TooFewTokens {
        /// Which text (for example `the prefix`, `the evaluation text`).
        what: String,
        /// How many tokens are needed.
        needed: usize,
    },
    /// A JSON file could not be parsed or written.
    #[error("{path}: invalid JSON: {reason}")]
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A run directory already holds another run.
    #[error("{} already holds a run ({found}): {advice}", .dir.display())]
    RunExists {
        /// The run directory.
        dir: std::path::PathBuf,
        /// What of a run is there (a checkpoint, metrics).
        found: String,
        /// What the user can do instead.
        advice: String,
    },
    /// A line of `metrics.jsonl` before its last is damaged (a damaged last line is set aside).
    #[error("{}: line {line} is damaged ({reason}): expected one JSON object of epoch metrics per line; repair or remove that line", .path.display())]
    DamagedMetrics {
        /// The metrics file.
        path: std::path::PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A plot could not be drawn.
    #[error("cannot draw plot {path}: {reason}")]
    Plot {
        /// The PNG file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `action` on `path`.
    pub fn io(action: &'static str, path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }

    /// An [`Error::InvalidOption`].
    pub fn option(name: impl Into<String>, expected: impl Into<String>, found: impl ToString) -> Self {
        Error::InvalidOption { name: name.into(), expected: expected.into(), found: found.to_string() }
    }
}

/// Result type of the seqmodels-train library.
pub type Result<T> = std::result::Result<T, Error>;
