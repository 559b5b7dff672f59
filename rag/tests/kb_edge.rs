//! The knowledge base's storage and ingest paths against real parts (qdrant-edge on disk,
//! the starter knowledge base's files), with the deterministic fakes of `zhengwu-core` in place
//! of the models: a hashing embedder and a scripted generator. Nothing here needs model files;
//! what depends on what a real model says lives in the root crate's `tests/rag_real.rs`.
//!
//! Everything lives in this one test binary because qdrant-edge makes every binary large.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use zhengwu_core::testing::{FakeGenerator, HashEmbedder};
use zhengwu_core::{Embedder, Generator};
use zhengwu_rag::answer::{AnswerConfig, AnswerKind, Answerer, AskRequest};
use zhengwu_rag::edge::EdgeStore;
use zhengwu_rag::kb::{IngestOptions, KnowledgeBase, SearchRequest};
use zhengwu_rag::store::{KbFilter, VectorStore};

fn e5() -> Arc<dyn Embedder> {
    static M: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    M.get_or_init(|| Arc::new(HashEmbedder::default())).clone()
}

fn chat() -> Arc<dyn Generator> {
    Arc::new(FakeGenerator::constant("无法回答"))
}

fn starter_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../knowledge-base/policy")
}

fn open_kb(store_dir: &Path) -> KnowledgeBase {
    let store = EdgeStore::open(store_dir, e5().dim()).expect("open store");
    KnowledgeBase::new(Arc::new(store), e5()).expect("kb")
}

/// The starter knowledge base, ingested once (hashing embedder) into a temporary store shared
/// by the tests.
fn starter() -> Arc<KnowledgeBase> {
    static KB: OnceLock<(tempfile::TempDir, Arc<KnowledgeBase>)> = OnceLock::new();
    KB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let kb = open_kb(dir.path());
        let report = kb.ingest_dir(&starter_dir(), &IngestOptions::default(), &mut |_| {}).expect("ingest starter kb");
        assert!(report.skipped.is_empty(), "starter kb has unreadable files: {:?}", report.skipped);
        assert!(report.added.len() >= 40, "starter kb has {} entries", report.added.len());
        (dir, Arc::new(kb))
    })
    .1
    .clone()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn doc_ids(hits: &[zhengwu_rag::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.chunk.doc_id.clone()).collect()
}

/// The starter knowledge base's message understanding (word lists, entities, kind model).
fn lexicon() -> Arc<zhengwu_rag::understand::Lexicon> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../knowledge-base");
    Arc::new(zhengwu_rag::understand::Lexicon::load(&dir).expect("knowledge-base/understanding.toml"))
}

#[test]
fn edge_store_passes_the_shared_vector_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    zhengwu_rag::store_suite::run(dir.path(), &|p| Box::new(EdgeStore::open(p, 4).unwrap()) as Box<dyn VectorStore>);
    // Reopening with another dimension is refused with a clear error.
    let err = EdgeStore::open(dir.path(), 8).unwrap_err().to_string();
    assert!(err.contains("dimension"), "{err}");
}

/// A crash (the process aborts: no destructor flushes) loses no write the store acknowledged:
/// the test runs itself as a child that writes and aborts, then reopens the directory.
#[test]
fn acknowledged_writes_survive_a_crash() {
    use zhengwu_rag::store::{point_id, ChunkPayload, Point, SparseVec};
    const CHILD: &str = "ZHENGWU_TEST_CRASH_STORE";
    let point = |doc: &str, i: usize| Point {
        id: point_id(doc, i),
        dense: (0..4).map(|k| if k == i % 4 { 1.0 } else { 0.1 }).collect(),
        sparse: SparseVec { indices: vec![i as u32 + 1], values: vec![1.0] },
        payload: ChunkPayload { chunk_index: i, chunk_count: 3, ..ChunkPayload::plain(doc, &format!("{doc} 第{i}段")) },
    };
    if let Ok(dir) = std::env::var(CHILD) {
        let store = EdgeStore::open(Path::new(&dir), 4).unwrap();
        for doc in ["a.md", "b.md", "c.md"] {
            store.upsert((0..3).map(|i| point(doc, i)).collect()).unwrap();
        }
        assert_eq!(store.delete_doc("b.md").unwrap(), 3);
        eprintln!("child: 9 points written, 3 deleted; aborting");
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "acknowledged_writes_survive_a_crash", "--test-threads", "1", "--nocapture"])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("aborting"), "the child must write, then crash: {stderr}");
    let store = EdgeStore::open(dir.path(), 4).unwrap();
    assert_eq!(store.count().unwrap(), 6);
    let docs: Vec<String> = store.documents().unwrap().into_iter().map(|d| d.doc_id).collect();
    assert_eq!(docs, ["a.md", "c.md"]);
    assert_eq!(store.doc_chunks("c.md").unwrap().len(), 3);
}

