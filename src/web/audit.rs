//! Append-only audit log: one JSON object per line, written with O_APPEND and synced to disk per
//! entry (an entry acknowledged in a response survives a crash or power loss). Read from the end,
//! a page at a time, so a long log is never read whole.

use std::io::{Read, Seek, SeekFrom, Write};
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
                if let Err(err) = f.write_all(line.as_bytes()).and_then(|_| f.sync_data()) {
                    tracing::error!(error = %err, path = %self.path.display(), "audit log write failed");
                }
            }
            Err(_) => tracing::error!("audit log lock poisoned"),
        }
    }

    /// The last `limit` entries before byte offset `before` (the end when `None`), oldest first,
    /// and the offset of the first of them (pass it as `before` for the page before; `None` at
    /// the start of the log). Reads backwards in blocks: only the page is read.
    pub fn page(&self, limit: usize, before: Option<u64>) -> anyhow::Result<(Vec<AuditEntry>, Option<u64>)> {
        const BLOCK: u64 = 64 * 1024;
        let mut f = fs_err::File::open(&self.path)?;
        let len = f.metadata()?.len();
        let end = before.unwrap_or(len).min(len);
        // Bytes [start, end) of the file; grown backwards until it holds `limit` whole lines.
        let mut start = end;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let lines = buf.iter().filter(|&&b| b == b'\n').count();
            // One more newline than lines wanted: the first line in `buf` may be cut.
            if start == 0 || lines > limit {
                break;
            }
            let from = start.saturating_sub(BLOCK);
            let mut block = vec![0u8; (start - from) as usize];
            f.seek(SeekFrom::Start(from))?;
            f.read_exact(&mut block)?;
            block.extend_from_slice(&buf);
            buf = block;
            start = from;
        }
        // A `before` inside a line (not one this API gave out): the cut line is left out.
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(p) => buf.truncate(p + 1),
            None => buf.clear(),
        }
        // Line starts (offsets into buf) of the whole lines.
        let mut starts: Vec<usize> = Vec::new();
        if start == 0 {
            starts.push(0);
        }
        starts.extend(buf.iter().enumerate().filter(|(i, &b)| b == b'\n' && i + 1 < buf.len()).map(|(i, _)| i + 1));
        let keep = &starts[starts.len().saturating_sub(limit)..];
        let first = keep.first().copied().unwrap_or(buf.len());
        let text = std::str::from_utf8(&buf[first..]).map_err(|e| anyhow::anyhow!("audit log is not UTF-8: {e}"))?;
        let entries = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("audit log line: {e}")))
            .collect::<anyhow::Result<Vec<AuditEntry>>>()?;
        let first_offset = start + first as u64;
        Ok((entries, (first_offset > 0).then_some(first_offset)))
    }

    /// The last `limit` entries, oldest first.
    #[cfg(test)]
    pub fn tail(&self, limit: usize) -> anyhow::Result<Vec<AuditEntry>> {
        Ok(self.page(limit, None)?.0)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    limit: Option<usize>,
    /// `next_before` of the previous page: entries written before that point.
    before: Option<u64>,
}

/// `GET /api/audit?limit=N[&before=OFFSET]` (supervisor, admin): the newest page, then older ones.
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
    let (limit, before) = match q {
        Ok(Query(p)) => (p.limit.unwrap_or(100).clamp(1, 10_000), p.before),
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", &e.body_text()),
    };
    let w2 = w.clone();
    match tokio::task::spawn_blocking(move || w2.audit.page(limit, before)).await {
        Ok(Ok((entries, next_before))) => Json(json!({ "entries": entries, "next_before": next_before })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "audit_unreadable", &e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_run_backwards_through_the_whole_log() {
        let dir = std::env::temp_dir().join(format!("zw-audit-{}", uuid::Uuid::new_v4().simple()));
        let log = AuditLog::open(&dir.join("audit.jsonl")).unwrap();
        // Long details make entries span the 64 KiB read blocks.
        for i in 0..700 {
            log.record("ann", "agent", "ticket.create", Some(i), None, Some("x".repeat(i as usize % 300)));
        }
        let mut seen: Vec<i64> = Vec::new();
        let mut before = None;
        loop {
            let (page, next) = log.page(64, before).unwrap();
            assert!(page.len() <= 64);
            let ids: Vec<i64> = page.iter().map(|e| e.ticket.unwrap()).collect();
            assert!(ids.windows(2).all(|w| w[0] + 1 == w[1]), "oldest first within a page");
            seen.splice(0..0, ids);
            match next {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        assert_eq!(seen, (0..700).collect::<Vec<_>>());
        assert_eq!(log.tail(3).unwrap().iter().map(|e| e.ticket.unwrap()).collect::<Vec<_>>(), vec![697, 698, 699]);
        assert_eq!(log.tail(5000).unwrap().len(), 700);
        let _ = fs_err::remove_dir_all(&dir);
    }
}
