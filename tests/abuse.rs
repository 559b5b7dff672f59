//! Attacks tried as tests, against the real `zhengwu serve` binary on loopback: each
//! payload gets a clear 4xx, the server stays up, `/health` keeps answering while the attack
//! runs, and memory does not balloon. The crafted WAV headers are generated here, never
//! committed as files.
//!
//! The speech model (`whisper-base`, fetched by `./scripts/test`) must be present for the
//! audio cases: the server loads it before it reads an upload. Everything else runs without
//! models.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};

/// The cases share the machine's two cores; one at a time keeps the latency probe meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

const CITIZEN_A: &str = "citizen-key-aaa";
const CITIZEN_B: &str = "citizen-key-bbb";
const AGENT: &str = "agent-key-0001";
const SUPERVISOR: &str = "supervisor-key-01";

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("zw-abuse-{}-{}", std::process::id(), name));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A server without chat or embedding models; `users` empty = open mode.
fn start(name: &str, users: &str, extra: &[&str]) -> Server {
    let dir = tmp(name);
    let db = format!("sqlite://{}", dir.join("tickets.db").display());
    let audit = dir.join("audit.jsonl").display().to_string();
    let mut args = vec!["--chat-model", "none", "--embedding-model", "none", "--tickets-db", db.as_str()];
    args.extend_from_slice(extra);
    Server::start_with_env(&args, &[("ZHENGWU_WEB_USERS", users), ("ZHENGWU_AUDIT_LOG", audit.as_str())], true)
}

fn users() -> String {
    format!("ann:citizen:{CITIZEN_A},bo:citizen:{CITIZEN_B},ag:agent:{AGENT},sue:supervisor:{SUPERVISOR}")
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap()
}

/// Polls `/health` every 25 ms until stopped; returns every latency (a failed probe counts as
/// 10 s).
struct HealthProbe {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Duration>>,
}

impl HealthProbe {
    fn start(base: &str) -> HealthProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let (url, flag) = (format!("{base}/health"), stop.clone());
        let handle = std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let mut out = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let t = Instant::now();
                let ok = c.get(&url).send().is_ok_and(|r| r.status().is_success());
                out.push(if ok { t.elapsed() } else { Duration::from_secs(10) });
                std::thread::sleep(Duration::from_millis(25));
            }
            out
        });
        HealthProbe { stop, handle }
    }

    /// Stop and check: p95 under 100 ms, nothing over 1 s (before the fixes, single requests
    /// stalled it for 5-13 s).
    fn check(self, what: &str) {
        self.stop.store(true, Ordering::SeqCst);
        let mut l = self.handle.join().unwrap();
        assert!(!l.is_empty(), "{what}: no /health probe ran");
        l.sort();
        let p95 = l[(l.len() * 95 / 100).min(l.len() - 1)];
        let max = *l.last().unwrap();
        eprintln!("{what}: /health over {} probes: p50 {:?}, p95 {p95:?}, max {max:?}", l.len(), l[l.len() / 2]);
        assert!(p95 < Duration::from_millis(100), "{what}: /health p95 {p95:?} (max {max:?})");
        assert!(max < Duration::from_secs(1), "{what}: /health stalled for {max:?}");
    }
}

/// Resident memory of the server process (kB): (current, peak).
fn rss_kb(s: &Server) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn assert_alive(s: &mut Server, what: &str) {
    assert!(s.child.try_wait().unwrap().is_none(), "{what}: the server process died");
    let r = client().get(s.url("/health")).send().unwrap();
    assert!(r.status().is_success(), "{what}: /health {}", r.status());
}

fn error_code(r: reqwest::blocking::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_string())
}

fn ticket(summary: &str, text: &str) -> Value {
    json!({"channel": "app", "request_type": "complaint", "summary": summary, "text": text})
}

#[test]
fn digit_runs_do_not_stall_masking_views_exports_or_error_messages() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = start("mask", "", &[]);
    let c = client();
    // 20,000 characters of digit groups: the cubic masker took ~40 min per view of this ticket.
    let digits = "1 ".repeat(10_000);
    let probe = HealthProbe::start(&s.base);
    let t = Instant::now();
    let r = c.post(s.url("/api/tickets")).json(&ticket("数字", digits.trim_end())).send().unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
    for _ in 0..3 {
        // Without the agent key every view is masked.
        assert_eq!(c.get(s.url(&format!("/api/tickets/{id}"))).send().unwrap().status(), 200);
        assert_eq!(c.get(s.url("/api/tickets?limit=50")).send().unwrap().status(), 200);
        let csv = c.get(s.url("/api/tickets/export.csv")).send().unwrap();
        assert_eq!(csv.status(), 200);
        assert!(csv.text().unwrap().contains("数字"));
    }
    // A JSON error quoting a huge digit string is masked (and cut) quickly.
    let r = c.post(s.url("/api/tickets")).json(&json!({"channel": "app", "request_type": digits})).send().unwrap();
    assert_eq!(error_code(r).0, 422);
    let took = t.elapsed();
    probe.check("masking");
    assert!(took < Duration::from_secs(30), "masking requests took {took:?}");
    assert_alive(&mut s, "masking");
}

