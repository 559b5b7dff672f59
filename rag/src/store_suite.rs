//! The one behaviour suite every [`VectorStore`] backend must pass (called from each backend's
//! integration test with a factory that opens the backend on a directory / collection).
//! Vectors are small and hand-made so expected rankings are known exactly.

use std::path::Path;

use chrono::NaiveDate;

use crate::store::{
    point_id, ChunkPayload, EntryKind, KbFilter, Point, SparseVec, StoreQuery, VectorStore, RRF_K,
};

fn payload(doc: &str, i: usize, n: usize, text: &str) -> ChunkPayload {
    ChunkPayload {
        chunk_index: i,
        chunk_count: n,
        title: format!("title {doc}"),
        section: vec!["一、总则".into()],
        start: i * 10,
        end: i * 10 + text.chars().count(),
        ..ChunkPayload::plain(doc, text)
    }
}

fn sv(pairs: &[(u32, f32)]) -> SparseVec {
    SparseVec { indices: pairs.iter().map(|p| p.0).collect(), values: pairs.iter().map(|p| p.1).collect() }
}

fn unit(v: [f32; 4]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// Five points in three documents; `c.md`'s two chunks have identical dense vectors (a tie).
fn fixture() -> Vec<Point> {
    let mut pts = Vec::new();
    let mut add = |doc: &str, i: usize, n: usize, dense: [f32; 4], sparse: &[(u32, f32)], f: &dyn Fn(&mut ChunkPayload)| {
        let mut p = payload(doc, i, n, &format!("{doc} chunk {i}"));
        f(&mut p);
        pts.push(Point { id: point_id(doc, i), dense: unit(dense), sparse: sv(sparse), payload: p });
    };
    add("a.md", 0, 2, [1.0, 0.0, 0.0, 0.0], &[(1, 1.0), (2, 1.0)], &|p| p.region = Some("示例市".into()));
    add("a.md", 1, 2, [0.9, 0.1, 0.0, 0.0], &[(2, 1.0)], &|p| p.region = Some("示例市".into()));
    add("b.md", 0, 1, [0.0, 1.0, 0.0, 0.0], &[(3, 1.0)], &|p| {
        p.region = Some("全国".into());
        p.expiry = Some(20201231);
        p.effective = Some(20200101);
    });
    add("c.md", 0, 2, [0.0, 0.0, 1.0, 0.0], &[(1, 1.5), (4, 1.0)], &|p| p.region = Some("别的市".into()));
    add("c.md", 1, 2, [0.0, 0.0, 1.0, 0.0], &[(5, 1.0)], &|p| {
        p.region = Some("别的市".into());
        p.kind = EntryKind::Faq;
    });
    pts
}

fn q(dense: Option<[f32; 4]>, sparse: Option<&[(u32, f32)]>, filter: KbFilter, limit: usize) -> StoreQuery {
    StoreQuery { dense: dense.map(unit), sparse: sparse.map(sv), filter, limit, prefetch: 10, weights: Default::default() }
}

fn docs_of(hits: &[crate::store::StoredHit]) -> Vec<String> {
    hits.iter().map(|h| format!("{}#{}", h.payload.doc_id, h.payload.chunk_index)).collect()
}

/// Run the suite. `open` opens (or reopens) the backend stored under `dir`.
pub fn run(dir: &Path, open: &dyn Fn(&Path) -> Box<dyn VectorStore>) {
    let store = open(dir);
    assert_eq!(store.count().unwrap(), 0, "fresh store is empty");
    store.upsert(fixture()).unwrap();
    store.optimize().unwrap();
    assert_eq!(store.count().unwrap(), 5);

    // Documents aggregate their chunks.
    let docs = store.documents().unwrap();
    let summary: Vec<(String, usize)> = docs.iter().map(|d| (d.doc_id.clone(), d.chunks)).collect();
    assert_eq!(summary, vec![("a.md".into(), 2), ("b.md".into(), 1), ("c.md".into(), 2)]);
    assert_eq!(docs[0].doc_hash, "hash-a.md");

    // Dense: nearest first; the exact tie (c#0 and c#1 share a vector) is ordered by id.
    let hits = store.query(&q(Some([0.0, 0.0, 1.0, 0.0]), None, KbFilter::default(), 3)).unwrap();
    assert_eq!(hits.len(), 3);
    let (x, y) = (point_id("c.md", 0), point_id("c.md", 1));
    assert_eq!(hits[0].id, x.min(y), "ties by id ascending");
    assert_eq!(hits[1].id, x.max(y));
    assert!((hits[0].score - 1.0).abs() < 1e-4, "cosine of identical vectors: {}", hits[0].score);
    let hits = store.query(&q(Some([1.0, 0.0, 0.0, 0.0]), None, KbFilter::default(), 2)).unwrap();
    assert_eq!(docs_of(&hits), vec!["a.md#0", "a.md#1"]);

    // Sparse: only points sharing a term are returned.
    let hits = store.query(&q(None, Some(&[(1, 1.0)]), KbFilter::default(), 10)).unwrap();
    let mut got = docs_of(&hits);
    got.sort();
    assert_eq!(got, vec!["a.md#0", "c.md#0"]);
    assert!(store.query(&q(None, Some(&[]), KbFilter::default(), 10)).unwrap().is_empty(), "empty sparse query");

    // Hybrid: RRF with k = RRF_K: a#0 is first in both lists → 2 / RRF_K.
    let hits = store.query(&q(Some([1.0, 0.0, 0.0, 0.0]), Some(&[(1, 1.0), (2, 1.0)]), KbFilter::default(), 5)).unwrap();
    assert_eq!(docs_of(&hits)[0], "a.md#0");
    let expect = 2.0 / RRF_K as f32;
    assert!((hits[0].score - expect).abs() < 1e-6, "rrf score {} != {expect}", hits[0].score);
    for w in hits.windows(2) {
        assert!(w[0].score > w[1].score || (w[0].score == w[1].score && w[0].id < w[1].id), "order by (score, id)");
    }

    // Weighted fusion: c.md leads the dense list, a.md the sparse one; the heavier retriever wins.
    for (weights, lead) in [((3.0, 1.0), "c.md"), ((1.0, 3.0), "a.md")] {
        // One candidate per retriever, so each point is ranked by one retriever only.
        let mut query = q(Some([0.0, 0.0, 1.0, 0.0]), Some(&[(2, 1.0)]), KbFilter::default(), 1);
        query.prefetch = 1;
        query.weights = crate::store::FusionWeights { dense: weights.0, sparse: weights.1, k: RRF_K };
        let hits = store.query(&query).unwrap();
        assert!(docs_of(&hits)[0].starts_with(lead), "weights {weights:?}: {:?}", docs_of(&hits));
        // Qdrant's weighted RRF divides the rank by the weight: 1 / ((rank + 1) / w + k - 1).
        let expect = 1.0 / (1.0 / 3.0 + RRF_K as f32 - 1.0);
        assert!((hits[0].score - expect).abs() < 1e-6, "weighted score {} != {expect}", hits[0].score);
    }

    // k: the first place of one retriever scores 1 / k.
    let mut query = q(Some([1.0, 0.0, 0.0, 0.0]), Some(&[(1, 1.0), (2, 1.0)]), KbFilter::default(), 5);
    query.weights.k = 10;
    let hits = store.query(&query).unwrap();
    assert_eq!(docs_of(&hits)[0], "a.md#0");
    assert!((hits[0].score - 2.0 / 10.0).abs() < 1e-6, "rrf score with k = 10: {}", hits[0].score);

    // Filters. Region matches the region plus 全国 / none.
    let region = KbFilter { region: Some("示例市".into()), ..Default::default() };
    let hits = store.query(&q(Some([0.0, 0.0, 1.0, 0.0]), None, region, 10)).unwrap();
    let mut got = docs_of(&hits);
    got.sort();
    assert_eq!(got, vec!["a.md#0", "a.md#1", "b.md#0"]);
    let faq = KbFilter { kind: Some(EntryKind::Faq), ..Default::default() };
    assert_eq!(docs_of(&store.query(&q(Some([0.0, 1.0, 0.0, 0.0]), None, faq, 10)).unwrap()), vec!["c.md#1"]);
    // Validity: b.md is valid only during 2020.
    let on = |d: NaiveDate| KbFilter { valid_on: Some(d), ..Default::default() };
    let today = on(NaiveDate::from_ymd_opt(2025, 6, 1).unwrap());
    let hits = store.query(&q(Some([0.0, 1.0, 0.0, 0.0]), None, today, 10)).unwrap();
    assert!(!docs_of(&hits).contains(&"b.md#0".to_string()), "expired document excluded");
    assert_eq!(hits.len(), 4);
    let in_2020 = on(NaiveDate::from_ymd_opt(2020, 6, 1).unwrap());
    assert_eq!(docs_of(&store.query(&q(Some([0.0, 1.0, 0.0, 0.0]), None, in_2020, 1)).unwrap()), vec!["b.md#0"]);
    let before = on(NaiveDate::from_ymd_opt(2019, 6, 1).unwrap());
    assert!(!docs_of(&store.query(&q(Some([0.0, 1.0, 0.0, 0.0]), None, before, 10)).unwrap()).contains(&"b.md#0".to_string()));

    // Chunks of one document, in order.
    let chunks = store.doc_chunks("c.md").unwrap();
    assert_eq!(chunks.iter().map(|h| h.payload.chunk_index).collect::<Vec<_>>(), vec![0, 1]);

    // Delete one document: only its points go.
    assert_eq!(store.delete_doc("a.md").unwrap(), 2);
    assert_eq!(store.delete_doc("a.md").unwrap(), 0);
    assert_eq!(store.count().unwrap(), 3);
    // Upserting the same ids again replaces, never duplicates.
    let again: Vec<Point> = fixture().into_iter().filter(|p| p.payload.doc_id == "c.md").collect();
    store.upsert(again).unwrap();
    assert_eq!(store.count().unwrap(), 3);
    store.flush().unwrap();
    let before_reopen = docs_of(&store.query(&q(Some([0.0, 0.0, 1.0, 0.0]), None, KbFilter::default(), 10)).unwrap());
    drop(store);

    // Reopen: same data, same answers.
    let store = open(dir);
    assert_eq!(store.count().unwrap(), 3);
    let after = docs_of(&store.query(&q(Some([0.0, 0.0, 1.0, 0.0]), None, KbFilter::default(), 10)).unwrap());
    assert_eq!(before_reopen, after);
    assert_eq!(store.documents().unwrap().len(), 2);
}
