//! `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`, shaped like OpenAI's API so any
//! OpenAI client works. Every generated message carries the AI-content label (GB 45438-2025).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use zhengwu_core::{
    ChatMessage, ChatRequest as EngineChat, Completion, EmbedKind, GenerationEvent, GenerationParams,
    Generator,
};

use super::{ApiError, AppState};
use zhengwu_core::ErrorKind;

/// The `ai_content` object attached to every generated message (label defined in the inference crate).
use zhengwu_core::ai_marker;

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<RequestMessage>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<StopSpec>,
    pub n: Option<u32>,
    /// Only `{"type": "text"}`: JSON mode and schemas are refused (422), not ignored.
    pub response_format: Option<Value>,
    /// Not implemented: `true` is refused (422) rather than answered with `null`.
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    /// Not implemented: a non-empty list is refused (422).
    pub tools: Option<Value>,
    /// zhengwu extension: `true` or `{"filter": {...}}` answers the last user message from the
    /// knowledge base, as `/api/ask` does (see [`rag_chat`]).
    pub rag: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    pub content: Option<MessageContent>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    One(String),
    Many(Vec<String>),
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn generator(state: &AppState) -> Result<&Arc<dyn Generator>, ApiError> {
    state.generator.get().ok_or_else(|| {
        if state.expect_generator {
            ApiError::not_ready("the chat model")
        } else {
            ApiError::of(ErrorKind::NotFound, "this server runs no chat model")
                .with_code("model_not_found")
        }
    })
}

fn check_model(requested: Option<&str>, served: &str) -> Result<(), ApiError> {
    match requested {
        Some(m) if !m.is_empty() && m != served => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model `{m}` is not served here; available: `{served}`"),
        )
        .with_code("model_not_found")),
        _ => Ok(()),
    }
}

/// The text of message `i` (a string, or text parts joined).
fn message_text(i: usize, m: &RequestMessage) -> Result<String, ApiError> {
    Ok(match &m.content {
        None => String::new(),
        Some(MessageContent::Text(t)) => t.clone(),
        Some(MessageContent::Parts(parts)) => {
            let mut s = String::new();
            for p in parts {
                if p.kind != "text" {
                    return Err(ApiError::invalid(
                        &format!("messages[{i}].content"),
                        format!("content part type `{}` is not supported (text only)", p.kind),
                    ));
                }
                s.push_str(p.text.as_deref().unwrap_or(""));
            }
            s
        }
    })
}

/// Parameters this server does not implement are refused by name (422): answering 200 while
/// ignoring them would hand the client something other than what it asked for.
fn refuse_unsupported(req: &ChatRequest) -> Result<(), ApiError> {
    if req.n.unwrap_or(1) != 1 {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    if let Some(f) = &req.response_format {
        let kind = f.get("type").and_then(Value::as_str);
        if kind != Some("text") {
            return Err(ApiError::invalid(
                "response_format",
                format!("response_format type {} is not supported (only `text`)", kind.map(|k| format!("`{k}`")).unwrap_or_else(|| "(missing)".into())),
            ));
        }
    }
    if req.logprobs == Some(true) || req.top_logprobs.is_some() {
        let param = if req.logprobs == Some(true) { "logprobs" } else { "top_logprobs" };
        return Err(ApiError::invalid(param, "log probabilities are not supported"));
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(ApiError::invalid("tools", "tool calls are not supported"));
    }
    Ok(())
}

/// Validate the request and turn it into the engine's chat request. The engine templates and
/// counts tokens; a `max_tokens` the client asked for that does not fit is its 400
/// `context_length_exceeded`, the default one is cut to the room the prompt leaves.
fn prepare(req: &ChatRequest, state: &AppState, gen: &dyn Generator) -> Result<EngineChat, ApiError> {
    check_model(req.model.as_deref(), gen.model_id())?;
    refuse_unsupported(req)?;
    // Roles, sampling ranges and the context are checked once, by the engine
    // (`ChatRequest::validate`); its errors name the parameter.
    let messages = req.messages.iter().enumerate().map(|(i, m)| Ok(ChatMessage::new(&m.role, message_text(i, m)?))).collect::<Result<Vec<_>, ApiError>>()?;
    let stop: Vec<String> = match &req.stop {
        None => Vec::new(),
        Some(StopSpec::One(s)) => vec![s.clone()],
        Some(StopSpec::Many(v)) => v.clone(),
    };
    let (max_tokens, fit_max_tokens) = match req.max_completion_tokens.or(req.max_tokens) {
        Some(n) => (n as usize, false),
        None => (state.limits.default_max_tokens, true),
    };
    let params = GenerationParams {
        max_tokens,
        temperature: req.temperature.unwrap_or(0.7),
        top_p: req.top_p,
        top_k: req.top_k.map(|k| k as usize),
        repetition_penalty: req.repetition_penalty.unwrap_or(1.0),
        seed: req.seed.unwrap_or_else(rand_seed),
        stop,
        ..GenerationParams::default()
    };
    Ok(EngineChat { messages, params, deadline: None, fit_max_tokens })
}

fn rand_seed() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(42)
}

