//! One set of error kinds for the whole workspace. Every crate keeps the error type that suits
//! it, says which [`ErrorKind`] each of its errors is, and the HTTP layer turns the kind into a
//! status through [`ErrorKind::http_status`], the only table of statuses.

/// What went wrong, as far as a caller (or an HTTP client) needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or a value is out of range: the caller must change it.
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// The request conflicts with the current state (a ticket already closed, a duplicate).
    Conflict,
    /// Too much work queued already; retry later.
    Overloaded,
    /// The input does not fit the model's context window.
    ContextOverflow,
    /// A component (model, index, store) is still loading or failed to load.
    NotReady,
    /// The request's time ran out, or it was cancelled.
    Deadline,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials without the right to do this.
    Forbidden,
    /// A fault on our side; the message is logged.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests that walk the table.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Invalid,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Overloaded,
        ErrorKind::ContextOverflow,
        ErrorKind::NotReady,
        ErrorKind::Deadline,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::Internal,
    ];

    /// The HTTP status of an error of this kind: the one place statuses are decided.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Overloaded => 429,
            ErrorKind::ContextOverflow => 400,
            ErrorKind::NotReady => 503,
            ErrorKind::Deadline => 504,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::Internal => 500,
        }
    }

    /// OpenAI's error `type` for this kind (`/v1` clients switch on it).
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::Invalid | ErrorKind::ContextOverflow | ErrorKind::Conflict => "invalid_request_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Overloaded => "rate_limit_error",
            ErrorKind::Deadline => "timeout_error",
            ErrorKind::Unauthorized => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::NotReady | ErrorKind::Internal => "server_error",
        }
    }

    /// The machine-readable `code` an error of this kind carries when nothing more specific
    /// applies.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid_value",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Overloaded => "queue_full",
            ErrorKind::ContextOverflow => "context_length_exceeded",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::Deadline => "deadline_exceeded",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether the same request may succeed if retried later unchanged.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Overloaded | ErrorKind::NotReady | ErrorKind::Deadline)
    }
}

/// The error of the model seams ([`crate::Generator`], [`crate::Embedder`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Bad input from the caller.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A request parameter out of range, by name (OpenAI clients show `param`).
    #[error("{message}")]
    InvalidParam { param: String, message: String },
    /// Input longer than the model can take.
    #[error("input has {tokens} tokens but the model `{model}` accepts at most {limit}")]
    ContextOverflow { model: String, tokens: usize, limit: usize },
    /// The scheduler queue is full (the client should retry later).
    #[error("server busy: {capacity} requests already queued or running")]
    Overloaded { capacity: usize },
    /// The request was cancelled (client went away or deadline passed).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The model is not loaded (yet), or a remote backend cannot be reached.
    #[error("{0}")]
    NotReady(String),
    /// Anything else, with the kind it is.
    #[error("{message}")]
    Other { kind: ErrorKind, message: String },
}

impl Error {
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Other { kind: ErrorKind::Internal, message: message.into() }
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Error::InvalidParam { param: param.into(), message: message.into() }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) | Error::InvalidParam { .. } => ErrorKind::Invalid,
            Error::ContextOverflow { .. } => ErrorKind::ContextOverflow,
            Error::Overloaded { .. } => ErrorKind::Overloaded,
            Error::Cancelled(_) => ErrorKind::Deadline,
            Error::NotReady(_) => ErrorKind::NotReady,
            Error::Other { kind, .. } => *kind,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_error_status_and_a_code() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            let s = k.http_status();
            assert!((400..600).contains(&s), "{k:?} -> {s}");
            assert!(seen.insert(s), "{k:?} shares status {s}");
            assert!(!k.code().is_empty() && !k.openai_type().is_empty());
            // Only a fault on our side or an unready component is a 5xx other than a deadline.
            assert_eq!(s >= 500, matches!(k, ErrorKind::Internal | ErrorKind::NotReady | ErrorKind::Deadline), "{k:?}");
        }
    }

    #[test]
    fn seam_errors_say_their_kind() {
        assert_eq!(Error::Invalid("x".into()).kind().http_status(), 422);
        assert_eq!(Error::Overloaded { capacity: 1 }.kind(), ErrorKind::Overloaded);
        assert_eq!(Error::Cancelled("deadline".into()).kind(), ErrorKind::Deadline);
        assert_eq!(Error::ContextOverflow { model: "m".into(), tokens: 9, limit: 8 }.kind().http_status(), 400);
        assert!(Error::NotReady("chat model".into()).kind().retryable());
        assert!(!Error::internal("boom").kind().retryable());
    }
}
