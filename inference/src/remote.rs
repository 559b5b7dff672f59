//! A [`Generator`] that is another server: any OpenAI-compatible `/v1/chat/completions`
//! (a llama.cpp server, vLLM, another zhengwu). A deployment whose citizens outgrow one machine
//! puts the chat model on a GPU serving cluster this way; retrieval, tickets and the hotline
//! stay as they are, since they only see the trait.
//!
//! Each generation is one streamed request (`stream: true`, usage included). [`Generator::chat`]
//! checks the request locally, sends it and waits for the response headers, so a refusal by
//! the remote (busy, invalid, too long) is an error of its kind right away, as with the local
//! engine; the body is then read on a thread of its own. Dropping the stream closes the
//! connection, which cancels the generation on a server that notices (zhengwu does).

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zhengwu_core::{
    ChatRequest, Completion, Error, ErrorKind, FinishReason, GenerationEvent, GenerationStream, Generator, Result,
};

/// Where the remote server is and what it serves.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Base URL up to and excluding `/v1` (e.g. `http://10.0.0.5:8080`); a trailing `/v1` is
    /// accepted too.
    pub base_url: String,
    /// The `model` field sent, as the remote server names its model.
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set.
    pub api_key: Option<String>,
    /// The remote model's context window in tokens (the remote does not say; used to cut a
    /// default `max_tokens` to an estimate of the room the prompt leaves).
    pub context_length: usize,
    /// Generations in flight at once from this process; more are refused (429) here.
    pub max_in_flight: usize,
    /// How long to wait for a connection and for the response headers.
    pub connect_timeout: Duration,
    /// Longest silence between two reads of a stream before the generation fails (a remote
    /// that stalls must not hold a slot forever).
    pub read_timeout: Duration,
}

impl RemoteOptions {
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            context_length: 8192,
            max_in_flight: 64,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(300),
        }
    }
}

/// The remote backend.
pub struct RemoteGenerator {
    opts: RemoteOptions,
    url: String,
    agent: ureq::Agent,
    in_flight: Arc<AtomicUsize>,
}

impl RemoteGenerator {
    pub fn new(opts: RemoteOptions) -> Result<Self> {
        let base = opts.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Invalid(format!("remote generator URL `{}` must start with http:// or https://", opts.base_url)));
        }
        if opts.model.trim().is_empty() {
            return Err(Error::Invalid("the remote generator needs the name of the model it serves".into()));
        }
        let url = format!("{base}/v1/chat/completions");
        let agent = ureq::AgentBuilder::new().timeout_connect(opts.connect_timeout).timeout_read(opts.read_timeout).build();
        Ok(Self { opts, url, agent, in_flight: Arc::new(AtomicUsize::new(0)) })
    }

    /// The request body: OpenAI's fields, plus `top_k` / `repetition_penalty` only when set
    /// (llama.cpp, vLLM and zhengwu read them; a strict OpenAI server never sees them unset).
    fn body(&self, request: &ChatRequest) -> Value {
        let p = &request.params;
        let mut max_tokens = p.max_tokens;
        if request.fit_max_tokens {
            // No tokenizer here: one token per character is a safe over-estimate for Chinese.
            let estimate: usize = request.messages.iter().map(|m| m.content.chars().count() + 8).sum();
            let room = self.opts.context_length.saturating_sub(estimate);
            if room > 0 {
                max_tokens = max_tokens.min(room);
            }
        }
        let mut body = json!({
            "model": self.opts.model,
            "messages": request.messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": max_tokens,
            "temperature": p.temperature,
            "seed": p.seed,
        });
        if let Some(top_p) = p.top_p {
            body["top_p"] = json!(top_p);
        }
        if let Some(k) = p.top_k {
            body["top_k"] = json!(k);
        }
        if p.repetition_penalty != 1.0 {
            body["repetition_penalty"] = json!(p.repetition_penalty);
        }
        if !p.stop.is_empty() {
            body["stop"] = json!(p.stop);
        }
        body
    }

    /// A refusal by the remote server, as the error of its kind.
    fn refusal(&self, status: u16, text: &str) -> Error {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let message = v["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| text.chars().take(300).collect());
        let message = format!("remote generator ({status}): {message}");
        match (status, v["error"]["code"].as_str(), v["error"]["param"].as_str()) {
            (_, Some("context_length_exceeded"), _) => Error::Other { kind: ErrorKind::ContextOverflow, message },
            (400 | 422, _, Some(param)) => Error::InvalidParam { param: param.into(), message },
            (400 | 422, _, _) => Error::Invalid(message),
            (429, _, _) => Error::Other { kind: ErrorKind::Overloaded, message },
            (503, _, _) => Error::NotReady(message),
            (504, _, _) => Error::Cancelled(message),
            // Credentials, an unknown model, a fault there: our configuration or their fault,
            // not something the caller can change.
            _ => Error::internal(message),
        }
    }
}