/// One `chat.completion.chunk` of a stream, with the AI label.
fn stream_chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }],
        "ai_content": ai_marker(model),
    })
}

fn usage(c: &Completion) -> Value {
    json!({
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.prompt_tokens + c.completion_tokens,
    })
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    if let Some(filter) = rag_filter(req.rag.as_ref())? {
        return rag_chat(state, req, filter).await;
    }
    let gen = generator(&state)?.clone();
    let request = prepare(&req, &state, gen.as_ref())?.with_deadline(Instant::now() + state.limits.request_timeout);
    let events = gen.chat(request)?;
    state.metrics.queue_depth.set(gen.queue_depth() as i64);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let model = gen.model_id().to_string();
    if req.stream {
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        Ok(stream_response(state, events, id, model, include_usage).into_response())
    } else {
        collect_response(state, events, id, model).await
    }
}

/// The `rag` option: absent, `false` or `null` = off; `true` = on; `{"filter": {...}}` = on
/// with a knowledge-base filter (region, agency, category, valid_on, as in `/api/ask`).
fn rag_filter(v: Option<&Value>) -> Result<Option<zhengwu_rag::KbFilter>, ApiError> {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some(Default::default())),
        Some(Value::Object(m)) => {
            if let Some(k) = m.keys().find(|k| k.as_str() != "filter") {
                return Err(ApiError::invalid("rag", format!("unknown field `{k}` in `rag` (it takes `filter`)")));
            }
            match m.get("filter") {
                None => Ok(Some(Default::default())),
                Some(f) => serde_json::from_value(f.clone())
                    .map(Some)
                    .map_err(|e| ApiError::invalid("rag.filter", format!("invalid filter: {e}"))),
            }
        }
        Some(_) => Err(ApiError::invalid("rag", "`rag` must be true, false or an object such as {\"filter\": {\"region\": \"示例市\"}}")),
    }
}

fn from_rag_error(e: zhengwu_rag::http::ApiError) -> ApiError {
    let kind = if e.status().is_server_error() { "server_error" } else { "invalid_request_error" };
    ApiError::new(e.status(), kind, e.message()).with_code(e.code())
}

