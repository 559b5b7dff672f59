//! HTTP API under `/api/tickets` (axum). Errors use the OpenAI-style shape the rest of the
//! server uses: `{"error": {"message", "type", "param", "code"}}`; an invalid transition is a 409
//! whose error also lists `allowed` next states.
//!
//! | route | what |
//! |---|---|
//! | `POST /api/tickets` | create (JSON [`NewTicket`]); `Idempotency-Key` header: a retry returns the same ticket (200, not 201) |
//! | `GET /api/tickets` | list: `status`, `request_type`, `channel`, `urgency`, `district`, `lead_dept`, `overdue`, `created_from`, `created_to`, `q`, `limit`, `cursor` |
//! | `GET /api/tickets/search?q=` | full-text search (same filters) |
//! | `GET /api/tickets/export.csv` | CSV of the filtered list, personal data always masked |
//! | `GET /api/tickets/{id}` | one ticket with its history |
//! | `POST /api/tickets/{id}/transitions` | move it ([`TransitionRequest`]) |
//! | `GET /api/tickets/meta` | states and allowed moves, SLA config, taxonomy |
//!
//! Personal data (contact, IDs and phones inside the text) is masked unless the request carries
//! `Authorization: Bearer <agent key>`.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use zhengwu_core::ErrorKind;

use crate::redact;
use crate::tickets::machine::{self, TransitionError};
use crate::tickets::model::{Channel, NewTicket, RequestType, Status, Ticket, Urgency};
use crate::tickets::store::{PageRequest, StoreError, TicketFilter};
use crate::tickets::{ServiceError, TicketService};

pub fn routes(svc: Arc<TicketService>) -> Router {
    Router::new()
        .route("/api/tickets", post(create).get(list))
        .route("/api/tickets/search", get(search))
        .route("/api/tickets/export.csv", get(export_csv))
        .route("/api/tickets/meta", get(meta))
        .route("/api/tickets/{id}", get(get_one))
        .route("/api/tickets/{id}/transitions", post(transition))
        .with_state(svc)
}

/// An error answer.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    kind: &'static str,
    code: &'static str,
    param: Option<String>,
    message: String,
    allowed: Option<Vec<Status>>,
}

impl HttpError {
    /// An error of `kind`; the status comes from the workspace's one table
    /// ([`ErrorKind::http_status`]).
    pub(crate) fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
        Self { status, kind, code, param: None, message: message.into(), allowed: None }
    }
    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self { param: Some(param.to_string()), ..Self::new(ErrorKind::Invalid, "invalid_value", message) }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut err = json!({"message": self.message, "type": self.kind, "param": self.param, "code": self.code});
        if let Some(a) = self.allowed {
            err["allowed"] = json!(a);
        }
        let mut resp = (self.status, Json(json!({ "error": err }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE || self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// The first `n` characters: a rejection may quote the whole bad value (megabytes).
fn head(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl From<JsonRejection> for HttpError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::BAD_REQUEST => "invalid_json",
            _ => "invalid_body",
        };
        // serde's message names the field and the expected values; it may quote a bad value, so
        // mask personal data in it. Transport failures keep the extractor's status (400 syntax,
        // 413 size, 415 content type); a body of the wrong shape is 422 like any invalid value.
        let message = redact::mask(&head(&r.body_text(), 500));
        Self { status, kind: "invalid_request_error", code, param: None, message, allowed: None }
    }
}

impl From<crate::blocking::PoolError> for HttpError {
    fn from(e: crate::blocking::PoolError) -> Self {
        match e {
            crate::blocking::PoolError::Overloaded(_) => HttpError::new(ErrorKind::Overloaded, "overloaded", e.to_string()),
            crate::blocking::PoolError::Crashed(_) => {
                tracing::error!(error = %e, "background job failed");
                HttpError::new(ErrorKind::Internal, "internal", "a background job failed; see the server log")
            }
        }
    }
}

impl From<QueryRejection> for HttpError {
    fn from(r: QueryRejection) -> Self {
        Self::new(ErrorKind::Invalid, "invalid_query", redact::mask(&head(&r.body_text(), 500)))
    }
}

impl From<ServiceError> for HttpError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(f) => HttpError::invalid(&f.param, f.message),
            ServiceError::Store(s) => s.into(),
        }
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => HttpError::new(ErrorKind::NotFound, "ticket_not_found", format!("ticket {id} not found")),
            StoreError::Transition(TransitionError::NotAllowed { from, to, allowed }) => {
                let message = TransitionError::NotAllowed { from, to, allowed: allowed.clone() }.to_string();
                HttpError {
                    param: Some("to".into()),
                    allowed: Some(allowed),
                    ..HttpError::new(ErrorKind::Conflict, "invalid_transition", message)
                }
            }
            StoreError::Transition(TransitionError::Field(f)) => HttpError::invalid(&f.param, f.message),
            e @ StoreError::VersionConflict { .. } => HttpError {
                param: Some("expected_version".into()),
                ..HttpError::new(ErrorKind::Conflict, "version_conflict", e.to_string())
            },
            e @ StoreError::IdempotencyMismatch => HttpError {
                param: Some("idempotency_key".into()),
                ..HttpError::new(ErrorKind::Invalid, "idempotency_key_reused", e.to_string())
            },
            e @ StoreError::Contention(_) => HttpError::new(ErrorKind::NotReady, "contention", e.to_string()),
            other => {
                tracing::error!(error = %redact::Redacted(&other.to_string()), "ticket store error");
                HttpError::new(ErrorKind::Internal, "store_error", "ticket store error; see the server log")
            }
        }
    }
}

