//! Append-only audit log: one JSON object per line, written with O_APPEND and flushed per entry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::{error, Role, WebState};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub at: String,
    pub user: String,
    pub role: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    pub fn open(path: &Path) -> anyhow::Result<AuditLog> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(d)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("opening the audit log {}: {e}", path.display()))?;
        Ok(AuditLog { path: path.to_path_buf(), file: Mutex::new(file) })
    }

    /// Append one entry; a failure is logged (the request it records has already happened).
    pub fn record(&self, user: &str, role: &str, action: &str, ticket: Option<i64>, model: Option<String>, detail: Option<String>) {
        let e = AuditEntry {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            user: user.to_string(),
            role: role.to_string(),
            action: action.to_string(),
            ticket,
            doc: None,
            model,
            detail: detail.map(|d| zhengwu_hotline::redact::mask(&d)),
        };
        let mut line = serde_json::to_string(&e).unwrap_or_default();
        line.push('\n');
        match self.file.lock() {
            Ok(mut f) => {
                if let Err(err) = f.write_all(line.as_bytes()).and_then(|_| f.flush()) {
                    tracing::error!(error = %err, path = %self.path.display(), "audit log write failed");
                }
            }
            Err(_) => tracing::error!("audit log lock poisoned"),
        }
    }

    /// The last `limit` entries, oldest first.
    pub fn tail(&self, limit: usize) -> anyhow::Result<Vec<AuditEntry>> {
        let text = fs_err::read_to_string(&self.path)?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(limit)..]
            .iter()
            .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("audit log line: {e}")))
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    limit: Option<usize>,
}

/// `GET /api/audit?limit=N` (supervisor, admin).
pub async fn read(
    State(w): State<Arc<WebState>>,
    headers: HeaderMap,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // The guard has checked the caller and set its role (staff requests carry the ticket agent
    // key instead of their own, so the role header is what identifies them here).
    let role = headers.get("x-zhengwu-role").and_then(|v| v.to_str().ok());
    if w.auth_enabled() && !matches!(role, Some(r) if r == Role::Supervisor.as_str() || r == Role::Admin.as_str()) {
        return error(StatusCode::FORBIDDEN, "forbidden", "the audit log is for supervisors");
    }
    let limit = match q {
        Ok(Query(p)) => p.limit.unwrap_or(100).clamp(1, 10_000),
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", &e.body_text()),
    };
    match w.audit.tail(limit) {
        Ok(entries) => Json(json!({ "entries": entries })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "audit_unreadable", &e.to_string()),
    }
}
