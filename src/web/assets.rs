//! Static assets compiled into the binary (no CDN, no separate front-end server).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../web/index.html");
const AGENT: &str = include_str!("../../web/agent.html");
const DASHBOARD: &str = include_str!("../../web/dashboard.html");
const FILES: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("../../web/app.css")),
    ("common.js", "text/javascript; charset=utf-8", include_str!("../../web/common.js")),
    ("chat.js", "text/javascript; charset=utf-8", include_str!("../../web/chat.js")),
    ("agent.js", "text/javascript; charset=utf-8", include_str!("../../web/agent.js")),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../../web/dashboard.js")),
];

/// Scripts and styles only from this server; images may also be data: URLs.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn page(html: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

pub async fn citizen_page() -> Response {
    page(INDEX)
}

pub async fn agent_page() -> Response {
    page(AGENT)
}

pub async fn dashboard_page() -> Response {
    page(DASHBOARD)
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == file) {
        Some((_, ct, body)) => {
            let mut r = ([(header::CONTENT_TYPE, *ct)], *body).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            r
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
