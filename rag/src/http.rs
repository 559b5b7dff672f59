//! HTTP routes of the knowledge base, merged into the server's `/api`:
//!
//! | route | what |
//! |---|---|
//! | `POST /api/ask` | grounded answer (JSON), or an SSE stream with `"stream": true` |
//! | `GET/POST /api/kb/search` | hit testing: the ranked chunks the answer path uses, scores per retriever |
//! | `GET /api/kb/documents` | stored documents |
//! | `GET /api/kb/status` | readiness, counts, the last ingest report |
//!
//! The models load in the background; these routes answer 503 until the embedding model (and,
//! for `/api/ask`, the chat model) is ready. The store is opened on the first `/api` request; with
//! auto-ingest on (`ZHENGWU_KB_AUTO_INGEST=1`), the knowledge-base folder is synced into the
//! store (incrementally) as soon as the embedder is there.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;
use zhengwu_core::{Embedder, ErrorKind, GenerationEvent, Generator};

use crate::answer::{ai_marker, finish, service_request_text, Answer, AnswerConfig, AnswerKind, Answerer, AskRequest, Plan, RequestDrafter, Timings};
use crate::understand::Lexicon;
use crate::error::Error;
use crate::kb::{IngestOptions, IngestReport, KnowledgeBase, Mode, SearchRequest};
use crate::store::KbFilter;

/// Where the knowledge base lives and how it answers.
#[derive(Debug, Clone)]
pub struct RagConfig {
    /// Documents and FAQ files (`knowledge-base/policy`).
    pub docs_dir: PathBuf,
    /// The vector store directory (default `knowledge-base/.index`).
    pub store_dir: PathBuf,
    /// Sync `docs_dir` into the store when the server starts.
    pub auto_ingest: bool,
    pub answer: AnswerConfig,
    /// Fusion settings of hybrid search (dense and sparse weights, RRF k).
    pub weights: crate::store::FusionWeights,
    /// The folder of `understanding.toml`, `synonyms.toml` and `intents.jsonl`
    /// ([`crate::understand::Lexicon`]); `None` reads every message as a general question.
    pub lexicon_dir: Option<PathBuf>,
    /// A Qdrant server or cluster instead of the embedded store in `store_dir`.
    pub qdrant: Option<crate::qdrant_server::ServerConfig>,
}

impl RagConfig {
    /// The defaults for documents in `docs_dir` and an embedded store in `store_dir`: no
    /// ingest at start-up, the calibrated answer gates, the default fusion, the lexicon beside
    /// the documents ([`RagConfig::default_lexicon_dir`]). The binary layers its configuration
    /// (file, environment, flags) over these; this crate reads no environment.
    pub fn new(docs_dir: PathBuf, store_dir: PathBuf) -> Self {
        let lexicon_dir = Self::default_lexicon_dir(&docs_dir);
        Self {
            docs_dir,
            store_dir,
            // Off by default: every `serve` (tests start many) would otherwise write the store.
            auto_ingest: false,
            answer: AnswerConfig::default(),
            weights: crate::store::FusionWeights::default(),
            lexicon_dir,
            qdrant: None,
        }
    }

    /// The folder above the documents when it holds `understanding.toml` (`knowledge-base/`
    /// for `knowledge-base/policy`), else `knowledge-base` in the working directory if it does.
    pub fn default_lexicon_dir(docs_dir: &std::path::Path) -> Option<PathBuf> {
        let has = |d: &std::path::Path| d.join("understanding.toml").exists();
        docs_dir.parent().filter(|p| has(p)).map(|p| p.to_path_buf()).or_else(|| {
            let local = PathBuf::from("knowledge-base");
            has(&local).then_some(local)
        })
    }
}

type Provider<T> = Arc<dyn Fn() -> Option<Arc<T>> + Send + Sync>;

pub struct RagState {
    config: RagConfig,
    embedder: Provider<dyn Embedder>,
    generator: Provider<dyn Generator>,
    kb: Mutex<Option<Arc<KnowledgeBase>>>,
    open_error: OnceLock<String>,
    last_ingest: Mutex<Option<Result<IngestReport, String>>>,
    /// Read once at start-up; a broken file is reported by every ask (not silently ignored).
    lexicon: Result<Arc<Lexicon>, String>,
    /// Drafts tickets for service requests (the hotline, set by the server).
    drafter: OnceLock<Arc<dyn RequestDrafter>>,
}

