//! The registry's errors; the inference crate wraps them, the binary reports them.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Model registry problems (unknown name, bad models.toml).
    #[error("model registry: {0}")]
    Registry(String),
    /// A weights file is missing, truncated or has the wrong hash.
    #[error("model file {path}: {msg}")]
    ModelFile { path: PathBuf, msg: String },
    /// Fetching weights failed.
    #[error("fetching `{model}`: {msg}")]
    Fetch { model: String, msg: String },
    /// The model file could be read but its contents are not what the converter expects.
    #[error("loading `{model}`: {msg}")]
    Load { model: String, msg: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{context}: {source}")]
    Io { context: String, #[source] source: std::io::Error },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}