/// Gives back an in-flight slot when the generation ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Generator for RemoteGenerator {
    fn model_id(&self) -> &str {
        &self.opts.model
    }

    fn context_length(&self) -> usize {
        self.opts.context_length
    }

    fn chat(&self, request: ChatRequest) -> Result<GenerationStream> {
        request.validate()?;
        let estimate: usize = request.messages.iter().map(|m| m.content.chars().count()).sum();
        // The remote tokenizer may pack several characters in a token, so only a prompt far
        // past the window is refused here; the remote decides the rest.
        if estimate > 4 * self.opts.context_length {
            return Err(Error::ContextOverflow { model: self.opts.model.clone(), tokens: estimate, limit: self.opts.context_length });
        }
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.opts.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Overloaded { capacity: self.opts.max_in_flight });
        }
        let slot = Slot(self.in_flight.clone());
        let started = Instant::now();
        let mut call = self.agent.post(&self.url).set("content-type", "application/json").set("accept", "text/event-stream");
        if let Some(key) = &self.opts.api_key {
            call = call.set("authorization", &format!("Bearer {key}"));
        }
        if let Some(deadline) = request.deadline {
            let left = deadline.saturating_duration_since(started);
            if left.is_zero() {
                return Err(Error::Cancelled("request deadline exceeded".into()));
            }
            call = call.timeout(left);
        }
        let body = self.body(&request).to_string();
        // Waiting for the response headers blocks: inside a multi-thread runtime (the HTTP
        // handlers) the worker hands its other tasks on while it waits.
        let response = match off_the_runtime(|| call.send_string(&body)) {
            Ok(r) => r,
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(self.refusal(status, &text));
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(Error::NotReady(format!("the remote generator at {} cannot be reached: {t}", self.url)));
            }
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = BufReader::new(response.into_reader());
        std::thread::Builder::new()
            .name("remote-generation".into())
            .spawn(move || {
                let _slot = slot;
                let event = read_stream(reader, started, &tx);
                let _ = tx.send(event);
            })
            .map_err(|e| Error::internal(format!("spawning the remote reader: {e}")))?;
        Ok(rx)
    }

    fn queue_depth(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// Run blocking `f` so that an async caller's runtime keeps serving other tasks
/// (`block_in_place` on a multi-thread runtime; as is elsewhere).
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Read the server-sent events of one generation, forwarding text; returns the final event.
fn read_stream(reader: impl BufRead, started: Instant, tx: &tokio::sync::mpsc::UnboundedSender<GenerationEvent>) -> GenerationEvent {
    let mut finish_reason = FinishReason::Stop;
    let mut usage: Option<(usize, usize)> = None;
    let mut deltas = 0usize;
    let mut first_text: Option<Instant> = None;
    for line in reader.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => {
                return GenerationEvent::Failed(Error::Cancelled("request deadline exceeded (remote generator)".into()));
            }
            Err(e) => return GenerationEvent::Failed(Error::internal(format!("reading the remote generator's stream: {e}"))),
        };
        let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
        if data == "[DONE]" {
            break;
        }
        let v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => return GenerationEvent::Failed(Error::internal(format!("the remote generator sent a chunk that is not JSON ({e})"))),
        };
        if let Some(err) = v.get("error") {
            let message = err["message"].as_str().unwrap_or("unknown error");
            let kind = if err["code"].as_str() == Some("deadline_exceeded") { ErrorKind::Deadline } else { ErrorKind::Internal };
            return GenerationEvent::Failed(Error::Other { kind, message: format!("remote generator: {message}") });
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            usage = Some((u["prompt_tokens"].as_u64().unwrap_or(0) as usize, u["completion_tokens"].as_u64().unwrap_or(0) as usize));
        }
        let choice = &v["choices"][0];
        if let Some(text) = choice["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
            first_text.get_or_insert_with(Instant::now);
            deltas += 1;
            if tx.send(GenerationEvent::Delta(text.to_string())).is_err() {
                // The caller went away: closing the connection cancels the remote generation.
                return GenerationEvent::Failed(Error::Cancelled("client went away".into()));
            }
        }
        match choice["finish_reason"].as_str() {
            Some("length") => finish_reason = FinishReason::Length,
            Some(_) => finish_reason = FinishReason::Stop,
            None => {}
        }
    }
    let now = Instant::now();
    let first = first_text.unwrap_or(now);
    let (prompt_tokens, completion_tokens) = usage.unwrap_or((0, deltas));
    GenerationEvent::Done(Completion {
        finish_reason,
        prompt_tokens,
        completion_tokens,
        queue_secs: 0.0,
        prefill_secs: first.duration_since(started).as_secs_f64(),
        decode_secs: now.duration_since(first).as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(sse: &str) -> (Vec<String>, GenerationEvent) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let last = read_stream(BufReader::new(sse.as_bytes()), Instant::now(), &tx);
        drop(tx);
        let mut text = Vec::new();
        while let Ok(GenerationEvent::Delta(d)) = rx.try_recv() {
            text.push(d);
        }
        (text, last)
    }

    #[test]
    fn a_stream_becomes_deltas_and_a_completion_with_usage() {
        let sse = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                   data: {\"choices\":[{\"delta\":{\"content\":\"你好\"},\"finish_reason\":null}]}\n\n\
                   : keep-alive\n\n\
                   data: {\"choices\":[{\"delta\":{\"content\":\"，市民\"},\"finish_reason\":\"length\"}]}\n\n\
                   data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n\
                   data: [DONE]\n\n";
        let (text, last) = events(sse);
        assert_eq!(text, ["你好", "，市民"]);
        match last {
            GenerationEvent::Done(c) => {
                assert_eq!((c.finish_reason, c.prompt_tokens, c.completion_tokens), (FinishReason::Length, 12, 3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_in_the_stream_and_garbage_are_failures_of_their_kind() {
        let (_, last) = events("data: {\"error\":{\"message\":\"deadline\",\"code\":\"deadline_exceeded\"}}\n\n");
        assert!(matches!(last, GenerationEvent::Failed(ref e) if e.kind() == ErrorKind::Deadline), "{last:?}");
        let (_, last) = events("data: {not json\n\n");
        assert!(matches!(last, GenerationEvent::Failed(ref e) if e.kind() == ErrorKind::Internal), "{last:?}");
    }

    #[test]
    fn refusals_map_to_kinds_and_bad_urls_are_refused() {
        let g = RemoteGenerator::new(RemoteOptions::new("http://127.0.0.1:9/v1/", "m")).unwrap();
        assert_eq!(g.url, "http://127.0.0.1:9/v1/chat/completions");
        let ctx = r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(g.refusal(400, ctx).kind(), ErrorKind::ContextOverflow);
        let param = r#"{"error":{"message":"bad","param":"temperature"}}"#;
        assert!(matches!(g.refusal(422, param), Error::InvalidParam { ref param, .. } if param == "temperature"));
        assert_eq!(g.refusal(429, "busy").kind(), ErrorKind::Overloaded);
        assert_eq!(g.refusal(503, "").kind(), ErrorKind::NotReady);
        assert_eq!(g.refusal(401, "").kind(), ErrorKind::Internal);
        assert!(RemoteGenerator::new(RemoteOptions::new("ftp://x", "m")).is_err());
        // Nothing listens on port 9 (discard): not ready, not a hang.
        let req = ChatRequest::new(vec![zhengwu_core::ChatMessage::new("user", "hi")], Default::default());
        assert_eq!(g.chat(req).map(|_| ()).unwrap_err().kind(), ErrorKind::NotReady);
        assert_eq!(g.queue_depth(), 0, "a failed call gives its slot back");
    }
}