/// `Some(true)` with the right agent key, `Some(false)` without a key, `Err` for a wrong key.
pub(crate) fn is_agent(svc: &TicketService, headers: &HeaderMap) -> Result<bool, HttpError> {
    let Some(given) = headers.get(header::AUTHORIZATION) else { return Ok(false) };
    let given = given.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    match &svc.agent_key {
        Some(k) if given.len() == k.len() && given.bytes().zip(k.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0 => Ok(true),
        _ => Err(HttpError::new(ErrorKind::Unauthorized, "invalid_agent_key", "wrong agent key (Authorization: Bearer ...)")),
    }
}

fn view(svc: &TicketService, t: &Ticket, agent: bool) -> Ticket {
    if agent {
        t.clone()
    } else {
        svc.masked(t)
    }
}

pub(crate) fn parse_id(s: &str) -> Result<i64, HttpError> {
    s.parse::<i64>()
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| HttpError::new(ErrorKind::NotFound, "ticket_not_found", "ticket ids are positive integers"))
}

/// Who is calling, as the web guard established it. The guard strips these headers from every
/// incoming request and sets them after authentication, so they cannot be forged by a client.
pub const CALLER_USER_HEADER: &str = "x-zhengwu-user";
pub const CALLER_ROLE_HEADER: &str = "x-zhengwu-role";

/// The authenticated caller: (user, is a citizen). `None` user when no guard runs in front.
pub(crate) fn caller(headers: &HeaderMap) -> (Option<String>, bool) {
    let user = headers.get(CALLER_USER_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let citizen = headers.get(CALLER_ROLE_HEADER).is_some_and(|v| v == "citizen");
    (user, citizen)
}

/// Fields only staff may set when a ticket is created: they steer the workflow (SLA, routing).
fn staff_only_fields(new: &NewTicket) -> Option<&'static str> {
    if new.urgency != Urgency::Normal {
        Some("urgency")
    } else if new.lead_dept.is_some() {
        Some("lead_dept")
    } else if !new.co_handlers.is_empty() {
        Some("co_handlers")
    } else {
        None
    }
}

