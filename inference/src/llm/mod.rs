//! Chat generation: the quantized transformer, text handling and the request scheduler.

pub mod engine;
pub mod kquant;
pub mod model;
pub mod q8;
#[cfg(target_arch = "x86_64")]
mod simd;
pub mod text;

pub use engine::{EngineOptions, LlmEngine};
pub use text::ChatMessage;

use serde::{Deserialize, Serialize};
use std::time::Instant;

use crate::Result;

/// Sampling and stopping parameters of one request.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0 means greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    /// 1.0 disables the penalty.
    pub repetition_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens (benchmarks only).
    pub ignore_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: 299_792_458,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// A prompt (already rendered through the chat template) with its parameters.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub prompt: String,
    pub params: GenerationParams,
    /// Generation stops with an error once this instant passes.
    pub deadline: Option<Instant>,
}

/// Why generation ended (OpenAI `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context window is full.
    Length,
}

/// Summary sent once at the end of a generation.
#[derive(Debug, Clone)]
pub struct Completion {
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Seconds spent waiting in the queue before the first forward pass.
    pub queue_secs: f64,
    pub prefill_secs: f64,
    pub decode_secs: f64,
}

/// What a running generation sends back.
#[derive(Debug)]
pub enum GenerationEvent {
    /// Newly produced text (complete UTF-8; never part of a stop string).
    Delta(String),
    /// Generation finished normally.
    Done(Completion),
    /// Generation failed part-way (deadline, model error).
    Failed(crate::Error),
}

/// Receiver of a generation's events. Dropping it cancels the generation.
pub type GenerationStream = tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>;

/// A chat model behind a scheduler.
pub trait Generator: Send + Sync {
    fn model_id(&self) -> &str;
    /// Longest prompt + completion in tokens.
    fn context_length(&self) -> usize;
    /// Render chat messages with the model's template (generation prompt appended).
    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String>;
    /// Tokens in `text` as the model would see it.
    fn count_tokens(&self, text: &str) -> Result<usize>;
    /// Queue a generation. Fails fast with `Error::Overloaded` when the queue is full and with
    /// `Error::ContextOverflow` when prompt + max_tokens does not fit.
    fn submit(&self, request: GenerationRequest) -> Result<GenerationStream>;
    /// Requests waiting or running right now.
    fn queue_depth(&self) -> usize;
}
