//! PostgreSQL store (sqlx, embedded migrations, no TLS). Same tables as SQLite; search is a
//! substring match (`strpos`) per term.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, Postgres, QueryBuilder};

use crate::tickets::sql::{sql_ticket_store, Embedded};
use crate::tickets::store::StoreError;

const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "tickets", include_str!("../../migrations/postgres/0001_tickets.sql"))];

pub struct PgStore {
    write: PgPool,
    read: PgPool,
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl PgStore {
    /// Connect to `postgres://...`; with `schema`, create it if missing and keep every table there
    /// (`search_path`), e.g. one schema per test.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let mut opts = PgConnectOptions::from_str(url)?;
        if let Some(s) = schema {
            if !valid_schema(s) {
                return Err(StoreError::Config(format!("schema name {s:?}: use [a-z0-9_], at most 63 characters")));
            }
            let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
            conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {s}").as_str()).await?;
            conn.close().await?;
            // application_name lets `drop_schema` find this store's sessions.
            opts = opts.options([("search_path", s)]).application_name(s);
        }
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts)
            .await?;
        sqlx::migrate::Migrator::new(Embedded(MIGRATIONS)).await?.run(&pool).await?;
        Ok(Self { write: pool.clone(), read: pool })
    }

    pub async fn close(&self) {
        self.write.close().await;
    }

    /// Drop a schema and everything in it, ending sessions opened with `connect(url, Some(schema))`
    /// (test cleanup).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::Config(format!("schema name {schema:?}")));
        }
        let mut conn = sqlx::PgConnection::connect_with(&PgConnectOptions::from_str(url)?).await?;
        // Sessions of a store still open on this schema (e.g. a failed test's pool) would block
        // the DROP: end them first.
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()")
            .bind(schema)
            .execute(&mut conn)
            .await?;
        conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str()).await?;
        conn.close().await?;
        Ok(())
    }

    async fn index_search(_conn: &mut sqlx::PgConnection, _id: i64, _text: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }

    fn push_term(qb: &mut QueryBuilder<'_, Postgres>, term: String) {
        qb.push(" AND strpos(lower(search_text), lower(").push_bind(term).push(")) > 0");
    }
}

sql_ticket_store!(PgStore, sqlx::Postgres, "postgres");
