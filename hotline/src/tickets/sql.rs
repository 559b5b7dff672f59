//! The SQL shared by the SQLite and PostgreSQL stores. Both schemas have the same tables and
//! columns; `sqlx` binds `$N` placeholders on both. Backend differences (search index, id
//! column type, pools) live in `sqlite.rs` / `postgres.rs`; this macro writes the rest once.
//!
//! Layout: `tickets` holds indexed columns (status, type, district, deadlines, ...) plus the
//! whole [`TicketBody`](crate::tickets::model::TicketBody) as JSON; `ticket_events` is the
//! append-only history (UPDATE/DELETE refused by triggers), keyed by `(ticket_id, seq)` where
//! `seq` equals the ticket's version after the event. Transitions are optimistic: read version
//! `v`, `UPDATE ... WHERE version = v`, append event `v + 1`, commit; a lost race re-reads.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType};

use crate::tickets::model::{HistoryEntry, Status, Ticket, TicketBody};
use crate::tickets::sla;
use crate::tickets::store::StoreError;

/// Migrations compiled into the binary: (version, description, SQL).
#[derive(Debug)]
pub(crate) struct Embedded(pub &'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, Cow::Borrowed(*sql), false))
                .collect())
        })
    }
}

pub(crate) fn ms(dt: DateTime<Utc>) -> i64 {
    dt.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| StoreError::Corrupt(format!("timestamp {v} out of range")))
}

/// Millisecond precision everywhere, so the JSON body and the columns agree.
pub(crate) fn trunc_ms(dt: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(dt.timestamp_millis()).unwrap_or(dt)
}

pub(crate) fn decode_body(json: &str) -> Result<TicketBody, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn encode_body(b: &TicketBody) -> Result<String, StoreError> {
    serde_json::to_string(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn assemble(id: i64, version: i64, body: TicketBody, history: Vec<HistoryEntry>, now: DateTime<Utc>) -> Ticket {
    let overdue = sla::overdue(&body.deadlines, &body.milestones, now);
    Ticket { id, number: crate::tickets::model::ticket_number(id, body.created_at), version, body, history, overdue }
}

pub(crate) fn parse_status(s: &str) -> Result<Status, StoreError> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s:?}")))
}