/// A shard snapshot archive in Qdrant's layout, made from a flushed embedded store: each
/// segment as `segments/<uuid>.tar` holding `snapshot/files/<segment files>` (the server's
/// regular snapshot format), beside the shard's WAL and a server-side config file.
fn shard_snapshot_of(store_dir: &Path, out: &Path) {
    let mut top = tar::Builder::new(std::fs::File::create(out).unwrap());
    for e in std::fs::read_dir(store_dir.join("segments")).unwrap() {
        let e = e.unwrap();
        if !e.path().is_dir() {
            continue;
        }
        let mut inner = tar::Builder::new(Vec::new());
        inner.append_dir_all("snapshot/files", e.path()).unwrap();
        let bytes = inner.into_inner().unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        top.append_data(&mut h, format!("segments/{}.tar", e.file_name().to_string_lossy()), bytes.as_slice()).unwrap();
    }
    top.append_dir_all("wal", store_dir.join("wal")).unwrap();
    let config = br#"{"type":"Local"}"#;
    let mut h = tar::Header::new_gnu();
    h.set_size(config.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    top.append_data(&mut h, "shard_config.json", &config[..]).unwrap();
    top.finish().unwrap();
}

/// `kb import-snapshot`: a shard snapshot becomes the embedded store, with the same points,
/// payloads, indexes and search results; bad archives, other layouts and non-empty targets are
/// refused by name and leave nothing behind.
#[test]
fn a_shard_snapshot_restores_as_the_embedded_store() {
    use zhengwu_rag::store::{point_id, ChunkPayload, FusionWeights, Point, SparseVec, StoreQuery};
    let point = |doc: &str, region: &str, i: usize| Point {
        id: point_id(doc, i),
        dense: (0..4).map(|k| if k == i % 4 { 1.0 } else { 0.1 * (k + 1) as f32 }).collect(),
        sparse: SparseVec { indices: vec![i as u32 + 1, 40], values: vec![1.0, 0.5] },
        payload: ChunkPayload {
            chunk_index: i,
            chunk_count: 4,
            region: Some(region.to_string()),
            ..ChunkPayload::plain(doc, &format!("{doc} 第{i}段"))
        },
    };
    let query = |region: Option<&str>| StoreQuery {
        dense: Some(vec![0.9, 0.2, 0.1, 0.3]),
        sparse: Some(SparseVec { indices: vec![1, 40], values: vec![1.0, 1.0] }),
        filter: KbFilter { region: region.map(String::from), ..Default::default() },
        limit: 5,
        prefetch: 10,
        weights: FusionWeights::default(),
    };
    let ids = |store: &EdgeStore, region: Option<&str>| -> Vec<u64> {
        store.query(&query(region)).unwrap().into_iter().map(|h| h.id).collect()
    };
    let work = tempfile::tempdir().unwrap();
    let (src, snap) = (work.path().join("src"), work.path().join("kb.snapshot"));
    let before = {
        let store = EdgeStore::open(&src, 4).unwrap();
        for (doc, region) in [("a.md", "广州"), ("b.md", "深圳"), ("c.md", "广州")] {
            store.upsert((0..4).map(|i| point(doc, region, i)).collect()).unwrap();
        }
        store.optimize().unwrap();
        (ids(&store, None), ids(&store, Some("深圳")), store.documents().unwrap())
    };
    assert_eq!(before.1.len(), 4, "the region filter keeps b.md only: {:?}", before.1);
    shard_snapshot_of(&src, &snap);

    let target = work.path().join("restored");
    let r = EdgeStore::import_snapshot(&snap, &target).unwrap();
    assert_eq!((r.points, r.dim), (12, 4), "{r:?}");
    assert!(r.segments >= 1);
    assert!(!work.path().join(".restored.importing").exists(), "staging directory left behind");
    let restored = EdgeStore::open(&target, 4).unwrap();
    assert_eq!(restored.count().unwrap(), 12);
    assert_eq!(restored.documents().unwrap(), before.2);
    assert_eq!(ids(&restored, None), before.0);
    assert_eq!(ids(&restored, Some("深圳")), before.1);
    // The restored store takes writes, and a second import into it is refused.
    assert_eq!(restored.delete_doc("b.md").unwrap(), 4);
    let err = EdgeStore::import_snapshot(&snap, &target).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(restored.count().unwrap(), 8);
    drop(restored);

    // Not a tar archive: refused, nothing created.
    let bad = work.path().join("bad.snapshot");
    std::fs::write(&bad, b"this is not a tar archive at all, just some bytes").unwrap();
    let fresh = work.path().join("fresh");
    let err = EdgeStore::import_snapshot(&bad, &fresh).unwrap_err().to_string();
    assert!(err.contains("bad.snapshot"), "{err}");
    assert!(!fresh.exists() && !work.path().join(".fresh.importing").exists());
    // A collection of another layout (no `dense` vector): refused by name.
    let other = work.path().join("other");
    {
        let config = qdrant_edge::EdgeConfigBuilder::new()
            .vector("image", qdrant_edge::EdgeVectorParamsBuilder::new(4, qdrant_edge::Distance::Dot).build())
            .build();
        std::fs::create_dir_all(&other).unwrap();
        let shard = qdrant_edge::EdgeShard::new(&other, config).unwrap();
        shard.flush();
    }
    let other_snap = work.path().join("other.snapshot");
    shard_snapshot_of(&other, &other_snap);
    let err = EdgeStore::import_snapshot(&other_snap, &fresh).unwrap_err().to_string();
    assert!(err.contains("no dense vector"), "{err}");
    assert!(!fresh.exists() && !work.path().join(".fresh.importing").exists());
}

#[test]
fn ingest_then_restart_then_search_finds_the_same_chunks() {
    let docs = tempfile::tempdir().unwrap();
    for name in ["juzhuzheng-shenling.md", "shenfenzheng-buling.md", "yibao-yidi-beian.md"] {
        std::fs::copy(starter_dir().join("docs").join(name), docs.path().join(name)).unwrap();
    }
    let store = tempfile::tempdir().unwrap();
    let queries = ["身份证丢了怎么补办", "异地就医怎么备案", "居住证申领条件"];
    let before: Vec<Vec<(u64, String)>> = {
        let kb = open_kb(store.path());
        let r = kb.ingest_dir(docs.path(), &IngestOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(r.added.len(), 3);
        assert!(r.chunks_written >= 6, "{r:?}");
        queries
            .iter()
            .map(|q| kb.search(&SearchRequest::new(*q)).unwrap().into_iter().map(|h| (h.id, h.chunk.text)).collect())
            .collect()
    };
    // The first hit is from the right document.
    assert!(before[0][0].1.contains("身份证"), "{:?}", before[0][0]);
    // "Restart": everything dropped, the store reopened from its directory.
    let kb = open_kb(store.path());
    let after: Vec<Vec<(u64, String)>> = queries
        .iter()
        .map(|q| kb.search(&SearchRequest::new(*q)).unwrap().into_iter().map(|h| (h.id, h.chunk.text)).collect())
        .collect();
    assert_eq!(before, after);
    // Re-ingesting unchanged files writes nothing.
    let r = kb.ingest_dir(docs.path(), &IngestOptions::default(), &mut |_| {}).unwrap();
    assert_eq!((r.unchanged, r.chunks_written), (3, 0), "{r:?}");
}

#[test]
fn incremental_reingest_changes_only_what_changed() {
    let docs = tempfile::tempdir().unwrap();
    write(docs.path(), "a.md", "---\ntitle: 甲\n---\n# 甲\n办理居住证需要身份证。\n");
    write(docs.path(), "b.md", "---\ntitle: 乙\n---\n# 乙\n公积金可以租房提取。\n");
    write(docs.path(), "sub/c.txt", "驾驶证到期前九十日内换证。\n");
    let store = tempfile::tempdir().unwrap();
    let kb = open_kb(store.path());
    let r1 = kb.ingest_dir(docs.path(), &IngestOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(r1.added, vec!["a.md", "b.md", "sub/c.txt"]);
    let n1 = kb.store().count().unwrap();

    // Change a, remove b, add d; c untouched.
    write(docs.path(), "a.md", "---\ntitle: 甲\n---\n# 甲\n办理居住证需要身份证和居住证明。\n\n## 时限\n十五日内办结。\n");
    std::fs::remove_file(docs.path().join("b.md")).unwrap();
    write(docs.path(), "d.md", "# 丁\n营业执照免费办理。\n");
    let mut seen = Vec::new();
    let r2 = kb
        .ingest_dir(docs.path(), &IngestOptions::default(), &mut |p| {
            if let zhengwu_rag::kb::Progress::File { path, .. } = p {
                seen.push(path.to_string())
            }
        })
        .unwrap();
    assert_eq!(seen, vec!["a.md", "d.md", "sub/c.txt"], "progress reports every file");
    assert_eq!(r2.updated, vec!["a.md"]);
    assert_eq!(r2.added, vec!["d.md"]);
    assert_eq!(r2.deleted, vec!["b.md"]);
    assert_eq!(r2.unchanged, 1);
    let docs_now = kb.documents().unwrap();
    let ids: Vec<&str> = docs_now.iter().map(|d| d.doc_id.as_str()).collect();
    assert_eq!(ids, vec!["a.md", "d.md", "sub/c.txt"]);
    // Nothing duplicated: points = sum of chunks per document, and a's old chunk is gone.
    assert_eq!(kb.store().count().unwrap(), docs_now.iter().map(|d| d.chunks).sum::<usize>());
    assert!(kb.store().count().unwrap() != n1 || docs_now.iter().any(|d| d.doc_id == "a.md" && d.chunks == 2));
    let a = kb.store().doc_chunks("a.md").unwrap();
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(a.iter().any(|h| h.chunk_text_contains("十五日内办结")));
    let hits = kb.search(&SearchRequest::new("公积金租房提取")).unwrap();
    assert!(!doc_ids(&hits).contains(&"b.md".to_string()), "deleted document still found");

    // Delete via the API.
    assert!(kb.delete("d.md").unwrap() >= 1);
    assert_eq!(kb.delete("d.md").unwrap(), 0);
}

#[test]
fn the_answer_path_reads_the_text_that_follows_each_source() {
    // One section of running text, long enough for several overlapping chunks.
    let body: String = (1..=24).map(|k| format!("申请人办理第{k}类事项时，应当提交相应的证明材料并在{k}个工作日内补齐。")).collect();
    let docs = tempfile::tempdir().unwrap();
    write(docs.path(), "long.md", &format!("# 办理须知\n{body}\n"));
    write(docs.path(), "short.md", "# 短\n营业执照免费办理。\n");
    let store = tempfile::tempdir().unwrap();
    let kb = Arc::new(open_kb(store.path()));
    kb.ingest_dir(docs.path(), &IngestOptions::default(), &mut |_| {}).unwrap();
    let chunks: Vec<_> = kb.store().doc_chunks("long.md").unwrap().into_iter().map(|h| h.payload).collect();
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    let a = Answerer { kb: kb.clone(), generator: chat(), config: AnswerConfig::default(), lexicon: lexicon() };
    let hits = kb.search(&SearchRequest { limit: 20, ..SearchRequest::new("办理事项证明材料") }).unwrap();
    let following = a.following(&hits).unwrap();
    assert_eq!(following.len(), hits.len());
    let doc: Vec<char> = kb.store().doc_chunks("long.md").unwrap().iter().fold(Vec::new(), |mut text, h| {
        // The document text rebuilt from its chunks' offsets.
        let c = &h.payload;
        text.resize(text.len().max(c.end), ' ');
        for (i, ch) in c.text.chars().enumerate() {
            text[c.start + i] = ch;
        }
        text
    });
    for (h, f) in hits.iter().zip(&following) {
        let c = &h.chunk;
        if c.doc_id == "short.md" || c.chunk_index + 1 == c.chunk_count {
            assert_eq!(f, "", "nothing follows {}#{}", c.doc_id, c.chunk_index);
            continue;
        }
        let next = &chunks[c.chunk_index + 1];
        assert!(!f.is_empty(), "chunk {} has a follower", c.chunk_index);
        assert_eq!(f.chars().count(), next.end - c.end);
        let want: String = doc[c.end..next.end].iter().collect();
        assert_eq!(f, &want, "chunk {}: the document text after it", c.chunk_index);
    }
    assert!(hits.iter().any(|h| h.chunk.doc_id == "long.md" && h.chunk.chunk_index + 1 < h.chunk.chunk_count));
}

trait TextOf {
    fn chunk_text_contains(&self, s: &str) -> bool;
}
impl TextOf for zhengwu_rag::store::StoredHit {
    fn chunk_text_contains(&self, s: &str) -> bool {
        self.payload.text.contains(s)
    }
}

#[test]
fn unreadable_files_are_reported_by_name_and_the_rest_ingests() {
    let docs = tempfile::tempdir().unwrap();
    write(docs.path(), "good.md", "# 好\n不动产登记信息查询不收费。\n");
    write(docs.path(), "scan.pdf", "%PDF-1.4 binary");
    write(docs.path(), "notes.rtf", "{\\rtf1 hello}");
    write(docs.path(), "broken.docx", "not a zip");
    write(docs.path(), "bad-meta.md", "---\neffective: 2024-02-30\n---\n正文。\n");
    std::fs::write(docs.path().join("latin1.txt"), [0xc4u8, 0xe3, 0xba, 0xc3, 0xff]).unwrap();
    write(docs.path(), "bad.jsonl", "{\"question\": \"只有问题\"}\n");
    let store = tempfile::tempdir().unwrap();
    let kb = open_kb(store.path());
    let r = kb.ingest_dir(docs.path(), &IngestOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(r.added, vec!["good.md"]);
    let skipped: Vec<&str> = r.skipped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(skipped, vec!["bad-meta.md", "bad.jsonl", "broken.docx", "latin1.txt", "notes.rtf", "scan.pdf"]);
    assert!(r.summary().contains("skipped notes.rtf: unsupported file type .rtf"), "{}", r.summary());
    assert!(r.summary().contains("skipped scan.pdf: not a readable PDF"), "{}", r.summary());
}


// ---- The answer pipeline with the fakes: what the pipeline does with what a model says. ----


/// The first sentence of source `[1]` in the prompt, the way a faithful model quotes it.
fn first_source_sentence(messages: &[zhengwu_core::ChatMessage]) -> String {
    let user = &messages.last().expect("a user message").content;
    let start = user.find("资料[1]").expect("the prompt numbers its sources");
    let body = &user[start..];
    let body = &body[body.find('：').map(|i| i + '：'.len_utf8()).unwrap_or(0)..];
    let end = body.find('。').map(|i| i + '。'.len_utf8()).unwrap_or(body.len());
    body[..end].trim().to_string()
}

fn answerer_with(generator: Arc<FakeGenerator>) -> Answerer {
    // The hashing embedder's cosines are not e5's: the dense gate is off, the lexical rules
    // (entities, aspects, coverage) decide, as they do for e5.
    let config = AnswerConfig { relevance_threshold: 0.0, faq_threshold: 2.0, ..AnswerConfig::default() };
    Answerer { kb: starter(), generator, config, lexicon: lexicon() }
}

fn ask_fake(a: &Answerer, q: &str) -> zhengwu_rag::answer::Answer {
    a.ask_blocking(&AskRequest { question: q.into(), filter: KbFilter::default(), stream: false, max_tokens: Some(200), history: Vec::new() })
        .unwrap()
}

#[test]
fn a_quoted_answer_is_cited_and_an_invented_rate_is_dropped_with_fakes() {
    let g = Arc::new(FakeGenerator::new(|m| format!("{}[1]此项业务另收手续费百分之三十七[1]。", first_source_sentence(m))));
    let a = answerer_with(g.clone());
    let ans = ask_fake(&a, "办居住证要带哪些材料");
    assert_eq!(ans.kind, AnswerKind::Generated, "{ans:?}");
    assert_eq!(g.requests().len(), 1, "one generation");
    assert!(ans.citations.iter().any(|c| c.doc_id.contains("juzhuzheng")), "{:?}", ans.citations);
    // The invented fee is in no source: the grounding check drops its sentence.
    assert!(!ans.answer.contains("三十七") && !ans.answer.contains("37"), "{}", ans.answer);
    let grounding = ans.grounding.as_ref().expect("grounding report");
    assert!(!grounding.dropped.is_empty(), "{grounding:?}");
    // The prompt carried the sources as data, and the question.
    let prompt = &g.requests()[0].messages;
    assert!(prompt.last().unwrap().content.contains("办居住证要带哪些材料"));
}

#[test]
fn a_model_that_cannot_answer_gives_a_refusal_with_hand_off_with_fakes() {
    let g = Arc::new(FakeGenerator::constant("无法回答"));
    let ans = ask_fake(&answerer_with(g.clone()), "办居住证要带哪些材料");
    assert_eq!(ans.kind, AnswerKind::Refusal, "{ans:?}");
    assert!(ans.handoff);
    assert_eq!(g.requests().len(), 1);
}

#[test]
fn requests_and_small_talk_never_reach_the_model_with_fakes() {
    let g = Arc::new(FakeGenerator::constant("不该被调用"));
    let a = answerer_with(g.clone());
    assert_eq!(ask_fake(&a, "我家楼下的路灯坏了三天了，晚上黑漆漆的，麻烦派人来修一下").kind, AnswerKind::ServiceRequest);
    assert_eq!(ask_fake(&a, "谢谢你，再见").kind, AnswerKind::SmallTalk);
    assert!(g.requests().is_empty(), "no generation for a request or small talk");
}

/// `/api/ask` routes over the starter 居住证 document with the hashing embedder and `g`, once
/// the start-up ingest has finished.
async fn fake_app(g: Arc<dyn Generator>) -> (axum::Router, tempfile::TempDir, tempfile::TempDir) {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let docs = tempfile::tempdir().unwrap();
    std::fs::copy(starter_dir().join("docs/juzhuzheng-shenling.md"), docs.path().join("juzhuzheng-shenling.md")).unwrap();
    let store = tempfile::tempdir().unwrap();
    let config = zhengwu_rag::http::RagConfig {
        auto_ingest: true,
        answer: AnswerConfig { relevance_threshold: 0.0, faq_threshold: 2.0, ..AnswerConfig::default() },
        lexicon_dir: Some(starter_dir().join("..")),
        ..zhengwu_rag::http::RagConfig::new(docs.path().to_path_buf(), store.path().to_path_buf())
    };
    let e = e5();
    let app = zhengwu_rag::http::routes(config, move || Some(e.clone()), move || Some(g.clone()));
    for _ in 0..300 {
        let r = app.clone().oneshot(Request::get("/api/kb/status").body(Body::empty()).unwrap()).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap()).unwrap();
        if !v["last_ingest"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (app, docs, store)
}

#[test]
fn a_streamed_answer_shows_its_sources_before_the_model_speaks_with_fakes() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;
        let g: Arc<dyn Generator> = Arc::new(FakeGenerator::new(|m| format!("{}[1]", first_source_sentence(m))));
        let (app, _docs, _store) = fake_app(g).await;
        let body = serde_json::json!({"question": "办居住证要带哪些材料", "stream": true});
        let r = app
            .clone()
            .oneshot(Request::post("/api/ask").header("content-type", "application/json").body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let text = String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 22).await.unwrap().to_vec()).unwrap();
        let events: Vec<serde_json::Value> = text.lines().filter_map(|l| l.strip_prefix("data:")).filter_map(|d| serde_json::from_str(d.trim()).ok()).collect();
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
        assert_eq!(types.first(), Some(&"sources"), "{types:?}");
        assert!(types.iter().position(|t| *t == "delta") > Some(0), "{types:?}");
        assert_eq!(&types[types.len() - 2..], ["citations", "done"]);
        let early = events[0]["citations"].as_array().unwrap();
        assert!(!early.is_empty() && early[0]["n"] == 1 && early.iter().all(|c| c["doc_id"].as_str().unwrap().contains("juzhuzheng")), "{early:?}");
        // The final citations are among the sources shown early.
        let last = &events[types.len() - 2];
        for c in last["citations"].as_array().unwrap() {
            assert!(early.iter().any(|e| e["doc_id"] == c["doc_id"] && e["start"] == c["start"]), "{c}");
        }
        // The store flushes when the app goes: before its folder does.
        drop(app);
    });
}

#[test]
fn http_ask_answers_and_maps_model_errors_with_fakes() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;
        // A model with a context too small for any grounded prompt: the engine's error must
        // reach the citizen as the status of its kind (400 context_length_exceeded), not a 500.
        let (app, _docs, _store) = fake_app(Arc::new(FakeGenerator::echo().with_context_length(64))).await;
        let post = |v: serde_json::Value| {
            Request::post("/api/ask").header("content-type", "application/json").body(Body::from(v.to_string())).unwrap()
        };
        let r = app.clone().oneshot(post(serde_json::json!({"question": "办居住证要带哪些材料"}))).await.unwrap();
        let status = r.status().as_u16();
        let v: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap()).unwrap();
        assert_eq!(status, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap_or("").contains("tokens"), "{v}");
        // A body of the wrong shape is 422, as everywhere.
        let r = app.clone().oneshot(post(serde_json::json!({"question": 5}))).await.unwrap();
        assert_eq!(r.status().as_u16(), 422);
        // The store flushes when the app goes: before its folder does.
        drop(app);
    });
}
