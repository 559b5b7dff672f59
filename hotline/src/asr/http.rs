//! `POST /api/asr/transcribe`: the request body is the audio file itself (WAV, MP3, M4A/AAC,
//! FLAC, Ogg Vorbis; any content type), query `channels=mix|split`. Answers a [`Transcript`]
//! as JSON. The model loads on the first request (503 until it can: `zhengwu models fetch
//! whisper-base`); transcriptions run on blocking threads, `max_concurrent` at a time.
//!
//! Errors: 400 empty / not audio / truncated / bad option, 413 body or duration over the limit,
//! 415 unsupported codec, 503 model missing, 500 engine failure; the body is
//! `{"error": {"message", "type", "code"}}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{OnceCell, Semaphore};
use zhengwu_inference::registry::Registry;

use super::{
    AsrError, ChannelMode, TranscribeOptions, Transcriber, WhisperConfig, WhisperTranscriber,
};

/// Upload size limit of the route (about an hour of 16 kHz 16-bit mono WAV is 115 MB).
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 128 * 1024 * 1024;

/// The speech service behind the route.
pub struct AsrService {
    registry: Registry,
    model: String,
    config: WhisperConfig,
    engine: OnceCell<Arc<WhisperTranscriber>>,
    permits: Semaphore,
    pub options: TranscribeOptions,
    pub max_upload_bytes: usize,
}

impl AsrService {
    pub fn new(
        registry: Registry,
        model: &str,
        config: WhisperConfig,
        max_concurrent: usize,
    ) -> Self {
        AsrService {
            registry,
            model: model.to_string(),
            config,
            engine: OnceCell::new(),
            permits: Semaphore::new(max_concurrent.max(1)),
            options: TranscribeOptions::default(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
        }
    }

    async fn engine(&self) -> Result<Arc<WhisperTranscriber>, AsrError> {
        self.engine
            .get_or_try_init(|| async {
                let (reg, model, cfg) = (
                    self.registry.clone(),
                    self.model.clone(),
                    self.config.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    WhisperTranscriber::from_registry(&reg, &model, cfg)
                })
                .await
                .map_err(|e| AsrError::Engine(format!("model loader crashed: {e}")))?
                .map(Arc::new)
            })
            .await
            .cloned()
    }
}

#[derive(Debug, Deserialize)]
struct TranscribeQuery {
    #[serde(default)]
    channels: Option<String>,
}

/// The `/api/asr/...` routes.
pub fn router(svc: Arc<AsrService>) -> Router {
    let limit = svc.max_upload_bytes;
    Router::new()
        .route("/api/asr/transcribe", post(transcribe))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(svc)
}

fn error_response(e: &AsrError) -> Response {
    let status = match e {
        AsrError::Empty(_)
        | AsrError::NotAudio(_)
        | AsrError::Truncated(_)
        | AsrError::Invalid(_) => StatusCode::BAD_REQUEST,
        AsrError::TooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        AsrError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        AsrError::Model(_) => StatusCode::SERVICE_UNAVAILABLE,
        AsrError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let kind = if e.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    let body = serde_json::json!({"error": {"message": e.to_string(), "type": kind, "param": null, "code": e.code()}});
    (status, Json(body)).into_response()
}

async fn transcribe(
    State(svc): State<Arc<AsrService>>,
    Query(q): Query<TranscribeQuery>,
    body: Bytes,
) -> Response {
    let mut opts = svc.options.clone();
    if let Some(c) = q.channels.as_deref() {
        match c.parse::<ChannelMode>() {
            Ok(m) => opts.channels = m,
            Err(e) => return error_response(&e),
        }
    }
    if body.is_empty() {
        return error_response(&AsrError::Empty(
            "the request body is empty; send the audio file as the body".into(),
        ));
    }
    let engine = match svc.engine().await {
        Ok(e) => e,
        Err(e) => return error_response(&e),
    };
    let Ok(_permit) = svc.permits.acquire().await else {
        return error_response(&AsrError::Engine("the service is shutting down".into()));
    };
    let result = tokio::task::spawn_blocking(move || engine.transcribe_bytes(&body, &opts)).await;
    match result {
        Ok(Ok(t)) => Json(t).into_response(),
        Ok(Err(e)) => {
            if !e.is_client_error() {
                tracing::error!(error = %e, "transcription failed");
            }
            error_response(&e)
        }
        Err(e) => error_response(&AsrError::Engine(format!(
            "transcription task crashed: {e}"
        ))),
    }
}
