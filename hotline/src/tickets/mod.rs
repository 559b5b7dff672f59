//! Tickets (工单): model, state machine, SLA, stores (SQLite, PostgreSQL), HTTP API.
//!
//! [`TicketService`] is what the server holds: a [`TicketStore`] plus the policies applied on
//! intake (validation against the taxonomy, sensitive-word screening, SLA deadlines).

pub mod http;
pub mod machine;
pub mod model;
pub mod postgres;
pub mod sla;
pub(crate) mod sql;
pub mod sqlite;
pub mod store;
pub mod taxonomy;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};

pub use machine::{TransitionError, TransitionRequest};
pub use model::{NewTicket, Status, Ticket};
pub use postgres::PgStore;
pub use sla::{SlaConfig, SlaPolicy};
pub use sqlite::SqliteStore;
pub use store::{CreateOptions, Page, PageRequest, StoreError, TicketFilter, TicketStore};
pub use taxonomy::Taxonomy;

use crate::blocking::CpuPool;
use crate::sensitive::Screener;
use model::FieldError;

/// `[tickets]` in zhengwu.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketsConfig {
    /// `sqlite:///path/tickets.db`, a plain file path, or `postgres://user@host/db`.
    pub db: Option<String>,
    /// Bearer key that reveals citizens' personal data in API answers (agents only).
    pub agent_key: Option<String>,
    /// Category taxonomy (default: knowledge-base/taxonomy.toml).
    pub taxonomy: Option<PathBuf>,
    /// Sensitive-word list (default: knowledge-base/sensitive_words.toml).
    pub sensitive_words: Option<PathBuf>,
    pub sla: SlaConfig,
}

/// Default ticket database: `<data dir>/zhengwu/tickets.db` (e.g. ~/.local/share/zhengwu, the
/// platform's data directory as the `dirs` crate finds it).
pub fn default_db_url() -> String {
    let dir = dirs::data_dir().unwrap_or_else(|| PathBuf::from("."));
    format!("sqlite://{}", dir.join("zhengwu").join("tickets.db").display())
}

/// `knowledge-base/<name>` in the working directory, else the one in the source tree.
pub fn knowledge_file(name: &str) -> Option<PathBuf> {
    let local = Path::new("knowledge-base").join(name);
    if local.exists() {
        return Some(local);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("knowledge-base").join(name);
    built.exists().then_some(built)
}

/// Open the store a URL names.
pub async fn open_store(url: &str) -> Result<Arc<dyn TicketStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // `?schema=NAME` (ours, not libpq's): keep the tables in that schema, created if missing.
        let (url, schema) = split_schema_param(url);
        Ok(Arc::new(PgStore::connect(&url, schema.as_deref()).await?))
    } else if url.contains("://") && !url.starts_with("sqlite:") {
        Err(StoreError::Config(format!("unsupported ticket database URL scheme in {url:?}: use sqlite:// or postgres://")))
    } else {
        Ok(Arc::new(SqliteStore::open(url).await?))
    }
}

/// Remove a `schema=NAME` query parameter from a PostgreSQL URL.
pub fn split_schema_param(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), None) };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(v) => {
                schema = Some(v.to_string());
                false
            }
            None => !kv.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) };
    (url, schema)
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct TicketService {
    pub store: Arc<dyn TicketStore>,
    pub sla: SlaPolicy,
    pub taxonomy: Option<Taxonomy>,
    pub screener: Option<Screener>,
    pub agent_key: Option<String>,
    /// CPU work of the handlers (masking of lists and exports) runs here, off the async workers.
    pub cpu: Arc<CpuPool>,
}

impl TicketService {
    pub fn new(store: Arc<dyn TicketStore>) -> Self {
        Self { store, sla: SlaPolicy::default(), taxonomy: None, screener: None, agent_key: None, cpu: Arc::new(CpuPool::for_this_machine()) }
    }

    /// Everything from config: store, SLA, taxonomy and word list (defaults from knowledge-base/).
    pub async fn from_config(cfg: &TicketsConfig) -> Result<Self, StoreError> {
        let sla = SlaPolicy::new(cfg.sla.clone()).map_err(|e| StoreError::Config(format!("[tickets.sla]: {e}")))?;
        let taxonomy = match cfg.taxonomy.clone().or_else(|| knowledge_file("taxonomy.toml")) {
            Some(p) => Some(Taxonomy::load(&p).map_err(|e| StoreError::Config(e.to_string()))?),
            None => None,
        };
        let screener = match cfg.sensitive_words.clone().or_else(|| knowledge_file("sensitive_words.toml")) {
            Some(p) => Some(Screener::load(&p).map_err(|e| StoreError::Config(format!("{}: {e}", p.display())))?),
            None => None,
        };
        let url = cfg.db.clone().unwrap_or_else(default_db_url);
        let store = open_store(&url).await?;
        tracing::info!(backend = store.backend(), taxonomy = taxonomy.is_some(), words = screener.is_some(), "ticket store open");
        Ok(Self {
            store,
            sla,
            taxonomy,
            screener,
            agent_key: cfg.agent_key.clone().filter(|k| !k.is_empty()),
            cpu: Arc::new(CpuPool::for_this_machine()),
        })
    }

