//! The web app in a real headless Chromium (Debian `chromium`, driven by Playwright's
//! `playwright-core` from `tests/browser/`): a citizen asks a question and gets a cited answer,
//! submits a request and sees the ticket; an agent opens it, accepts the suggested department and
//! moves it on; a supervisor sees the counts change. The script fails on any console error.
//! Screenshots of each page are written to `<target tmp>/browser/`.
//!
//! Needs `chromium` and `node` with `tests/browser/node_modules` (`./scripts/test` installs
//! both); fails, never skips, without them.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, Server, CHAT_MODEL, EMBED_MODEL};
use serde_json::Value;

const CITIZEN: &str = "citizen-key-0001";
const AGENT: &str = "agent-key-0002";
const SUPERVISOR: &str = "supervisor-key-0003";

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[test]
fn three_pages_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (./scripts/test does)"
    );
    assert!(PathBuf::from(chromium()).exists(), "{} not found: install Debian's chromium (./scripts/test does)", chromium());
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("web-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let _ = std::fs::remove_dir_all(&out);
    let users = format!("ann:citizen:{CITIZEN},bo:agent:{AGENT},cai:supervisor:{SUPERVISOR},root:admin:admin-key-0004");
    let db = format!("sqlite://{}", tmp.join("tickets.db").display());
    let audit = tmp.join("audit.jsonl");
    let store = tmp.join("kb-index");
    let s = Server::start_with_env(
        &["--chat-model", CHAT_MODEL, "--embedding-model", EMBED_MODEL, "--tickets-db", &db],
        &[
            ("ZHENGWU_WEB_USERS", users.as_str()),
            ("ZHENGWU_AUDIT_LOG", audit.to_str().unwrap()),
            ("ZHENGWU_KB_STORE", store.to_str().unwrap()),
            ("ZHENGWU_KB_DIR", root.join("knowledge-base/policy").to_str().unwrap()),
            ("ZHENGWU_KB_AUTO_INGEST", "1"),
        ],
        true,
    );
    // Without a login the API refuses; with the wrong role too.
    let r = client().get(s.url("/api/supervisor/metrics")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client().get(s.url("/api/supervisor/metrics")).bearer_auth(AGENT).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // The knowledge base is synced before the citizen asks.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let v: Value = client().get(s.url("/api/kb/status")).bearer_auth(SUPERVISOR).send().unwrap().json().unwrap_or_default();
        if v["last_ingest"]["ok"] == true {
            break;
        }
        assert!(v["last_ingest"]["ok"] != false, "ingest failed: {v}");
        assert!(Instant::now() < deadline, "knowledge base not ingested: {v}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = Command::new("node")
        .arg(browser_dir.join("e2e.mjs"))
        .current_dir(&browser_dir)
        .env("ZW_BASE", &s.base)
        .env("ZW_OUT", &out)
        .env("ZW_CITIZEN_KEY", CITIZEN)
        .env("ZW_AGENT_KEY", AGENT)
        .env("ZW_SUPERVISOR_KEY", SUPERVISOR)
        .env("CHROMIUM", chromium())
        .status()
        .expect("running node tests/browser/e2e.mjs");
    eprintln!("screenshots: {}", out.display());
    assert!(status.success(), "browser test failed (screenshots in {})", out.display());
    for shot in ["citizen-chat.png", "citizen-ticket.png", "agent.png", "dashboard.png"] {
        assert!(out.join(shot).is_file(), "screenshot {shot} missing");
    }
    // The audit log saw the logins, the ticket, the dispatch decision and the views.
    let log = std::fs::read_to_string(&audit).unwrap();
    let entries: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for action in ["login", "ticket.create", "ticket.transition", "dispatch.decision", "pii.view"] {
        assert!(entries.iter().any(|e| e["action"] == action), "no {action} in the audit log:\n{log}");
    }
    assert!(entries.iter().any(|e| e["action"] == "login" && e["user"] == "ann" && e["role"] == "citizen"));
    assert!(entries.iter().any(|e| e["action"] == "dispatch.decision" && e["user"] == "bo"));
    // The model that decided is named with its version (task@training-data hash).
    assert!(
        entries.iter().any(|e| e["action"] == "dispatch.decision" && e["model"].as_str().is_some_and(|m| m.starts_with("dispatch-msgabench@"))),
        "dispatch decision without a model version:\n{log}"
    );
    // Supervisors read the audit log over the API; agents may not.
    let r = client().get(s.url("/api/audit?limit=5")).bearer_auth(SUPERVISOR).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client().get(s.url("/api/audit")).bearer_auth(AGENT).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let _ = std::fs::remove_dir_all(&tmp);
}
