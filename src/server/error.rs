//! OpenAI-shaped errors: every failure on `/v1` answers `{"error": {message, type, param, code}}`
//! with a meaningful status code. Statuses come from the kind of error (`zhengwu_core::ErrorKind`,
//! the workspace's one table); transport failures of the JSON extractor keep theirs.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use zhengwu_core::{Error as SeamError, ErrorKind};
use zhengwu_inference::Error as EngineError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, code: None, param: None, message: message.into() }
    }
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "invalid_request_error",
            code: Some("invalid_value"),
            param: Some(param.to_string()),
            message: message.into(),
        }
    }
    pub fn not_ready(what: &str) -> Self {
        Self {
            code: Some("not_ready"),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", format!("{what} is not loaded yet; retry shortly"))
        }
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

impl ApiError {
    /// An error of `kind`: status, OpenAI `type` and default `code` from the workspace's one
    /// table ([`ErrorKind`]).
    pub fn of(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            kind: kind.openai_type(),
            code: Some(kind.code()),
            param: None,
            message: message.into(),
        }
    }
}

impl From<SeamError> for ApiError {
    fn from(e: SeamError) -> Self {
        let kind = e.kind();
        if kind == ErrorKind::Internal {
            tracing::error!(error = %e, "engine error");
        }
        let message = e.to_string();
        let mut api = ApiError::of(kind, message);
        if let SeamError::InvalidParam { param, .. } = e {
            api.param = Some(param);
        }
        api
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        SeamError::from(e).into()
    }
}

/// Map axum's JSON extractor failures (bad syntax 400, wrong shape 422, too large 413,
/// wrong content type 415) to the same error shape.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => Some("body_too_large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Some("unsupported_media_type"),
            StatusCode::BAD_REQUEST => Some("invalid_json"),
            _ => Some("invalid_body"),
        };
        ApiError { status, kind: "invalid_request_error", code, param: None, message: r.body_text() }
    }
}
