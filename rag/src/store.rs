//! The `VectorStore` seam: what retrieval needs from a vector database, in plain types.
//!
//! A point is one chunk: a dense vector (`dense`, e5, cosine), a sparse BM25 vector (`bm25`,
//! IDF applied by the store) and the chunk's payload. Backends: [`crate::edge::EdgeStore`]
//! (qdrant-edge, in-process, the default). Hybrid queries are fused by reciprocal rank fusion
//! with an explicit `k` ([`RRF_K`]); results are always ordered by (score desc, id asc) so ties
//! come back in a stable order.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::document::DocMeta;
use crate::error::Result;

/// Name of the dense vector in the collection.
pub const DENSE: &str = "dense";
/// Name of the sparse (BM25) vector.
pub const SPARSE: &str = "bm25";
/// RRF constant. Qdrant's default is 2 in edge and server; 60 is the value from the RRF paper.
pub const RRF_K: usize = 60;

/// A sparse vector (sorted, unique indices).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVec {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// What kind of entry a point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Doc,
    Faq,
}

/// Everything stored with a chunk. Dates are stored as `YYYYMMDD` integers for range filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkPayload {
    pub kind: EntryKind,
    /// Document id: the file's path relative to the knowledge-base root (FAQ: `file#id`).
    pub doc_id: String,
    /// Hash of the source file (incremental ingest compares it).
    pub doc_hash: String,
    pub chunk_index: usize,
    /// Chunks the document has in total.
    pub chunk_count: usize,
    pub title: String,
    #[serde(default)]
    pub section: Vec<String>,
    /// Character offsets of `text` in the document's text.
    pub start: usize,
    pub end: usize,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<u32>,
    /// FAQ entries: the question and the verbatim answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

impl ChunkPayload {
    /// A one-chunk document entry with `text` and no metadata (tests, synthetic benchmarks);
    /// set other fields with struct update syntax.
    pub fn plain(doc_id: &str, text: &str) -> Self {
        ChunkPayload {
            kind: EntryKind::Doc,
            doc_id: doc_id.into(),
            doc_hash: format!("hash-{doc_id}"),
            chunk_index: 0,
            chunk_count: 1,
            title: doc_id.into(),
            section: Vec::new(),
            start: 0,
            end: text.chars().count(),
            text: text.into(),
            agency: None,
            doc_number: None,
            region: None,
            category: None,
            source_url: None,
            effective: None,
            expiry: None,
            question: None,
            answer: None,
            department: None,
        }
    }

    pub fn meta(&self) -> DocMeta {
        DocMeta {
            title: self.title.clone(),
            agency: self.agency.clone(),
            doc_number: self.doc_number.clone(),
            region: self.region.clone(),
            effective: self.effective.and_then(int_date),
            expiry: self.expiry.and_then(int_date),
            category: self.category.clone(),
            source_url: self.source_url.clone(),
        }
    }
}

/// `2024-03-05` → `20240305`.
pub fn date_int(d: NaiveDate) -> u32 {
    use chrono::Datelike;
    d.year() as u32 * 10000 + d.month() * 100 + d.day()
}

pub fn int_date(v: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt((v / 10000) as i32, (v / 100) % 100, v % 100)
}

/// One point to write.
#[derive(Debug, Clone)]
pub struct Point {
    pub id: u64,
    pub dense: Vec<f32>,
    pub sparse: SparseVec,
    pub payload: ChunkPayload,
}

/// Payload filters. `region` matches that region and nation-wide entries (`全国` or none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KbFilter {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub agency: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub kind: Option<EntryKind>,
    #[serde(default)]
    pub doc_id: Option<String>,
    /// Only entries valid on this date (effective <= date <= expiry; missing bounds are open).
    /// `None` means no date check at all; callers set today's date by default.
    #[serde(default)]
    pub valid_on: Option<NaiveDate>,
}

