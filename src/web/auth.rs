//! Users, sessions, roles and the `/api` guard.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::audit::AuditLog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Citizen,
    Agent,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Citizen => "citizen",
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
    fn parse(s: &str) -> Option<Role> {
        [Role::Citizen, Role::Agent, Role::Supervisor, Role::Admin].into_iter().find(|r| r.as_str() == s)
    }
}

/// One user of `[web] users`: the key itself or (better) its sha256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_sha256: Option<String>,
}

/// `[web]` in zhengwu.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub users: Vec<UserConfig>,
    /// Audit log (default `<data dir>/zhengwu/audit.jsonl`).
    pub audit_log: Option<PathBuf>,
    /// Session lifetime in hours (default 12).
    pub session_hours: Option<u64>,
    /// Run without users on a non-loopback address (everyone is admin). Off by default: `serve`
    /// refuses to start that way unless this or `--insecure-open` is given.
    pub open: bool,
    /// Mark the session cookie `Secure` (served over TLS or behind a TLS proxy). Also set per
    /// request when a proxy says `X-Forwarded-Proto: https`.
    pub secure_cookie: bool,
}

impl WebConfig {
    /// Add users from `ZHENGWU_WEB_USERS` = `name:role:key,name:role:key`.
    pub fn with_env_users(mut self, spec: Option<&str>) -> anyhow::Result<WebConfig> {
        for item in spec.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let mut parts = item.splitn(3, ':');
            let (Some(name), Some(role), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
                anyhow::bail!("ZHENGWU_WEB_USERS: `{item}` is not name:role:key");
            };
            let role = Role::parse(role).ok_or_else(|| anyhow::anyhow!("ZHENGWU_WEB_USERS: unknown role `{role}` (citizen, agent, supervisor, admin)"))?;
            self.users.push(UserConfig { name: name.into(), role, key: Some(key.into()), key_sha256: None });
        }
        Ok(self)
    }
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub role: Role,
}

struct Session {
    ident: Identity,
    expires: Instant,
}

/// Most sessions held at once; at the bound the one closest to expiry is dropped. A login loop
/// cannot grow the map without bound.
const MAX_SESSIONS: usize = 10_000;
/// Failed logins allowed per client address within [`LOGIN_WINDOW`]; then 429 until it ends.
const LOGIN_FAILURES_PER_CLIENT: u32 = 5;
/// Failed logins allowed from all clients together within [`LOGIN_WINDOW`] (many addresses).
const LOGIN_FAILURES_TOTAL: u32 = 100;
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Failed-login counts per client address and in total, per window.
#[derive(Default)]
struct LoginThrottle {
    per_client: HashMap<String, (Instant, u32)>,
    total: (Option<Instant>, u32),
}

impl LoginThrottle {
    /// Seconds to wait when `client` may not try now.
    fn blocked(&mut self, client: &str, now: Instant) -> Option<u64> {
        let wait = |since: Instant| LOGIN_WINDOW.saturating_sub(now - since).as_secs().max(1);
        if let (Some(since), n) = self.total {
            if now - since < LOGIN_WINDOW && n >= LOGIN_FAILURES_TOTAL {
                return Some(wait(since));
            }
        }
        match self.per_client.get(client) {
            Some(&(since, n)) if now - since < LOGIN_WINDOW && n >= LOGIN_FAILURES_PER_CLIENT => Some(wait(since)),
            _ => None,
        }
    }

    fn failed(&mut self, client: &str, now: Instant) {
        if self.per_client.len() >= MAX_SESSIONS {
            self.per_client.retain(|_, (since, _)| now - *since < LOGIN_WINDOW);
        }
        let e = self.per_client.entry(client.to_string()).or_insert((now, 0));
        if now - e.0 >= LOGIN_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
        match self.total {
            (Some(since), ref mut n) if now - since < LOGIN_WINDOW => *n += 1,
            _ => self.total = (Some(now), 1),
        }
    }
}