    /// Validate, screen and store a new ticket. `Ok((ticket, false))` is an idempotent replay.
    ///
    /// Idempotency keys are scoped by `caller` (the authenticated user): a key replayed by
    /// someone else is a different key, so it can neither return nor take over their ticket.
    pub async fn create(&self, new: &NewTicket, idempotency_key: Option<String>, caller: Option<&str>) -> Result<(Ticket, bool), ServiceError> {
        new.validate(self.taxonomy.as_ref())?;
        if let Some(k) = &idempotency_key {
            if k.is_empty() || k.len() > 128 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(model::field("idempotency_key", "1-128 printable ASCII characters").into());
            }
        }
        let idempotency_key = match (idempotency_key, caller) {
            // The user name may hold any character; its hash keeps the stored key printable.
            (Some(k), Some(who)) => {
                use sha2::Digest;
                let h = sha2::Sha256::digest(who.as_bytes());
                Some(format!("{}:{k}", hex::encode(&h[..8])))
            }
            (k, _) => k,
        };
        let screened = format!("{}\n{}", new.summary, new.text);
        let flags = match &self.screener {
            Some(s) => s.screen(&screened).flags(),
            None => Vec::new(),
        };
        // A reported safety hazard makes the ticket urgent whoever files it (a citizen cannot
        // set urgency; the word list's `urgency` can).
        let raised = self.screener.as_ref().and_then(|s| s.hazard(&screened)).map(|h| h.urgency).filter(|u| *u > new.urgency);
        let raised_ticket;
        let new = match raised {
            Some(urgency) => {
                raised_ticket = NewTicket { urgency, ..new.clone() };
                &raised_ticket
            }
            None => new,
        };
        let now = Utc::now();
        let opts = CreateOptions {
            idempotency_key,
            now,
            deadlines: self.sla.on_create(new.request_type, new.urgency, now),
            flags,
        };
        let (t, created) = self.store.create(new, &opts).await?;
        if created {
            tracing::info!(
                id = t.id,
                number = %t.number,
                request_type = t.body.request_type.as_str(),
                channel = t.body.channel.as_str(),
                flags = ?t.body.flags,
                "ticket created"
            );
        }
        Ok((t, created))
    }

    pub async fn transition(&self, id: i64, req: &TransitionRequest) -> Result<Ticket, ServiceError> {
        let t = self.store.transition(id, req, &self.sla, Utc::now()).await?;
        tracing::info!(id, to = t.body.status.as_str(), version = t.version, "ticket transition");
        Ok(t)
    }

    /// Free text for a view: PII masked and `mask`-action sensitive words starred.
    pub fn mask_text(&self, text: &str) -> String {
        let text = crate::redact::mask(text);
        match &self.screener {
            Some(s) => s.screen(&text).apply_masks(&text),
            None => text,
        }
    }

    /// The masked view of a ticket (for callers without the agent key, exports, prompts).
    pub fn masked(&self, t: &Ticket) -> Ticket {
        let mut m = t.masked();
        m.body.summary = self.mask_text(&m.body.summary);
        m.body.text = self.mask_text(&m.body.text);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_param() {
        assert_eq!(split_schema_param("postgres://u@h/db"), ("postgres://u@h/db".into(), None));
        assert_eq!(split_schema_param("postgres://u@h/db?schema=t1"), ("postgres://u@h/db".into(), Some("t1".into())));
        assert_eq!(
            split_schema_param("postgres://u@h/db?sslmode=disable&schema=t1"),
            ("postgres://u@h/db?sslmode=disable".into(), Some("t1".into()))
        );
    }

    #[test]
    fn config_parses_from_toml() {
        let cfg: TicketsConfig = toml::from_str(
            r#"
            db = "sqlite:///tmp/x.db"
            [sla]
            holidays = ["2026-10-01"]
            reply_working_days = { consult = 2, complaint = 7 }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.sla.reply_working_days.get(&model::RequestType::Consult), Some(&2));
        assert_eq!(cfg.sla.holidays.len(), 1);
        assert!(toml::from_str::<TicketsConfig>("dbb = 'typo'").is_err(), "unknown keys are errors");
    }
}