/// A 44-byte RIFF/WAVE header with PCM format fields as given and a data chunk of `data_len`
/// declared bytes, followed by `payload`. 8-bit samples keep the block size and byte rate
/// consistent for any rate and channel count, so the header passes the WAV parser's own checks
/// and reaches ours.
fn wav_header(rate: u32, channels: u16, data_len: u32, payload: &[u8]) -> Vec<u8> {
    let bits: u16 = 8;
    let block = channels.wrapping_mul(bits / 8);
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36u32.wrapping_add(data_len)).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.wrapping_mul(block as u32).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn hostile_audio_headers_get_clear_errors_and_cost_no_memory() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = start("audio", "", &[]);
    let c = client();
    // Load the speech model first, so the memory baseline includes it.
    let silence = wav_header(16_000, 1, 32_000, &vec![128u8; 32_000]);
    let r = c.post(s.url("/api/asr/transcribe")).body(silence).send().unwrap();
    assert_eq!(r.status(), 200, "the speech model must be installed (zhengwu models fetch whisper-base): {}", r.text().unwrap_or_default());
    let (_, peak_before) = rss_kb(&s);
    let probe = HealthProbe::start(&s.base);
    let frames = vec![0u8; 64];
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        // 108 bytes declaring 4,294,967,291 Hz: the resampler allocated ~17 GB and aborted.
        ("rate 4294967291 Hz", wav_header(4_294_967_291, 1, 64, &frames), &[415]),
        ("rate 3 Hz", wav_header(3, 1, 64, &frames), &[415]),
        ("65535 channels", wav_header(16_000, 65_535, 64, &frames), &[400, 415]),
        ("9 channels", wav_header(16_000, 9, 90, &[128u8; 90]), &[415]),
        // 44 bytes declaring ~4 GB of data: the decoder reserved 17 GB up front.
        ("4 GB declared, none sent", wav_header(16_000, 1, 0xFFFF_FFF0, &[]), &[400, 413]),
        ("4 GB declared at 48 kHz stereo", wav_header(48_000, 2, 0xFFFF_FFF0, &frames), &[400, 413]),
        ("not audio", b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk".to_vec(), &[400, 415]),
        ("fake mp3", [b"ID3\x04\x00\x00\x00\x00\x00\x10".as_slice(), &[0xFF; 300]].concat(), &[400, 415]),
        ("fake flac", [b"fLaC\x00\x00\x00\x22".as_slice(), &[0xAB; 300]].concat(), &[400, 415]),
    ];
    for (what, body, expected) in cases {
        let t = Instant::now();
        let r = c.post(s.url("/api/asr/transcribe")).body(body).send().unwrap();
        let (status, code) = error_code(r);
        assert!(expected.contains(&status), "{what}: {status} {code}");
        assert!(!code.is_empty(), "{what}: no error code");
        assert!(t.elapsed() < Duration::from_secs(5), "{what}: took {:?}", t.elapsed());
        assert_alive(&mut s, what);
    }
    probe.check("audio headers");
    let (_, peak_after) = rss_kb(&s);
    assert!(peak_after < peak_before + 200_000, "peak RSS grew from {peak_before} kB to {peak_after} kB");
}

/// Open a raw upload: request head with a declared length, then `sent` bytes of it.
fn open_upload(base: &str, declared: usize, sent: usize) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut t = TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(t, "POST /api/asr/transcribe HTTP/1.1\r\nHost: {addr}\r\nContent-Type: audio/wav\r\nContent-Length: {declared}\r\n\r\n").unwrap();
    t.write_all(&vec![0u8; sent]).unwrap();
    t
}

