//! The web app: three pages for people (citizen chat `/`, agent console `/agent`,
//! supervisor dashboard `/dashboard`) served from assets compiled into the binary, login with
//! roles, per-route role checks on `/api`, and an append-only audit log.
//!
//! Authentication is on when users are configured (`[web] users` or `ZHENGWU_WEB_USERS`); then
//! every `/api` route needs a session (cookie from `POST /api/login`) or `Authorization: Bearer
//! <user key>`, and the role decides what it may do:
//!
//! | role | may use |
//! |---|---|
//! | citizen | `/api/ask`, `/api/copilot` (form pre-fill only), `POST /api/tickets`, `GET /api/tickets/{id}` of its own tickets, `/api/kb/search` |
//! | agent | everything except `/api/supervisor/*` and `/api/audit` |
//! | supervisor, admin | everything |
//!
//! The audit log (JSON lines: `at`, `user`, `role`, `action`, `ticket`, `model`, `detail`)
//! records logins, every view of unmasked personal data, every ticket change and every dispatch
//! decision; supervisors read it at `GET /api/audit`.

mod assets;
mod audit;
mod auth;

pub use auth::{guard, Role, WebConfig, WebState};

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

/// Pages, assets and the `/api/me|login|logout|audit` routes.
pub fn routes(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(assets::citizen_page))
        .route("/agent", get(assets::agent_page))
        .route("/dashboard", get(assets::dashboard_page))
        .route("/assets/{file}", get(assets::asset))
        .route("/api/me", get(auth::me))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/audit", get(audit::read))
        .with_state(state)
}