impl KbFilter {
    /// Whether one stored chunk passes the filter (the same rules as [`Self::to_qdrant_json`],
    /// for chunks read without a search); `valid_on` defaults to `today` as search does.
    pub fn admits(&self, c: &ChunkPayload, today: NaiveDate) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| want.as_ref().is_none_or(|w| have.as_ref() == Some(w));
        let region = match (&self.region, &c.region) {
            (None, _) | (Some(_), None) => true,
            (Some(w), Some(h)) => h == w || h == "全国",
        };
        let day = date_int(self.valid_on.unwrap_or(today));
        region
            && eq(&self.agency, &c.agency)
            && eq(&self.category, &c.category)
            && self.kind.is_none_or(|k| k == c.kind)
            && self.doc_id.as_ref().is_none_or(|d| d == &c.doc_id)
            && c.effective.is_none_or(|e| e <= day)
            && c.expiry.is_none_or(|e| e >= day)
    }

    /// The filter in Qdrant's JSON filter syntax (the same for the embedded engine and the
    /// server API), or `None` when nothing is filtered.
    pub fn to_qdrant_json(&self) -> Option<serde_json::Value> {
        use serde_json::json;
        let mut must = Vec::new();
        let kw = |key: &str, v: &str| json!({"key": key, "match": {"value": v}});
        if let Some(r) = &self.region {
            must.push(json!({"should": [
                kw("region", r),
                kw("region", "全国"),
                {"is_empty": {"key": "region"}}
            ]}));
        }
        if let Some(a) = &self.agency {
            must.push(kw("agency", a));
        }
        if let Some(c) = &self.category {
            must.push(kw("category", c));
        }
        if let Some(k) = self.kind {
            must.push(kw("kind", if k == EntryKind::Doc { "doc" } else { "faq" }));
        }
        if let Some(d) = &self.doc_id {
            must.push(kw("doc_id", d));
        }
        if let Some(day) = self.valid_on {
            let n = date_int(day) as f64;
            must.push(json!({"should": [
                {"key": "effective", "range": {"lte": n}},
                {"is_empty": {"key": "effective"}}
            ]}));
            must.push(json!({"should": [
                {"key": "expiry", "range": {"gte": n}},
                {"is_empty": {"key": "expiry"}}
            ]}));
        }
        if must.is_empty() {
            None
        } else {
            Some(json!({ "must": must }))
        }
    }
}

/// A query against the store: dense, sparse or both (fused by RRF).
#[derive(Debug, Clone, Default)]
pub struct StoreQuery {
    pub dense: Option<Vec<f32>>,
    pub sparse: Option<SparseVec>,
    pub filter: KbFilter,
    pub limit: usize,
    /// Candidates each retriever contributes to the fusion.
    pub prefetch: usize,
    /// Weights of the two retrievers in the reciprocal rank fusion (hybrid queries only).
    pub weights: FusionWeights,
}

/// The reciprocal rank fusion of dense and sparse retrieval: each retriever's weight and RRF's
/// `k`. As in Qdrant, a point at rank `r` (0-based) of a retriever adds
/// `1 / ((r + 1) / weight + k - 1)`: a weight stretches or shrinks that retriever's ranks, a
/// smaller `k` gives the top ranks more say. Weights of 1 and `k` = [`RRF_K`] are plain RRF.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FusionWeights {
    pub dense: f32,
    pub sparse: f32,
    #[serde(default = "default_rrf_k")]
    pub k: usize,
}

fn default_rrf_k() -> usize {
    RRF_K
}

impl Default for FusionWeights {
    fn default() -> Self {
        FusionWeights { dense: 1.0, sparse: 1.0, k: RRF_K }
    }
}

impl FusionWeights {
    /// `DENSE:SPARSE` or `DENSE:SPARSE:K`, e.g. `1:2` or `1:1:20`.
    pub fn parse(s: &str) -> crate::error::Result<Self> {
        let bad = || crate::error::Error::invalid(format!("fusion weights `{s}`: expected DENSE:SPARSE[:K], e.g. 1:2 or 1:1:20"));
        let parts: Vec<&str> = s.trim().split(':').map(str::trim).collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let w = FusionWeights {
            dense: parts[0].parse().map_err(|_| bad())?,
            sparse: parts[1].parse().map_err(|_| bad())?,
            k: parts.get(2).map(|k| k.parse().map_err(|_| bad())).transpose()?.unwrap_or(RRF_K),
        };
        w.validate()?;
        Ok(w)
    }