/// A chat completion answered from the knowledge base (`"rag": true`): the last message is the
/// question, earlier user messages are the conversation (follow-ups are read with them), and
/// the answer is `/api/ask`'s: grounded with numbered citations, or the fixed refusal with
/// hand-off to a human. The OpenAI shape is kept; the extension object `rag` carries `kind`,
/// `handoff`, `relevance`, `citations` and `excerpt` (in a stream, on the chunk with the
/// `finish_reason`, with `replaced: true` and the final `answer` when the streamed text was
/// replaced by the refusal).
async fn rag_chat(state: Arc<AppState>, req: ChatRequest, filter: zhengwu_rag::KbFilter) -> Result<Response, ApiError> {
    let rag = state.rag.get().cloned().ok_or_else(|| {
        ApiError::of(ErrorKind::NotReady, "this server has no knowledge base for the `rag` option")
    })?;
    let gen = generator(&state)?.clone();
    check_model(req.model.as_deref(), gen.model_id())?;
    refuse_unsupported(&req)?;
    let Some(last) = req.messages.last().filter(|m| m.role == "user") else {
        return Err(ApiError::invalid("messages", "with `rag`, the last message must be the user's question"));
    };
    let question = message_text(req.messages.len() - 1, last)?;
    let mut history = Vec::new();
    for (i, m) in req.messages.iter().enumerate().take(req.messages.len() - 1) {
        if m.role == "user" {
            history.push(message_text(i, m)?);
        }
    }
    let max_tokens = match req.max_completion_tokens.or(req.max_tokens) {
        Some(0) => return Err(ApiError::invalid("max_tokens", "max_tokens must be at least 1")),
        n => n.map(|n| n as usize),
    };
    let ask = zhengwu_rag::answer::AskRequest { question, filter, stream: req.stream, max_tokens, history };
    let (model, mut events) = rag.ask_events(ask).await.map_err(from_rag_error)?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_secs();
    let extension = |a: &zhengwu_rag::answer::Answer| {
        json!({"kind": a.kind, "handoff": a.handoff, "relevance": a.relevance, "citations": a.citations, "excerpt": a.excerpt})
    };
    let rag_usage = |a: &zhengwu_rag::answer::Answer| {
        let (p, c) = (a.timings.prompt_tokens, a.timings.completion_tokens);
        json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
    };
    if !req.stream {
        let answer = loop {
            match events.recv().await {
                Some(zhengwu_rag::http::AskEvent::Sources(_) | zhengwu_rag::http::AskEvent::Delta(_)) => {}
                Some(zhengwu_rag::http::AskEvent::Done(a)) => break a,
                Some(zhengwu_rag::http::AskEvent::Failed(e)) => return Err(from_rag_error(e)),
                None => return Err(ApiError::of(ErrorKind::Internal, "generation ended without a result")),
            }
        };
        if let Some(c) = answer.timings.completion() {
            state.metrics.record_completion(&c);
        }
        let body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": answer.answer, "ai_generated": true },
                "finish_reason": "stop",
                "logprobs": null,
            }],
            "usage": rag_usage(&answer),
            "rag": extension(&answer),
            "ai_content": ai_marker(&model),
        });
        let mut resp = Json(body).into_response();
        resp.headers_mut().insert("x-ai-generated", axum::http::HeaderValue::from_static("true"));
        return Ok(resp);
    }
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let chunk = move |delta: Value, finish: Option<&str>| stream_chunk(&id, created, &model, delta, finish);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let metrics = &state.metrics;
        let send = |v: Value| Ok::<_, Infallible>(Event::default().data(v.to_string()));
        if tx.send(send(chunk(json!({"role": "assistant", "content": ""}), None))).await.is_err() {
            return;
        }
        let mut streamed = false;
        let answer = loop {
            match events.recv().await {
                // OpenAI's chunks have no place for sources; they arrive in `rag` at the end.
                Some(zhengwu_rag::http::AskEvent::Sources(_)) => {}
                Some(zhengwu_rag::http::AskEvent::Delta(d)) => {
                    streamed = true;
                    // A closed channel means the client left: dropping `events` cancels.
                    if tx.send(send(chunk(json!({"content": d}), None))).await.is_err() {
                        return;
                    }
                }
                Some(zhengwu_rag::http::AskEvent::Done(a)) => {
                    if let Some(c) = a.timings.completion() {
                        metrics.record_completion(&c);
                    }
                    break a;
                }
                Some(zhengwu_rag::http::AskEvent::Failed(e)) => {
                    let e = from_rag_error(e);
                    let body = json!({"error": {"message": e.message, "type": e.kind, "code": e.code, "param": null}});
                    let _ = tx.send(send(body)).await;
                    let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
                    return;
                }
                None => return,
            }
        };
        if !streamed {
            let _ = tx.send(send(chunk(json!({"content": answer.answer}), None))).await;
        }
        let mut last = chunk(json!({}), Some("stop"));
        last["rag"] = extension(&answer);
        let dropped = answer.grounding.as_ref().is_some_and(|g| !g.dropped.is_empty());
        if streamed && (answer.kind == zhengwu_rag::answer::AnswerKind::Refusal || dropped) {
            last["rag"]["replaced"] = json!(true);
            last["rag"]["answer"] = json!(answer.answer);
        }
        let _ = tx.send(send(last)).await;
        if include_usage {
            let mut u = chunk(json!({}), None);
            u["choices"] = json!([]);
            u["usage"] = rag_usage(&answer);
            let _ = tx.send(send(u)).await;
        }
        let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
    });
    let mut resp = Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default()).into_response();
    resp.headers_mut().insert("x-ai-generated", axum::http::HeaderValue::from_static("true"));
    Ok(resp)
}

async fn collect_response(
    state: Arc<AppState>,
    events: zhengwu_core::GenerationStream,
    id: String,
    model: String,
) -> Result<Response, ApiError> {
    let zhengwu_core::Generated { text, completion: c } = zhengwu_core::collect(events).await?;
    state.metrics.record_completion(&c);
    let body = json!({
        "id": id,
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text, "ai_generated": true },
            "finish_reason": c.finish_reason.as_str(),
            "logprobs": null,
        }],
        "usage": usage(&c),
        "ai_content": ai_marker(&model),
    });
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert("x-ai-generated", axum::http::HeaderValue::from_static("true"));
    Ok(resp)
}

