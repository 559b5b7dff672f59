//! The `TicketStore` trait: what every backend (SQLite, PostgreSQL) provides.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::tickets::machine::{TransitionError, TransitionRequest};
use crate::tickets::model::{Channel, Deadlines, NewTicket, RequestType, Status, Ticket, Urgency};
use crate::tickets::sla::SlaPolicy;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ticket {0} not found")]
    NotFound(i64),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("ticket {id} is at version {actual}, not the expected {expected}")]
    VersionConflict { id: i64, expected: i64, actual: i64 },
    #[error("idempotency key was already used for a different ticket request")]
    IdempotencyMismatch,
    #[error("ticket {0} kept changing under concurrent updates; retry")]
    Contention(i64),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the ticket schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored ticket data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
}

/// What `create` needs besides the ticket: computed by the service layer.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub idempotency_key: Option<String>,
    pub now: DateTime<Utc>,
    pub deadlines: Deadlines,
    /// Sensitive-word flags to record.
    pub flags: Vec<String>,
}

/// List filters; every field optional (AND-ed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketFilter {
    pub status: Option<Status>,
    pub request_type: Option<RequestType>,
    pub channel: Option<Channel>,
    pub urgency: Option<Urgency>,
    pub district: Option<String>,
    pub lead_dept: Option<String>,
    /// Reply deadline missed (replied late, or not replied and past due) as of now.
    pub overdue: Option<bool>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Full-text query: whitespace-separated terms, all must occur (Chinese substrings).
    pub q: Option<String>,
}

/// Keyset pagination, newest first: `cursor` is the last id of the previous page.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub data: Vec<Ticket>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<i64>,
}

#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Backend name for logs (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Insert a new ticket (status `received`, history entry 1) in one transaction. With an
    /// idempotency key already used for the same request, returns the existing ticket and
    /// `false`; for a different request, [`StoreError::IdempotencyMismatch`].
    async fn create(&self, new: &NewTicket, opts: &CreateOptions) -> Result<(Ticket, bool), StoreError>;

    /// The ticket with its full history.
    async fn get(&self, id: i64) -> Result<Option<Ticket>, StoreError>;

    /// Validate and apply a transition atomically: the ticket row and one appended history entry.
    async fn transition(&self, id: i64, req: &TransitionRequest, sla: &SlaPolicy, now: DateTime<Utc>) -> Result<Ticket, StoreError>;

    /// Filtered list, newest first (no history).
    async fn list(&self, filter: &TicketFilter, page: PageRequest, now: DateTime<Utc>) -> Result<Page, StoreError>;
}

/// Split a query into terms for substring search (at most 8, each at most 64 characters).
pub fn query_terms(q: &str) -> Vec<String> {
    q.split_whitespace().filter(|t| !t.is_empty()).take(8).map(|t| t.chars().take(64).collect()).collect()
}

/// Escape `%`, `_` and `\` for `LIKE ... ESCAPE '\'`.
pub fn like_pattern(term: &str) -> String {
    let mut s = String::with_capacity(term.len() + 2);
    s.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// Hash of a create request, to tell a retry from a different request reusing the key.
pub fn request_hash(new: &NewTicket) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(new).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}
