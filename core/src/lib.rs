//! The seams every zhengwu crate shares, with nothing heavy behind them: the chat
//! [`Generator`] and sentence [`Embedder`] traits, the plain types that cross them, and one set
//! of error kinds ([`ErrorKind`]) that every crate maps its errors into and that the HTTP layer
//! turns into statuses in one table ([`ErrorKind::http_status`]).
//!
//! The candle engine (`zhengwu-inference`) and the remote OpenAI-compatible client implement
//! the traits; `rag` and `hotline` see only this crate. With the `testing` feature,
//! [`testing`] has deterministic fakes so their tests run without model files.

pub mod embed;
pub mod error;
pub mod generate;
pub mod linear;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use embed::{EmbedKind, Embedder, Embeddings};
pub use error::{Error, ErrorKind, Result};
pub use linear::{LinearModel, LinearTrainer, Targets, TrainConfig};
pub use generate::{
    collect, collect_blocking, validate_params, ChatMessage, ChatRequest, Completion, FinishReason, Generated,
    GenerationEvent, GenerationParams, GenerationStream, Generator,
};

/// The AI-content label every generated answer carries (GB 45438-2025), on `/v1` and `/api/ask`.
pub const AI_LABEL: &str = "本回复由人工智能生成，仅供参考";

/// The `ai_content` object attached to generated answers.
pub fn ai_marker(model: &str) -> serde_json::Value {
    serde_json::json!({ "ai_generated": true, "label": AI_LABEL, "model": model, "standard": "GB 45438-2025" })
}