fn stream_response(
    state: Arc<AppState>,
    events: zhengwu_core::GenerationStream,
    id: String,
    model: String,
    include_usage: bool,
) -> impl IntoResponse {
    let created = now_secs();
    let chunk = move |delta: Value, finish: Option<&str>| stream_chunk(&id, created, &model, delta, finish);
    let first = chunk(json!({"role": "assistant", "content": ""}), None);
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(events);
    // Dropping this stream (client gone) drops the receiver, which cancels the generation.
    let body = futures::stream::once(async move { vec![Event::default().data(first.to_string())] })
        .chain(stream.map(move |ev| match ev {
            GenerationEvent::Delta(d) => vec![Event::default().data(chunk(json!({"content": d}), None).to_string())],
            GenerationEvent::Done(c) => {
                state.metrics.record_completion(&c);
                let mut out = vec![Event::default().data(chunk(json!({}), Some(c.finish_reason.as_str())).to_string())];
                if include_usage {
                    let mut u = chunk(json!({}), None);
                    u["choices"] = json!([]);
                    u["usage"] = usage(&c);
                    out.push(Event::default().data(u.to_string()));
                }
                out.push(Event::default().data("[DONE]"));
                out
            }
            GenerationEvent::Failed(e) => {
                let err = ApiError::from(e);
                let body = json!({"error": {"message": err.message, "type": err.kind, "code": err.code, "param": null}});
                vec![Event::default().data(body.to_string()), Event::default().data("[DONE]")]
            }
        }))
        .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    let mut resp = Sse::new(body).keep_alive(KeepAlive::default()).into_response();
    resp.headers_mut().insert("x-ai-generated", axum::http::HeaderValue::from_static("true"));
    resp
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    pub model: Option<String>,
    pub input: EmbeddingInput,
    pub encoding_format: Option<String>,
    pub dimensions: Option<usize>,
    /// zhengwu extension: `query` (default) or `passage` (E5 prefixes).
    pub input_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(#[allow(dead_code)] Vec<Value>),
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    body: Result<Json<EmbeddingRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let embedder = state
        .embedder
        .get()
        .ok_or_else(|| {
            if state.expect_embedder {
                ApiError::not_ready("the embedding model")
            } else {
                ApiError::of(ErrorKind::NotFound, "this server runs no embedding model")
                    .with_code("model_not_found")
            }
        })?
        .clone();
    check_model(req.model.as_deref(), embedder.model_id())?;
    let inputs: Vec<String> = match req.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
        EmbeddingInput::Tokens(_) => {
            return Err(ApiError::invalid("input", "token-id input is not supported; send text"));
        }
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid("input", "`input` must not be empty"));
    }
    if inputs.len() > state.limits.max_embedding_inputs {
        return Err(ApiError::invalid(
            "input",
            format!("at most {} inputs per request, got {}", state.limits.max_embedding_inputs, inputs.len()),
        ));
    }
    if let Some(i) = inputs.iter().position(|s| s.trim().is_empty()) {
        return Err(ApiError::invalid(&format!("input[{i}]"), "input strings must not be empty"));
    }
    let kind = match req.input_type.as_deref() {
        None | Some("query") => EmbedKind::Query,
        Some("passage") => EmbedKind::Passage,
        Some("raw") => EmbedKind::Raw,
        Some(other) => return Err(ApiError::invalid("input_type", format!("unknown input_type `{other}` (query, passage, raw)"))),
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(ApiError::invalid("encoding_format", format!("unknown encoding_format `{other}`"))),
    };
    if let Some(d) = req.dimensions {
        if d != embedder.dim() {
            return Err(ApiError::invalid("dimensions", format!("this model only produces {} dimensions", embedder.dim())));
        }
    }
    let permit = state.embed_slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::of(ErrorKind::Overloaded, "embedding workers are busy; retry shortly")
            .with_code("queue_full")
    })?;
    let worker = embedder.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        worker.embed(&refs, kind)
    })
    .await
    .map_err(|e| ApiError::of(ErrorKind::Internal, format!("embedding task failed: {e}")))??;
    let data: Vec<Value> = result
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": embedder.model_id(),
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }))
    .into_response())
}

pub async fn list_models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let mut data = Vec::new();
    if let Some(g) = state.generator.get() {
        data.push(json!({"id": g.model_id(), "object": "model", "created": 0, "owned_by": "zhengwu", "kind": "chat", "context_length": g.context_length()}));
    }
    if let Some(e) = state.embedder.get() {
        data.push(json!({"id": e.model_id(), "object": "model", "created": 0, "owned_by": "zhengwu", "kind": "embedding", "dimensions": e.dim()}));
    }
    Json(json!({"object": "list", "data": data}))
}