/// Implements [`TicketStore`](crate::tickets::store::TicketStore) for `$store` (fields `write`
/// and `read`: pools of `$db`). `$store` must provide `index_search(conn, id, text)` and
/// `push_term(query_builder, term)`.
macro_rules! sql_ticket_store {
    ($store:ty, $db:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::tickets::store::TicketStore for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn create(
                &self,
                new: &$crate::tickets::model::NewTicket,
                opts: &$crate::tickets::store::CreateOptions,
            ) -> Result<($crate::tickets::model::Ticket, bool), $crate::tickets::store::StoreError> {
                use $crate::tickets::model::*;
                use $crate::tickets::sql::*;
                use $crate::tickets::store::*;
                let now = trunc_ms(opts.now);
                let hash = request_hash(new);
                let body = TicketBody {
                    channel: new.channel,
                    contact: new.contact.clone(),
                    address: new.address.clone(),
                    request_type: new.request_type,
                    category: new.category.clone(),
                    summary: new.summary.trim().to_string(),
                    text: new.text.clone(),
                    transcript_ref: new.transcript_ref.clone(),
                    urgency: new.urgency,
                    lead_dept: new.lead_dept.clone(),
                    co_handlers: new.co_handlers.clone(),
                    status: Status::Received,
                    created_at: now,
                    updated_at: now,
                    deadlines: opts.deadlines.clone(),
                    milestones: Milestones::default(),
                    reply: None,
                    satisfaction: None,
                    flags: opts.flags.clone(),
                    returns: 0,
                    reopens: 0,
                    dispatches: Vec::new(),
                };
                let json = encode_body(&body)?;
                let search = Ticket::search_text(&body);
                let actor = new.actor.clone().unwrap_or_else(|| "system".to_string());
                let mut tx = self.write.begin().await?;
                let inserted: Option<(i64,)> = sqlx::query_as(
                    "INSERT INTO tickets (idempotency_key, request_hash, version, status, channel, request_type, urgency, \
                     district, lead_dept, created_at, updated_at, reply_by, replied_at, search_text, body) \
                     VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13) \
                     ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                )
                .bind(opts.idempotency_key.clone())
                .bind(&hash)
                .bind(Status::Received.as_str())
                .bind(body.channel.as_str())
                .bind(body.request_type.as_str())
                .bind(body.urgency.as_str())
                .bind(body.address.district.clone())
                .bind(body.lead_dept.clone())
                .bind(ms(now))
                .bind(ms(now))
                .bind(body.deadlines.reply_by.map(ms))
                .bind(&search)
                .bind(&json)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((id,)) = inserted else {
                    tx.rollback().await?;
                    let key = opts.idempotency_key.clone().unwrap_or_default();
                    let (id, stored_hash): (i64, String) =
                        sqlx::query_as("SELECT id, request_hash FROM tickets WHERE idempotency_key = $1")
                            .bind(&key)
                            .fetch_one(&self.read)
                            .await?;
                    if stored_hash != hash {
                        return Err(StoreError::IdempotencyMismatch);
                    }
                    let t = self.get(id).await?.ok_or(StoreError::NotFound(id))?;
                    return Ok((t, false));
                };
                let entry = HistoryEntry { seq: 1, at: now, actor, from: None, to: Status::Received, reason: None, dept: None };
                Self::insert_event(&mut *tx, id, &entry).await?;
                Self::index_search(&mut *tx, id, &search).await?;
                tx.commit().await?;
                Ok((assemble(id, 1, body, vec![entry], chrono::Utc::now()), true))
            }

            async fn get(&self, id: i64) -> Result<Option<$crate::tickets::model::Ticket>, $crate::tickets::store::StoreError> {
                use $crate::tickets::model::*;
                use $crate::tickets::sql::*;
                use sqlx::Row;
                // One read transaction so the row and its history are a consistent snapshot.
                let mut tx = self.read.begin().await?;
                let row = sqlx::query("SELECT version, body FROM tickets WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let version: i64 = row.try_get("version")?;
                let body = decode_body(row.try_get::<&str, _>("body")?)?;
                let rows = sqlx::query(
                    "SELECT seq, at, actor, from_status, to_status, reason, dept FROM ticket_events WHERE ticket_id = $1 ORDER BY seq",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                let mut history = Vec::with_capacity(rows.len());
                for r in rows {
                    let from: Option<String> = r.try_get("from_status")?;
                    history.push(HistoryEntry {
                        seq: r.try_get("seq")?,
                        at: from_ms(r.try_get("at")?)?,
                        actor: r.try_get("actor")?,
                        from: from.as_deref().map(parse_status).transpose()?,
                        to: parse_status(r.try_get::<&str, _>("to_status")?)?,
                        reason: r.try_get("reason")?,
                        dept: r.try_get("dept")?,
                    });
                }
                Ok(Some(assemble(id, version, body, history, chrono::Utc::now())))
            }

            async fn transition(
                &self,
                id: i64,
                req: &$crate::tickets::machine::TransitionRequest,
                sla: &$crate::tickets::sla::SlaPolicy,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::tickets::model::Ticket, $crate::tickets::store::StoreError> {
                use $crate::tickets::sql::*;
                use $crate::tickets::store::*;
                use sqlx::Row;
                let now = trunc_ms(now);
                for _attempt in 0..16 {
                    let mut tx = self.write.begin().await?;
                    let row = sqlx::query("SELECT version, body FROM tickets WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
                    // Errors end the transaction at once (explicit rollback: no lock outlives the call).
                    let Some(row) = row else {
                        tx.rollback().await?;
                        return Err(StoreError::NotFound(id));
                    };
                    let version: i64 = row.try_get("version")?;
                    if let Some(expected) = req.expected_version {
                        if expected != version {
                            tx.rollback().await?;
                            return Err(StoreError::VersionConflict { id, expected, actual: version });
                        }
                    }
                    let body = decode_body(row.try_get::<&str, _>("body")?)?;
                    let (nb, mut entry) = match $crate::tickets::machine::apply(&body, req, now, sla) {
                        Ok(x) => x,
                        Err(e) => {
                            tx.rollback().await?;
                            return Err(e.into());
                        }
                    };
                    entry.seq = version + 1;
                    let json = encode_body(&nb)?;
                    let done = sqlx::query(
                        "UPDATE tickets SET version = $1, status = $2, lead_dept = $3, updated_at = $4, reply_by = $5, \
                         replied_at = $6, body = $7 WHERE id = $8 AND version = $9",
                    )
                    .bind(version + 1)
                    .bind(nb.status.as_str())
                    .bind(nb.lead_dept.clone())
                    .bind(ms(now))
                    .bind(nb.deadlines.reply_by.map(ms))
                    .bind(nb.milestones.replied_at.map(ms))
                    .bind(&json)
                    .bind(id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        tx.rollback().await?;
                        continue;
                    }
                    Self::insert_event(&mut *tx, id, &entry).await?;
                    tx.commit().await?;
                    return self.get(id).await?.ok_or(StoreError::NotFound(id));
                }
                Err(StoreError::Contention(id))
            }

            async fn list(
                &self,
                f: &$crate::tickets::store::TicketFilter,
                page: $crate::tickets::store::PageRequest,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::tickets::store::Page, $crate::tickets::store::StoreError> {
                use $crate::tickets::sql::*;
                use $crate::tickets::store::*;
                use sqlx::Row;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT id, version, body FROM tickets WHERE 1 = 1");
                if let Some(s) = f.status {
                    qb.push(" AND status = ").push_bind(s.as_str());
                }
                if let Some(t) = f.request_type {
                    qb.push(" AND request_type = ").push_bind(t.as_str());
                }
                if let Some(c) = f.channel {
                    qb.push(" AND channel = ").push_bind(c.as_str());
                }
                if let Some(u) = f.urgency {
                    qb.push(" AND urgency = ").push_bind(u.as_str());
                }
                if let Some(d) = &f.district {
                    qb.push(" AND district = ").push_bind(d.clone());
                }
                if let Some(d) = &f.lead_dept {
                    qb.push(" AND lead_dept = ").push_bind(d.clone());
                }
                if let Some(from) = f.created_from {
                    qb.push(" AND created_at >= ").push_bind(ms(from));
                }
                if let Some(to) = f.created_to {
                    qb.push(" AND created_at < ").push_bind(ms(to));
                }
                if let Some(o) = f.overdue {
                    qb.push(if o { " AND " } else { " AND NOT " });
                    qb.push("(reply_by IS NOT NULL AND COALESCE(replied_at, ").push_bind(ms(now)).push(") > reply_by)");
                }
                for term in query_terms(f.q.as_deref().unwrap_or("")) {
                    Self::push_term(&mut qb, term);
                }
                if let Some(c) = page.cursor {
                    qb.push(" AND id < ").push_bind(c);
                }
                let limit = page.limit.clamp(1, 500) as i64;
                qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit + 1);
                let rows = qb.build().fetch_all(&self.read).await?;
                let more = rows.len() as i64 > limit;
                let mut data = Vec::with_capacity(rows.len());
                for r in rows.into_iter().take(limit as usize) {
                    let id: i64 = r.try_get("id")?;
                    let version: i64 = r.try_get("version")?;
                    let body = decode_body(r.try_get::<&str, _>("body")?)?;
                    data.push(assemble(id, version, body, Vec::new(), now));
                }
                let next_cursor = if more { data.last().map(|t| t.id) } else { None };
                Ok(Page { data, next_cursor })
            }
        }

        impl $store {
            async fn insert_event(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: i64,
                e: &$crate::tickets::model::HistoryEntry,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO ticket_events (ticket_id, seq, at, actor, from_status, to_status, reason, dept) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(id)
                .bind(e.seq)
                .bind($crate::tickets::sql::ms(e.at))
                .bind(e.actor.clone())
                .bind(e.from.map(|s| s.as_str()))
                .bind(e.to.as_str())
                .bind(e.reason.clone())
                .bind(e.dept.clone())
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_ticket_store;