impl RagState {
    /// The knowledge base, opened on first use once the embedder is loaded.
    fn kb(&self) -> Result<Arc<KnowledgeBase>, ApiError> {
        if let Some(e) = self.open_error.get() {
            return Err(ApiError::new(ErrorKind::Internal, "kb_unavailable", e.clone()));
        }
        let mut slot = self.kb.lock().map_err(|_| ApiError::internal("knowledge base lock poisoned"))?;
        if let Some(kb) = slot.as_ref() {
            return Ok(kb.clone());
        }
        let embedder = (self.embedder)().ok_or_else(|| {
            ApiError::new(ErrorKind::NotReady, "not_ready", "the embedding model is still loading")
        })?;
        // The Qdrant server when ZHENGWU_QDRANT_URL is set, else the embedded store.
        let store = crate::open_store(&self.config.store_dir, self.config.qdrant.as_ref(), embedder.dim()).map_err(|e| {
            let msg = format!("opening the knowledge-base store ({}): {e}", crate::store_location(&self.config.store_dir, self.config.qdrant.as_ref()));
            let _ = self.open_error.set(msg.clone());
            ApiError::new(ErrorKind::Internal, "kb_unavailable", msg)
        })?;
        let mut kb = KnowledgeBase::new(store, embedder).map_err(ApiError::from)?;
        kb.weights = self.config.weights;
        let kb = Arc::new(kb);
        *slot = Some(kb.clone());
        Ok(kb)
    }

    fn answerer(&self) -> Result<Answerer, ApiError> {
        let kb = self.kb()?;
        let generator = (self.generator)().ok_or_else(|| {
            ApiError::new(ErrorKind::NotReady, "not_ready", "the chat model is still loading (or not configured)")
        })?;
        let lexicon = self.lexicon.clone().map_err(|e| ApiError::new(ErrorKind::Internal, "lexicon_unavailable", e))?;
        Ok(Answerer { kb, generator, config: self.config.answer.clone(), lexicon })
    }

    /// Install the drafter of service-request tickets (once; later calls are ignored).
    pub fn set_drafter(&self, d: Arc<dyn RequestDrafter>) {
        let _ = self.drafter.set(d);
    }
}

/// The lexicon of `dir`, or an empty one (with a warning) when no folder is configured.
fn open_lexicon(dir: Option<&std::path::Path>) -> Result<Arc<Lexicon>, String> {
    match dir {
        Some(d) => match Lexicon::load(d) {
            Ok(l) => {
                tracing::info!(dir = %d.display(), entities = l.entities().len(), "message understanding loaded");
                Ok(Arc::new(l))
            }
            Err(e) => {
                tracing::error!(error = %e, "message understanding could not be loaded; /api/ask answers 500 until it is fixed");
                Err(format!("message understanding ({}): {e}", d.display()))
            }
        },
        None => {
            tracing::warn!("no understanding.toml found: /api/ask reads every message as a general question (no service requests, no aspect checks)");
            Ok(Arc::new(Lexicon::default()))
        }
    }
}

/// The `/api` routes. `embedder` and `generator` return the models once they are loaded.
pub fn routes(
    config: RagConfig,
    embedder: impl Fn() -> Option<Arc<dyn Embedder>> + Send + Sync + 'static,
    generator: impl Fn() -> Option<Arc<dyn Generator>> + Send + Sync + 'static,
) -> Router {
    routes_with_state(config, embedder, generator).0
}

impl RagState {
    /// What a message is (`question`, `service_request`, `status`, `small_talk`, `harmful`), by
    /// the citizen answer path's reading; `None` when the word lists did not load.
    pub fn message_kind(&self, text: &str) -> Option<&'static str> {
        self.lexicon.as_ref().ok().map(|l| l.understand(text).kind.as_str())
    }

    /// Knowledge for other features (the agent co-pilot): of the top `limit` hits of hybrid
    /// search, those about what was said, as JSON (possibly none). Blocking: call from a
    /// blocking thread.
    pub fn search_json(&self, query: &str, limit: usize) -> Result<serde_json::Value, String> {
        let kb = self.kb().map_err(|e| e.message.clone())?;
        let req = SearchRequest { query: query.to_string(), mode: Mode::Hybrid, limit, filter: KbFilter::default(), include_expired: false, weights: None };
        let mut hits = kb.search(&req).map_err(|e| e.to_string())?;
        // Only articles that are about what was said (the citizen answer path's rules).
        if let Ok(lex) = &self.lexicon {
            crate::answer::keep_relevant(lex, &self.config.answer, query, &mut hits);
        }
        serde_json::to_value(hits).map_err(|e| e.to_string())
    }
}

