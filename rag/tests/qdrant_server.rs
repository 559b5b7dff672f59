//! The Qdrant server backend (`QdrantServerStore`, gRPC through `qdrant-client`):
//! - the shared store suite against an in-process gRPC server (qdrant-client's tonic service
//!   traits over qdrant-edge shards, `zhengwu_rag::grpc_test_server`), so every call goes through
//!   protobuf on a socket;
//! - the same answers as the embedded backend on a larger, generated collection;
//! - the suite against a real server when `QDRANT_URL` is set (gRPC URL, e.g.
//!   `http://localhost:6334`; `QDRANT_API_KEY` optional), otherwise skipped with a message;
//! - errors: unreachable server, wrong dimension, servers without weighted RRF;
//! - use from inside tokio runtimes (the server calls the store from async code).
//!
//! One test binary: every binary that links qdrant-edge is large.

use std::time::{SystemTime, UNIX_EPOCH};

use zhengwu_rag::edge::EdgeStore;
use zhengwu_rag::grpc_test_server::TestServer;
use zhengwu_rag::qdrant_server::{QdrantServerStore, ServerConfig};
use zhengwu_rag::store::{
    point_id, ChunkPayload, EntryKind, FusionWeights, KbFilter, Point, SparseVec, StoreQuery, VectorStore,
};

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

fn open(url: &str, collection: &str, dim: usize) -> QdrantServerStore {
    QdrantServerStore::open(ServerConfig::new(url, collection), dim).unwrap_or_else(|e| panic!("open {collection}: {e}"))
}

#[test]
fn store_suite_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server")).unwrap();
    let url = server.url();
    zhengwu_rag::store_suite::run(dir.path(), &|_| Box::new(open(&url, "suite", 4)) as Box<dyn VectorStore>);
    // The suite really went through the server: the collection is there, with its 3 points.
    let store = open(&url, "suite", 4);
    assert_eq!(store.count().unwrap(), 3);
    assert_eq!(store.server_version(), zhengwu_rag::grpc_test_server::API_VERSION);
}

#[test]
fn store_suite_on_a_real_server() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!("SKIPPED store_suite_on_a_real_server: set QDRANT_URL (gRPC, e.g. http://localhost:6334) to run the store suite against a real Qdrant server");
        return;
    };
    let mut config = ServerConfig::new(url, unique("zhengwu_suite"));
    config.api_key = std::env::var("QDRANT_API_KEY").ok();
    let dir = tempfile::tempdir().unwrap();
    let opened = |c: &ServerConfig| QdrantServerStore::open(c.clone(), 4).unwrap_or_else(|e| panic!("{e}"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        zhengwu_rag::store_suite::run(dir.path(), &|_| Box::new(opened(&config)) as Box<dyn VectorStore>);
    }));
    opened(&config).delete_collection().unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn unreachable_server_names_the_url() {
    // Port 1 on loopback: nothing listens there.
    let url = "http://127.0.0.1:1";
    let err = QdrantServerStore::open(ServerConfig::new(url, "kb"), 4).unwrap_err().to_string();
    assert!(err.contains(url), "{err}");
    assert!(err.contains("health check"), "{err}");
    let err = QdrantServerStore::open(ServerConfig::new("not a url", "kb"), 4).unwrap_err().to_string();
    assert!(err.contains("not a url"), "{err}");
}

#[test]
fn wrong_dimension_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).unwrap();
    drop(open(&server.url(), "dims", 4));
    let err = QdrantServerStore::open(ServerConfig::new(server.url(), "dims"), 8).unwrap_err().to_string();
    assert!(err.contains("dimension 4") && err.contains("gives 8"), "{err}");
    assert!(err.contains("`dims`") && err.contains(&server.url()), "{err}");
    // The right dimension opens fine.
    open(&server.url(), "dims", 4);
}

