//! `POST /api/asr/transcribe`: the request body is the audio file itself (WAV, MP3, M4A/AAC,
//! FLAC, Ogg Vorbis; any content type), query `channels=mix|split`. Answers a [`Transcript`]
//! as JSON. The model loads on the first request (503 until it can: `zhengwu models fetch
//! whisper-base`); transcriptions run on blocking threads, `max_concurrent` at a time.
//!
//! Nothing is read from the body before the request may run: the declared length is checked,
//! the model is loaded, and a transcription slot is taken first (at most `max_waiting` requests
//! wait for one; more get 429). Only the slot holder reads its upload, under the size limit
//! (checked while reading, 413 as soon as it is passed) and a read deadline (408), so N
//! uploads never cost N × the size limit in memory and a slow sender cannot hold the slot.
//!
//! Errors: 400 empty / not audio / truncated / bad option, 408 upload too slow, 413 body or
//! duration over the limit, 415 unsupported codec or sample rate / channel count out of range,
//! 429 too many waiting, 503 model missing, 500 engine failure; the body is
//! `{"error": {"message", "type", "code"}}`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{OnceCell, Semaphore};

use super::{AsrError, ChannelMode, TranscribeOptions, Transcriber, WhisperConfig, WhisperTranscriber};

/// Upload size limit of the route (about an hour of 16 kHz 16-bit mono WAV is 115 MB).
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 128 * 1024 * 1024;
/// Requests allowed to wait for a transcription slot; more are refused with 429.
pub const DEFAULT_MAX_WAITING: usize = 4;
/// Time allowed to receive the whole upload once its slot is taken (128 MB at ~1 MB/s).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// Loads the engine on first use (the real one reads the whisper weights file).
type EngineLoader = Box<dyn Fn() -> Result<Arc<dyn Transcriber>, AsrError> + Send + Sync>;

/// The speech service behind the route.
pub struct AsrService {
    loader: Arc<EngineLoader>,
    engine: OnceCell<Arc<dyn Transcriber>>,
    permits: Semaphore,
    waiting: AtomicUsize,
    pub options: TranscribeOptions,
    pub max_upload_bytes: usize,
    pub max_waiting: usize,
    pub body_timeout: Duration,
}

impl AsrService {
    /// whisper.cpp with `model`, loaded on the first request from the file `locate` finds
    /// (the binary looks it up in the model registry).
    pub fn new(
        locate: impl Fn() -> Result<std::path::PathBuf, String> + Send + Sync + 'static,
        model: &str,
        config: WhisperConfig,
        max_concurrent: usize,
    ) -> Self {
        let model = model.to_string();
        Self::with_loader(
            Box::new(move || {
                let path = locate().map_err(AsrError::Model)?;
                Ok(Arc::new(WhisperTranscriber::load(&model, &path, config.clone())?) as Arc<dyn Transcriber>)
            }),
            max_concurrent,
        )
    }

    /// Any engine (tests use a fake one).
    pub fn with_loader(loader: EngineLoader, max_concurrent: usize) -> Self {
        AsrService {
            loader: Arc::new(loader),
            engine: OnceCell::new(),
            permits: Semaphore::new(max_concurrent.max(1)),
            waiting: AtomicUsize::new(0),
            options: TranscribeOptions::default(),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_waiting: DEFAULT_MAX_WAITING,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    async fn engine(&self) -> Result<Arc<dyn Transcriber>, AsrError> {
        self.engine
            .get_or_try_init(|| async {
                let loader = self.loader.clone();
                tokio::task::spawn_blocking(move || loader())
                    .await
                    .map_err(|e| AsrError::Engine(format!("model loader crashed: {e}")))?
            })
            .await
            .cloned()
    }

    /// A transcription slot, waiting behind at most `max_waiting` others.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Response> {
        if let Ok(p) = self.permits.try_acquire() {
            return Ok(p);
        }
        // Counted while waiting; the guard uncounts a request whose client went away.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            let mut r = http_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("{} transcriptions are already waiting; try again shortly", self.max_waiting),
            );
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return Err(r);
        }
        let _w = Waiting(&self.waiting);
        self.permits.acquire().await.map_err(|_| error_response(&AsrError::Engine("the service is shutting down".into())))
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

fn http_error(status: StatusCode, code: &str, message: String) -> Response {
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    (status, Json(serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))).into_response()
}

