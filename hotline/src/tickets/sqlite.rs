//! Embedded SQLite store: one file, WAL journal, `synchronous = FULL` (a commit is on disk before
//! the API answers), one writer connection (SQLite allows one writer; queueing in the pool avoids
//! `SQLITE_BUSY` lock upgrades) and a few reader connections.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite};

use crate::tickets::sql::{sql_ticket_store, Embedded};
use crate::tickets::store::StoreError;

const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "tickets", include_str!("../../migrations/sqlite/0001_tickets.sql"))];

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Open (creating if missing) `sqlite:///abs/path.db`, `sqlite://rel.db` or a plain path.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let opts = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        if let Some(dir) = Path::new(opts.get_filename()).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Config(format!("creating {}: {e}", dir.display())))?;
            }
        }
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await?;
        // SQLite has no migration lock: two processes opening a new file at once can race; the
        // loser fails (the table exists) and simply re-runs, finding the migration applied.
        let migrator = sqlx::migrate::Migrator::new(Embedded(MIGRATIONS)).await?;
        let mut tries = 0;
        while let Err(e) = migrator.run(&write).await {
            tries += 1;
            if tries >= 3 {
                return Err(e.into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts)
            .await?;
        Ok(Self { write, read })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    async fn index_search(conn: &mut sqlx::SqliteConnection, id: i64, text: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO ticket_search (rowid, body) VALUES ($1, $2)").bind(id).bind(text).execute(conn).await?;
        Ok(())
    }

    /// Terms of 3+ characters use the trigram index; shorter ones scan `search_text`.
    fn push_term(qb: &mut QueryBuilder<'_, Sqlite>, term: String) {
        if term.chars().count() >= 3 {
            let phrase = format!("\"{}\"", term.replace('"', "\"\""));
            qb.push(" AND id IN (SELECT rowid FROM ticket_search WHERE ticket_search MATCH ").push_bind(phrase).push(")");
        } else {
            qb.push(" AND instr(lower(search_text), lower(").push_bind(term).push(")) > 0");
        }
    }
}

sql_ticket_store!(SqliteStore, sqlx::Sqlite, "sqlite");
