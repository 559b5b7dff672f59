//! Config layering, graceful shutdown, and request isolation under concurrency.

mod common;

use std::time::Duration;

use common::{client, Server, CHAT_MODEL};
use serde_json::{json, Value};

fn status_of(server: &Server, key: Option<&str>) -> u16 {
    let mut req = client().get(server.url("/v1/models"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().unwrap().status().as_u16()
}

#[test]
fn config_file_is_overridden_by_env_and_flags() {
    let dir = std::env::temp_dir().join(format!("zhengwu-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("zhengwu.toml");
    std::fs::write(&cfg, "[server]\napi_key = \"from-file\"\n\n[models]\nchat = \"none\"\nembedding = \"none\"\n").unwrap();
    let cfg_s = cfg.to_str().unwrap();

    // File alone.
    let s = Server::start_with_env(&["--config", cfg_s, "serve"], &[], true);
    assert_eq!(status_of(&s, None), 401);
    assert_eq!(status_of(&s, Some("from-file")), 200);
    drop(s);
    // Env beats the file.
    let s = Server::start_with_env(&["--config", cfg_s, "serve"], &[("ZHENGWU_API_KEY", "from-env")], true);
    assert_eq!(status_of(&s, Some("from-file")), 401);
    assert_eq!(status_of(&s, Some("from-env")), 200);
    drop(s);
    // A flag beats both.
    let s = Server::start_with_env(
        &["--config", cfg_s, "serve", "--api-key", "from-flag"],
        &[("ZHENGWU_API_KEY", "from-env")],
        true,
    );
    assert_eq!(status_of(&s, Some("from-env")), 401);
    assert_eq!(status_of(&s, Some("from-flag")), 200);
    drop(s);
    // A broken config file is a clear start-up error, not a silent default.
    std::fs::write(&cfg, "[server]\nport = \"eighty\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zhengwu"))
        .args(["--config", cfg_s, "serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zhengwu.toml"), "error should name the file: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn ask(server: &Server, question: &str) -> String {
    let body = json!({
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": question}],
        "temperature": 0, "max_tokens": 24,
    });
    let v: Value = client().post(server.url("/v1/chat/completions")).json(&body).send().unwrap().json().unwrap();
    v["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("{v}")).to_string()
}

/// Interleaved requests each keep their own KV cache: concurrent greedy answers equal the
/// answers given one at a time.
#[test]
fn concurrent_requests_match_sequential_ones_and_shutdown_is_graceful() {
    let mut server =
        Server::start(&["--chat-model", CHAT_MODEL, "--embedding-model", "none", "--max-active", "3"], true);
    let questions = ["什么是住房公积金？", "How do I renew a passport?", "请用一句话介绍长城。"];
    let alone: Vec<String> = questions.iter().map(|q| ask(&server, q)).collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = questions.iter().map(|q| s.spawn(|| ask(&server, q))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(alone, together);

    // SIGTERM while a request is running: it still completes, then the process exits cleanly.
    let base = server.base.clone();
    let pending = std::thread::spawn(move || {
        let body = json!({
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": "请介绍一下12345热线。"}],
            "temperature": 0, "max_tokens": 32,
        });
        client().post(format!("{base}/v1/chat/completions")).json(&body).send().map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(500));
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(pending.join().unwrap().expect("in-flight request answered"), 200);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "server exit status after SIGTERM: {status}");
}