    pub fn validate(&self) -> crate::error::Result<()> {
        let ok = |w: f32| w.is_finite() && w >= 0.0;
        if !ok(self.dense) || !ok(self.sparse) || self.dense + self.sparse <= 0.0 || self.k == 0 || self.k > 10_000 {
            return Err(crate::error::Error::invalid(format!(
                "fusion weights must be finite, non-negative and not both zero, and k in 1..=10000 (dense {}, sparse {}, k {})",
                self.dense, self.sparse, self.k
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct StoredHit {
    pub id: u64,
    pub score: f32,
    pub payload: ChunkPayload,
}

/// One stored document, as incremental ingest sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocSummary {
    pub doc_id: String,
    pub doc_hash: String,
    pub kind: EntryKind,
    pub title: String,
    pub chunks: usize,
}

impl DocSummary {
    /// Every document of a store's chunk payloads (any order), sorted by id. A document whose
    /// chunks carry different hashes (an interrupted write) gets the hash `mixed`, so ingest
    /// replaces it.
    pub fn collect<'a>(payloads: impl IntoIterator<Item = &'a ChunkPayload>) -> Vec<DocSummary> {
        let mut docs: std::collections::BTreeMap<String, DocSummary> = std::collections::BTreeMap::new();
        for p in payloads {
            let e = docs.entry(p.doc_id.clone()).or_insert_with(|| DocSummary {
                doc_id: p.doc_id.clone(),
                doc_hash: p.doc_hash.clone(),
                kind: p.kind,
                title: p.title.clone(),
                chunks: 0,
            });
            e.chunks += 1;
            if e.doc_hash != p.doc_hash {
                e.doc_hash = String::from("mixed");
            }
        }
        docs.into_values().collect()
    }
}

/// A vector database holding the knowledge base.
pub trait VectorStore: Send + Sync {
    /// Insert or replace points (one atomic write per call where the backend allows it).
    fn upsert(&self, points: Vec<Point>) -> Result<()>;
    /// Delete every point of a document. Returns how many were deleted.
    fn delete_doc(&self, doc_id: &str) -> Result<usize>;
    /// Ranked hits, ordered by (score desc, id asc).
    fn query(&self, query: &StoreQuery) -> Result<Vec<StoredHit>>;
    /// Every stored document (aggregated over its chunks), sorted by id.
    fn documents(&self) -> Result<Vec<DocSummary>>;
    /// Points of one document, by chunk index.
    fn doc_chunks(&self, doc_id: &str) -> Result<Vec<StoredHit>>;
    /// Number of points.
    fn count(&self) -> Result<usize>;
    /// Build indexes after bulk loads (the embedded engine never does it by itself).
    fn optimize(&self) -> Result<()>;
    /// Make everything durable.
    fn flush(&self) -> Result<()>;
}

/// Sort by (score desc, id asc): a total, stable order for tied RRF scores.
pub fn sort_hits(hits: &mut [StoredHit]) {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
}

/// Point id of a document's chunk: 63 bits of SHA-256 over (doc id, chunk index).
pub fn point_id(doc_id: &str, chunk_index: usize) -> u64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{doc_id}\u{0}{chunk_index}").as_bytes());
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) >> 1
}

#[cfg(test)]
mod fusion_weight_tests {
    use super::FusionWeights;

    #[test]
    fn fusion_weights_parse_and_validate() {
        assert_eq!(FusionWeights::parse(" 1 : 2.5 ").unwrap(), FusionWeights { dense: 1.0, sparse: 2.5, k: super::RRF_K });
        assert_eq!(FusionWeights::parse("2:1:20").unwrap(), FusionWeights { dense: 2.0, sparse: 1.0, k: 20 });
        for bad in ["", "1", "1:x", "-1:1", "0:0", "nan:1", "1:inf", "1:1:0", "1:1:x", "1:1:1:1"] {
            let e = FusionWeights::parse(bad).unwrap_err().to_string();
            assert!(e.contains("fusion weights"), "{bad}: {e}");
        }
    }
}