pub struct WebState {
    users: Vec<(String, Role, [u8; 32])>,
    sessions: Mutex<HashMap<String, Session>>,
    session_ttl: Duration,
    pub audit: AuditLog,
    /// Ticket id → owning citizen (persisted as JSON lines beside the audit log).
    owners: Mutex<HashMap<i64, String>>,
    owners_file: PathBuf,
    /// The ticket API's agent key, presented on behalf of agents, supervisors and admins.
    agent_key: Option<String>,
    login_throttle: Mutex<LoginThrottle>,
    secure_cookie: bool,
}

fn sha(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}))).into_response()
}

const COOKIE: &str = "zw_session";

impl WebState {
    pub fn new(cfg: &WebConfig, audit_path: PathBuf, agent_key: Option<String>) -> anyhow::Result<WebState> {
        let mut users = Vec::new();
        for u in &cfg.users {
            let h = match (&u.key, &u.key_sha256) {
                (Some(k), None) if k.len() >= 8 => sha(k),
                (Some(_), None) => anyhow::bail!("[web] user {}: keys must have at least 8 characters", u.name),
                (None, Some(h)) => {
                    let v = hex::decode(h).map_err(|_| anyhow::anyhow!("[web] user {}: key_sha256 is not hex", u.name))?;
                    v.try_into().map_err(|_| anyhow::anyhow!("[web] user {}: key_sha256 must be 32 bytes", u.name))?
                }
                _ => anyhow::bail!("[web] user {}: give exactly one of key, key_sha256", u.name),
            };
            if users.iter().any(|(n, _, _): &(String, Role, [u8; 32])| *n == u.name) {
                anyhow::bail!("[web] user {} is listed twice", u.name);
            }
            users.push((u.name.clone(), u.role, h));
        }
        let audit = AuditLog::open(&audit_path)?;
        let owners_file = audit_path.with_file_name("ticket_owners.jsonl");
        let mut owners = HashMap::new();
        if let Ok(text) = fs_err::read_to_string(&owners_file) {
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if let (Some(id), Some(u)) = (v["ticket"].as_i64(), v["user"].as_str()) {
                        owners.insert(id, u.to_string());
                    }
                }
            }
        }
        Ok(WebState {
            users,
            sessions: Mutex::new(HashMap::new()),
            session_ttl: Duration::from_secs(3600 * cfg.session_hours.unwrap_or(12).max(1)),
            audit,
            owners: Mutex::new(owners),
            owners_file,
            agent_key,
            login_throttle: Mutex::new(LoginThrottle::default()),
            secure_cookie: cfg.secure_cookie,
        })
    }

    pub fn auth_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    fn user_by_key(&self, key: &str) -> Option<Identity> {
        let h = sha(key);
        self.users.iter().find(|(_, _, k)| ct_eq(k, &h)).map(|(n, r, _)| Identity { user: n.clone(), role: *r })
    }

    /// Who is asking: the session cookie, or a user key as bearer token.
    pub fn identify(&self, headers: &HeaderMap) -> Option<Identity> {
        if let Some(tok) = cookie(headers, COOKIE) {
            if let Ok(mut s) = self.sessions.lock() {
                match s.get(&tok) {
                    Some(v) if v.expires > Instant::now() => return Some(v.ident.clone()),
                    Some(_) => {
                        s.remove(&tok);
                    }
                    None => {}
                }
            }
        }
        let bearer = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
        self.user_by_key(bearer.trim())
    }

    /// Append an audit entry off the async workers (each entry is synced to disk before the
    /// response that it records goes out).
    async fn log_audit(self: &Arc<Self>, user: &str, role: &str, action: &'static str, ticket: Option<i64>, model: Option<String>, detail: Option<String>) {
        let (w, user, role) = (self.clone(), user.to_string(), role.to_string());
        if let Err(e) = tokio::task::spawn_blocking(move || w.audit.record(&user, &role, action, ticket, model, detail)).await {
            tracing::error!(error = %e, "audit writer crashed");
        }
    }

    /// Hold a new session, dropping expired ones and, at [`MAX_SESSIONS`], the oldest.
    fn add_session(&self, token: String, ident: Identity) {
        let Ok(mut s) = self.sessions.lock() else { return };
        let now = Instant::now();
        if s.len() >= MAX_SESSIONS {
            s.retain(|_, v| v.expires > now);
        }
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s.iter().min_by_key(|(_, v)| v.expires).map(|(k, _)| k.clone()) {
                s.remove(&oldest);
            }
        }
        s.insert(token, Session { ident, expires: now + self.session_ttl });
    }

    fn owner_of(&self, id: i64) -> Option<String> {
        self.owners.lock().ok()?.get(&id).cloned()
    }

    fn set_owner(&self, id: i64, user: &str) {
        if let Ok(mut o) = self.owners.lock() {
            o.insert(id, user.to_string());
        }
        let line = format!("{}\n", json!({"ticket": id, "user": user}));
        // Synced before the ticket is acknowledged: a lost line would lock the citizen out.
        let res = std::fs::OpenOptions::new().create(true).append(true).open(&self.owners_file).and_then(|mut f| {
            use std::io::Write;
            f.write_all(line.as_bytes()).and_then(|_| f.sync_data())
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "recording the ticket owner failed");
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// `GET /api/me`.
pub async fn me(State(w): State<Arc<WebState>>, headers: HeaderMap) -> Json<Value> {
    let id = w.identify(&headers);
    Json(json!({"auth": w.auth_enabled(), "user": id.as_ref().map(|i| i.user.clone()), "role": id.map(|i| i.role.as_str())}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    key: String,
}

/// The client's address for login throttling: the connection's peer (set by `serve`).
fn client_addr(req_ext: &axum::http::Extensions) -> String {
    req_ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `POST /api/login {"key"}` → session cookie. Failed attempts are throttled per client address
/// and in total (429 with Retry-After), and each is audited.
pub async fn login(State(w): State<Arc<WebState>>, req: Request) -> Response {
    let client = client_addr(req.extensions());
    let forwarded_https = req.headers().get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let bytes = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_body", "the login body is over 64 KiB"),
    };
    let Ok(b) = serde_json::from_slice::<LoginBody>(&bytes) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "expected {\"key\": \"...\"}");
    };
    if !w.auth_enabled() {
        return error(StatusCode::CONFLICT, "auth_disabled", "no users are configured; this server does not need a login");
    }
    let now = Instant::now();
    if let Some(wait) = w.login_throttle.lock().ok().and_then(|mut t| t.blocked(&client, now)) {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", &format!("登录尝试过多，请 {wait} 秒后再试"));
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let Some(id) = w.user_by_key(b.key.trim()) else {
        if let Ok(mut t) = w.login_throttle.lock() {
            t.failed(&client, now);
        }
        w.log_audit("unknown", "-", "login.failed", None, None, Some(format!("client={client}"))).await;
        return error(StatusCode::UNAUTHORIZED, "invalid_key", "访问密钥不正确");
    };
    let token = uuid::Uuid::new_v4().simple().to_string();
    w.add_session(token.clone(), id.clone());
    w.log_audit(&id.user, id.role.as_str(), "login", None, None, None).await;
    let secure = if w.secure_cookie || forwarded_https { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", w.session_ttl.as_secs());
    let mut r = Json(json!({"user": id.user, "role": id.role.as_str()})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /api/logout`.
pub async fn logout(State(w): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let old = cookie(&headers, COOKIE).and_then(|tok| w.sessions.lock().ok()?.remove(&tok));
    if let Some(old) = old {
        w.log_audit(&old.ident.user, old.ident.role.as_str(), "logout", None, None, None).await;
    }
    let mut r = Json(json!({"ok": true})).into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("zw_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
    r
}

/// `/api/tickets/{id}` → id.
fn ticket_id(path: &str) -> Option<i64> {
    path.strip_prefix("/api/tickets/")?.split('/').next()?.parse().ok()
}

/// May `role` call `method path`?
pub fn allowed(role: Role, method: &Method, path: &str) -> bool {
    match role {
        Role::Admin | Role::Supervisor => true,
        Role::Agent => !(path.starts_with("/api/supervisor") || path.starts_with("/api/audit")),
        Role::Citizen => {
            let single = ticket_id(path).is_some() && path.matches('/').count() == 3;
            matches!((method, path), (&Method::POST, "/api/ask") | (&Method::POST, "/api/copilot") | (&Method::POST, "/api/tickets"))
                || (method == Method::GET && (single || path == "/api/kb/search"))
        }
    }
}

use zhengwu_hotline::tickets::http::{CALLER_ROLE_HEADER as INTERNAL_ROLE, CALLER_USER_HEADER as INTERNAL_USER, ROWS_HEADER};

/// Tell the handlers who is calling (they trust these headers because the guard strips them
/// from every incoming request first).
fn set_caller(req: &mut Request, id: &Identity) {
    let h = req.headers_mut();
    if let Ok(v) = HeaderValue::from_str(id.role.as_str()) {
        h.insert(INTERNAL_ROLE, v);
    }
    // User names come from the config; a name that is not a valid header value is sent as its hash.
    let user = HeaderValue::from_str(&id.user).unwrap_or_else(|_| HeaderValue::from_str(&hex::encode(sha(&id.user))).expect("hex is a header value"));
    h.insert(INTERNAL_USER, user);
}

/// The `/api` guard: role checks, citizens' ownership, the agent key on behalf of staff, and
/// audit entries for ticket changes, dispatch decisions and views of personal data.
pub async fn guard(State(w): State<Arc<WebState>>, mut req: Request, next: Next) -> Response {
    req.headers_mut().remove(INTERNAL_ROLE);
    req.headers_mut().remove(INTERNAL_USER);
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let public = matches!(path.as_str(), "/api/me" | "/api/login" | "/api/logout");
    if !path.starts_with("/api/") || public {
        return next.run(req).await;
    }
    if !w.auth_enabled() {
        // Open mode (no users configured): no checks, but changes are still audited.
        let bearer = req.headers().contains_key(header::AUTHORIZATION);
        let id = Identity { user: "anonymous".into(), role: Role::Admin };
        // No user is known: the role only. Bodies keep naming their actor (the one person at
        // a loopback first run), and idempotency keys are not scoped.
        req.headers_mut().insert(INTERNAL_ROLE, HeaderValue::from_static("admin"));
        return audited(&w, &id, &method, &path, bearer, next.run(req).await).await;
    }
    let Some(id) = w.identify(req.headers()) else {
        return error(StatusCode::UNAUTHORIZED, "login_required", "请先登录 (POST /api/login, or Authorization: Bearer <user key>)");
    };
    if !allowed(id.role, &method, &path) {
        return error(StatusCode::FORBIDDEN, "forbidden", &format!("role {} may not use {method} {path}", id.role.as_str()));
    }
    if id.role == Role::Citizen {
        if let (true, Some(tid)) = (method == Method::GET, ticket_id(&path)) {
            if w.owner_of(tid).as_deref() != Some(id.user.as_str()) {
                return error(StatusCode::NOT_FOUND, "ticket_not_found", &format!("ticket {tid} not found"));
            }
        }
    }
    set_caller(&mut req, &id);
    let staff = id.role != Role::Citizen;
    // Staff act with the ticket API's agent key (personal data unmasked, metrics, auto-dispatch).
    let inject = staff && w.agent_key.is_some();
    let unmasked = inject && path.starts_with("/api/tickets");
    if inject {
        if let Some(v) = w.agent_key.as_ref().and_then(|k| HeaderValue::from_str(&format!("Bearer {k}")).ok()) {
            req.headers_mut().insert(header::AUTHORIZATION, v);
        }
    } else {
        req.headers_mut().remove(header::AUTHORIZATION);
    }
    let resp = next.run(req).await;
    audited(&w, &id, &method, &path, unmasked, resp).await
}

/// Audit entries for a finished request: ticket creation (and the citizen's ownership), ticket
/// transitions, dispatch decisions, and views of unmasked personal data (`unmasked`).
async fn audited(w: &Arc<WebState>, id: &Identity, method: &Method, path: &str, unmasked: bool, resp: Response) -> Response {
    let is_create = method == Method::POST && path == "/api/tickets";
    let is_transition = method == Method::POST && path.ends_with("/transitions");
    let is_dispatch = method == Method::POST && path.ends_with("/auto-dispatch");
    let is_export = method == Method::GET && path == "/api/tickets/export.csv";
    let is_view = method == Method::GET && path.starts_with("/api/tickets") && unmasked && !is_export && path != "/api/tickets/meta";
    if !(is_create || is_transition || is_dispatch || is_view || is_export) || !resp.status().is_success() {
        return resp;
    }
    let (user, role) = (id.user.as_str(), id.role.as_str());
    // Views and exports are logged from the headers: their bodies (up to 100,000 rows) are
    // streamed to the client, never read back here.
    if is_view || is_export {
        let rows = resp.headers().get(ROWS_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (action, detail) = match (is_export, ticket_id(path)) {
            (true, _) => ("tickets.export", Some(format!("{} tickets, masked", rows.as_deref().unwrap_or("?")))),
            (false, Some(_)) => ("pii.view", None),
            (false, None) => ("pii.view", Some(format!("list of {} tickets", rows.as_deref().unwrap_or("?")))),
        };
        w.log_audit(user, role, action, ticket_id(path), None, detail).await;
        return resp;
    }
    // One ticket (or a dispatch answer holding one): bounded by the ticket's own size limits.
    let (parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if is_create {
        let tid = v["id"].as_i64();
        if let (Some(t), Role::Citizen) = (tid, id.role) {
            let (w2, u) = (w.clone(), user.to_string());
            if let Err(e) = tokio::task::spawn_blocking(move || w2.set_owner(t, &u)).await {
                tracing::error!(error = %e, "recording the ticket owner crashed");
            }
        }
        w.log_audit(user, role, "ticket.create", tid, None, v["status"].as_str().map(str::to_string)).await;
    } else if is_transition {
        let to = v["status"].as_str().unwrap_or("?");
        let dept = v["lead_dept"].as_str().map(|d| format!(" dept={d}")).unwrap_or_default();
        w.log_audit(user, role, "ticket.transition", ticket_id(path), None, Some(format!("status={to}{dept}"))).await;
    } else if is_dispatch {
        let s = &v["suggestion"];
        let model = s["reasons"].as_array().and_then(|r| r.iter().find(|x| x["kind"] == "model")).and_then(|x| x["model"].as_str()).map(str::to_string);
        let detail = format!(
            "dispatched={} lead={} confidence={} bucket={} decided_by={}",
            v["dispatched"],
            s["lead"]["dept"].as_str().unwrap_or("-"),
            s["lead"]["confidence"],
            s["bucket"].as_str().unwrap_or("-"),
            s["decided_by"].as_str().unwrap_or("-")
        );
        w.log_audit(user, role, "dispatch.decision", ticket_id(path), model, Some(detail)).await;
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_gate_routes() {
        let get = Method::GET;
        let post = Method::POST;
        assert!(allowed(Role::Citizen, &post, "/api/ask"));
        assert!(allowed(Role::Citizen, &post, "/api/tickets"));
        assert!(allowed(Role::Citizen, &get, "/api/tickets/12"));
        assert!(!allowed(Role::Citizen, &get, "/api/tickets"), "no list for citizens");
        assert!(!allowed(Role::Citizen, &post, "/api/tickets/12/transitions"));
        assert!(!allowed(Role::Citizen, &get, "/api/supervisor/metrics"));
        assert!(allowed(Role::Agent, &post, "/api/tickets/12/auto-dispatch"));
        assert!(!allowed(Role::Agent, &get, "/api/supervisor/metrics"));
        assert!(!allowed(Role::Agent, &get, "/api/audit"));
        assert!(allowed(Role::Supervisor, &get, "/api/audit"));
        assert!(allowed(Role::Admin, &get, "/api/supervisor/metrics.csv"));
    }

    #[test]
    fn env_users_parse_and_reject_bad_entries() {
        let c = WebConfig::default().with_env_users(Some("ann:agent:secret-key-1, bo:citizen:secret-key-2")).unwrap();
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.users[1].role, Role::Citizen);
        assert!(WebConfig::default().with_env_users(Some("ann:boss:k")).is_err());
        assert!(WebConfig::default().with_env_users(Some("ann")).is_err());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; zw_session=tok; b=2"));
        assert_eq!(cookie(&h, "zw_session").as_deref(), Some("tok"));
        assert_eq!(ticket_id("/api/tickets/42/transitions"), Some(42));
        assert_eq!(ticket_id("/api/tickets/search"), None);
    }
}