/// The status line's code of a raw response, if one arrives within `wait`.
fn status_within(t: &mut TcpStream, wait: Duration) -> Option<u16> {
    t.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    let n = t.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn uploads_wait_in_a_bounded_queue_without_being_buffered() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = start("uploads", "", &[]);
    let c = client();
    // Over the size limit by declaration: refused before a byte is read.
    let mut big = open_upload(&s.base, 200 * 1024 * 1024, 0);
    assert_eq!(status_within(&mut big, Duration::from_secs(10)), Some(413));
    // Load the model.
    let ok = wav_header(16_000, 1, 16_000, &vec![128u8; 16_000]);
    assert_eq!(c.post(s.url("/api/asr/transcribe")).body(ok.clone()).send().unwrap().status(), 200);
    let (rss_before, _) = rss_kb(&s);
    let probe = HealthProbe::start(&s.base);
    // One upload holds the transcription slot while its 100 MB trickle in; four may wait.
    let mut held = vec![open_upload(&s.base, 100 * 1024 * 1024, 1024)];
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..4 {
        held.push(open_upload(&s.base, 100 * 1024 * 1024, 1024));
    }
    std::thread::sleep(Duration::from_millis(500));
    // The sixth is turned away at once, not queued behind 500 MB of uploads.
    let mut extra = open_upload(&s.base, 100 * 1024 * 1024, 1024);
    assert_eq!(status_within(&mut extra, Duration::from_secs(10)), Some(429));
    for t in &mut held {
        assert_eq!(status_within(t, Duration::from_millis(200)), None, "a waiting upload was answered early");
    }
    let (rss_during, _) = rss_kb(&s);
    assert!(rss_during < rss_before + 64 * 1024, "RSS grew from {rss_before} kB to {rss_during} kB with five uploads open");
    // The clients go away: the slot and the queue are freed.
    drop(held);
    drop(extra);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.post(s.url("/api/asr/transcribe")).body(ok.clone()).send().unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed: {}", r.status());
        std::thread::sleep(Duration::from_millis(200));
    }
    probe.check("uploads");
    assert_alive(&mut s, "uploads");
}

#[test]
fn hot_spots_over_many_tickets_leave_the_server_responsive_and_say_what_they_read() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = start("hot", "", &[]);
    let c = client();
    let places = ["朝阳路", "建设街", "人民大道", "滨江路", "和平里"];
    let matters = ["路灯不亮", "井盖丢失", "噪音扰民", "垃圾未清运", "占道经营"];
    for i in 0..700 {
        let t = ticket(&format!("{}{}", places[i % 5], matters[(i / 5) % 5]), &format!("市民反映{}附近{}，第{}次来电，希望尽快处理。", places[i % 5], matters[(i / 5) % 5], i));
        assert_eq!(c.post(s.url("/api/tickets")).json(&t).send().unwrap().status(), 201);
    }
    let probe = HealthProbe::start(&s.base);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = s.url("/api/hotspots?days=30");
            std::thread::spawn(move || client().get(url).send().unwrap().json::<Value>().unwrap())
        })
        .collect();
    for h in handles {
        let v = h.join().unwrap();
        // More than one store page (500): every ticket of the range is read.
        assert_eq!(v["tickets"], 700, "{v}");
        assert_eq!(v["sampled"], false);
        assert!(!v["clusters"].as_array().unwrap().is_empty());
    }
    probe.check("hot spots");
    assert_alive(&mut s, "hot spots");
}

#[test]
fn with_no_users_only_loopback_is_served_unless_open_mode_is_asked_for() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("open");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zhengwu"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--chat-model", "none", "--embedding-model", "none"])
        .env("ZHENGWU_WEB_USERS", "")
        .env("ZHENGWU_AUDIT_LOG", dir.join("audit.jsonl"))
        .env("ZHENGWU_TICKETS_DB", format!("sqlite://{}", dir.join("t.db").display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "served open on 0.0.0.0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--insecure-open") && err.contains("no users"), "{err}");
    // Asked for explicitly, it starts, and says loudly that logins are off.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zhengwu"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--chat-model", "none", "--embedding-model", "none", "--insecure-open"])
        .env("ZHENGWU_WEB_USERS", "")
        .env("ZHENGWU_AUDIT_LOG", dir.join("audit2.jsonl"))
        .env("ZHENGWU_TICKETS_DB", format!("sqlite://{}", dir.join("t2.db").display()))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let listening = std::io::BufRead::lines(stdout).map_while(Result::ok).find_map(|l| l.strip_prefix("listening on ").map(str::to_string));
    let port = listening.as_deref().and_then(|a| a.rsplit(':').next()).unwrap_or("").to_string();
    assert!(!port.is_empty(), "--insecure-open did not start");
    let me: Value = client().get(format!("http://127.0.0.1:{port}/api/me")).send().unwrap().json().unwrap();
    assert_eq!(me["auth"], false);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("LOGINS ARE OFF"), "no open-mode warning in the log:\n{log}");
}

