//! The error type of ONNX export and import.

/// What can go wrong when writing or reading an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file is not a valid ONNX protobuf message.
    #[error("{path}: not an ONNX model: {reason}")]
    Decode {
        /// The file.
        path: std::path::PathBuf,
        /// The protobuf decoder's message.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The graph holds a node that the importer does not know how to map.
    #[error("unsupported node `{node}` (op {op_type}): {reason}")]
    UnsupportedNode {
        /// The node's name (or its first output when unnamed).
        node: String,
        /// Its operator.
        op_type: String,
        /// What was expected instead.
        reason: String,
    },
    /// The graph's form does not match what the import expects (a lone recurrent layer, or an
    /// embedding -> recurrent layers -> linear language model).
    #[error("unexpected graph: {0}")]
    Graph(String),
    /// A tensor or attribute of the model is inconsistent.
    #[error("malformed model: {0}")]
    Malformed(String),
    /// The model uses a feature that ONNX's recurrent operators cannot express.
    #[error("cannot export to ONNX: {0}")]
    Inexpressible(String),
    /// An error from the model crate (configuration, state dict).
    #[error(transparent)]
    Model(#[from] seqmodels::Error),
    /// An error from the training crate (language-model configuration).
    #[error(transparent)]
    Train(#[from] crate::Error),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result type of the ONNX module.
pub type Result<T> = std::result::Result<T, OnnxError>;
