//! The ticket API through the real `zhengwu serve` binary (no models loaded):
//! - durability: concurrent creates and transitions, SIGKILL mid-load, restart on the same
//!   database, every acknowledged (2xx) ticket and transition still there; retries with the same
//!   idempotency keys create no duplicates. Run on SQLite (the default) and PostgreSQL.
//! - the API's answers: validation errors, 409 with allowed moves, filters, search, CSV export,
//!   masking without the agent key, and a scan of the server's captured log for personal data.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const AGENT_KEY: &str = "agent-secret-key";

struct Srv {
    child: Child,
    base: String,
}

impl Drop for Srv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Srv {
    /// Start `zhengwu serve` without models on an ephemeral port, stderr (the log) to `log`.
    fn start(db: &str, log: &Path) -> Srv {
        let err = File::create(log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_zhengwu"))
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--chat-model", "none", "--embedding-model", "none"])
            .args(["--tickets-db", db, "--tickets-agent-key", AGENT_KEY])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("starting zhengwu serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("listening on ") {
                        break rest.trim().to_string();
                    }
                }
                _ => panic!("server exited before listening; log:\n{}", std::fs::read_to_string(log).unwrap_or_default()),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let mut srv = Srv { child, base };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = client().get(srv.url("/api/tickets/meta")).send() {
                if r.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(status)) = srv.child.try_wait() {
                panic!("server exited ({status}); log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "ticket API not up after 120 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        srv
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no graceful shutdown, no flush.
    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let d = std::env::temp_dir().join(format!("zhengwu_{name}_{}_{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn new_ticket(i: usize) -> Value {
    let channel = ["phone", "app", "web", "mini_program", "letter"][i % 5];
    let request_type = ["consult", "help", "complaint", "report", "suggestion"][i % 5];
    json!({
        "channel": channel,
        "contact": {"name": "王先生", "phone": "13700001111"},
        "address": {"text": format!("解放路{i}号"), "district": if i % 2 == 0 { "东城区" } else { "西城区" }},
        "request_type": request_type,
        "category": ["市政管理", "道路与设施", "路灯不亮"],
        "summary": format!("第{i}号路灯不亮"),
        "text": "晚上整条路一片漆黑。",
    })
}

/// What the load generator saw acknowledged.
#[derive(Default)]
struct Acked {
    /// key → (id, summary)
    creates: BTreeMap<String, (i64, String)>,
    /// (id, version after, status)
    transitions: Vec<(i64, i64, String)>,
    /// Keys whose create got no answer (in flight at the kill).
    unanswered: Vec<(String, usize)>,
}

fn durability(db: &str, dir: &Path) {
    let srv = Srv::start(db, &dir.join("run1.log"));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let ops = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (acked, ops, stop, base) = (acked.clone(), ops.clone(), stop.clone(), srv.base.clone());
        workers.push(std::thread::spawn(move || {
            let c = client();
            let moves = [
                json!({"to": "accepted", "actor": "agent-1"}),
                json!({"to": "dispatched", "actor": "agent-1", "dept": "城市管理局"}),
                json!({"to": "handling", "actor": "dept-9"}),
                json!({"to": "replied", "actor": "dept-9", "reply": "已修复"}),
            ];
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let i = w * 100_000 + n;
                let key = format!("load-{w}-{n}");
                let r = c.post(format!("{base}/api/tickets")).header("idempotency-key", &key).json(&new_ticket(i)).send();
                let id = match r {
                    Ok(r) if r.status().is_success() => {
                        let t: Value = r.json().unwrap();
                        let id = t["id"].as_i64().unwrap();
                        acked.lock().unwrap().creates.insert(key, (id, t["summary"].as_str().unwrap().to_string()));
                        ops.fetch_add(1, Ordering::SeqCst);
                        id
                    }
                    Ok(r) => panic!("create answered {}: {}", r.status(), r.text().unwrap_or_default()),
                    Err(_) => {
                        acked.lock().unwrap().unanswered.push((key, i));
                        return; // server gone
                    }
                };
                for m in &moves {
                    match c.post(format!("{base}/api/tickets/{id}/transitions")).json(m).send() {
                        Ok(r) if r.status().is_success() => {
                            let t: Value = r.json().unwrap();
                            let v = t["version"].as_i64().unwrap();
                            acked.lock().unwrap().transitions.push((id, v, m["to"].as_str().unwrap().to_string()));
                            ops.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => panic!("transition answered {}: {}", r.status(), r.text().unwrap_or_default()),
                        Err(_) => return,
                    }
                }
            }
        }));
    }
    // Kill once a good amount of work has been acknowledged, while the workers are still sending.
    while ops.load(Ordering::SeqCst) < 300 {
        std::thread::sleep(Duration::from_millis(5));
    }
    srv.sigkill();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("worker");
    }
    let acked = Arc::try_unwrap(acked).ok().unwrap().into_inner().unwrap();
    assert!(acked.creates.len() >= 30, "load too small: {}", acked.creates.len());

    let srv = Srv::start(db, &dir.join("run2.log"));
    let c = client();
    let mut max_version: BTreeMap<i64, i64> = BTreeMap::new();
    for (id, v, _) in &acked.transitions {
        let e = max_version.entry(*id).or_default();
        *e = (*e).max(*v);
    }
    for (key, (id, summary)) in &acked.creates {
        let r = c.get(srv.url(&format!("/api/tickets/{id}"))).bearer_auth(AGENT_KEY).send().unwrap();
        assert_eq!(r.status(), 200, "acknowledged ticket {id} ({key}) lost");
        let t: Value = r.json().unwrap();
        assert_eq!(t["summary"].as_str(), Some(summary.as_str()));
        assert_eq!(t["contact"]["phone"], "13700001111");
        let history = t["history"].as_array().unwrap();
        assert_eq!(history.len() as i64, t["version"].as_i64().unwrap(), "one history entry per version");
        if let Some(v) = max_version.get(id) {
            assert!(t["version"].as_i64().unwrap() >= *v, "ticket {id} lost acknowledged transitions");
        }
    }
    for (id, v, to) in &acked.transitions {
        let t: Value = c.get(srv.url(&format!("/api/tickets/{id}"))).send().unwrap().json().unwrap();
        let h = &t["history"][(*v - 1) as usize];
        assert_eq!(h["seq"].as_i64(), Some(*v), "ticket {id}: history entry {v} missing");
        assert_eq!(h["to"].as_str(), Some(to.as_str()), "ticket {id}: entry {v}");
    }
    // Clients retry what got no answer, and replay some acknowledged creates: no duplicates.
    for (key, i) in &acked.unanswered {
        let r = c.post(srv.url("/api/tickets")).header("idempotency-key", key).json(&new_ticket(*i)).send().unwrap();
        assert!(r.status() == 201 || r.status() == 200, "retry {key}: {}", r.status());
    }
    for (key, (id, _)) in acked.creates.iter().take(20) {
        let w: usize = key.split('-').nth(1).unwrap().parse().unwrap();
        let n: usize = key.split('-').nth(2).unwrap().parse().unwrap();
        let r = c.post(srv.url("/api/tickets")).header("idempotency-key", key).json(&new_ticket(w * 100_000 + n)).send().unwrap();
        assert_eq!(r.status(), 200, "replay of {key}");
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        assert_eq!(r.json::<Value>().unwrap()["id"].as_i64(), Some(*id));
    }
    let mut ids = HashSet::new();
    let mut cursor: Option<i64> = None;
    loop {
        let mut url = srv.url("/api/tickets?limit=500");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let p: Value = c.get(url).send().unwrap().json().unwrap();
        for t in p["data"].as_array().unwrap() {
            assert!(ids.insert(t["id"].as_i64().unwrap()));
        }
        match p["next_cursor"].as_i64() {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(ids.len(), acked.creates.len() + acked.unanswered.len(), "one ticket per idempotency key");
    eprintln!(
        "durability: {} creates and {} transitions acknowledged before SIGKILL, {} in flight; all present after restart",
        acked.creates.len(),
        acked.transitions.len(),
        acked.unanswered.len()
    );
}

#[test]
fn sigkill_mid_load_loses_nothing_sqlite() {
    let dir = tmpdir("tickets_kill");
    let db = format!("sqlite://{}", dir.join("tickets.db").display());
    durability(&db, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn pg_base() -> String {
    std::env::var("ZHENGWU_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[test]
fn sigkill_mid_load_loses_nothing_postgres() {
    let dir = tmpdir("tickets_kill_pg");
    let schema = format!("zw_kill_{}_{}", std::process::id(), dir.file_name().unwrap().to_string_lossy().rsplit('_').next().unwrap());
    let schema = schema.chars().take(60).collect::<String>();
    let base = pg_base();
    let db = format!("{base}?schema={schema}");
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(zhengwu_hotline::tickets::PgStore::drop_schema(&self.0, &self.1)).expect("dropping the test schema");
        }
    }
    let _cleanup = Cleanup(base, schema);
    durability(&db, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn api_answers_and_log_has_no_pii() {
    let dir = tmpdir("tickets_api");
    let db = format!("sqlite://{}", dir.join("tickets.db").display());
    let log = dir.join("server.log");
    let srv = Srv::start(&db, &log);
    let c = client();
    let id_number = "11010519491231002X";
    let phone = "13812345678";
    let card = "6222600260001072444"; // Luhn-valid
    let t = json!({
        "channel": "phone",
        "contact": {"name": "张三", "phone": phone, "id_number": id_number, "email": "zhangsan@example.com"},
        "address": {"text": "幸福路8号", "district": "东城区", "street": "和平街道"},
        "request_type": "投诉",
        "category": ["城乡建设", "物业管理", "电梯故障停运"],
        "summary": format!("电梯坏了三天，联系电话{phone}"),
        "text": format!("我的身份证{id_number}，银行卡{card}被物业多扣费。你们这帮混蛋再不修我就不想活了"),
        "urgency": "urgent",
    });

    // Create: 201, masked for callers without the agent key.
    let r = c.post(srv.url("/api/tickets")).json(&t).send().unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().unwrap();
    let id = created["id"].as_i64().unwrap();
    let shown = created.to_string();
    for secret in [phone, id_number, card, "zhangsan@"] {
        assert!(!shown.contains(secret), "{secret} shown without the agent key: {shown}");
    }
    assert_eq!(created["contact"]["phone"], "138****5678");
    assert_eq!(created["contact"]["name"], "张*");
    assert_eq!(created["request_type"], "complaint");
    assert_eq!(created["status"], "received");
    assert_eq!(created["flags"], json!(["self_harm"]), "sensitive words flagged");
    assert!(created["text"].as_str().unwrap().contains("**"), "abuse masked: {}", created["text"]);
    // The agent sees everything.
    let full: Value = c.get(srv.url(&format!("/api/tickets/{id}"))).bearer_auth(AGENT_KEY).send().unwrap().json().unwrap();
    assert_eq!(full["contact"]["phone"], phone);
    assert_eq!(full["contact"]["id_number"], id_number);
    let r = c.get(srv.url(&format!("/api/tickets/{id}"))).bearer_auth("wrong").send().unwrap();
    assert_eq!(r.status(), 401);

    // Validation: 422 naming the field, never echoing the value.
    let bad_phone = "1391234567";
    for (patch, param) in [
        (json!({"contact": {"phone": bad_phone}}), "contact.phone"),
        (json!({"contact": {"id_number": "110105194912310021"}}), "contact.id_number"),
        (json!({"summary": "  "}), "summary"),
        (json!({"category": ["城乡建设", "不存在的分类"]}), "category"),
        (json!({"co_handlers": ["a", "a"]}), "co_handlers"),
    ] {
        let mut body = t.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = c.post(srv.url("/api/tickets")).json(&body).send().unwrap();
        assert_eq!(r.status(), 422, "{param}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["error"]["param"], param, "{e}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert!(!e.to_string().contains(bad_phone) && !e.to_string().contains("110105194912310021"), "{e}");
    }
    let r = c.post(srv.url("/api/tickets")).json(&json!({"channel": "fax", "request_type": "consult", "summary": "x"})).send().unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().unwrap().contains("unknown variant"), "bad enum named");
    let r = c.post(srv.url("/api/tickets")).json(&json!({"channel": "web", "request_type": "consult", "summary": "x", "sumary": "typo"})).send().unwrap();
    assert_eq!(r.status(), 422, "unknown fields are refused");
    let r = c.post(srv.url("/api/tickets")).header("content-type", "application/json").body("{not json").send().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "invalid_json");
    let r = c.get(srv.url("/api/tickets/99999")).send().unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(srv.url("/api/tickets/abc")).send().unwrap();
    assert_eq!(r.status(), 404);

    // Transitions: invalid → 409 with the allowed ones; valid → history.
    let r = c.post(srv.url(&format!("/api/tickets/{id}/transitions"))).json(&json!({"to": "replied", "actor": "a"})).send().unwrap();
    assert_eq!(r.status(), 409);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "invalid_transition");
    assert_eq!(e["error"]["allowed"], json!(["accepted", "closed"]));
    let r = c.post(srv.url(&format!("/api/tickets/{id}/transitions"))).json(&json!({"to": "accepted"})).send().unwrap();
    assert_eq!(r.status(), 422, "actor is required");
    for body in [
        json!({"to": "accepted", "actor": "agent-1"}),
        json!({"to": "dispatched", "actor": "agent-1", "dept": "住房和城乡建设局", "co_handlers": ["市场监督管理局"]}),
    ] {
        let r = c.post(srv.url(&format!("/api/tickets/{id}/transitions"))).json(&body).send().unwrap();
        assert_eq!(r.status(), 200, "{body}");
    }
    let r = c
        .post(srv.url(&format!("/api/tickets/{id}/transitions")))
        .json(&json!({"to": "returned", "actor": "dept-1", "expected_version": 1, "reason": "x"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "version_conflict");
    let t2: Value = c.get(srv.url(&format!("/api/tickets/{id}"))).send().unwrap().json().unwrap();
    assert_eq!(t2["status"], "dispatched");
    assert_eq!(t2["lead_dept"], "住房和城乡建设局");
    assert_eq!(t2["history"].as_array().unwrap().len(), 3);
    assert!(t2["deadlines"]["reply_by"].is_string());

    // Filters, search, pagination.
    for i in 0..5 {
        let r = c.post(srv.url("/api/tickets")).json(&new_ticket(i)).send().unwrap();
        assert_eq!(r.status(), 201);
    }
    let p: Value = c.get(srv.url("/api/tickets?status=dispatched")).send().unwrap().json().unwrap();
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    let p: Value = c.get(srv.url("/api/tickets?district=西城区&limit=1")).send().unwrap().json().unwrap();
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    assert!(p["next_cursor"].is_i64());
    let p: Value = c.get(srv.url("/api/tickets/search?q=电梯")).send().unwrap().json().unwrap();
    assert_eq!(p["data"].as_array().unwrap().len(), 1);
    let p: Value = c.get(srv.url("/api/tickets/search?q=路灯不亮")).send().unwrap().json().unwrap();
    assert_eq!(p["data"].as_array().unwrap().len(), 5);
    let r = c.get(srv.url("/api/tickets/search?q=")).send().unwrap();
    assert_eq!(r.status(), 422);
    let r = c.get(srv.url("/api/tickets?status=lost")).send().unwrap();
    assert_eq!(r.status(), 422);
    let r = c.get(srv.url("/api/tickets?limit=0")).send().unwrap();
    assert_eq!(r.status(), 422);
    let r = c.get(srv.url("/api/tickets?stauts=received")).send().unwrap();
    assert_eq!(r.status(), 422, "unknown query parameters are refused");

    // CSV export: every row, personal data masked even for agents.
    let r = c.get(srv.url("/api/tickets/export.csv")).bearer_auth(AGENT_KEY).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = r.text().unwrap();
    assert_eq!(csv.lines().count(), 1 + 6, "{csv}");
    assert!(csv.contains("138****5678") && csv.contains("电梯坏了三天"));
    for secret in [phone, id_number, card, "13700001111"] {
        assert!(!csv.contains(secret), "{secret} in export");
    }

    // The log: captured, mentions the tickets, never the personal data.
    srv.sigkill();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ticket created"), "log was captured");
    for secret in [phone, id_number, card, "zhangsan@example.com", bad_phone, "110105194912310021", "13700001111", "张三"] {
        assert!(!text.contains(secret), "{secret} found in the server log");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