#[test]
fn with_logins_on_metrics_and_v1_need_keys_and_logins_are_throttled() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = start("keys", &users(), &[]);
    let c = client();
    assert_eq!(c.get(s.url("/metrics")).send().unwrap().status(), 401);
    assert_eq!(c.get(s.url("/metrics")).bearer_auth(CITIZEN_A).send().unwrap().status(), 403);
    assert_eq!(c.get(s.url("/metrics")).bearer_auth(AGENT).send().unwrap().status(), 403);
    let m = c.get(s.url("/metrics")).bearer_auth(SUPERVISOR).send().unwrap();
    assert_eq!(m.status(), 200);
    assert!(m.text().unwrap().contains("supervisor_"));
    assert_eq!(c.get(s.url("/v1/models")).send().unwrap().status(), 401);
    assert_eq!(c.post(s.url("/v1/embeddings")).json(&json!({"input": "你好"})).send().unwrap().status(), 401);
    assert_eq!(c.get(s.url("/v1/models")).bearer_auth("not-a-key-at-all").send().unwrap().status(), 401);
    assert_eq!(c.get(s.url("/v1/models")).bearer_auth(CITIZEN_A).send().unwrap().status(), 200);
    // Wrong keys: five are answered 401, then the client waits.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = c.post(s.url("/api/login")).json(&json!({"key": format!("wrong-key-{i}")})).send().unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429, 429, 429]);
    // Even the right key waits out the window from that address.
    assert_eq!(c.post(s.url("/api/login")).json(&json!({"key": AGENT})).send().unwrap().status(), 429);
    // Bearer keys on /api are not logins and keep working.
    assert_eq!(c.get(s.url("/api/tickets/meta")).bearer_auth(AGENT).send().unwrap().status(), 200);
}

#[test]
fn callers_cannot_forge_history_workflow_fields_or_each_others_idempotency_keys() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = start("forge", &users(), &[]);
    let c = client();
    let body = ticket("楼道灯坏了", "三号楼二单元楼道灯坏了一周");
    // Workflow fields are staff-only.
    for (field, value) in [("urgency", json!("critical")), ("lead_dept", json!("市城市管理委员会")), ("co_handlers", json!(["x"]))] {
        let mut b = body.clone();
        b[field] = value;
        let r = c.post(s.url("/api/tickets")).bearer_auth(CITIZEN_A).json(&b).send().unwrap();
        let (status, code) = error_code(r);
        assert_eq!((status, code.as_str()), (403, "staff_only_field"), "{field}");
    }
    // The history names the authenticated user, whatever the body claims.
    let mut b = body.clone();
    b["actor"] = json!("mayor");
    let r = c.post(s.url("/api/tickets")).bearer_auth(CITIZEN_A).header("Idempotency-Key", "same-key-1").json(&b).send().unwrap();
    assert_eq!(r.status(), 201);
    let mine: Value = r.json().unwrap();
    let id = mine["id"].as_i64().unwrap();
    let t: Value = c.get(s.url(&format!("/api/tickets/{id}"))).bearer_auth(AGENT).send().unwrap().json().unwrap();
    assert_eq!(t["history"][0]["actor"], "ann", "{t}");
    // Another citizen replaying the key and body gets a ticket of their own, not ann's.
    let r = c.post(s.url("/api/tickets")).bearer_auth(CITIZEN_B).header("Idempotency-Key", "same-key-1").json(&b).send().unwrap();
    assert_eq!(r.status(), 201, "a replay across users must not return someone else's ticket");
    let theirs: Value = r.json().unwrap();
    assert_ne!(theirs["id"], mine["id"]);
    // ann still owns hers; bo cannot read it.
    assert_eq!(c.get(s.url(&format!("/api/tickets/{id}"))).bearer_auth(CITIZEN_A).send().unwrap().status(), 200);
    assert_eq!(c.get(s.url(&format!("/api/tickets/{id}"))).bearer_auth(CITIZEN_B).send().unwrap().status(), 404);
    // ann's own retry is still idempotent.
    let r = c.post(s.url("/api/tickets")).bearer_auth(CITIZEN_A).header("Idempotency-Key", "same-key-1").json(&b).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["id"], mine["id"]);
    // Staff transitions: the actor is the user; an "auto" dispatch record cannot be sent by hand.
    let tr = |b: Value| c.post(s.url(&format!("/api/tickets/{id}/transitions"))).bearer_auth(AGENT).json(&b).send().unwrap();
    assert_eq!(tr(json!({"to": "accepted", "actor": "somebody-else"})).status(), 200);
    let forged = json!({"to": "dispatched", "actor": "x", "dept": "市城市管理委员会",
        "dispatch": {"auto": true, "bucket": "auto", "suggested": "市城市管理委员会", "confidence": 0.99, "decided_by": "model"}});
    let (status, _) = error_code(tr(forged));
    assert_eq!(status, 422);
    let t: Value = c.get(s.url(&format!("/api/tickets/{id}"))).bearer_auth(AGENT).send().unwrap().json().unwrap();
    assert_eq!(t["history"][1]["actor"], "ag", "{t}");
    assert_eq!(t["status"], "accepted");
}
