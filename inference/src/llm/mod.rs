//! Chat generation: the quantized transformer, text handling and the request scheduler.

pub mod engine;
pub mod kquant;
pub mod model;
pub mod q8;
#[cfg(target_arch = "x86_64")]
mod simd;
pub mod text;

pub use engine::{EngineOptions, LlmEngine};
pub use zhengwu_core::ChatMessage;

use std::time::Instant;

pub use zhengwu_core::{
    ChatRequest, Completion, FinishReason, GenerationEvent, GenerationParams, GenerationStream, Generator,
};

/// A prompt already rendered through the chat template, with its parameters: what the
/// engine's scheduler runs. Callers outside the engine use [`Generator::chat`]; benchmarks
/// that need an exact prompt use [`LlmEngine::submit`].
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompt: String,
    pub params: GenerationParams,
    /// Generation stops with an error once this instant passes.
    pub deadline: Option<Instant>,
}

