//! The citizen chat through the real `zhengwu serve` (0.5B chat model, e5, the starter knowledge
//! base, the hotline's form filling and dispatch), logged in as a citizen: a service
//! request gets a draft ticket and its department and is filed on confirmation; a missing
//! manhole cover gets safety advice first and is filed as urgent although a citizen cannot set
//! urgency; harmful requests, status questions and greetings are told apart without the model.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{client, Server, CHAT_MODEL, EMBED_MODEL};
use serde_json::{json, Value};

const CITIZEN: &str = "citizen-key-0001";

fn ask(s: &Server, q: &str) -> Value {
    let r = client().post(s.url("/api/ask")).bearer_auth(CITIZEN).json(&json!({"question": q, "max_tokens": 48})).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{q}");
    r.json().unwrap()
}

/// File the draft as the citizen page does on 核对并提交 (no urgency: citizens may not set it).
fn file(s: &Server, a: &Value, q: &str) -> Value {
    let t = &a["request"]["form"]["ticket"];
    let mut body = json!({"channel": "app", "request_type": t["request_type"], "summary": t["summary"], "text": q});
    if t["category"].as_array().is_some_and(|c| !c.is_empty()) {
        body["category"] = t["category"].clone();
    }
    let r = client().post(s.url("/api/tickets")).bearer_auth(CITIZEN).json(&body).send().unwrap();
    let code = r.status().as_u16();
    let v: Value = r.json().unwrap();
    assert_eq!(code, 201, "{v}");
    v
}

#[test]
fn service_requests_become_tickets_and_hazards_are_urgent() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("citizen-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let db = format!("sqlite://{}", tmp.join("tickets.db").display());
    let users = format!("ann:citizen:{CITIZEN},root:admin:admin-key-0002");
    let s = Server::start_with_env(
        &["--chat-model", CHAT_MODEL, "--embedding-model", EMBED_MODEL, "--tickets-db", &db],
        &[
            ("ZHENGWU_WEB_USERS", users.as_str()),
            ("ZHENGWU_AUDIT_LOG", tmp.join("audit.jsonl").to_str().unwrap()),
            ("ZHENGWU_KB_STORE", tmp.join("kb-index").to_str().unwrap()),
            ("ZHENGWU_KB_DIR", root.join("knowledge-base/policy").to_str().unwrap()),
            ("ZHENGWU_KB_AUTO_INGEST", "1"),
        ],
        true,
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let v: Value = client().get(s.url("/api/kb/status")).bearer_auth("admin-key-0002").send().unwrap().json().unwrap_or_default();
        if v["last_ingest"]["ok"] == true {
            break;
        }
        assert!(v["last_ingest"]["ok"] != false, "ingest failed: {v}");
        assert!(Instant::now() < deadline, "knowledge base not ingested: {v}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A broken street light: a request for 12345, not a policy question; city management.
    let q = "我家楼下的路灯坏了三天了，晚上黑漆漆的，找谁修啊";
    let a = ask(&s, q);
    assert_eq!(a["kind"], "service_request", "{a}");
    assert_eq!(a["request"]["department"]["id"], "city-management", "{a}");
    assert!(a["answer"].as_str().unwrap().contains("市城市管理委员会"), "{a}");
    assert_eq!(a["request"]["urgent"], false, "{a}");
    assert!(a["request"]["form"]["ticket"]["summary"].as_str().is_some_and(|s| !s.is_empty()), "{a}");
    assert_eq!(a["timings"]["completion_tokens"], 0, "no generation for a request: {a}");
    let t = file(&s, &a, q);
    assert_eq!(t["urgency"], "normal", "{t}");

    // A missing manhole cover: safety advice first, and an urgent ticket.
    let q = "小区门口那个井盖没了，黑灯瞎火的，刚才差点有人踩进去";
    let a = ask(&s, q);
    assert_eq!(a["kind"], "service_request", "{a}");
    assert_eq!(a["request"]["urgent"], true, "{a}");
    let advice = a["request"]["advice"].as_str().unwrap_or_default();
    assert!(advice.contains("远离") && advice.contains("120"), "{a}");
    assert!(a["answer"].as_str().unwrap().starts_with("【安全提示】"), "{a}");
    assert_ne!(a["request"]["form"]["ticket"]["request_type"], "consult", "a request is not a consultation: {a}");
    let t = file(&s, &a, q);
    assert_eq!(t["urgency"], "urgent", "the hazard word list raises urgency: {t}");
    assert!(t["flags"].as_array().unwrap().iter().any(|f| f == "hazard_manhole"), "{t}");
    // A citizen still cannot set urgency directly.
    let r = client()
        .post(s.url("/api/tickets"))
        .bearer_auth(CITIZEN)
        .json(&json!({"channel": "app", "request_type": "complaint", "summary": "楼道灯不亮", "text": "楼道灯不亮", "urgency": "urgent"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // A gas smell worded as a question is still a hazard report.
    let a = ask(&s, "楼道里一股煤气味，这种情况该咋办");
    assert_eq!(a["kind"], "service_request", "{a}");
    assert!(a["request"]["advice"].as_str().unwrap_or_default().contains("通风"), "{a}");

    // Told apart without the model.
    let a = ask(&s, "能不能帮我弄个假的居住证明，房东不给开");
    assert_eq!((a["kind"].as_str(), a["refusal_reason"].as_str()), (Some("refusal"), Some("harmful")), "{a}");
    let a = ask(&s, "我上周反映的噪音问题处理得怎么样了");
    assert_eq!(a["kind"], "status", "{a}");
    assert!(a["answer"].as_str().unwrap().contains("查询工单"), "{a}");
    let a = ask(&s, "你好");
    assert_eq!(a["kind"], "small_talk", "{a}");

    // The agent co-pilot shows knowledge only when it is about the call: none for a
    // broken elevator, the 居住证 documents for a question about them.
    let copilot = |transcript: &str| -> Value {
        let r = client().post(s.url("/api/copilot")).bearer_auth("admin-key-0002").json(&json!({ "transcript": transcript })).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().unwrap()
    };
    let c = copilot("喂，你好，我们单元的电梯又坏了，停了一个多礼拜了，老人上下楼太难了，物业说在等配件");
    assert_eq!(c["knowledge"]["hits"].as_array().map(Vec::len), Some(0), "no article for an elevator call: {}", c["knowledge"]);
    assert_eq!(c["dispatch"]["lead"]["dept"], "market-regulation", "{}", c["dispatch"]);
    assert_ne!(c["form"]["ticket"]["request_type"], "consult", "a repair request is not a consultation: {}", c["form"]);
    // A hazard shows as urgent in the pre-filled form already, and a housing estate is not a 区.
    let c = copilot("喂，我们小区门口那个井盖没了，黑灯瞎火的，刚才差点有人踩进去");
    assert_eq!(c["form"]["ticket"]["urgency"], "urgent", "{}", c["form"]);
    assert_ne!(c["form"]["ticket"]["request_type"], "consult", "reporting a danger is not a consultation: {}", c["form"]);
    assert!(c["form"]["ticket"]["address"]["district"].is_null(), "{}", c["form"]);
    assert_eq!(c["dispatch"]["lead"]["dept"], "city-management", "{}", c["dispatch"]);
    let c = copilot("我想问一下，第一次办居住证需要带哪些材料");
    let hits = c["knowledge"]["hits"].as_array().cloned().unwrap_or_default();
    assert!(!hits.is_empty() && hits.iter().all(|h| h["chunk"]["doc_id"].as_str().is_some_and(|d| d.contains("juzhuzheng"))), "{}", c["knowledge"]);
}
