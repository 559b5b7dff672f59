//! `zhengwu kb ingest|list|search|delete` end to end: the real binary, the real e5 model (from
//! the models cache) and a qdrant-edge store in a temporary directory.

use std::path::Path;
use std::process::{Command, Output};

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
    let _ = std::fs::remove_dir_all(docs.parent().unwrap());
}

/// A fresh directory under the system temp dir (no extra dev-dependency for one test).
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("zhengwu-kb-cli-{}", std::process::id()));
    let p = root.join(name);
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}
