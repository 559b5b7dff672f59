//! One error type for the inference crate; callers map it to HTTP statuses once.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the caller (maps to 400/422).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Input longer than the model can take (maps to 400 `context_length_exceeded`).
    #[error("input has {tokens} tokens but the model `{model}` accepts at most {limit}")]
    ContextOverflow { model: String, tokens: usize, limit: usize },
    /// Model registry problems (unknown name, bad models.toml).
    #[error("model registry: {0}")]
    Registry(String),
    /// A weights file is missing, truncated or has the wrong hash.
    #[error("model file {path}: {msg}")]
    ModelFile { path: PathBuf, msg: String },
    /// Fetching weights failed.
    #[error("fetching `{model}`: {msg}")]
    Fetch { model: String, msg: String },
    /// The model file could be read but its contents are not what the loader expects.
    #[error("loading `{model}`: {msg}")]
    Load { model: String, msg: String },
    /// The scheduler queue is full (maps to 429; the client should retry later).
    #[error("server busy: {capacity} requests already queued or running")]
    Overloaded { capacity: usize },
    /// The request was cancelled (client went away or deadline passed).
    #[error("cancelled: {0}")]
    Cancelled(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("{context}: {source}")]
    Io { context: String, #[source] source: std::io::Error },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

impl From<tokenizers::Error> for Error {
    fn from(e: tokenizers::Error) -> Self {
        Error::Tokenizer(e.to_string())
    }
}