#[test]
fn old_servers_refuse_weights_instead_of_ignoring_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_version(dir.path(), "1.16.2").unwrap();
    let store = open(&server.url(), "old", 4);
    store.upsert(points(20, 4)).unwrap();
    let mut q = StoreQuery {
        dense: Some(vec![1.0, 0.0, 0.0, 0.0]),
        sparse: Some(SparseVec { indices: vec![1, 2], values: vec![1.0, 1.0] }),
        limit: 5,
        prefetch: 10,
        ..Default::default()
    };
    // Plain RRF with k works on 1.16.
    assert_eq!(store.query(&q).unwrap().len(), 5);
    q.weights = FusionWeights { dense: 2.0, sparse: 1.0, k: 60 };
    let err = store.query(&q).unwrap_err().to_string();
    assert!(err.contains("weighted RRF") && err.contains("1.16.2"), "{err}");
    // Before 1.16 not even k can be set: hybrid queries fail, single retrievers work.
    let server = TestServer::start_with_version(&dir.path().join("older"), "1.15.0").unwrap();
    let store = open(&server.url(), "older", 4);
    store.upsert(points(20, 4)).unwrap();
    q.weights = FusionWeights::default();
    let err = store.query(&q).unwrap_err().to_string();
    assert!(err.contains("explicit k"), "{err}");
    q.sparse = None;
    assert_eq!(store.query(&q).unwrap().len(), 5);
}

/// Deterministic pseudo-random points with all the filtered payload fields.
fn points(n: usize, dim: usize) -> Vec<Point> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let regions = ["示例市", "全国", "别的市"];
    (0..n)
        .map(|i| {
            let doc = format!("doc{:03}.md", i / 3);
            // Fine-grained values: no tied scores, whose order Qdrant leaves open.
            let dense: Vec<f32> = (0..dim).map(|_| (next() % 1_000_000) as f32 / 1e6 - 0.3).collect();
            let mut indices: Vec<u32> = (0..1 + next() % 5).map(|_| (next() % 40) as u32).collect();
            indices.sort_unstable();
            indices.dedup();
            let values = indices.iter().map(|_| 0.5 + (next() % 1_000_000) as f32 / 1e6).collect();
            let r = next();
            let payload = ChunkPayload {
                kind: if r % 7 == 0 { EntryKind::Faq } else { EntryKind::Doc },
                doc_id: doc.clone(),
                doc_hash: format!("h{}", i / 3),
                chunk_index: i % 3,
                chunk_count: 3,
                title: format!("标题 {doc}"),
                section: vec!["第一章".into()],
                start: 0,
                end: 10,
                text: format!("第{i}块"),
                agency: (r % 3 == 0).then(|| "人社局".to_string()),
                doc_number: None,
                region: (r % 4 != 3).then(|| regions[(r % 4) as usize % 3].to_string()),
                category: (r % 5 == 0).then(|| "社保".to_string()),
                source_url: None,
                effective: (r % 2 == 0).then_some(20200101 + (r % 5) as u32 * 10000),
                expiry: (r % 3 == 1).then_some(20230101 + (r % 4) as u32 * 10000),
                question: None,
                answer: None,
                department: None,
            };
            Point { id: point_id(&doc, i % 3), dense, sparse: SparseVec { indices, values }, payload }
        })
        .collect()
}

#[test]
fn same_answers_as_the_embedded_backend() {
    let dim = 8;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server")).unwrap();
    let remote = open(&server.url(), "same", dim);
    let edge = EdgeStore::open(&dir.path().join("edge"), dim).unwrap();
    let pts = points(300, dim);
    edge.upsert(pts.clone()).unwrap();
    remote.upsert(pts).unwrap();
    edge.optimize().unwrap();
    remote.optimize().unwrap();
    assert_eq!(remote.count().unwrap(), edge.count().unwrap());
    assert_eq!(remote.documents().unwrap(), edge.documents().unwrap());
    let key = |hits: Vec<zhengwu_rag::store::StoredHit>| hits.into_iter().map(|h| (h.id, h.score, h.payload)).collect::<Vec<_>>();
    assert_eq!(key(remote.doc_chunks("doc007.md").unwrap()), key(edge.doc_chunks("doc007.md").unwrap()));

    let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d);
    let filters = [
        KbFilter::default(),
        KbFilter { region: Some("示例市".into()), ..Default::default() },
        KbFilter { agency: Some("人社局".into()), valid_on: date(2024, 6, 1), ..Default::default() },
        KbFilter { category: Some("社保".into()), kind: Some(EntryKind::Doc), ..Default::default() },
        KbFilter { valid_on: date(2021, 1, 1), region: Some("别的市".into()), ..Default::default() },
    ];
    let weights = [
        FusionWeights::default(),
        FusionWeights { dense: 3.0, sparse: 1.0, k: 60 },
        FusionWeights { dense: 0.5, sparse: 2.0, k: 5 },
        FusionWeights { dense: 1.0, sparse: 1.0, k: 1 },
    ];
    let mut compared = 0;
    for (qi, filter) in filters.iter().enumerate() {
        for w in weights {
            let dense: Vec<f32> = (0..dim).map(|j| ((qi * 7 + j * 3) % 11) as f32 / 10.0 - 0.2).collect();
            let sparse = SparseVec { indices: vec![(qi * 3) as u32, 7, 20 + qi as u32], values: vec![1.0, 0.7, 1.3] };
            for (d, s) in [(true, false), (false, true), (true, true)] {
                let q = StoreQuery {
                    dense: d.then(|| dense.clone()),
                    sparse: s.then(|| sparse.clone()),
                    filter: filter.clone(),
                    limit: 12,
                    prefetch: 30,
                    weights: w,
                };
                let (a, b) = (key(remote.query(&q).unwrap()), key(edge.query(&q).unwrap()));
                assert_eq!(a.len(), b.len(), "query {qi} {w:?} dense {d} sparse {s}");
                for (x, y) in a.iter().zip(&b) {
                    assert_eq!(x.0, y.0, "query {qi} {w:?} dense {d} sparse {s}: {a:?}\n{b:?}");
                    assert!((x.1 - y.1).abs() < 1e-6, "scores {} vs {}", x.1, y.1);
                    assert_eq!(x.2, y.2);
                }
                compared += a.len();
            }
        }
    }
    assert!(compared > 300, "compared {compared} hits");
    assert_eq!(remote.delete_doc("doc010.md").unwrap(), edge.delete_doc("doc010.md").unwrap());
    assert_eq!(remote.count().unwrap(), edge.count().unwrap());
}

