//! Suite `soak`: a bounded soak of the whole server under mixed traffic.
//!
//! The suite starts its own server (this binary, `serve --host 127.0.0.1 --port 0`) with a fresh
//! temporary ticket database, knowledge-base store and audit log, no users (open mode on
//! loopback), the test models (`qwen2.5-0.5b-instruct` unless `--models` names another chat model,
//! `multilingual-e5-small`), and the repository's `knowledge-base/policy` ingested at start-up.
//! After `/ready`, the knowledge-base sync and one warm-up request per model-backed route,
//! `--clients` threads (blocking HTTP, 120 s timeouts) send a weighted mix of requests for
//! `--duration-secs`, with a random think time of 0..2×`--think-ms` between requests:
//!
//! | weight | operation |
//! |---:|---|
//! | 35 | `POST /api/tickets` with an `Idempotency-Key` (retried with the same key on 429/503/transport errors; 1 in 10 deliberately replayed) |
//! | 12 | `GET /api/tickets/{id}`, `GET /api/tickets?limit=20`, `GET /api/tickets/search?q=` |
//! | 8 | `POST /api/tickets/{id}/transitions` on the client's own tickets: accepted → dispatched → handling → replied |
//! | 15 | `POST /api/copilot` with a citizen message of `classify/msgabench_citizen_messages.jsonl` |
//! | 10 | `POST /api/ask` (non-stream, `max_tokens` 128) with colloquial citizen questions |
//! | 5 | `POST /api/asr/transcribe` with a short clip of `asr/aishell_sample` |
//! | 5 | `GET /api/tickets/export.csv` |
//! | 5 | `GET /api/hotspots?days=30` |
//! | 5 | `POST /v1/chat/completions` with `max_tokens` 16 |
//!
//! A probe thread reads `/health` every 100 ms; another samples the server's VmRSS and open file
//! descriptors every 5 s. At the end every acknowledged ticket (201, or 200 on an idempotent
//! replay) is read back with the agent key and compared with what was sent.
//!
//! Metrics: `soak.requests`, `soak.errors_5xx` (5xx other than 503), `soak.status_429`,
//! `soak.status_503`, `soak.transport_errors`, `soak.tickets_acknowledged`, `soak.tickets_lost`,
//! `soak.rss_start_mb` (after warm-up: the first sample at min(60 s, 10% of the run)),
//! `soak.rss_end_mb`, `soak.rss_growth_pct`, `soak.health_p50_ms` / `_p99_ms` / `_max_ms`, and
//! `soak.route.<route>.count` / `.p50_ms` / `.p95_ms` / `.p99_ms`. A missed target is reported,
//! not an error; only a server that cannot start fails the suite.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{json, Value};

use crate::rag::{percentile, read_jsonl};
use crate::report::{fmt_num, Report};
use crate::EvalArgs;

pub(crate) const DEFAULT_CHAT: &str = "qwen2.5-0.5b-instruct";
pub(crate) const EMBEDDING: &str = "multilingual-e5-small";
const TIMEOUT: Duration = Duration::from_secs(120);
const READY_WAIT: Duration = Duration::from_secs(600);
const RSS_EVERY: Duration = Duration::from_secs(5);
const HEALTH_EVERY: Duration = Duration::from_millis(100);
const ASK_MAX_TOKENS: u32 = 128;
const CHAT_MAX_TOKENS: u32 = 16;

/// Operations and their weights (out of 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Read,
    Transition,
    Copilot,
    Ask,
    Transcribe,
    Export,
    Hotspots,
    Chat,
}

const MIX: &[(Op, u32)] = &[
    (Op::Create, 35),
    (Op::Read, 12),
    (Op::Transition, 8),
    (Op::Copilot, 15),
    (Op::Ask, 10),
    (Op::Transcribe, 5),
    (Op::Export, 5),
    (Op::Hotspots, 5),
    (Op::Chat, 5),
];

/// Route names in the report and the request each stands for.
const ROUTES: &[(&str, &str)] = &[
    ("create", "POST /api/tickets"),
    ("create_retry", "POST /api/tickets (same key after 429/503/transport error)"),
    ("create_replay", "POST /api/tickets (deliberate replay of an acknowledged key)"),
    ("get", "GET /api/tickets/{id}"),
    ("list", "GET /api/tickets?limit=20"),
    ("search", "GET /api/tickets/search?q="),
    ("transition", "POST /api/tickets/{id}/transitions"),
    ("copilot", "POST /api/copilot"),
    ("ask", "POST /api/ask"),
    ("transcribe", "POST /api/asr/transcribe"),
    ("export", "GET /api/tickets/export.csv"),
    ("hotspots", "GET /api/hotspots?days=30"),
    ("chat", "POST /v1/chat/completions"),
];

/// Colloquial citizen questions for `/api/ask` and `/v1/chat/completions` (written for this suite).
const QUESTIONS: &[&str] = &[
    "居住证到期了咋续啊？要带啥材料？",
    "我家楼下路灯坏了好几天了，这事找谁管？",
    "身份证丢了补办要多少钱，多久能拿到？",
    "驾驶证快到期了，提前多久可以去换？",
    "公积金能取出来付房租吗，怎么弄？",
    "孩子刚出生，医保怎么给他办？",
    "失业了能领失业金吗，去哪儿申请？",
    "小区晚上总有人施工，吵得睡不着，能投诉吗？",
    "社保断缴了几个月，对以后买房有影响不？",
    "外地户口的孩子在这边上小学要准备什么？",
    "老人想办个高龄补贴，要符合啥条件？",
    "营业执照地址变更了，网上能办吗？",
    "楼道里堆满了杂物，物业不管怎么办？",
    "退休了养老金每年什么时候调整？",
    "新冠疫苗第三针现在还能在哪儿打？",
];

/// Ticket texts used when the data folder has no messages.
const FALLBACK_TICKETS: &[(&str, &str)] = &[
    ("路灯损坏", "幸福路12号附近的路灯坏了一个多星期，晚上出行很不方便，请尽快维修。"),
    ("夜间施工扰民", "小区旁边的工地每天晚上十一点以后还在施工，噪音很大，影响休息。"),
    ("楼道杂物堆放", "3单元楼道长期堆放杂物，存在消防隐患，物业一直不处理。"),
    ("公交站牌信息错误", "人民路公交站的站牌还是旧线路信息，很多人坐错车。"),
];

