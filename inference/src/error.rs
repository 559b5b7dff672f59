//! One error type for the inference crate; callers map it to HTTP statuses once.

use std::path::PathBuf;

use zhengwu_core::ErrorKind;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the caller (maps to 400/422).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Input longer than the model can take (maps to 400 `context_length_exceeded`).
    #[error("input has {tokens} tokens but the model `{model}` accepts at most {limit}")]
    ContextOverflow { model: String, tokens: usize, limit: usize },
    /// A weights file is missing, truncated or has the wrong hash.
    #[error("model file {path}: {msg}")]
    ModelFile { path: PathBuf, msg: String },
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
    /// The model registry (unknown names, bad models.toml; finding, fetching, verifying weights).
    #[error(transparent)]
    Models(#[from] zhengwu_registry::Error),
    /// An error from a seam shared with the other crates (`zhengwu-core`).
    #[error(transparent)]
    Seam(#[from] zhengwu_core::Error),
}

impl Error {
    /// Which of the workspace's error kinds this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) | Error::Tokenizer(_) | Error::Template(_) => ErrorKind::Invalid,
            Error::ContextOverflow { .. } => ErrorKind::ContextOverflow,
            Error::Overloaded { .. } => ErrorKind::Overloaded,
            Error::Cancelled(_) => ErrorKind::Deadline,
            Error::Seam(e) => e.kind(),
            Error::ModelFile { .. }
            | Error::Load { .. }
            | Error::Candle(_)
            | Error::Io { .. }
            | Error::Models(_) => {
                ErrorKind::Internal
            }
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

impl From<tokenizers::Error> for Error {
    fn from(e: tokenizers::Error) -> Self {
        Error::Tokenizer(e.to_string())
    }
}

/// What crosses the seams: the structured variants keep their shape, the rest keep their
/// message and kind.
impl From<Error> for zhengwu_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(m) => zhengwu_core::Error::Invalid(m),
            Error::ContextOverflow { model, tokens, limit } => zhengwu_core::Error::ContextOverflow { model, tokens, limit },
            Error::Overloaded { capacity } => zhengwu_core::Error::Overloaded { capacity },
            Error::Cancelled(m) => zhengwu_core::Error::Cancelled(m),
            Error::Seam(e) => e,
            other => {
                let kind = other.kind();
                if kind == ErrorKind::Invalid {
                    zhengwu_core::Error::Invalid(other.to_string())
                } else {
                    zhengwu_core::Error::Other { kind, message: other.to_string() }
                }
            }
        }
    }
}
