//! Hotline intelligence: classification, dispatch, callback quality, hot spots and
//! supervisor metrics.
//!
//! Models here are small and trained in-process ([`linear`]: AdamW on candle, through the
//! trainer the binary hands in) on features made of hashed character n-grams and e5 sentence
//! embeddings ([`features`]); a trained model is one safetensors [`artifact`] listed in
//! `models.toml`. Rules written by the deployment
//! (`knowledge-base/departments.toml`, `dispatch_rules.toml`) sit in front of the models and win
//! when they match, so every decision can be explained.

pub mod artifact;
pub mod callback;
pub mod data;
pub mod departments;
pub mod dispatch;
pub mod duty;
pub mod features;
pub mod form;
pub mod form_llm;
pub mod hotspots;
pub mod http;
pub mod linear;
pub mod replies;
pub mod score;
pub mod similar;
pub mod supervisor;
pub mod tasks;

#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    #[error("{0}")]
    Model(String),
    #[error("data: {0}")]
    Data(String),
    #[error("config: {0}")]
    Config(String),
    #[error("embedding: {0}")]
    Embed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl IntelError {
    pub(crate) fn embed(e: zhengwu_core::Error) -> IntelError {
        IntelError::Embed(e.to_string())
    }
}

/// A linear model's or trainer's error: bad data is the caller's, the rest the model's.
impl From<zhengwu_core::Error> for IntelError {
    fn from(e: zhengwu_core::Error) -> Self {
        if e.kind() == zhengwu_core::ErrorKind::Invalid {
            IntelError::Data(e.to_string())
        } else {
            IntelError::Model(e.to_string())
        }
    }
}