const DEPARTMENTS: &[&str] = &[
    "市城市管理委员会",
    "市住房和城乡建设委员会",
    "市公安局公安交通管理局",
    "市生态环境局",
    "市市场监督管理局",
    "属地区政府（街道办事处、乡镇政府）",
];

const SEARCH_TERMS: &[&str] = &["路灯", "噪音", "物业", "停车", "施工", "垃圾"];

use crate::rng::Rng;

// ---------------------------------------------------------------------------------------------
// The server under test

pub(crate) struct Server {
    child: Child,
    /// The server exits when this closes (ZHENGWU_EXIT_ON_STDIN_EOF), even if the suite dies.
    _stdin: Option<ChildStdin>,
    base: String,
    pid: u32,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The last `n` lines of the server log (for error messages).
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The repository's knowledge-base folder: `./knowledge-base` when present, else the one of the
/// source tree this binary was built from.
pub(crate) fn knowledge_base_dir() -> PathBuf {
    let local = PathBuf::from("knowledge-base");
    if local.join("policy").is_dir() {
        return std::fs::canonicalize(&local).unwrap_or(local);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("knowledge-base")
}

pub(crate) fn start_server(args: &EvalArgs, tmp: &Path, chat_model: &str, agent_key: &str) -> anyhow::Result<Server> {
    let exe = std::env::current_exe().context("locating the zhengwu binary")?;
    let config = tmp.join("zhengwu.toml");
    // An empty config: no users (open mode), whatever ./zhengwu.toml or ZHENGWU_CONFIG says.
    fs_err::write(&config, "# zhengwu eval soak: defaults only\n")?;
    let log = tmp.join("server.log");
    let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let kb = knowledge_base_dir();
    let kb_docs = std::env::var_os("ZHENGWU_KB_DIR").map(PathBuf::from).unwrap_or_else(|| kb.join("policy"));
    let mut cmd = Command::new(&exe);
    cmd.arg("--config")
        .arg(&config)
        .arg("serve")
        .args(["--host", "127.0.0.1", "--port", "0"])
        .arg("--tickets-db")
        .arg(format!("sqlite://{}", tmp.join("tickets.db").display()))
        .args(["--tickets-agent-key", agent_key])
        .args(["--chat-model", chat_model, "--embedding-model", EMBEDDING]);
    if args.models_toml.is_file() {
        cmd.arg("--models-toml").arg(std::fs::canonicalize(&args.models_toml).unwrap_or_else(|_| args.models_toml.clone()));
    }
    if let Some(t) = args.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    for var in ["ZHENGWU_WEB_USERS", "ZHENGWU_API_KEY", "ZHENGWU_HOST", "ZHENGWU_PORT", "ZHENGWU_INSECURE_OPEN"] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .env("ZHENGWU_AUDIT_LOG", tmp.join("audit.jsonl"))
        .env("ZHENGWU_KB_STORE", tmp.join("kb-index"))
        .env("ZHENGWU_KB_DIR", &kb_docs)
        .env("ZHENGWU_KB_AUTO_INGEST", "1")
        .env("ZHENGWU_EXIT_ON_STDIN_EOF", "1")
        .env("RUST_LOG", "info,tower_http=warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .with_context(|| format!("starting {} serve", exe.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().context("server stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("listening on ") {
                let _ = tx.send(rest.trim().to_string());
                break;
            }
        }
        drop(tx);
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let stdin = child.stdin.take();
    let base = rx.recv_timeout(Duration::from_secs(120));
    let mut server = Server { child, _stdin: stdin, base: String::new(), pid, log: log.clone() };
    match base {
        Ok(b) => server.base = b,
        Err(_) => bail!(
            "the server did not print its address (exited: {}); last lines of {}:\n{}",
            !server.alive(),
            log.display(),
            log_tail(&log, 30)
        ),
    }
    eprintln!("eval: server pid {pid} at {} (log {})", server.base, log.display());
    let probe = Client::builder().timeout(Duration::from_secs(10)).build()?;
    let deadline = Instant::now() + READY_WAIT;
    loop {
        if !server.alive() {
            bail!("the server exited while loading; last lines of {}:\n{}", log.display(), log_tail(&log, 30));
        }
        if let Ok(resp) = probe.get(server.url("/ready")).send() {
            if resp.status().is_success() {
                break;
            }
            let body: Value = resp.json().unwrap_or_default();
            if let Some(err) = body.get("load_error").and_then(Value::as_str) {
                bail!("the server failed to load its models: {err} (is ZHENGWU_MODELS set? `zhengwu models fetch {chat_model} {EMBEDDING} whisper-base`)");
            }
        }
        if Instant::now() > deadline {
            bail!("the server was not ready after {} s; last lines of {}:\n{}", READY_WAIT.as_secs(), log.display(), log_tail(&log, 30));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(server)
}

/// Wait for the start-up sync of the knowledge base; `Err` says why `/api/ask` may refuse.
pub(crate) fn wait_for_kb(server: &Server) -> Result<f64, String> {
    let probe = Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let v: Value = probe
            .get(server.url("/api/kb/status"))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default();
        match v["last_ingest"]["ok"].as_bool() {
            Some(true) => return Ok(v["points"].as_f64().unwrap_or(0.0)),
            Some(false) => return Err(format!("knowledge-base ingest failed: {}", v["last_ingest"]["error"])),
            None => {}
        }
        if Instant::now() > deadline {
            return Err(format!("knowledge base not synced after {} s: {v}", READY_WAIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

#[derive(Default)]
struct RouteStats {
    lat_ms: Vec<f64>,
    status: BTreeMap<u16, u64>,
    transport: u64,
    transport_example: Option<String>,
}

#[derive(Default)]
struct Shared {
    routes: Mutex<BTreeMap<&'static str, RouteStats>>,
    /// Acknowledged tickets: id -> summary sent.
    acked: Mutex<HashMap<i64, String>>,
    /// The same ids in acknowledgement order (random reads pick from it).
    acked_ids: Mutex<Vec<i64>>,
    created_201: AtomicU64,
    replayed_200: AtomicU64,
    /// A replay that created a second ticket or answered another id.
    idempotency_violations: AtomicU64,
    /// A GET of an acknowledged id that answered 404 during the run.
    get_404_acked: AtomicU64,
    /// Transitions answered 409 (only the owning client moves its tickets, so none expected).
    transition_conflicts: AtomicU64,
    /// Answers with a 2xx status whose body was not what the route promises.
    bad_bodies: AtomicU64,
    bad_body_example: Mutex<Option<String>>,
    /// `/api/ask` answers by kind (generated, faq, refusal).
    ask_kinds: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Shared {
    /// Send, read the whole body, record latency and status under `route`.
    fn send(&self, route: &'static str, rb: RequestBuilder) -> Option<Answer> {
        let t = Instant::now();
        let res = rb.send().and_then(|r| {
            let status = r.status().as_u16();
            r.bytes().map(|b| Answer { status, body: b.to_vec() })
        });
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let s = routes.entry(route).or_default();
        match res {
            Ok(a) => {
                s.lat_ms.push(ms);
                *s.status.entry(a.status).or_default() += 1;
                Some(a)
            }
            Err(e) => {
                s.transport += 1;
                if s.transport_example.is_none() {
                    s.transport_example = Some(format!("{e:#}"));
                }
                None
            }
        }
    }

    fn bad_body(&self, route: &str, why: String) {
        self.bad_bodies.fetch_add(1, Ordering::Relaxed);
        let mut ex = self.bad_body_example.lock().unwrap_or_else(|e| e.into_inner());
        if ex.is_none() {
            *ex = Some(format!("{route}: {why}"));
        }
    }

    fn ack(&self, id: i64, summary: &str) {
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        if acked.insert(id, summary.to_string()).is_none() {
            self.acked_ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        }
    }

    fn random_acked(&self, rng: &mut Rng) -> Option<i64> {
        let ids = self.acked_ids.lock().unwrap_or_else(|e| e.into_inner());
        (!ids.is_empty()).then(|| ids[rng.below(ids.len())])
    }
}

/// What the clients send.
struct Corpus {
    tickets: Vec<(String, String)>,
    transcripts: Vec<String>,
    audio: Vec<(String, Vec<u8>)>,
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().trim().to_string()
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn load_corpus(data: &Path) -> anyhow::Result<(Corpus, Vec<String>)> {
    let mut notes = Vec::new();
    let msgs = data.join("messages/teddy2020_messages_with_votes_4326.jsonl");
    let mut tickets: Vec<(String, String)> = match read_jsonl(&msgs) {
        Ok(rows) => rows
            .iter()
            .map(|v| (truncate(&str_field(v, "title"), 120), truncate(&str_field(v, "detail"), 2000)))
            .filter(|(t, _)| !t.is_empty())
            .take(1000)
            .collect(),
        Err(e) => {
            notes.push(format!("ticket texts: {} unreadable ({e:#}); built-in examples used", msgs.display()));
            Vec::new()
        }
    };
    if tickets.is_empty() {
        tickets = FALLBACK_TICKETS.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    }
    let cls = data.join("classify/msgabench_citizen_messages.jsonl");
    let mut transcripts: Vec<String> = match read_jsonl(&cls) {
        Ok(rows) => rows.iter().map(|v| truncate(&str_field(v, "message"), 1500)).filter(|m| m.chars().count() >= 10).take(500).collect(),
        Err(e) => {
            notes.push(format!("co-pilot transcripts: {} unreadable ({e:#}); ticket texts used", cls.display()));
            Vec::new()
        }
    };
    if transcripts.is_empty() {
        transcripts = tickets.iter().map(|(t, d)| format!("{t}。{d}")).collect();
    }
    let audio = load_audio(data, &mut notes)?;
    Ok((Corpus { tickets, transcripts, audio }, notes))
}

/// The four shortest clips of `asr/aishell_sample`, else a synthesized 2 s 16 kHz tone.
fn load_audio(data: &Path, notes: &mut Vec<String>) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let dir = data.join("asr/aishell_sample");
    let mut wavs: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
                .filter_map(|p| Some((p.metadata().ok()?.len(), p)))
                .collect()
        })
        .unwrap_or_default();
    wavs.sort();
    let mut out = Vec::new();
    for (_, p) in wavs.into_iter().take(4) {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        out.push((name, fs_err::read(&p)?));
    }
    if out.is_empty() {
        notes.push(format!("audio: no WAV in {}; a synthesized 2 s 440 Hz tone is transcribed instead", dir.display()));
        out.push(("tone-2s.wav".into(), tone_wav(16_000, 2.0)));
    }
    Ok(out)
}

/// A mono 16-bit PCM WAV of a 440 Hz tone.
fn tone_wav(rate: u32, secs: f64) -> Vec<u8> {
    let n = (rate as f64 * secs) as u32;
    let data_len = n * 2;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..n {
        let s = (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate as f64).sin() * 8000.0;
        w.extend_from_slice(&(s as i16).to_le_bytes());
    }
    w
}

// ---------------------------------------------------------------------------------------------
// Clients

struct ClientCtx<'a> {
    id: usize,
    http: Client,
    base: &'a str,
    shared: &'a Shared,
    corpus: &'a Corpus,
    rng: Rng,
    /// The client's own tickets and how far each has moved (0 received .. 4 replied).
    own: Vec<(i64, u8)>,
    next_key: u64,
    run_tag: String,
}

impl ClientCtx<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn create(&mut self) {
        let (summary, text) = self.rng.pick(&self.corpus.tickets).clone();
        let rt = *self.rng.pick(&["complaint", "help", "consult", "suggestion", "report"]);
        let body = json!({
            "channel": "phone",
            "request_type": rt,
            "summary": summary,
            "text": text,
            "contact": {"name": "测试市民", "phone": format!("139{:08}", self.rng.below(100_000_000))},
            "address": {"text": "幸福路12号"},
        });
        self.next_key += 1;
        let key = format!("soak-{}-{}-{}", self.run_tag, self.id, self.next_key);
        let mut id = None;
        for attempt in 0..4 {
            let route = if attempt == 0 { "create" } else { "create_retry" };
            let rb = self.http.post(self.url("/api/tickets")).header("Idempotency-Key", &key).json(&body);
            match self.shared.send(route, rb) {
                Some(a) if a.status == 201 || a.status == 200 => {
                    match a.json()["id"].as_i64() {
                        Some(i) => {
                            let c = if a.status == 201 { &self.shared.created_201 } else { &self.shared.replayed_200 };
                            c.fetch_add(1, Ordering::Relaxed);
                            self.shared.ack(i, &summary);
                            id = Some(i);
                        }
                        None => self.shared.bad_body(route, format!("{} without an id", a.status)),
                    }
                    break;
                }
                Some(a) if a.status == 429 || a.status == 503 => std::thread::sleep(Duration::from_secs(1)),
                Some(_) => break,
                None => std::thread::sleep(Duration::from_secs(1)),
            }
        }
        let Some(id) = id else { return };
        self.own.push((id, 0));
        // A client that did not see the answer would send it again: the same ticket must come back.
        if self.rng.chance(10) {
            let rb = self.http.post(self.url("/api/tickets")).header("Idempotency-Key", &key).json(&body);
            if let Some(a) = self.shared.send("create_replay", rb) {
                if a.status == 200 || a.status == 201 {
                    self.shared.replayed_200.fetch_add(u64::from(a.status == 200), Ordering::Relaxed);
                    if a.status == 201 || a.json()["id"].as_i64() != Some(id) {
                        self.shared.idempotency_violations.fetch_add(1, Ordering::Relaxed);
                        if let Some(other) = a.json()["id"].as_i64() {
                            self.shared.ack(other, &summary);
                        }
                    }
                }
            }
        }
    }

    fn read(&mut self) {
        let roll = self.rng.below(10);
        match self.shared.random_acked(&mut self.rng) {
            Some(id) if roll < 5 => {
                if let Some(a) = self.shared.send("get", self.http.get(self.url(&format!("/api/tickets/{id}")))) {
                    if a.status == 404 {
                        self.shared.get_404_acked.fetch_add(1, Ordering::Relaxed);
                    } else if a.status == 200 && a.json()["id"].as_i64() != Some(id) {
                        self.shared.bad_body("get", format!("asked for {id}, got {}", a.json()["id"]));
                    }
                }
            }
            _ if roll < 8 => {
                let q = if self.rng.chance(30) { "&status=accepted" } else { "" };
                if let Some(a) = self.shared.send("list", self.http.get(self.url(&format!("/api/tickets?limit=20{q}")))) {
                    if a.status == 200 && !a.json()["data"].is_array() {
                        self.shared.bad_body("list", "no data array".into());
                    }
                }
            }
            _ => {
                let term = *self.rng.pick(SEARCH_TERMS);
                let rb = self.http.get(self.url("/api/tickets/search")).query(&[("q", term), ("limit", "20")]);
                self.shared.send("search", rb);
            }
        }
    }

    fn transition(&mut self) {
        let open: Vec<usize> = (0..self.own.len()).filter(|&i| self.own[i].1 < 4).collect();
        if open.is_empty() {
            return self.create();
        }
        let i = open[self.rng.below(open.len())];
        let (id, stage) = self.own[i];
        let dept = *self.rng.pick(DEPARTMENTS);
        let body = match stage {
            0 => json!({"to": "accepted", "actor": "soak-agent"}),
            1 => json!({"to": "dispatched", "actor": "soak-agent", "dept": dept}),
            2 => json!({"to": "handling", "actor": "soak-dept"}),
            _ => json!({"to": "replied", "actor": "soak-dept", "reply": "您反映的问题已安排工作人员现场核实处理，感谢您的监督。"}),
        };
        let rb = self.http.post(self.url(&format!("/api/tickets/{id}/transitions"))).json(&body);
        if let Some(a) = self.shared.send("transition", rb) {
            match a.status {
                200 => self.own[i].1 += 1,
                409 => {
                    self.shared.transition_conflicts.fetch_add(1, Ordering::Relaxed);
                    // Resynchronise with what the server says.
                    self.own[i].1 = 4;
                }
                _ => {}
            }
        }
    }

    fn copilot(&mut self) {
        let t = self.rng.pick(&self.corpus.transcripts).clone();
        let rb = self.http.post(self.url("/api/copilot")).json(&json!({"transcript": t, "channel": "phone"}));
        if let Some(a) = self.shared.send("copilot", rb) {
            if a.status == 200 && !a.json().is_object() {
                self.shared.bad_body("copilot", "not a JSON object".into());
            }
        }
    }

    fn ask(&mut self) {
        let q = *self.rng.pick(QUESTIONS);
        let rb = self.http.post(self.url("/api/ask")).json(&json!({"question": q, "max_tokens": ASK_MAX_TOKENS}));
        if let Some(a) = self.shared.send("ask", rb) {
            if a.status == 200 {
                match a.json()["kind"].as_str() {
                    Some(k) => *self.shared.ask_kinds.lock().unwrap_or_else(|e| e.into_inner()).entry(k.to_string()).or_default() += 1,
                    None => self.shared.bad_body("ask", "no kind".into()),
                }
            }
        }
    }

    fn transcribe(&mut self) {
        let (_, wav) = self.rng.pick(&self.corpus.audio);
        let rb = self.http.post(self.url("/api/asr/transcribe")).header("content-type", "audio/wav").body(wav.clone());
        if let Some(a) = self.shared.send("transcribe", rb) {
            if a.status == 200 && a.json().get("text").is_none() {
                self.shared.bad_body("transcribe", "no text".into());
            }
        }
    }

    fn export(&mut self) {
        if let Some(a) = self.shared.send("export", self.http.get(self.url("/api/tickets/export.csv"))) {
            if a.status == 200 && !a.body.starts_with("\u{FEFF}".as_bytes()) {
                self.shared.bad_body("export", "CSV without its BOM".into());
            }
        }
    }

    fn hotspots(&mut self) {
        self.shared.send("hotspots", self.http.get(self.url("/api/hotspots?days=30&limit=10")));
    }

    fn chat(&mut self) {
        let q = *self.rng.pick(QUESTIONS);
        let body = json!({"messages": [{"role": "user", "content": q}], "max_tokens": CHAT_MAX_TOKENS});
        if let Some(a) = self.shared.send("chat", self.http.post(self.url("/v1/chat/completions")).json(&body)) {
            if a.status == 200 && a.json()["choices"][0]["message"]["content"].as_str().is_none() {
                self.shared.bad_body("chat", "no choices[0].message.content".into());
            }
        }
    }

    fn run(&mut self, deadline: Instant, think_ms: u64) {
        let total: u32 = MIX.iter().map(|m| m.1).sum();
        while Instant::now() < deadline && !self.shared.stop.load(Ordering::Relaxed) {
            let mut roll = self.rng.below(total as usize) as u32;
            let op = MIX.iter().find(|(_, w)| if roll < *w { true } else { roll -= w; false }).map(|m| m.0).unwrap_or(Op::Create);
            match op {
                Op::Create => self.create(),
                Op::Read => self.read(),
                Op::Transition => self.transition(),
                Op::Copilot => self.copilot(),
                Op::Ask => self.ask(),
                Op::Transcribe => self.transcribe(),
                Op::Export => self.export(),
                Op::Hotspots => self.hotspots(),
                Op::Chat => self.chat(),
            }
            if think_ms > 0 {
                let pause = Duration::from_millis(self.rng.below(2 * think_ms as usize + 1) as u64);
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(pause.min(left));
            }
        }
    }
}

/// VmRSS (MB) of a process.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

// ---------------------------------------------------------------------------------------------

pub fn run(args: &EvalArgs) -> anyhow::Result<Report> {
    let clients = args.clients.max(1);
    let duration = Duration::from_secs(args.duration_secs.max(1));
    let chat_model = args.models.first().cloned().unwrap_or_else(|| DEFAULT_CHAT.to_string());
    let (corpus, mut notes) = load_corpus(&args.data)?;
    let tmp = std::env::temp_dir().join(format!("zhengwu-soak-{}", std::process::id()));
    let _ = fs_err::remove_dir_all(&tmp);
    fs_err::create_dir_all(&tmp)?;
    let agent_key = format!("soak-agent-{:016x}", Rng(0x51_7CC1_B727_220A ^ u64::from(std::process::id())).next());

    let t_start = Instant::now();
    let mut server = start_server(args, &tmp, &chat_model, &agent_key)?;
    let ready_secs = t_start.elapsed().as_secs_f64();
    eprintln!("soak: ready after {ready_secs:.0} s; waiting for the knowledge-base sync");
    let kb_points = match wait_for_kb(&server) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("soak: {e}");
            notes.push(format!("{e}: `/api/ask` answers without a knowledge base"));
            f64::NAN
        }
    };
    let kb_secs = t_start.elapsed().as_secs_f64() - ready_secs;
    let rss_ready = rss_mb(server.pid).unwrap_or(f64::NAN);

    // Warm-up: one request per model-backed route (whisper loads on the first transcription).
    let shared = Shared::default();
    let warm = Shared::default();
    let t_warm = Instant::now();
    {
        let http = Client::builder().timeout(READY_WAIT).build()?;
        let mut ctx = ClientCtx {
            id: 0,
            http,
            base: &server.base,
            shared: &warm,
            corpus: &corpus,
            rng: Rng(0xC0FF_EE00),
            own: Vec::new(),
            next_key: 0,
            run_tag: format!("warm{}", std::process::id()),
        };
        ctx.transcribe();
        ctx.ask();
        ctx.copilot();
        ctx.chat();
        ctx.hotspots();
    }
    let warmup_secs = t_warm.elapsed().as_secs_f64();
    let warm_statuses: Vec<String> = warm
        .routes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(r, s)| format!("{r} {:?}{}", s.status.keys().collect::<Vec<_>>(), if s.transport > 0 { " transport error" } else { "" }))
        .collect();
    eprintln!("soak: warm-up {warmup_secs:.1} s ({}); {clients} clients for {} s", warm_statuses.join(", "), duration.as_secs());

    // Traffic.
    let t0 = Instant::now();
    let deadline = t0 + duration;
    let health: Mutex<Vec<f64>> = Mutex::default();
    let health_bad = AtomicU64::new(0);
    let samples: Mutex<Vec<(f64, f64, Option<usize>)>> = Mutex::default();
    let pid = server.pid;
    let base = server.base.clone();
    let think_ms = args.think_ms;
    let progress_every = Duration::from_secs(60).min(duration / 5).max(Duration::from_secs(5));
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for c in 0..clients {
            let http = Client::builder().timeout(TIMEOUT).build()?;
            let (shared, corpus, base) = (&shared, &corpus, base.as_str());
            handles.push(s.spawn(move || {
                let mut ctx = ClientCtx {
                    id: c,
                    http,
                    base,
                    shared,
                    corpus,
                    rng: Rng(0x9E37_79B9_7F4A_7C15 ^ ((c as u64 + 1) * 0x1000_0001)),
                    own: Vec::new(),
                    next_key: 0,
                    run_tag: std::process::id().to_string(),
                };
                ctx.run(deadline, think_ms);
            }));
        }
        // /health every 100 ms.
        let (health, health_bad, base2) = (&health, &health_bad, base.as_str());
        let probe = Client::builder().timeout(TIMEOUT).build()?;
        s.spawn(move || {
            let mut k = 0u32;
            while Instant::now() < deadline {
                let t = Instant::now();
                match probe.get(format!("{base2}/health")).send().and_then(|r| {
                    let st = r.status();
                    r.bytes().map(|_| st)
                }) {
                    Ok(st) if st.is_success() => health.lock().unwrap_or_else(|e| e.into_inner()).push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => {
                        health_bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
                k += 1;
                let next = t0 + HEALTH_EVERY * k;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    // Late: skip the missed ticks rather than firing a burst.
                    k = (now.duration_since(t0).as_millis() / HEALTH_EVERY.as_millis()) as u32;
                }
            }
        });
        // RSS and open files every 5 s, with a progress line now and then.
        let (samples, shared2) = (&samples, &shared);
        s.spawn(move || {
            let mut last_progress = Instant::now();
            loop {
                let at = t0.elapsed().as_secs_f64();
                if let Some(r) = rss_mb(pid) {
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push((at, r, open_fds(pid)));
                }
                if Instant::now() >= deadline {
                    break;
                }
                if last_progress.elapsed() >= progress_every {
                    last_progress = Instant::now();
                    let n: usize = shared2.routes.lock().map(|r| r.values().map(|s| s.lat_ms.len() + s.transport as usize).sum()).unwrap_or(0);
                    let acked = shared2.acked_ids.lock().map(|v| v.len()).unwrap_or(0);
                    eprintln!("soak: {at:.0} s: {n} requests, {acked} tickets, RSS {:.0} MB", rss_mb(pid).unwrap_or(f64::NAN));
                }
                std::thread::sleep(RSS_EVERY.min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(10)));
            }
        });
        for h in handles {
            if h.join().is_err() {
                shared.stop.store(true, Ordering::Relaxed);
                bail!("a soak client panicked");
            }
        }
        Ok(())
    })?;
    let traffic_secs = t0.elapsed().as_secs_f64();
    let drain_secs = traffic_secs - duration.as_secs_f64();
    // The end figure is taken once every in-flight request has finished.
    let rss_end = rss_mb(pid).unwrap_or(f64::NAN);
    let fds_end = open_fds(pid);
    samples.lock().unwrap_or_else(|e| e.into_inner()).push((traffic_secs, rss_end, fds_end));
    let alive_after_traffic = server.alive();
    eprintln!("soak: traffic done after {traffic_secs:.0} s; verifying tickets");