async fn create(
    State(svc): State<Arc<TicketService>>,
    headers: HeaderMap,
    body: Result<Json<NewTicket>, JsonRejection>,
) -> Result<Response, HttpError> {
    let agent = is_agent(&svc, &headers)?;
    let Json(mut new) = body?;
    let (user, citizen) = caller(&headers);
    if citizen {
        if let Some(f) = staff_only_fields(&new) {
            return Err(HttpError {
                param: Some(f.into()),
                ..HttpError::new(ErrorKind::Forbidden, "staff_only_field", format!("{f} is set by hotline staff, not on a citizen's request"))
            });
        }
    }
    // The history records who really did it, whatever the body says.
    if let Some(u) = &user {
        new.actor = Some(u.clone());
    }
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| HttpError::invalid("idempotency_key", "Idempotency-Key must be ASCII"))?.to_string()),
        None => None,
    };
    let (t, created) = svc.create(&new, key, user.as_deref()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let mut resp = (status, Json(view(&svc, &t, agent))).into_response();
    if !created {
        resp.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
    }
    Ok(resp)
}

async fn get_one(State(svc): State<Arc<TicketService>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, HttpError> {
    let agent = is_agent(&svc, &headers)?;
    let id = parse_id(&id)?;
    let t = svc.store.get(id).await?.ok_or(StoreError::NotFound(id))?;
    Ok(Json(view(&svc, &t, agent)).into_response())
}

async fn transition(
    State(svc): State<Arc<TicketService>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<machine::TransitionRequest>, JsonRejection>,
) -> Result<Response, HttpError> {
    let agent = is_agent(&svc, &headers)?;
    let id = parse_id(&id)?;
    let Json(mut req) = body?;
    if let Some(u) = caller(&headers).0 {
        req.actor = u;
    }
    // Auto-dispatch records are written by `/auto-dispatch` only; one sent here is a person's
    // decision, whatever it claims (the supervisor's automation metrics count on it).
    if let Some(d) = &mut req.dispatch {
        if d.auto {
            return Err(HttpError::invalid("dispatch.auto", "auto-dispatch records are written by POST /api/tickets/{id}/auto-dispatch only"));
        }
        d.decided_by = Some("person".into());
    }
    let t = svc.transition(id, &req).await?;
    Ok(Json(view(&svc, &t, agent)).into_response())
}

/// Query parameters of list, search and export.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<Status>,
    request_type: Option<RequestType>,
    channel: Option<Channel>,
    urgency: Option<Urgency>,
    district: Option<String>,
    lead_dept: Option<String>,
    overdue: Option<bool>,
    created_from: Option<DateTime<Utc>>,
    created_to: Option<DateTime<Utc>>,
    q: Option<String>,
    limit: Option<u32>,
    cursor: Option<i64>,
}

impl ListParams {
    fn split(self, default_limit: u32) -> Result<(TicketFilter, PageRequest), HttpError> {
        let limit = self.limit.unwrap_or(default_limit);
        if limit == 0 || limit > 500 {
            return Err(HttpError::invalid("limit", "between 1 and 500"));
        }
        if let Some(q) = &self.q {
            if q.chars().count() > 200 {
                return Err(HttpError::invalid("q", "at most 200 characters"));
            }
        }
        let f = TicketFilter {
            status: self.status,
            request_type: self.request_type,
            channel: self.channel,
            urgency: self.urgency,
            district: self.district,
            lead_dept: self.lead_dept,
            overdue: self.overdue,
            created_from: self.created_from,
            created_to: self.created_to,
            q: self.q,
        };
        Ok((f, PageRequest { limit, cursor: self.cursor }))
    }
}