fn error_response(e: &AsrError) -> Response {
    let status = match e {
        AsrError::Empty(_) | AsrError::NotAudio(_) | AsrError::Truncated(_) | AsrError::Invalid(_) => StatusCode::BAD_REQUEST,
        AsrError::TooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        AsrError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        AsrError::Model(_) => StatusCode::SERVICE_UNAVAILABLE,
        AsrError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    http_error(status, e.code(), e.to_string())
}

fn too_large(limit: usize) -> Response {
    http_error(StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large", format!("the upload is over the limit of {limit} bytes"))
}

/// The upload, read under the size limit and the deadline.
async fn read_body(body: Body, limit: usize, deadline: Duration) -> Result<Vec<u8>, Response> {
    let read = async {
        let mut stream = body.into_data_stream();
        let mut out: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| http_error(StatusCode::BAD_REQUEST, "bad_body", format!("reading the upload failed: {e}")))?;
            if out.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(r) => r,
        Err(_) => Err(http_error(
            StatusCode::REQUEST_TIMEOUT,
            "upload_timeout",
            format!("the upload did not arrive within {} s", deadline.as_secs()),
        )),
    }
}

async fn transcribe(State(svc): State<Arc<AsrService>>, Query(q): Query<TranscribeQuery>, headers: HeaderMap, body: Body) -> Response {
    let mut opts = svc.options.clone();
    if let Some(c) = q.channels.as_deref() {
        match c.parse::<ChannelMode>() {
            Ok(m) => opts.channels = m,
            Err(e) => return error_response(&e),
        }
    }
    // What can be refused without reading a byte of the body is refused first.
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > svc.max_upload_bytes as u64) {
        return too_large(svc.max_upload_bytes);
    }
    if declared == Some(0) {
        return error_response(&AsrError::Empty("the request body is empty; send the audio file as the body".into()));
    }
    let engine = match svc.engine().await {
        Ok(e) => e,
        Err(e) => return error_response(&e),
    };
    let _permit = match svc.slot().await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let bytes = match read_body(body, svc.max_upload_bytes, svc.body_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if bytes.is_empty() {
        return error_response(&AsrError::Empty("the request body is empty; send the audio file as the body".into()));
    }
    let result = tokio::task::spawn_blocking(move || engine.transcribe_bytes(&bytes, &opts)).await;
    match result {
        Ok(Ok(t)) => Json(t).into_response(),
        Ok(Err(e)) => {
            if !e.is_client_error() {
                tracing::error!(error = %e, "transcription failed");
            }
            error_response(&e)
        }
        Err(e) => error_response(&AsrError::Engine(format!("transcription task crashed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::Segment;
    use axum::http::Request;
    use std::sync::atomic::AtomicBool;
    use tower::ServiceExt;

    /// Answers one segment per chunk; counts how often the engine was loaded.
    struct Fake;
    impl Transcriber for Fake {
        fn model(&self) -> &str {
            "fake"
        }
        fn language(&self) -> &str {
            "zh"
        }
        fn transcribe_chunk(&self, pcm: &[f32]) -> Result<Vec<Segment>, AsrError> {
            Ok(vec![Segment { start_ms: 0, end_ms: (pcm.len() / 16) as u64, text: "你好".into(), channel: None }])
        }
    }

    fn wav(secs: f32) -> Vec<u8> {
        let spec = hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        let mut cur = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        for i in 0..(16_000.0 * secs) as usize {
            w.write_sample(((i as f32 * 0.05).sin() * 8000.0) as i16).unwrap();
        }
        w.finalize().unwrap();
        cur.into_inner()
    }

    fn post(body: Body) -> Request<Body> {
        Request::post("/api/asr/transcribe").body(body).unwrap()
    }

    /// A body that sends nothing and never ends, and records whether anyone read it.
    fn endless_body(polled: Arc<AtomicBool>) -> Body {
        let s = futures::stream::poll_fn(move |_| {
            polled.store(true, Ordering::SeqCst);
            std::task::Poll::<Option<Result<Vec<u8>, std::io::Error>>>::Pending
        });
        Body::from_stream(s)
    }

    #[tokio::test]
    async fn a_missing_model_is_refused_before_the_body_is_read() {
        let svc = Arc::new(AsrService::with_loader(Box::new(|| Err(AsrError::Model("not installed".into()))), 1));
        let polled = Arc::new(AtomicBool::new(false));
        let r = tokio::time::timeout(Duration::from_secs(5), router(svc).oneshot(post(endless_body(polled.clone())))).await.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!polled.load(Ordering::SeqCst), "the body was read before the model check");
    }

    #[tokio::test]
    async fn a_declared_oversized_upload_is_refused_unread() {
        let svc = Arc::new(AsrService::with_loader(Box::new(|| Ok(Arc::new(Fake) as Arc<dyn Transcriber>)), 1));
        let polled = Arc::new(AtomicBool::new(false));
        let mut req = post(endless_body(polled.clone()));
        req.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("999999999999"));
        let r = router(svc).oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!polled.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn an_undeclared_oversized_upload_stops_at_the_limit() {
        let mut svc = AsrService::with_loader(Box::new(|| Ok(Arc::new(Fake) as Arc<dyn Transcriber>)), 1);
        svc.max_upload_bytes = 64 * 1024;
        // 1 MB in 8 KB chunks without a length: refused once 64 KB are passed.
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let chunks = futures::stream::iter((0..128).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(vec![0u8; 8192])
        }));
        let r = router(Arc::new(svc)).oneshot(post(Body::from_stream(chunks))).await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(sent.load(Ordering::SeqCst) <= 10, "read {} chunks", sent.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_slow_upload_times_out() {
        let mut svc = AsrService::with_loader(Box::new(|| Ok(Arc::new(Fake) as Arc<dyn Transcriber>)), 1);
        svc.body_timeout = Duration::from_millis(200);
        let r = router(Arc::new(svc)).oneshot(post(endless_body(Arc::new(AtomicBool::new(false))))).await.unwrap();
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn waiters_beyond_the_bound_get_429_and_the_slot_holder_finishes() {
        let mut svc = AsrService::with_loader(Box::new(|| Ok(Arc::new(Fake) as Arc<dyn Transcriber>)), 1);
        svc.max_waiting = 2;
        let svc = Arc::new(svc);
        let app = router(svc.clone());
        // One request holds the slot with an upload that has not finished arriving; two wait.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let holder = tokio::spawn(app.clone().oneshot(post(Body::from_stream(tokio_stream_from(rx)))));
        let mut waiters = Vec::new();
        for _ in 0..2 {
            waiters.push(tokio::spawn(app.clone().oneshot(post(Body::from(wav(0.5))))));
        }
        // Let them queue.
        for _ in 0..50 {
            if svc.waiting.load(Ordering::SeqCst) == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(svc.waiting.load(Ordering::SeqCst), 2);
        let r = app.clone().oneshot(post(Body::from(wav(0.5)))).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        // The holder's upload completes; everyone queued is then served.
        tx.send(Ok(wav(0.5))).await.unwrap();
        drop(tx);
        assert_eq!(holder.await.unwrap().unwrap().status(), StatusCode::OK);
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        assert_eq!(svc.waiting.load(Ordering::SeqCst), 0);
    }

    fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
