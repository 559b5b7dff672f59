//! The HTTP server: OpenAI-compatible routes, health/readiness, Prometheus metrics.

pub mod error;
pub mod metrics;
pub mod openai;
pub mod requests;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use zhengwu_core::ErrorKind;
use zhengwu_inference::{Embedder, Generator};

pub use error::ApiError;
pub use metrics::Metrics;

/// Limits and defaults of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub default_max_tokens: usize,
    pub max_embedding_inputs: usize,
    /// Concurrent embedding batches; more are refused with 429.
    pub max_embedding_jobs: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(300),
            default_max_tokens: 512,
            max_embedding_inputs: 256,
            max_embedding_jobs: 2,
        }
    }
}

/// Everything the handlers share. Models are set once they finish loading, so the server
/// answers `/health` (and `/ready` = 503) while weights are still being read.
pub struct AppState {
    pub generator: OnceLock<Arc<dyn Generator>>,
    pub embedder: OnceLock<Arc<dyn Embedder>>,
    /// Models this server was configured to load (so `/ready` knows what to wait for).
    pub expect_generator: bool,
    pub expect_embedder: bool,
    pub load_error: OnceLock<String>,
    pub api_key: Option<String>,
    pub limits: ServerLimits,
    pub metrics: Metrics,
    pub embed_slots: Arc<tokio::sync::Semaphore>,
    pub started: Instant,
    /// The knowledge base, for the `rag` option of `/v1/chat/completions` (set by `serve`).
    pub rag: OnceLock<Arc<zhengwu_rag::http::RagState>>,
    /// Users and sessions of the web app (set by `serve`): with logins on, `/v1` also takes a
    /// user's key or session, and `/metrics` needs a supervisor or admin.
    pub web: OnceLock<Arc<crate::web::WebState>>,
}

impl AppState {
    pub fn new(expect_generator: bool, expect_embedder: bool, api_key: Option<String>, limits: ServerLimits) -> Self {
        Self {
            generator: OnceLock::new(),
            embedder: OnceLock::new(),
            expect_generator,
            expect_embedder,
            load_error: OnceLock::new(),
            api_key,
            embed_slots: Arc::new(tokio::sync::Semaphore::new(limits.max_embedding_jobs.max(1))),
            limits,
            metrics: Metrics::new(),
            started: Instant::now(),
            rag: OnceLock::new(),
            web: OnceLock::new(),
        }
    }

    fn ready(&self) -> bool {
        (!self.expect_generator || self.generator.get().is_some())
            && (!self.expect_embedder || self.embedder.get().is_some())
    }
}

/// The whole app: OpenAI routes + health/metrics + the product APIs in `api` (routes under
/// `/api/...` built by the rag and hotline crates and merged in `main.rs`).
pub fn router(state: Arc<AppState>, api: Router) -> Router {
    let v1 = Router::new()
        .route("/chat/completions", post(openai::chat_completions))
        .route("/embeddings", post(openai::embeddings))
        .route("/models", get(openai::list_models))
        .layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    Router::new()
        .nest("/v1", v1)
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text).layer(middleware::from_fn_with_state(state.clone(), require_supervisor)))
        .with_state(state.clone())
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), track))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let body = json!({
        "ready": state.ready(),
        "chat_model": state.generator.get().map(|g| g.model_id().to_string()),
        "embedding_model": state.embedder.get().map(|e| e.model_id().to_string()),
        "load_error": state.load_error.get(),
        "uptime_secs": state.started.elapsed().as_secs(),
    });
    let status = if state.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    if let Some(g) = state.generator.get() {
        state.metrics.queue_depth.set(g.queue_depth() as i64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::of(ErrorKind::NotFound, format!("no route for {} {}", req.method(), req.uri().path()))
        .with_code("unknown_url")
}

/// The web app's users, when logins are on.
fn logins(state: &AppState) -> Option<&Arc<crate::web::WebState>> {
    state.web.get().filter(|w| w.auth_enabled())
}

/// `/v1` needs a key when one is configured or logins are on: the `[server] api_key`, or any
/// user's key (bearer) or session. Open only when neither exists (a first run on loopback).
async fn require_api_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let web = logins(&state);
    if state.api_key.is_none() && web.is_none() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let server_key = matches!((&state.api_key, given), (Some(k), Some(g)) if constant_time_eq(g.as_bytes(), k.as_bytes()));
    let user = web.and_then(|w| w.identify(req.headers())).is_some();
    if !(server_key || user) {
        return ApiError::of(ErrorKind::Unauthorized, "missing or wrong API key (Authorization: Bearer ...)")
            .with_code("invalid_api_key")
            .into_response();
    }
    next.run(req).await
}

/// `/metrics` shows supervisor gauges: with logins on it needs a supervisor or admin (key or
/// session); with only a server key, that key.
async fn require_supervisor(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    use crate::web::Role;
    if let Some(w) = logins(&state) {
        return match w.identify(req.headers()) {
            Some(id) if matches!(id.role, Role::Supervisor | Role::Admin) => next.run(req).await,
            Some(id) => ApiError::of(ErrorKind::Forbidden, format!("role {} may not read /metrics", id.role.as_str()))
                .with_code("forbidden")
                .into_response(),
            None => ApiError::of(ErrorKind::Unauthorized, "/metrics needs a supervisor's key (Authorization: Bearer ...)")
                .with_code("invalid_api_key")
                .into_response(),
        };
    }
    require_api_key(State(state), req, next).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Request counts and latency per route.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    state.metrics.requests.with_label_values(&[route.as_str(), resp.status().as_str()]).inc();
    state.metrics.latency.with_label_values(&[route.as_str()]).observe(start.elapsed().as_secs_f64());
    resp
}
