//! OpenAI-shaped errors: every failure on `/v1` answers `{"error": {message, type, param, code}}`
//! with a meaningful status code. Engine errors are mapped to statuses here, once.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
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
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
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

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::Invalid(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", message),
            EngineError::ContextOverflow { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).with_code("context_length_exceeded")
            }
            EngineError::Overloaded { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message).with_code("queue_full")
            }
            EngineError::Cancelled(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout_error", message).with_code("deadline_exceeded")
            }
            EngineError::Tokenizer(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", message),
            EngineError::Template(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", message).with_code("chat_template")
            }
            _ => {
                tracing::error!(error = %message, "engine error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
            }
        }
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
