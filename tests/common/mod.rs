//! Starts the real `zhengwu` binary on an ephemeral port for HTTP tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHAT_MODEL: &str = "qwen2.5-0.5b-instruct";
pub const EMBED_MODEL: &str = "multilingual-e5-small";

pub struct Server {
    pub child: Child,
    pub base: String,
    /// The server exits when this closes: on drop, or when the test process ends (a server kept
    /// in a `static` is never dropped).
    _stdin: Option<std::process::ChildStdin>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Start `zhengwu serve --port 0 <args>` and wait until `/ready` answers 200
    /// (or `/health` when `wait_ready` is false).
    pub fn start(args: &[&str], wait_ready: bool) -> Server {
        Self::start_with_env(args, &[], wait_ready)
    }

    /// Like [`Server::start`] with extra environment variables (and global args before `serve`).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)], wait_ready: bool) -> Server {
        let (global, args): (Vec<&str>, Vec<&str>) = match args.iter().position(|a| *a == "serve") {
            Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
            None => (Vec::new(), args.to_vec()),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_zhengwu"))
            .args(&global)
            .envs(env.iter().copied())
            .arg("serve")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(&args)
            .env("RUST_LOG", "info")
            .env("ZHENGWU_EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting zhengwu serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("server exited before printing its address")
                .expect("reading server stdout");
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let stdin = child.stdin.take();
        let server = Server { child, base, _stdin: stdin };
        let path = if wait_ready { "/ready" } else { "/health" };
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(resp) = reqwest::blocking::get(format!("{}{path}", server.base)) {
                if resp.status().is_success() {
                    break;
                }
                if wait_ready {
                    let body: serde_json::Value = resp.json().unwrap_or_default();
                    if let Some(err) = body.get("load_error").and_then(|e| e.as_str()) {
                        panic!("server failed to load its models: {err}");
                    }
                }
            }
            assert!(Instant::now() < deadline, "server not ready after 600 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().expect("client")
}

/// Parse an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.trim_start().to_string()).collect()
}
