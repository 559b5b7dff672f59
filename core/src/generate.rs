//! Chat generation: the [`Generator`] trait and what crosses it. A caller hands over chat
//! messages and sampling parameters; the backend (the local candle engine, a remote
//! OpenAI-compatible server, a test fake) templates, tokenizes and validates them once, and
//! streams the answer back as [`GenerationEvent`]s. [`collect`] / [`collect_blocking`] gather a
//! stream for callers that want the whole text.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One chat message, OpenAI style.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.to_string(), content: content.into() }
    }
}

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

/// The one check of sampling parameters, shared by every backend.
pub fn validate_params(p: &GenerationParams) -> Result<()> {
    let bad = |param: &str, message: &str| Err(Error::invalid_param(param, message));
    if p.max_tokens == 0 {
        return bad("max_tokens", "max_tokens must be at least 1");
    }
    if !(p.temperature.is_finite() && (0.0..=2.0).contains(&p.temperature)) {
        return bad("temperature", "temperature must be between 0 and 2");
    }
    if p.top_p.is_some_and(|top_p| !(top_p > 0.0 && top_p <= 1.0)) {
        return bad("top_p", "top_p must be in (0, 1]");
    }
    if p.top_k == Some(0) {
        return bad("top_k", "top_k must be at least 1");
    }
    if !(p.repetition_penalty.is_finite() && p.repetition_penalty > 0.0) {
        return bad("repetition_penalty", "repetition_penalty must be > 0");
    }
    if p.stop.len() > 4 {
        return bad("stop", "at most 4 stop sequences");
    }
    Ok(())
}

/// A chat to answer: the messages, how to sample, until when.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub params: GenerationParams,
    /// Generation stops with [`Error::Cancelled`] once this instant passes.
    pub deadline: Option<Instant>,
    /// `true`: `params.max_tokens` is an upper bound, cut to the room the prompt leaves in the
    /// context. `false`: a prompt plus `max_tokens` over the context is
    /// [`Error::ContextOverflow`] (a client that asked for that many tokens explicitly).
    pub fit_max_tokens: bool,
}

impl ChatRequest {
    pub fn new(messages: Vec<ChatMessage>, params: GenerationParams) -> Self {
        Self { messages, params, deadline: None, fit_max_tokens: true }
    }

    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Roles are the three the chat templates know, and there is at least one message.
    pub fn validate(&self) -> Result<()> {
        if self.messages.is_empty() {
            return Err(Error::invalid_param("messages", "`messages` must contain at least one message"));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(Error::invalid_param(
                    &format!("messages[{i}].role"),
                    format!("unsupported message role `{}` (use system, user or assistant)", m.role),
                ));
            }
        }
        validate_params(&self.params)
    }
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

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
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
    Failed(Error),
}

/// Receiver of a generation's events. Dropping it cancels the generation.
pub type GenerationStream = tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>;

/// A chat model behind a scheduler.
pub trait Generator: Send + Sync {
    fn model_id(&self) -> &str;
    /// Longest prompt + completion in tokens.
    fn context_length(&self) -> usize;
    /// Queue a chat generation. The backend applies its chat template, tokenizes and checks
    /// the request ([`ChatRequest::validate`], context room). Fails fast with
    /// [`Error::Overloaded`] when the queue is full and [`Error::ContextOverflow`] when the
    /// prompt does not fit.
    fn chat(&self, request: ChatRequest) -> Result<GenerationStream>;
    /// Requests waiting or running right now.
    fn queue_depth(&self) -> usize;
}

/// A whole generation: its text and the completion summary.
#[derive(Debug, Clone)]
pub struct Generated {
    pub text: String,
    pub completion: Completion,
}

fn ended_early() -> Error {
    Error::internal("generation ended without a result")
}

/// Gather a stream into the whole text (async callers).
pub async fn collect(mut stream: GenerationStream) -> Result<Generated> {
    let mut text = String::new();
    while let Some(ev) = stream.recv().await {
        match ev {
            GenerationEvent::Delta(d) => text.push_str(&d),
            GenerationEvent::Done(completion) => return Ok(Generated { text, completion }),
            GenerationEvent::Failed(e) => return Err(e),
        }
    }
    Err(ended_early())
}

/// Gather a stream into the whole text, blocking the thread (CLI, eval, `spawn_blocking`;
/// never on an async worker).
pub fn collect_blocking(mut stream: GenerationStream) -> Result<Generated> {
    let mut text = String::new();
    while let Some(ev) = stream.blocking_recv() {
        match ev {
            GenerationEvent::Delta(d) => text.push_str(&d),
            GenerationEvent::Done(completion) => return Ok(Generated { text, completion }),
            GenerationEvent::Failed(e) => return Err(e),
        }
    }
    Err(ended_early())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done() -> Completion {
        Completion { finish_reason: FinishReason::Stop, prompt_tokens: 3, completion_tokens: 2, queue_secs: 0.0, prefill_secs: 0.0, decode_secs: 0.0 }
    }

    #[test]
    fn collect_gathers_deltas_and_reports_failures_and_early_ends() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(GenerationEvent::Delta("你".into())).unwrap();
        tx.send(GenerationEvent::Delta("好".into())).unwrap();
        tx.send(GenerationEvent::Done(done())).unwrap();
        let g = collect_blocking(rx).unwrap();
        assert_eq!(g.text, "你好");
        assert_eq!(g.completion.completion_tokens, 2);

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(GenerationEvent::Delta("半".into())).unwrap();
        tx.send(GenerationEvent::Failed(Error::Cancelled("deadline passed".into()))).unwrap();
        assert_eq!(collect_blocking(rx).unwrap_err().kind(), crate::ErrorKind::Deadline);

        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<GenerationEvent>();
        drop(tx);
        assert_eq!(collect_blocking(rx).unwrap_err().kind(), crate::ErrorKind::Internal);
    }

    #[test]
    fn requests_are_checked_once_here() {
        let ok = ChatRequest::new(vec![ChatMessage::new("user", "hi")], GenerationParams::default());
        ok.validate().unwrap();
        let mut r = ok.clone();
        r.messages.clear();
        assert!(r.validate().is_err());
        let mut r = ok.clone();
        r.messages[0].role = "wizard".into();
        assert!(r.validate().unwrap_err().to_string().contains("wizard"));
        for bad in [
            GenerationParams { max_tokens: 0, ..Default::default() },
            GenerationParams { temperature: f64::NAN, ..Default::default() },
            GenerationParams { temperature: 2.5, ..Default::default() },
            GenerationParams { top_p: Some(0.0), ..Default::default() },
            GenerationParams { top_k: Some(0), ..Default::default() },
            GenerationParams { repetition_penalty: 0.0, ..Default::default() },
            GenerationParams { stop: vec!["a".into(); 5], ..Default::default() },
        ] {
            assert_eq!(validate_params(&bad).unwrap_err().kind(), crate::ErrorKind::Invalid, "{bad:?}");
        }
    }
}
