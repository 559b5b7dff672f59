//! One error type for the knowledge base.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written (`fs_err` messages carry the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A document could not be turned into text (corrupt, unsupported, bad front matter).
    #[error("{path}: {reason}")]
    Document { path: PathBuf, reason: String },
    /// The vector store refused an operation.
    #[error("vector store: {0}")]
    Store(String),
    /// The embedding or chat model failed.
    #[error("model: {0}")]
    Model(#[from] zhengwu_core::Error),
    /// A request or config value is invalid (bad date, empty query, unknown mode ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// Which of the workspace's error kinds this is (the HTTP status follows from it).
    pub fn kind(&self) -> zhengwu_core::ErrorKind {
        use zhengwu_core::ErrorKind;
        match self {
            Error::Invalid(_) | Error::Document { .. } => ErrorKind::Invalid,
            Error::Model(e) => e.kind(),
            Error::Io(_) | Error::Store(_) | Error::Json(_) => ErrorKind::Internal,
        }
    }

    pub fn document(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Document { path: path.into(), reason: reason.into() }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