/// [`routes`], also returning the shared state (for [`RagState::search_json`]).
pub fn routes_with_state(
    config: RagConfig,
    embedder: impl Fn() -> Option<Arc<dyn Embedder>> + Send + Sync + 'static,
    generator: impl Fn() -> Option<Arc<dyn Generator>> + Send + Sync + 'static,
) -> (Router, Arc<RagState>) {
    let auto = config.auto_ingest;
    let config_lexicon = config.lexicon_dir.clone();
    let state = Arc::new(RagState {
        config,
        embedder: Arc::new(embedder),
        generator: Arc::new(generator),
        kb: Mutex::new(None),
        open_error: OnceLock::new(),
        last_ingest: Mutex::new(None),
        lexicon: open_lexicon(config_lexicon.as_deref()),
        drafter: OnceLock::new(),
    });
    if auto {
        spawn_auto_ingest(Arc::downgrade(&state));
    }
    let router = Router::new()
        .route("/api/ask", post(ask))
        .route("/api/kb/search", get(search_get).post(search_post))
        .route("/api/kb/documents", get(documents))
        .route("/api/kb/status", get(status))
        .with_state(state.clone());
    (router, state)
}

fn spawn_auto_ingest(state: std::sync::Weak<RagState>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no tokio runtime: knowledge-base auto-ingest disabled");
        return;
    };
    handle.spawn(async move {
        loop {
            let Some(s) = state.upgrade() else { return };
            if (s.embedder)().is_some() {
                break;
            }
            drop(s);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let Some(s) = state.upgrade() else { return };
        let res = tokio::task::spawn_blocking(move || {
            let kb = s.kb().map_err(|e| e.message.clone())?;
            let dir = s.config.docs_dir.clone();
            if !dir.is_dir() {
                return Err(format!("{} is not a directory; nothing ingested", dir.display()));
            }
            let report = kb
                .ingest_dir(&dir, &IngestOptions::default(), &mut |_| {})
                .map_err(|e| format!("ingesting {}: {e}", dir.display()));
            match &report {
                Ok(r) => tracing::info!(summary = %r.summary(), "knowledge base synced"),
                Err(e) => tracing::error!(error = %e, "knowledge-base ingest failed"),
            }
            if let Ok(mut slot) = s.last_ingest.lock() {
                *slot = Some(report.clone());
            }
            report.map(|_| ())
        })
        .await;
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "knowledge-base auto-ingest");
        }
    });
}

