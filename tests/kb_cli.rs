//! `zhengwu kb ingest|list|search|delete` end to end: the real binary, the real e5 model (from
//! the models cache) and a qdrant-edge store in a temporary directory.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{client, sse_data, Server, CHAT_MODEL, EMBED_MODEL};
use serde_json::{json, Value};

fn zhengwu(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_zhengwu"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run zhengwu");
    out
}

fn ok(args: &[&str]) -> String {
    let out = zhengwu(args);
    assert!(
        out.status.success(),
        "zhengwu {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    std::fs::write(dir.join(rel), text).unwrap();
}

#[test]
fn kb_ingest_list_search_delete() {
    let docs = tempfile_dir("docs");
    let store = tempfile_dir("store");
    write(&docs, "hukou.md", "---\ntitle: 新生儿落户\nregion: 全国\n---\n# 新生儿落户\n婴儿出生后一个月内到派出所申报出生登记。\n");
    write(&docs, "gjj.md", "---\ntitle: 公积金租房提取\nregion: 示例市\n---\n# 公积金租房提取\n无房职工租房可以按月提取住房公积金。\n");
    write(&docs, "scan.pdf", "%PDF-1.4");
    let s = store.to_str().unwrap();
    let d = docs.to_str().unwrap();

    let out = ok(&["kb", "ingest", d, "--store", s]);
    assert!(out.contains("2 added") && out.contains("1 skipped") && out.contains("scan.pdf"), "{out}");
    let out = ok(&["kb", "ingest", d, "--store", s]);
    assert!(out.contains("0 added") && out.contains("2 unchanged"), "{out}");

    let list = ok(&["kb", "list", "--store", s]);
    assert!(list.contains("gjj.md") && list.contains("hukou.md") && list.contains("2 documents"), "{list}");

    let json = ok(&["kb", "search", "孩子出生怎么上户口", "--store", s, "--json", "--limit", "1"]);
    let hits: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(hits[0]["chunk"]["doc_id"], "hukou.md", "{json}");
    let text = ok(&["kb", "search", "公积金", "--store", s, "--mode", "sparse"]);
    assert!(text.starts_with("1. ") && text.contains("gjj.md"), "{text}");

    let out = ok(&["kb", "delete", "gjj.md", "--store", s]);
    assert!(out.contains("deleted gjj.md"), "{out}");
    let bad = zhengwu(&["kb", "delete", "gjj.md", "--store", s]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no document `gjj.md`"));
    let bad = zhengwu(&["kb", "search", "x", "--store", s, "--mode", "magic"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown mode"));
    let bad = zhengwu(&["kb", "ingest", "/nonexistent/kb", "--store", s]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("not a directory"));
    // A snapshot is only restored into an empty store directory (restores: rag/tests/kb_edge.rs).
    let snapshot = docs.join("hukou.md");
    let bad = zhengwu(&["kb", "import-snapshot", snapshot.to_str().unwrap(), "--store", s]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("is not empty"), "{bad:?}");
    let bad = zhengwu(&["kb", "import-snapshot", "/nonexistent/kb.snapshot", "--store", &format!("{s}-new")]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/kb.snapshot"), "{bad:?}");
    // Only this test's folders: the other test of this binary runs beside it.
    for dir in [&docs, &store] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The `rag` option of `/v1/chat/completions`: the served knowledge base answers (grounded, with
/// citations), refuses out of scope with hand-off, streams the same text, and bad options are
/// clear errors.
#[test]
fn chat_completions_with_the_rag_option_answer_from_the_knowledge_base() {
    let docs = tempfile_dir("rag-docs");
    let store = tempfile_dir("rag-store");
    write(&docs, "hukou.md", "---\ntitle: 新生儿落户\nregion: 全国\n---\n# 新生儿落户\n婴儿出生后一个月内，由监护人持出生医学证明到户口所在地派出所申报出生登记。\n");
    write(&docs, "gjj.md", "---\ntitle: 公积金租房提取\nregion: 示例市\n---\n# 公积金租房提取\n无房职工租房可以按月提取住房公积金，每月提取额不超过当月缴存额。\n");
    let (d, s) = (docs.to_str().unwrap(), store.to_str().unwrap());
    ok(&["kb", "ingest", d, "--store", s]);
    let server = Server::start_with_env(
        &["--chat-model", CHAT_MODEL, "--embedding-model", EMBED_MODEL],
        &[("ZHENGWU_KB_STORE", s), ("ZHENGWU_KB_DIR", d)],
        true,
    );
    let chat = |body: Value| {
        let resp = client().post(server.url("/v1/chat/completions")).json(&body).send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    let question = "孩子出生后多久内要去派出所申报出生登记？";
    let (status, text) = chat(json!({"messages": [{"role": "user", "content": question}], "rag": true, "max_tokens": 60}));
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["rag"]["kind"], "generated", "{v}");
    assert_eq!(v["rag"]["citations"][0]["doc_id"], "hukou.md", "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(!content.is_empty() && v["ai_content"]["ai_generated"] == true, "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{v}");

    // Streamed: the same (greedy) text, then the citations on the chunk with the finish reason.
    let (status, body) = chat(json!({"messages": [{"role": "user", "content": question}], "rag": true, "max_tokens": 60, "stream": true}));
    assert_eq!(status, 200, "{body}");
    let events = sse_data(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, content);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{last}");
    assert_eq!(last["rag"]["citations"][0]["doc_id"], "hukou.md", "{last}");
    // Both answers count in the server's token metrics, as plain completions do.
    let metrics = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    let counter = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| !l.starts_with('#') && l.contains(name)).unwrap_or_else(|| panic!("no {name}: {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let completion_tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens > 0, "{v}");
    assert_eq!(counter("llm_completion_tokens_total"), 2 * completion_tokens, "{metrics}");
    assert_eq!(counter("llm_prompt_tokens_total"), 2 * v["usage"]["prompt_tokens"].as_u64().unwrap(), "{metrics}");

    // Out of scope: the fixed refusal with hand-off, no generation; a follow-up in history.
    let (status, text) = chat(json!({"messages": [
        {"role": "user", "content": "红烧肉怎么做才好吃？"},
        {"role": "assistant", "content": "……"},
        {"role": "user", "content": "要放多少糖？"}
    ], "rag": {"filter": {"region": "示例市"}}}));
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["rag"]["kind"], "refusal", "{v}");
    assert_eq!(v["rag"]["handoff"], true);
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("转人工"), "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 0);

    // Bad options are errors that name the parameter.
    for (body, param) in [
        (json!({"messages": [{"role": "user", "content": "x"}], "rag": "yes"}), "rag"),
        (json!({"messages": [{"role": "user", "content": "x"}], "rag": {"filtre": {}}}), "rag"),
        (json!({"messages": [{"role": "user", "content": "x"}], "rag": {"filter": {"region": 5}}}), "rag.filter"),
        (json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "rag": true}), "messages"),
    ] {
        let (status, text) = chat(body);
        assert_eq!(status, 422, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    drop(server);
    for dir in [&docs, &store] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A fresh directory under the system temp dir (no extra dev-dependency for one test).
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("zhengwu-kb-cli-{}", std::process::id()));
    let p = root.join(name);
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}