async fn list(
    State(svc): State<Arc<TicketService>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, HttpError> {
    let agent = is_agent(&svc, &headers)?;
    let Query(params) = params?;
    let (f, page) = params.split(50)?;
    let mut p = svc.store.list(&f, page, Utc::now()).await?;
    if !agent {
        let (svc2, data) = (svc.clone(), std::mem::take(&mut p.data));
        p.data = svc.cpu.run(move || data.iter().map(|t| svc2.masked(t)).collect()).await?;
    }
    let rows = p.data.len();
    let mut resp = Json(p).into_response();
    resp.headers_mut().insert(ROWS_HEADER, header::HeaderValue::from(rows));
    Ok(resp)
}

async fn search(
    State(svc): State<Arc<TicketService>>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(params) = params?;
    if params.q.as_deref().is_none_or(|q| q.trim().is_empty()) {
        return Err(HttpError::invalid("q", "a search needs q (terms separated by spaces, all must occur)"));
    }
    list(State(svc), headers, Ok(Query(params))).await
}

/// Rows in a list or export answer (read by the audit log).
pub const ROWS_HEADER: &str = "x-zhengwu-rows";

/// Largest export in one request.
const EXPORT_MAX_ROWS: usize = 100_000;

async fn export_csv(
    State(svc): State<Arc<TicketService>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(params) = params?;
    let (f, mut page) = params.split(500)?;
    page.limit = 500;
    let now = Utc::now();
    let mut out = String::from("\u{FEFF}");
    write_row(&mut out, EXPORT_HEADER.iter().map(|s| s.to_string()));
    let mut rows = 0usize;
    loop {
        let p = svc.store.list(&f, page, now).await?;
        rows += p.data.len();
        // Masking a page of long texts is CPU work: off the async workers.
        let svc2 = svc.clone();
        let data = p.data;
        let chunk = svc.cpu.run(move || {
            let mut chunk = String::new();
            for t in &data {
                write_row(&mut chunk, export_fields(&svc2.masked(t)));
            }
            chunk
        })
        .await?;
        out.push_str(&chunk);
        if rows >= EXPORT_MAX_ROWS {
            return Err(HttpError::invalid("limit", format!("more than {EXPORT_MAX_ROWS} rows; narrow the filters")));
        }
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"tickets.csv\""),
        ],
        out,
    )
        .into_response();
    // For the audit log, which does not read bodies.
    resp.headers_mut().insert(ROWS_HEADER, header::HeaderValue::from(rows));
    Ok(resp)
}

const EXPORT_HEADER: [&str; 20] = [
    "id", "number", "status", "channel", "request_type", "urgency", "category", "district", "street", "address",
    "lead_dept", "co_handlers", "summary", "contact_name", "contact_phone", "created_at", "reply_by", "replied_at",
    "overdue", "flags",
];

fn export_fields(t: &Ticket) -> Vec<String> {
    let b = &t.body;
    let ts = |d: Option<DateTime<Utc>>| d.map(|d| d.to_rfc3339()).unwrap_or_default();
    vec![
        t.id.to_string(),
        t.number.clone(),
        b.status.as_str().into(),
        b.channel.as_str().into(),
        b.request_type.label().into(),
        b.urgency.as_str().into(),
        b.category.join("/"),
        b.address.district.clone().unwrap_or_default(),
        b.address.street.clone().unwrap_or_default(),
        b.address.text.clone(),
        b.lead_dept.clone().unwrap_or_default(),
        b.co_handlers.join(";"),
        b.summary.clone(),
        b.contact.name.clone().unwrap_or_default(),
        b.contact.phone.clone().unwrap_or_default(),
        b.created_at.to_rfc3339(),
        ts(b.deadlines.reply_by),
        ts(b.milestones.replied_at),
        t.overdue.any.to_string(),
        b.flags.join(";"),
    ]
}

/// RFC 4180 quoting; cells starting with `= + - @` are prefixed with `'` so spreadsheets do not
/// run them as formulas.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn write_row(out: &mut String, cells: impl IntoIterator<Item = String>) {
    let mut first = true;
    for c in cells {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&csv_cell(&c));
    }
    out.push_str("\r\n");
}

async fn meta(State(svc): State<Arc<TicketService>>) -> Response {
    let states: Vec<_> = Status::ALL.iter().map(|s| json!({"status": s, "allowed": machine::allowed(*s)})).collect();
    Json(json!({
        "states": states,
        "sla": svc.sla.config(),
        "taxonomy": svc.taxonomy,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_and_formula_guard() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("两行\n文本"), "\"两行\n文本\"");
    }
}
