//! The error type of this crate.
//!
//! Every variant says what was expected and what was found, and names the file
//! involved where there is one, so that a message can be shown to a user as is.

use std::path::PathBuf;

/// Errors returned by `seqmodels-data`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A text file that was asked for does not exist.
    #[error("file not found: {path}")]
    MissingFile {
        /// The path that was looked up.
        path: PathBuf,
    },

    /// A path names a directory where a text file is expected.
    #[error("{path} is a directory: expected a UTF-8 text file")]
    NotAFile {
        /// The directory.
        path: PathBuf,
    },

    /// A file exists but could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `create`, ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A text file has no content at all.
    #[error("{path} is empty: expected a text corpus of at least one byte")]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },

    /// A text file is not valid UTF-8.
    #[error("{path} is not valid UTF-8: invalid byte sequence at byte offset {offset}")]
    InvalidUtf8 {
        /// The file (or `<memory>` for in-memory bytes).
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },

    /// Cleaning and tokenizing left no token at all.
    #[error("the corpus has no tokens after {stage}: expected at least one")]
    NoTokens {
        /// The step after which nothing was left (for example `d2l cleaning`).
        stage: String,
    },

    /// `max_tokens` was zero.
    #[error("max_tokens must be at least 1, found 0 (leave it unset to keep the whole corpus)")]
    ZeroMaxTokens,

    /// A minibatch parameter was zero.
    #[error("{name} must be at least 1, found 0")]
    ZeroParameter {
        /// Which parameter (`batch_size`, `num_steps`, `tau`, ...).
        name: &'static str,
    },

    /// A parameter is outside its valid range.
    #[error("{name} must be {expected}, found {found}")]
    InvalidParameter {
        /// Which parameter.
        name: &'static str,
        /// The valid range, in words.
        expected: String,
        /// The value given.
        found: String,
    },

    /// The corpus cannot fill one minibatch.
    #[error(
        "corpus of {tokens} tokens is too short for one minibatch of batch_size {batch_size} x num_steps \
         {num_steps}: {sampling} sampling needs at least {needed} tokens"
    )]
    CorpusTooShort {
        /// Number of tokens in the corpus.
        tokens: usize,
        /// Requested batch size.
        batch_size: usize,
        /// Requested number of time steps.
        num_steps: usize,
        /// `random` or `sequential`.
        sampling: &'static str,
        /// Minimum number of tokens that always yields at least one minibatch.
        needed: usize,
    },

    /// A train/validation split parameter is out of range.
    #[error("invalid train/validation split: {reason}")]
    InvalidSplit {
        /// What is wrong.
        reason: String,
    },

    /// A vocabulary file is not valid JSON or does not have the expected shape.
    #[error("malformed vocabulary JSON in {path}: {source}")]
    VocabJson {
        /// The vocabulary file (or `<memory>`).
        path: PathBuf,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },

    /// A vocabulary is well-formed JSON but inconsistent.
    #[error("invalid vocabulary in {path}: {reason}")]
    InvalidVocab {
        /// The vocabulary file (or `<memory>`).
        path: PathBuf,
        /// What is inconsistent.
        reason: String,
    },

    /// A `tokenizer.json` file could not be loaded.
    #[error("malformed tokenizer JSON in {path}: {message}")]
    TokenizerJson {
        /// The tokenizer file.
        path: PathBuf,
        /// The message of the `tokenizers` crate.
        message: String,
    },

    /// Training, saving or running a subword tokenizer failed.
    #[error("subword tokenizer: {0}")]
    Tokenizer(String),

    /// A named corpus is not known.
    #[error("unknown corpus {name:?}: expected an existing file path or one of {known}")]
    UnknownCorpus {
        /// The name that was given.
        name: String,
        /// The known names, comma separated.
        known: String,
    },

    /// A named corpus is not on disk and could not be downloaded.
    #[error(
        "corpus {:?} is not available: {reason}. Put {} (sha256 {}) into the directory named by \
         SEQMODELS_DATA or into {}, or download it from {url}",
        .corpus.name, .corpus.file_name, .corpus.sha256, .cache_dir.display()
    )]
    CorpusUnavailable {
        /// The corpus (name, file name, expected SHA-256).
        corpus: &'static crate::corpus::NamedCorpus,
        /// The cache directory that was searched.
        cache_dir: PathBuf,
        /// The URL it would be downloaded from.
        url: String,
        /// Why it is unavailable (offline, download error, ...).
        reason: String,
    },

    /// A download failed.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong (HTTP status, connection error, truncated body, ...).
        reason: String,
    },

    /// A file's hash does not match the expected one.
    #[error("{what} has sha256 {found}, expected {expected}")]
    HashMismatch {
        /// The file or URL that was checked.
        what: String,
        /// Expected SHA-256 (hex).
        expected: String,
        /// SHA-256 found (hex).
        found: String,
    },

    /// Drawing a plot failed.
    #[error("cannot draw plot {path}: {message}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// The plotting library's message.
        message: String,
    },

    /// Serialising a value to JSON failed.
    #[error("cannot serialise {what} to JSON: {source}")]
    Serialize {
        /// What was being serialised.
        what: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Io`], or an [`Error::MissingFile`] when the file does not exist.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound && action == "read" {
            Error::MissingFile { path }
        } else {
            Error::Io { action, path, source }
        }
    }
}