    // Every acknowledged ticket, read back with the agent key.
    let acked: Vec<(i64, String)> = shared.acked.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, v.clone())).collect();
    let lost = AtomicU64::new(0);
    let corrupted = AtomicU64::new(0);
    let unverified = AtomicU64::new(0);
    let lost_examples: Mutex<Vec<String>> = Mutex::default();
    let t_verify = Instant::now();
    std::thread::scope(|s| {
        for part in acked.chunks(acked.len().div_ceil(4).max(1)) {
            let (lost, corrupted, unverified, lost_examples, key, base) = (&lost, &corrupted, &unverified, &lost_examples, agent_key.as_str(), base.as_str());
            s.spawn(move || {
                let Ok(http) = Client::builder().timeout(TIMEOUT).build() else { return };
                for (id, summary) in part {
                    let mut verdict = None;
                    for _ in 0..3 {
                        match http.get(format!("{base}/api/tickets/{id}")).bearer_auth(key).send() {
                            Ok(r) if r.status().as_u16() == 404 => {
                                verdict = Some(false);
                                break;
                            }
                            Ok(r) if r.status().is_success() => {
                                let v: Value = r.json().unwrap_or_default();
                                if v["id"].as_i64() != Some(*id) || v["summary"].as_str() != Some(summary.as_str()) {
                                    corrupted.fetch_add(1, Ordering::Relaxed);
                                }
                                verdict = Some(true);
                                break;
                            }
                            _ => std::thread::sleep(Duration::from_millis(500)),
                        }
                    }
                    match verdict {
                        Some(true) => {}
                        Some(false) => {
                            lost.fetch_add(1, Ordering::Relaxed);
                            let mut ex = lost_examples.lock().unwrap_or_else(|e| e.into_inner());
                            if ex.len() < 10 {
                                ex.push(id.to_string());
                            }
                        }
                        None => {
                            unverified.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let verify_secs = t_verify.elapsed().as_secs_f64();
    // How many tickets the database holds (the export's row count).
    let rows_in_db = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .ok()
        .and_then(|c| c.get(format!("{base}/api/tickets/export.csv")).send().ok())
        .and_then(|r| r.headers().get("x-zhengwu-rows").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok()));
    let alive_at_end = server.alive();
    let vmhwm = crate::llm_speed::peak_rss_mb(Some(pid)).unwrap_or(f64::NAN);
    let log_text = std::fs::read_to_string(&server.log).unwrap_or_default();
    // The level is the second field of a tracing line (with or without colours).
    let is_error = |l: &str| l.split_whitespace().nth(1).is_some_and(|w| w.contains("ERROR"));
    let log_errors = log_text.lines().filter(|l| is_error(l)).count();
    let log_panics = log_text.lines().filter(|l| l.contains("panicked at")).count();
    let log_error_examples: Vec<String> =
        log_text.lines().filter(|l| is_error(l) || l.contains("panicked at")).take(5).map(|l| truncate(l, 300)).collect();
    drop(server);

    // ---- figures
    let routes = std::mem::take(&mut *shared.routes.lock().unwrap_or_else(|e| e.into_inner()));
    let mut requests = 0u64;
    let (mut e5xx, mut s429, mut s503, mut transport, mut s4xx) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for r in routes.values() {
        requests += r.lat_ms.len() as u64 + r.transport;
        transport += r.transport;
        for (&code, &n) in &r.status {
            match code {
                429 => s429 += n,
                503 => s503 += n,
                500..=599 => e5xx += n,
                400..=499 => s4xx += n,
                _ => {}
            }
        }
    }
    let mut health = health.into_inner().unwrap_or_else(|e| e.into_inner());
    let health_n = health.len();
    let health_bad = health_bad.into_inner();
    let (h50, h99) = (percentile(&mut health, 0.5), percentile(&mut health, 0.99));
    let hmax = health.iter().copied().fold(f64::NAN, f64::max);
    let samples = samples.into_inner().unwrap_or_else(|e| e.into_inner());
    let warm_at = (duration.as_secs_f64() * 0.1).min(60.0);
    let start_sample = samples.iter().find(|s| s.0 >= warm_at).or(samples.first()).copied();
    let rss_start = start_sample.map(|s| s.1).unwrap_or(f64::NAN);
    let fds_start = start_sample.and_then(|s| s.2);
    let rss_peak = samples.iter().map(|s| s.1).fold(f64::NAN, f64::max);
    let growth = (rss_end - rss_start) / rss_start * 100.0;
    let acked_n = acked.len() as u64;
    let lost = lost.into_inner();
    let unverified = unverified.into_inner();
    let corrupted = corrupted.into_inner();
    let created = shared.created_201.load(Ordering::Relaxed);
    let replayed = shared.replayed_200.load(Ordering::Relaxed);
    let violations = shared.idempotency_violations.load(Ordering::Relaxed);

    let mut report = Report::new(&format!("Soak: {clients} clients, {} s of mixed traffic", duration.as_secs()));
    report.metric("soak.clients", clients as f64);
    report.metric("soak.duration_secs", duration.as_secs_f64());
    report.metric("soak.think_ms", think_ms as f64);
    report.metric("soak.traffic_secs", traffic_secs);
    report.metric("soak.drain_secs", drain_secs);
    report.metric("soak.ready_secs", ready_secs);
    report.metric("soak.kb_sync_secs", kb_secs);
    report.metric("soak.kb_points", kb_points);
    report.metric("soak.warmup_secs", warmup_secs);
    report.metric("soak.requests", requests as f64);
    report.metric("soak.requests_per_s", requests as f64 / traffic_secs);
    report.metric("soak.errors_5xx", e5xx as f64);
    report.metric("soak.status_429", s429 as f64);
    report.metric("soak.status_503", s503 as f64);
    report.metric("soak.status_4xx_other", s4xx as f64);
    report.metric("soak.transport_errors", transport as f64);
    report.metric("soak.bad_bodies", shared.bad_bodies.load(Ordering::Relaxed) as f64);
    report.metric("soak.tickets_created_201", created as f64);
    report.metric("soak.tickets_replayed_200", replayed as f64);
    report.metric("soak.tickets_acknowledged", acked_n as f64);
    report.metric("soak.tickets_lost", lost as f64);
    report.metric("soak.tickets_unverified", unverified as f64);
    report.metric("soak.tickets_corrupted", corrupted as f64);
    if let Some(rows) = rows_in_db {
        report.metric("soak.tickets_in_db", rows);
    }
    report.metric("soak.idempotency_violations", violations as f64);
    report.metric("soak.get_404_acknowledged", shared.get_404_acked.load(Ordering::Relaxed) as f64);
    report.metric("soak.transition_conflicts", shared.transition_conflicts.load(Ordering::Relaxed) as f64);
    report.metric("soak.rss_ready_mb", rss_ready);
    report.metric("soak.rss_start_mb", rss_start);
    report.metric("soak.rss_start_at_secs", start_sample.map(|s| s.0).unwrap_or(f64::NAN));
    report.metric("soak.rss_end_mb", rss_end);
    report.metric("soak.rss_peak_mb", rss_peak);
    report.metric("soak.vmhwm_mb", vmhwm);
    report.metric("soak.rss_growth_pct", growth);
    if let (Some(a), Some(b)) = (fds_start, fds_end) {
        report.metric("soak.fds_start", a as f64);
        report.metric("soak.fds_end", b as f64);
    }
    report.metric("soak.health_probes", health_n as f64);
    report.metric("soak.health_failed", health_bad as f64);
    report.metric("soak.health_p50_ms", h50);
    report.metric("soak.health_p99_ms", h99);
    report.metric("soak.health_max_ms", hmax);
    report.metric("soak.server_alive_at_end", f64::from(u8::from(alive_at_end && alive_after_traffic)));
    report.metric("soak.server_log_errors", log_errors as f64);
    report.metric("soak.server_log_panics", log_panics as f64);
    report.metric("soak.verify_secs", verify_secs);
    let ask_kinds = std::mem::take(&mut *shared.ask_kinds.lock().unwrap_or_else(|e| e.into_inner()));
    for (k, n) in &ask_kinds {
        report.metric(format!("soak.ask_{k}"), *n as f64);
    }

    let mut table = String::from(
        "| route | request | count | statuses | transport errors | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---:|---|---:|---:|---:|---:|---:|\n",
    );
    let mut transport_examples = Vec::new();
    for (name, what) in ROUTES {
        let Some(r) = routes.get(name) else { continue };
        let mut lat = r.lat_ms.clone();
        let count = lat.len() as u64 + r.transport;
        let (p50, p95, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.95), percentile(&mut lat, 0.99));
        let max = lat.iter().copied().fold(f64::NAN, f64::max);
        report.metric(format!("soak.route.{name}.count"), count as f64);
        report.metric(format!("soak.route.{name}.p50_ms"), p50);
        report.metric(format!("soak.route.{name}.p95_ms"), p95);
        report.metric(format!("soak.route.{name}.p99_ms"), p99);
        let statuses = r.status.iter().map(|(c, n)| format!("{c}×{n}")).collect::<Vec<_>>().join(", ");
        let f = |v: f64| if v.is_finite() { fmt_num(v) } else { "–".into() };
        table.push_str(&format!(
            "| {name} | `{what}` | {count} | {statuses} | {} | {} | {} | {} | {} |\n",
            r.transport,
            f(p50),
            f(p95),
            f(p99),
            f(max)
        ));
        if let Some(e) = &r.transport_example {
            transport_examples.push(format!("{name}: {e}"));
        }
    }

    let growth_ok = growth.is_finite() && growth < 10.0;
    let targets = format!(
        "## Targets\n\n| target | measured | verdict |\n|---|---|---|\n\
         | no 5xx other than 503 (429 and 503 are load shedding) | {e5xx} 5xx; {s429} × 429, {s503} × 503 | {} |\n\
         | no acknowledged ticket lost | {lost} lost, {unverified} unverified of {acked_n} acknowledged ({corrupted} with a different summary) | {} |\n\
         | RSS growth under 10% (warm-up → end) | {} → {} MB ({}%) | {} |\n\
         | p99 of `/health` under 100 ms | p99 {} ms (p50 {}, max {}; {health_n} probes, {health_bad} failed) | {} |\n\
         | (informational) no transport errors (timeouts, resets) | {transport} | {} |\n\
         | (informational) the server is still up at the end | {} | {} |\n",
        pass(e5xx == 0),
        pass(lost == 0 && unverified == 0 && acked_n > 0),
        fmt_num(rss_start),
        fmt_num(rss_end),
        fmt_num(growth),
        pass(growth_ok),
        fmt_num(h99),
        fmt_num(h50),
        fmt_num(hmax),
        pass(h99 < 100.0 && health_bad == 0),
        pass(transport == 0),
        if alive_at_end && alive_after_traffic { "yes" } else { "no" },
        pass(alive_at_end && alive_after_traffic),
    );
    report.section(targets);
    report.section(format!("## Routes\n\nLatency is from sending the request to reading the whole answer, over answered requests (any status).\n\n{table}"));

    // RSS timeline: about ten rows.
    let step = (samples.len() / 10).max(1);
    let mut rss_md = String::from("## Server memory\n\n| at s | VmRSS MB | open fds |\n|---:|---:|---:|\n");
    for (i, (at, r, fds)) in samples.iter().enumerate() {
        if i % step == 0 || i + 1 == samples.len() {
            rss_md.push_str(&format!("| {at:.0} | {} | {} |\n", fmt_num(*r), fds.map(|f| f.to_string()).unwrap_or_default()));
        }
    }
    rss_md.push_str(&format!(
        "\nRSS when ready (before the knowledge-base sync finished and before whisper loaded): {} MB; peak sampled {} MB; VmHWM at the end {} MB. \
         The start figure is the first 5-second sample at or after {warm_at:.0} s of traffic (min(60 s, 10% of the run)); the end figure is read once every client has finished its last request.\n",
        fmt_num(rss_ready),
        fmt_num(rss_peak),
        fmt_num(vmhwm)
    ));
    report.section(rss_md);

    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let mix = MIX.iter().map(|(op, w)| format!("{op:?} {w}")).collect::<Vec<_>>().join(", ");
    let audio = corpus.audio.iter().map(|a| format!("{} ({} KB)", a.0, a.1.len() / 1024)).collect::<Vec<_>>().join(", ");
    let mut setup = format!(
        "## Setup\n\n- machine: {nproc} CPU(s) visible; server and clients on the same machine (the clients' own CPU use competes with the server's)\n\
         - binary: {build} build of `{}` (the inference crate is optimised in every profile)\n\
         - models: chat `{chat_model}`, embedding `{EMBEDDING}`, speech `whisper-base` (loaded on the first transcription, during warm-up); server engine threads: {}\n\
         - server: fresh SQLite ticket database, fresh knowledge-base store with `knowledge-base/policy` ingested at start ({} points, {} s), no users (open mode on loopback), default limits\n\
         - clients: {clients} threads, blocking HTTP, 120 s timeouts, think time uniform 0..{} ms between requests; weights: {mix}\n\
         - ask: `max_tokens` {ASK_MAX_TOKENS}, non-stream; answers by kind: {}; chat: `max_tokens` {CHAT_MAX_TOKENS}; audio: {audio}\n\
         - ready after {} s; warm-up {} s ({}); traffic {} s including {} s draining in-flight requests after the deadline; ticket verification {} s\n",
        std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
        args.threads.map(|t| t.to_string()).unwrap_or_else(|| "server default (1)".into()),
        fmt_num(kb_points),
        fmt_num(kb_secs),
        2 * think_ms,
        if ask_kinds.is_empty() { "none answered".to_string() } else { ask_kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ") },
        fmt_num(ready_secs),
        fmt_num(warmup_secs),
        warm_statuses.join(", "),
        fmt_num(traffic_secs),
        fmt_num(drain_secs.max(0.0)),
        fmt_num(verify_secs),
    );
    setup.push_str(&format!(
        "- tickets: {created} created (201), {replayed} idempotent replays answered 200, {violations} replay violations; {acked_n} distinct ids acknowledged; \
         the database holds {} (rows of the final export; more than acknowledged means a create whose answer the client never saw)\n",
        rows_in_db.map(|r| format!("{r:.0}")).unwrap_or_else(|| "?".into())
    ));
    report.section(setup);

    let mut md = String::from("## Notes\n\n");
    md.push_str(
        "- A missed target is a finding, not a failure of the suite. 429 (transcription queue full, generation queue full, \
           worker pool overloaded) and 503 (model not loaded, store contention) are load shedding with `Retry-After`; \
           ticket creates retry them with the same `Idempotency-Key` (up to 3 times) and are counted under `create_retry`.\n\
         - RSS growth includes data growth: the ticket database (SQLite page cache) and the audit log grow during the run; \
           a long-running leak shows as steady growth in the timeline above, not as the one-off jump when whisper or the \
           hot-spot clustering first runs.\n\
         - The `/health` probe shares the machine with the clients and the model threads; on a 2-CPU machine its tail mostly \
           measures CPU contention.\n",
    );
    for n in &notes {
        md.push_str(&format!("- {n}\n"));
    }
    let asked: u64 = ask_kinds.values().sum();
    let refused = ask_kinds.get("refusal").copied().unwrap_or(0);
    if asked > 0 && refused * 2 > asked {
        md.push_str(&format!(
            "- {refused} of {asked} `/api/ask` answers were refusals (relevance gate, or an answer the grounding check rejected after generation): \
             the route's figures are mostly retrieval (plus generation where it ran), not served answers\n"
        ));
    }
    if let Some(e) = shared.bad_body_example.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        md.push_str(&format!("- unexpected 2xx body (first of {}): {e}\n", shared.bad_bodies.load(Ordering::Relaxed)));
    }
    for e in transport_examples.iter().take(5) {
        md.push_str(&format!("- transport error example: {e}\n"));
    }
    let lost_examples = lost_examples.into_inner().unwrap_or_else(|e| e.into_inner());
    if !lost_examples.is_empty() {
        md.push_str(&format!("- lost ticket ids (first 10): {}\n", lost_examples.join(", ")));
    }
    // Keep the database, audit log and server log when something needs looking into.
    let keep = e5xx > 0 || lost > 0 || unverified > 0 || corrupted > 0 || log_errors + log_panics > 0 || !(alive_at_end && alive_after_traffic);
    if keep {
        md.push_str(&format!("- the server's files (tickets.db, audit.jsonl, server.log) are kept in {}\n", tmp.display()));
    } else {
        let _ = fs_err::remove_dir_all(&tmp);
    }
    if log_errors + log_panics > 0 {
        md.push_str(&format!("- the server log has {log_errors} ERROR lines and {log_panics} panics; first ones:\n\n```\n{}\n```\n", log_error_examples.join("\n")));
    }
    report.section(md);

    println!(
        "soak: {requests} requests in {traffic_secs:.0} s from {clients} clients: 5xx {e5xx} (429 {s429}, 503 {s503}, transport {transport}); \
         tickets lost {lost}/{acked_n}; RSS {rss_start:.0} -> {rss_end:.0} MB ({growth:+.1}%); /health p99 {h99:.1} ms (max {hmax:.1})"
    );
    Ok(report)
}