/// JSON error `{"error": {"message", "type", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error of `kind`: its status comes from the workspace's one table
    /// ([`ErrorKind::http_status`]).
    fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, code, message: message.into() }
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal_error", message)
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn code(&self) -> &'static str {
        self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = e.kind();
        let code = match kind {
            ErrorKind::Invalid | ErrorKind::ContextOverflow => "invalid_request",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Internal => "internal_error",
            other => other.code(),
        };
        if kind == ErrorKind::Internal {
            tracing::error!(error = %e, "knowledge-base request failed");
        }
        Self::new(kind, code, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // Transport-level failures keep the extractor's status (400 syntax, 413 size, 415
        // content type); a well-formed body of the wrong shape is 422 like every invalid value.
        Self { status: r.status(), code: "invalid_json", message: r.body_text() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() { "server_error" } else { "invalid_request_error" };
        let body = json!({"error": {"message": self.message, "type": kind, "code": self.code}});
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        }
        resp
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// Query string of `GET /api/kb/search`.
#[derive(Debug, Deserialize)]
struct SearchParams {
    q: String,
    mode: Option<String>,
    limit: Option<usize>,
    region: Option<String>,
    agency: Option<String>,
    category: Option<String>,
    /// Validity date `YYYY-MM-DD` (default today).
    date: Option<String>,
    #[serde(default)]
    include_expired: bool,
}

async fn search_get(State(s): State<Arc<RagState>>, q: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>) -> Result<Response, ApiError> {
    let Query(p) = q.map_err(|r| ApiError::new(ErrorKind::Invalid, "invalid_query", r.body_text()))?;
    let mode: Mode = p.mode.as_deref().unwrap_or("hybrid").parse().map_err(ApiError::from)?;
    let valid_on = p.date.as_deref().map(crate::document::parse_date).transpose().map_err(ApiError::from)?;
    let req = SearchRequest {
        query: p.q,
        mode,
        limit: p.limit.unwrap_or(5),
        filter: KbFilter { region: p.region, agency: p.agency, category: p.category, valid_on, ..Default::default() },
        include_expired: p.include_expired,
        weights: None,
    };
    run_search(s, req).await
}

async fn search_post(State(s): State<Arc<RagState>>, body: Result<Json<SearchRequest>, JsonRejection>) -> Result<Response, ApiError> {
    let Json(req) = body?;
    run_search(s, req).await
}

async fn run_search(s: Arc<RagState>, req: SearchRequest) -> Result<Response, ApiError> {
    let hits = blocking(move || {
        let kb = s.kb()?;
        let hits = kb.search(&req)?;
        Ok(json!({"query": req.query, "mode": req.mode, "hits": hits}))
    })
    .await?;
    Ok(Json(hits).into_response())
}

async fn documents(State(s): State<Arc<RagState>>) -> Result<Response, ApiError> {
    let docs = blocking(move || Ok(s.kb()?.documents()?)).await?;
    Ok(Json(json!({"documents": docs})).into_response())
}

async fn status(State(s): State<Arc<RagState>>) -> Result<Response, ApiError> {
    let body = blocking(move || {
        let last = s.last_ingest.lock().map(|l| l.clone()).unwrap_or(None);
        let last = match last {
            None => json!(null),
            Some(Ok(r)) => json!({"ok": true, "report": r}),
            Some(Err(e)) => json!({"ok": false, "error": e}),
        };
        match s.kb() {
            Ok(kb) => Ok(json!({
                "ready": true,
                "points": kb.store().count()?,
                "documents": kb.documents()?.len(),
                "last_ingest": last,
            })),
            Err(e) => Ok(json!({"ready": false, "reason": e.message, "last_ingest": last})),
        }
    })
    .await?;
    Ok(Json(body).into_response())
}

fn with_ai_header(mut resp: Response) -> Response {
    resp.headers_mut().insert("x-ai-generated", HeaderValue::from_static("true"));
    resp
}

/// What [`RagState::ask_events`] reports: the generated text as it comes, then the answer.
#[derive(Debug)]
pub enum AskEvent {
    /// The passages the model is about to answer from, numbered as it will cite them: sent as
    /// soon as retrieval ends, before the first token (the citizen reads them while the model
    /// reads its prompt). The final answer's citations are the ones it kept.
    Sources(Vec<crate::answer::Citation>),
    /// Text to show (generated tokens, then the appended 原文摘录 line if any).
    Delta(String),
    /// The final answer: its text may differ from the deltas only when it is the refusal.
    Done(Answer),
    Failed(ApiError),
}

impl RagState {
    /// One grounded answer as events, for `/api/ask` and the `rag` option of
    /// `/v1/chat/completions`. Returns the chat model's id and the events. A plan that needs no
    /// generation (FAQ, refusal) sends only `Done`; dropping the receiver cancels generation.
    pub async fn ask_events(self: &Arc<Self>, req: AskRequest) -> Result<(String, tokio::sync::mpsc::Receiver<AskEvent>), ApiError> {
        let answerer = Arc::new(blocking({
            let s = self.clone();
            move || s.answerer()
        })
        .await?);
        let model = answerer.generator.model_id().to_string();
        // A reported hazard is a service request however it was worded: advice first, urgent,
        // and no retrieval or generation to wait for.
        let hazard = match self.drafter.get().cloned() {
            Some(d) => {
                let q = req.question.clone();
                blocking(move || Ok(d.is_hazard(&q))).await?
            }
            None => false,
        };
        let plan = if hazard {
            let u = answerer.read(&req.question, &req.question);
            Plan::Final(Answer::service_request(Some(crate::answer::Understood::from(&u)), Timings::default()))
        } else {
            blocking({
                let a = answerer.clone();
                let req = req.clone();
                move || Ok(a.plan(&req)?)
            })
            .await?
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<AskEvent>(64);
        match plan {
            Plan::Final(mut a) => {
                if a.kind == AnswerKind::ServiceRequest {
                    self.attach_draft(&mut a, &req.question).await;
                }
                let _ = tx.try_send(AskEvent::Done(a));
            }
            Plan::Generate { messages, question, sources, following, relevance, retrieve_secs, understood } => {
                let mut grx = answerer
                    .generator
                    .chat(answerer.chat_request(&req, messages))
                    .map_err(|e| ApiError::from(Error::from(e)))?;
                let early = sources.iter().enumerate().map(|(i, h)| crate::answer::citation(i + 1, &h.chunk)).collect();
                let _ = tx.try_send(AskEvent::Sources(early));
                tokio::spawn(async move {
                    let mut text = String::new();
                    let last = loop {
                        match grx.recv().await {
                            Some(GenerationEvent::Delta(d)) => {
                                text.push_str(&d);
                                // A closed channel means the client left: dropping `grx` cancels.
                                if tx.send(AskEvent::Delta(d)).await.is_err() {
                                    return;
                                }
                            }
                            Some(GenerationEvent::Done(c)) => {
                                let mut answer = finish(&question, &text, &sources, &following, relevance, Timings::generated(retrieve_secs, &c));
                                answer.understanding = Some(understood.clone());
                                // The appended 原文摘录 line is one more delta.
                                if answer.kind == AnswerKind::Generated {
                                    if let Some(rest) = answer.answer.strip_prefix(text.trim()).filter(|r| !r.is_empty()) {
                                        let _ = tx.send(AskEvent::Delta(rest.to_string())).await;
                                    }
                                }
                                break AskEvent::Done(answer);
                            }
                            Some(GenerationEvent::Failed(e)) => break AskEvent::Failed(Error::from(e).into()),
                            None => break AskEvent::Failed(ApiError::internal("generation ended without a result")),
                        }
                    };
                    let _ = tx.send(last).await;
                });
            }
        }
        Ok((model, rx))
    }
}

impl RagState {
    /// A service request's draft ticket from the hotline ([`RequestDrafter`]), and the reply
    /// text that names its department and puts hazard advice first. Without a drafter (the
    /// knowledge base served alone) the reply still says it is a 12345 matter.
    async fn attach_draft(&self, a: &mut Answer, text: &str) {
        let Some(d) = self.drafter.get().cloned() else { return };
        let text = text.to_string();
        match blocking(move || d.draft(&text).map_err(ApiError::internal)).await {
            Ok(draft) => {
                a.answer = service_request_text(Some(&draft));
                a.request = Some(draft);
            }
            // The reply stands without a draft; the page offers the empty form.
            Err(e) => tracing::warn!(error = %e.message, "drafting a service request failed"),
        }
    }
}

async fn ask(State(s): State<Arc<RagState>>, body: Result<Json<AskRequest>, JsonRejection>) -> Result<Response, ApiError> {
    let Json(req) = body?;
    let (model, mut events) = s.ask_events(req.clone()).await?;
    if !req.stream {
        let answer = loop {
            match events.recv().await {
                Some(AskEvent::Sources(_) | AskEvent::Delta(_)) => {}
                Some(AskEvent::Done(a)) => break a,
                Some(AskEvent::Failed(e)) => return Err(e),
                None => return Err(ApiError::internal("generation ended without a result")),
            }
        };
        let mut body = serde_json::to_value(&answer).map_err(|e| ApiError::internal(e.to_string()))?;
        body["ai_generated"] = json!(true);
        body["ai_content"] = ai_marker(&model);
        return Ok(with_ai_header(Json(body).into_response()));
    }
    // SSE: for a generated answer first `sources` (the passages retrieved, as citations, before
    // the model speaks), then `delta` events with text, then one `citations` event (the final
    // answer text, its kind, citations and excerpt; a client replaces the streamed text with
    // `answer` when `replaced`), then `done` with timings and the AI label.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    let ev = |v: serde_json::Value| Ok::<_, Infallible>(Event::default().data(v.to_string()));
    tokio::spawn(async move {
        let mut streamed = false;
        let answer = loop {
            match events.recv().await {
                Some(AskEvent::Sources(citations)) => {
                    if tx.send(ev(json!({"type": "sources", "citations": citations}))).await.is_err() {
                        return;
                    }
                }
                Some(AskEvent::Delta(d)) => {
                    streamed = true;
                    if tx.send(ev(json!({"type": "delta", "text": d}))).await.is_err() {
                        return;
                    }
                }
                Some(AskEvent::Done(a)) => break a,
                Some(AskEvent::Failed(e)) => {
                    let _ = tx.send(ev(json!({"type": "error", "message": e.message}))).await;
                    return;
                }
                None => return,
            }
        };
        // A plan answered without generation (FAQ, refusal) is sent as one delta.
        if !streamed {
            let _ = tx.send(ev(json!({"type": "delta", "text": answer.answer}))).await;
        }
        // The streamed text is replaced when the answer became a refusal or the grounding
        // check removed sentences from it.
        let dropped = answer.grounding.as_ref().is_some_and(|g| !g.dropped.is_empty());
        let replaced = streamed && (answer.kind == AnswerKind::Refusal || dropped);
        let mut final_event = serde_json::to_value(&answer).unwrap_or_else(|_| json!({}));
        final_event["type"] = json!("citations");
        final_event["replaced"] = json!(replaced);
        if let Some(m) = final_event.as_object_mut() {
            m.remove("timings");
        }
        let _ = tx.send(ev(final_event)).await;
        let _ = tx
            .send(ev(json!({"type": "done", "timings": answer.timings, "ai_generated": true, "ai_content": ai_marker(&model)})))
            .await;
    });
    let sse = Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default());
    Ok(with_ai_header(sse.into_response()))
}