#[test]
fn works_inside_tokio_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).unwrap();
    let url = server.url();
    let q = StoreQuery { dense: Some(vec![1.0, 0.0, 0.0, 0.0]), limit: 3, prefetch: 10, ..Default::default() };
    // A multi-thread runtime (the HTTP server): open, write, query and drop inside a task.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (u, q2) = (url.clone(), q.clone());
    let task = rt.spawn(async move {
        let store = open(&u, "rt", 4);
        store.upsert(points(10, 4)).unwrap();
        let n = store.query(&q2).unwrap().len();
        drop(store);
        n
    });
    let n = rt.block_on(task).unwrap();
    assert_eq!(n, 3);
    // Directly in block_on of a multi-thread runtime (not on a worker).
    let n = rt.block_on(async { open(&url, "rt", 4).query(&q).unwrap().len() });
    assert_eq!(n, 3);
    drop(rt);
    // A current-thread runtime (#[tokio::test] style).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let n = rt.block_on(async {
        let store = open(&url, "rt", 4);
        tokio::task::yield_now().await;
        store.query(&q).unwrap().len()
    });
    assert_eq!(n, 3);
}

#[test]
fn unimplemented_rpcs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("s")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = qdrant_client::Qdrant::from_url(&server.url()).skip_compatibility_check().build().unwrap();
    let err = rt
        .block_on(client.list_aliases())
        .expect_err("aliases are not implemented");
    assert!(err.to_string().contains("does not implement"), "{err}");
}

#[test]
fn export_embedded_store_to_server() {
    let dir = tempfile::tempdir().unwrap();
    let edge_dir = dir.path().join("edge");
    let edge = EdgeStore::open(&edge_dir, 4).unwrap();
    edge.upsert(points(700, 4)).unwrap();
    edge.flush().unwrap();
    let (docs, n) = (edge.documents().unwrap(), edge.count().unwrap());
    let q = StoreQuery {
        dense: Some(vec![0.2, 0.5, 0.1, 0.9]),
        sparse: Some(SparseVec { indices: vec![3, 9], values: vec![1.0, 0.4] }),
        limit: 10,
        prefetch: 40,
        ..Default::default()
    };
    let expect: Vec<u64> = edge.query(&q).unwrap().iter().map(|h| h.id).collect();
    drop(edge);
    let server = TestServer::start(&dir.path().join("server")).unwrap();
    let mut seen = Vec::new();
    let copied = zhengwu_rag::qdrant_server::export_edge_dir(&edge_dir, ServerConfig::new(server.url(), "exported"), &mut |c| {
        seen.push(c)
    })
    .unwrap();
    assert_eq!(copied, n);
    assert!(seen.len() >= 3 && *seen.last().unwrap() == n, "{seen:?}");
    let remote = open(&server.url(), "exported", 4);
    assert_eq!(remote.count().unwrap(), n);
    assert_eq!(remote.documents().unwrap(), docs);
    assert_eq!(remote.query(&q).unwrap().iter().map(|h| h.id).collect::<Vec<_>>(), expect);
}
