//! zhengwu inference engine: the model registry (`models.toml`), weight fetching, and the
//! candle implementations of the two model seams `zhengwu-core` defines, [`Generator`] and
//! [`Embedder`].
//!
//! Other crates see the traits and plain data types through `zhengwu-core`; this crate
//! re-exports them for the binary.

pub mod device;
pub mod e5;
pub mod error;
pub mod finetune;
pub mod linear;
pub mod llm;
pub mod remote;
pub mod tensor_file;

pub use error::{Error, Result};
/// The model registry, its own crate; re-exported so `zhengwu_inference::registry::…` paths hold.
pub use zhengwu_registry as registry;
pub use llm::GenerationRequest;
pub use zhengwu_core::{
    ai_marker, collect, collect_blocking, ChatMessage, ChatRequest, Completion, EmbedKind, Embedder, Embeddings,
    FinishReason, Generated, GenerationEvent, GenerationParams, GenerationStream, Generator, AI_LABEL,
};
