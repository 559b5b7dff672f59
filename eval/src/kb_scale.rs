//! `kbscale` suite: the embedded vector store (qdrant-edge) at 10k and 100k chunks.
//!
//! Synthetic chunks: the text of each is three sentences drawn at random from
//! `rag/ncp_policy_docs.jsonl` (so the BM25 vectors have real Chinese term statistics), the dense
//! vector a random unit vector of e5's 384 dimensions (embedding 100k chunks with e5 on this CPU
//! would take hours, and HNSW cost depends on the dimension and the count, not on meaning).
//! Queries: the questions of `rag/ncp_policy_qa.jsonl` for BM25, random unit vectors for dense.
//! Metrics per size N: `kbscale.<N>.upsert_points_per_s`, `.optimize_secs`, and
//! `.<dense|sparse|hybrid>.p50_ms` / `.p95_ms` over 200 queries (top 10, hybrid = RRF of both).

use std::time::Instant;

use serde_json::Value;
use zhengwu_rag::edge::EdgeStore;
use zhengwu_rag::sparse::Bm25;
use zhengwu_rag::store::{ChunkPayload, Point, StoreQuery};
use zhengwu_rag::VectorStore;

use crate::rag::{percentile, read_jsonl};
use crate::report::{fmt_num, Report};
use crate::EvalArgs;

const DIM: usize = 384;
const QUERIES: usize = 200;

use crate::rng::Rng;

/// The `key` string of every line of a JSONL file.
fn texts(path: &std::path::Path, key: &str) -> anyhow::Result<Vec<String>> {
    Ok(read_jsonl(path)?.iter().filter_map(|v| v.get(key).and_then(Value::as_str).map(String::from)).collect())
}

fn payload(id: u64, text: String) -> ChunkPayload {
    ChunkPayload {
        chunk_index: (id % 8) as usize,
        chunk_count: 8,
        title: format!("合成文档 {}", id / 8),
        ..ChunkPayload::plain(&format!("synthetic/{}", id / 8), &text)
    }
}

pub fn run(args: &EvalArgs) -> anyhow::Result<Report> {
    let docs = texts(&args.data.join("rag/ncp_policy_docs.jsonl"), "text")?;
    let questions = texts(&args.data.join("rag/ncp_policy_qa.jsonl"), "question")?;
    let sentences: Vec<String> = docs
        .iter()
        .flat_map(|d| d.split_inclusive('。').map(str::trim).filter(|s| s.chars().count() >= 8).map(String::from).collect::<Vec<_>>())
        .collect();
    anyhow::ensure!(sentences.len() >= 100 && !questions.is_empty(), "too little text in {}/rag", args.data.display());
    let bm25 = Bm25::chinese()?;
    let mut report = Report::new("Embedded vector store at scale (qdrant-edge, synthetic chunks)");
    let mut table = String::from(
        "| chunks | upsert points/s | optimize s | dense p50 / p95 ms | sparse p50 / p95 ms | hybrid p50 / p95 ms |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    for n in [10_000usize, 100_000] {
        let dir = std::env::temp_dir().join(format!("zhengwu-kbscale-{}-{n}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        let store = EdgeStore::open(&dir, DIM)?;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
        eprintln!("kbscale: {n} chunks");
        let mut upsert_secs = 0.0;
        for start in (0..n).step_by(1000) {
            let batch: Vec<Point> = (start..(start + 1000).min(n))
                .map(|i| {
                    let text: String = (0..3).map(|_| sentences[rng.below(sentences.len())].as_str()).collect();
                    Point { id: i as u64 + 1, dense: rng.unit(DIM), sparse: bm25.document(&text), payload: payload(i as u64, text) }
                })
                .collect();
            let t = Instant::now();
            store.upsert(batch)?;
            upsert_secs += t.elapsed().as_secs_f64();
        }
        let t = Instant::now();
        store.optimize()?;
        let optimize_secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(store.count()? == n, "store holds {} points, expected {n}", store.count()?);
        let mut lat: [Vec<f64>; 3] = Default::default();
        for qi in 0..QUERIES {
            let dense = rng.unit(DIM);
            let sparse = bm25.query(&questions[qi % questions.len()]);
            for (m, (d, s)) in [(Some(dense.clone()), None), (None, Some(sparse.clone())), (Some(dense.clone()), Some(sparse))].into_iter().enumerate() {
                let q = StoreQuery { dense: d, sparse: s, filter: Default::default(), limit: 10, prefetch: 40, weights: Default::default() };
                let t = Instant::now();
                let hits = store.query(&q)?;
                lat[m].push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(m == 1 || hits.len() == 10, "{n} chunks: a query returned {} hits", hits.len());
            }
        }
        let pps = n as f64 / upsert_secs;
        report.metric(format!("kbscale.{n}.upsert_points_per_s"), pps);
        report.metric(format!("kbscale.{n}.optimize_secs"), optimize_secs);
        let mut cells = Vec::new();
        for (m, name) in ["dense", "sparse", "hybrid"].iter().enumerate() {
            let (p50, p95) = (percentile(&mut lat[m], 0.5), percentile(&mut lat[m], 0.95));
            report.metric(format!("kbscale.{n}.{name}.p50_ms"), p50);
            report.metric(format!("kbscale.{n}.{name}.p95_ms"), p95);
            cells.push(format!("{} / {}", fmt_num(p50), fmt_num(p95)));
        }
        eprintln!("kbscale: {n}: {pps:.0} points/s, optimize {optimize_secs:.1}s, dense/sparse/hybrid p50/p95 ms {cells:?}");
        table.push_str(&format!("| {n} | {} | {} | {} |\n", fmt_num(pps), fmt_num(optimize_secs), cells.join(" | ")));
        drop(store);
        let _ = fs_err::remove_dir_all(&dir);
    }
    report.section(format!(
        "## Store latency\n\nOne thread, {QUERIES} queries per retriever, top 10 (hybrid: RRF of 40 dense and 40 BM25 candidates), after `optimize` (HNSW and sparse indexes). Synthetic chunks: three random sentences of rag/ncp_policy_docs.jsonl each (BM25), random unit vectors of 384 dimensions (dense); the timings exclude query embedding (e5 takes ~50-60 ms per query on this CPU, see the `rag` suite).\n\n{table}"
    ));
    Ok(report)
}
