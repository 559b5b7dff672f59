//! The knowledge base: ingestion (incremental, by content hash) and retrieval (dense, sparse,
//! hybrid) over a [`VectorStore`], with e5 dense vectors and BM25 sparse vectors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use zhengwu_core::{EmbedKind, Embedder};

use crate::chunker::{chunk, ChunkerConfig};
use crate::document::{content_hash, load, DocMeta, FaqEntry, Loaded, SUPPORTED};
use crate::error::{Error, Result};
use crate::sparse::Bm25;
use crate::store::{
    date_int, point_id, ChunkPayload, DocSummary, EntryKind, KbFilter, Point, StoreQuery, VectorStore,
};

/// Bump when chunking or vector construction changes: every document is then re-ingested.
pub const PIPELINE_VERSION: &str = "kb-v1";

/// Which retriever(s) answer a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Dense,
    Sparse,
    #[default]
    Hybrid,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dense" => Ok(Self::Dense),
            "sparse" | "bm25" => Ok(Self::Sparse),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(Error::invalid(format!("unknown mode `{other}` (dense, sparse, hybrid)"))),
        }
    }
}

/// A search as the API and CLI give it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_limit")]
    pub limit: usize,
    #[serde(default)]
    pub filter: KbFilter,
    /// Include documents outside their validity dates (default: only those valid today, or
    /// on `filter.valid_on` when given).
    #[serde(default)]
    pub include_expired: bool,
    /// Fusion settings (weights, k) for this search (hit testing and tuning); the knowledge
    /// base's own otherwise.
    #[serde(default)]
    pub weights: Option<crate::store::FusionWeights>,
}

fn default_limit() -> usize {
    5
}

impl SearchRequest {
    pub fn new(query: impl Into<String>) -> Self {
        Self { query: query.into(), mode: Mode::Hybrid, limit: 5, filter: KbFilter::default(), include_expired: false, weights: None }
    }
}

/// Rank (1-based) and raw score of a hit in one retriever's list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrieverScore {
    pub rank: usize,
    pub score: f32,
}

/// A ranked chunk with its scores per retriever.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hit {
    pub rank: usize,
    pub id: u64,
    /// The score the ranking used (cosine for dense, BM25 for sparse, RRF for hybrid).
    pub score: f32,
    pub dense: Option<RetrieverScore>,
    pub sparse: Option<RetrieverScore>,
    pub chunk: ChunkPayload,
}

/// What an ingest run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IngestReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
    pub deleted: Vec<String>,
    pub chunks_written: usize,
    /// Files skipped, with the reason.
    pub skipped: Vec<(String, String)>,
    pub secs: f64,
}

impl IngestReport {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} added, {} updated, {} unchanged, {} deleted; {} chunks written; {} skipped; {:.1}s",
            self.added.len(),
            self.updated.len(),
            self.unchanged,
            self.deleted.len(),
            self.chunks_written,
            self.skipped.len(),
            self.secs
        );
        for (path, why) in &self.skipped {
            s.push_str(&format!("\n  skipped {path}: {why}"));
        }
        s
    }
}

/// Progress callback events.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// About to process file `i` of `n`.
    File { i: usize, n: usize, path: &'a str },
    Skipped { path: &'a str, reason: &'a str },
}

#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Delete stored documents whose file is gone (default true for a directory sync).
    pub keep_missing: bool,
}

/// A document (or FAQ entry) ready to be chunked and embedded.
#[derive(Debug, Clone)]
pub struct SourceDoc {
    pub doc_id: String,
    pub hash: String,
    pub kind: EntryKind,
    pub meta: DocMeta,
    pub body: String,
    pub faq: Option<FaqEntry>,
}

pub struct KnowledgeBase {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    bm25: Bm25,
    pub chunker: ChunkerConfig,
    pub embed_batch: usize,
    /// Candidates per retriever fed into the fusion.
    pub prefetch: usize,
    /// Fusion settings of hybrid search (`eval rag` sweeps weights and k).
    pub weights: crate::store::FusionWeights,
}

impl KnowledgeBase {
    pub fn new(store: Arc<dyn VectorStore>, embedder: Arc<dyn Embedder>) -> Result<Self> {
        Ok(Self { store, embedder, bm25: Bm25::chinese()?, chunker: ChunkerConfig::default(), embed_batch: 16, prefetch: 40, weights: Default::default() })
    }

    pub fn store(&self) -> &Arc<dyn VectorStore> {
        &self.store
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// Read every supported file under `root` into source documents. Unreadable files are
    /// returned in the second list with the reason.
    pub fn scan(root: &Path) -> Result<(Vec<SourceDoc>, Vec<(String, String)>)> {
        if !root.is_dir() {
            return Err(Error::invalid(format!("{} is not a directory", root.display())));
        }
        let mut files = Vec::new();
        walk(root, &mut files)?;
        files.sort();
        let mut docs = Vec::new();
        let mut skipped = Vec::new();
        for path in files {
            let rel = rel_id(root, &path);
            let bytes = match fs_err::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    skipped.push((rel, e.to_string()));
                    continue;
                }
            };
            match load(Path::new(&rel), &bytes) {
                Ok(loaded) => docs.extend(source_docs(&rel, &bytes, loaded)),
                Err(Error::Document { reason, .. }) => skipped.push((rel, reason)),
                Err(e) => skipped.push((rel, e.to_string())),
            }
        }
        Ok((docs, skipped))
    }

    /// Sync the store with the files under `root`: new and changed documents are (re)ingested,
    /// unchanged ones skipped, and (unless `keep_missing`) documents whose file is gone deleted.
    pub fn ingest_dir(
        &self,
        root: &Path,
        opts: &IngestOptions,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<IngestReport> {
        let t0 = Instant::now();
        let (docs, skipped) = Self::scan(root)?;
        for (p, why) in &skipped {
            progress(Progress::Skipped { path: p, reason: why });
        }
        let mut report = self.ingest_docs(&docs, !opts.keep_missing, progress)?;
        report.skipped = skipped;
        report.secs = t0.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Ingest `docs` (incrementally). With `delete_missing`, stored documents not in `docs` are
    /// removed.
    pub fn ingest_docs(
        &self,
        docs: &[SourceDoc],
        delete_missing: bool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<IngestReport> {
        let t0 = Instant::now();
        let mut report = IngestReport::default();
        let stored: BTreeMap<String, DocSummary> =
            self.store.documents()?.into_iter().map(|d| (d.doc_id.clone(), d)).collect();
        let mut seen = BTreeSet::new();
        for (i, doc) in docs.iter().enumerate() {
            progress(Progress::File { i: i + 1, n: docs.len(), path: &doc.doc_id });
            if !seen.insert(doc.doc_id.clone()) {
                return Err(Error::invalid(format!("duplicate document id `{}`", doc.doc_id)));
            }
            let prev = stored.get(&doc.doc_id);
            let hash = format!("{PIPELINE_VERSION}:{}", doc.hash);
            if prev.is_some_and(|p| p.doc_hash == hash) {
                report.unchanged += 1;
                continue;
            }
            let points = self.points(doc, &hash)?;
            if prev.is_some() {
                self.store.delete_doc(&doc.doc_id)?;
                report.updated.push(doc.doc_id.clone());
            } else {
                report.added.push(doc.doc_id.clone());
            }
            report.chunks_written += points.len();
            self.store.upsert(points)?;
        }
        if delete_missing {
            for id in stored.keys().filter(|id| !seen.contains(*id)) {
                self.store.delete_doc(id)?;
                report.deleted.push(id.clone());
            }
        }
        let changed = !report.added.is_empty() || !report.updated.is_empty() || !report.deleted.is_empty();
        if changed {
            self.store.optimize()?;
            self.store.flush()?;
        }
        report.secs = t0.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Remove one document (or FAQ entry). Returns the number of chunks deleted.
    pub fn delete(&self, doc_id: &str) -> Result<usize> {
        let n = self.store.delete_doc(doc_id)?;
        self.store.flush()?;
        Ok(n)
    }

    pub fn documents(&self) -> Result<Vec<DocSummary>> {
        self.store.documents()
    }

    /// Chunk and embed one document.
    fn points(&self, doc: &SourceDoc, hash: &str) -> Result<Vec<Point>> {
        let meta = &doc.meta;
        let base = |index: usize, count: usize, section: Vec<String>, start: usize, end: usize, text: String| {
            ChunkPayload {
                kind: doc.kind,
                doc_id: doc.doc_id.clone(),
                doc_hash: hash.to_string(),
                chunk_index: index,
                chunk_count: count,
                title: meta.title.clone(),
                section,
                start,
                end,
                text,
                agency: meta.agency.clone(),
                doc_number: meta.doc_number.clone(),
                region: meta.region.clone(),
                category: meta.category.clone(),
                source_url: meta.source_url.clone(),
                effective: meta.effective.map(date_int),
                expiry: meta.expiry.map(date_int),
                question: None,
                answer: None,
                department: None,
            }
        };
        if let Some(faq) = &doc.faq {
            // FAQ: one point; the dense vector is the question's (query-to-question similarity
            // decides verbatim answers), the sparse vector covers question and answer.
            let mut p = base(0, 1, Vec::new(), 0, doc.body.chars().count(), doc.body.clone());
            p.question = Some(faq.question.clone());
            p.answer = Some(faq.answer.clone());
            p.department = faq.department.clone();
            let dense = self.embed_checked(&[faq.question.as_str()], EmbedKind::Query)?.remove(0);
            return Ok(vec![Point { id: point_id(&doc.doc_id, 0), dense, sparse: self.bm25.document(&doc.body), payload: p }]);
        }
        let chunks = chunk(&doc.body, &self.chunker);
        let n = chunks.len();
        let inputs: Vec<String> = chunks.iter().map(|c| embed_text(&meta.title, &c.section, &c.text)).collect();
        let mut points = Vec::with_capacity(n);
        let mut dense = Vec::with_capacity(n);
        for batch in inputs.chunks(self.embed_batch.max(1)) {
            let refs: Vec<&str> = batch.iter().map(|s| s.as_str()).collect();
            dense.extend(self.embed_checked(&refs, EmbedKind::Passage)?);
        }
        for ((c, d), input) in chunks.into_iter().zip(dense).zip(&inputs) {
            let sparse = self.bm25.document(input);
            let payload = base(c.index, n, c.section, c.start, c.end, c.text);
            points.push(Point { id: point_id(&doc.doc_id, c.index), dense: d, sparse, payload });
        }
        Ok(points)
    }

    /// Embed, shortening any input that is longer than the model takes (the stored chunk text
    /// stays whole; only the embedding sees the shortened text).
    fn embed_checked(&self, texts: &[&str], kind: EmbedKind) -> Result<Vec<Vec<f32>>> {
        let max = self.embedder.max_tokens();
        let mut owned: Vec<String> = Vec::with_capacity(texts.len());
        for t in texts {
            let mut s = t.to_string();
            while self.embedder.count_tokens(&s, kind)? > max {
                let keep = s.chars().count() * 9 / 10;
                s = s.chars().take(keep).collect();
            }
            owned.push(s);
        }
        let refs: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        Ok(self.embedder.embed(&refs, kind)?.vectors)
    }

    /// Embed a query for dense search.
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        Ok(self.embed_checked(&[text], EmbedKind::Query)?.remove(0))
    }

    fn effective_filter(req: &SearchRequest) -> KbFilter {
        let mut f = req.filter.clone();
        if req.include_expired {
            f.valid_on = None;
        } else if f.valid_on.is_none() {
            f.valid_on = Some(today());
        }
        f
    }

    /// Ranked chunks for a query, with each retriever's rank and score.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>> {
        let text = req.query.trim();
        if text.is_empty() {
            return Err(Error::invalid("empty query"));
        }
        if req.limit == 0 || req.limit > 100 {
            return Err(Error::invalid("limit must be 1..=100"));
        }
        let filter = Self::effective_filter(req);
        let dense_vec = match req.mode {
            Mode::Dense | Mode::Hybrid => Some(self.embed_query(text)?),
            Mode::Sparse => None,
        };
        let sparse_vec = match req.mode {
            Mode::Sparse | Mode::Hybrid => Some(self.bm25.query(text)),
            Mode::Dense => None,
        };
        let per = self.prefetch.max(req.limit);
        let weights = req.weights.unwrap_or(self.weights);
        weights.validate()?;
        let run = |dense: Option<Vec<f32>>, sparse, limit| {
            self.store.query(&StoreQuery { dense, sparse, filter: filter.clone(), limit, prefetch: per, weights })
        };
        let dense_hits = match &dense_vec {
            Some(d) => run(Some(d.clone()), None, per)?,
            None => Vec::new(),
        };
        let sparse_hits = match &sparse_vec {
            Some(s) => run(None, Some(s.clone()), per)?,
            None => Vec::new(),
        };
        let ranked = match req.mode {
            Mode::Dense => dense_hits.iter().take(req.limit).cloned().collect(),
            Mode::Sparse => sparse_hits.iter().take(req.limit).cloned().collect(),
            Mode::Hybrid => run(dense_vec, sparse_vec, req.limit)?,
        };
        let lookup = |list: &[crate::store::StoredHit], id: u64| {
            list.iter().position(|h| h.id == id).map(|i| RetrieverScore { rank: i + 1, score: list[i].score })
        };
        Ok(ranked
            .into_iter()
            .enumerate()
            .map(|(i, h)| Hit {
                rank: i + 1,
                id: h.id,
                score: h.score,
                dense: lookup(&dense_hits, h.id),
                sparse: lookup(&sparse_hits, h.id),
                chunk: h.payload,
            })
            .collect())
    }

    /// The closest FAQ entry by question similarity (cosine), if any.
    pub fn best_faq(&self, query: &str, filter: &KbFilter) -> Result<Option<(f32, ChunkPayload)>> {
        let mut f = filter.clone();
        f.kind = Some(EntryKind::Faq);
        if f.valid_on.is_none() {
            f.valid_on = Some(today());
        }
        let hits =
            self.store.query(&StoreQuery { dense: Some(self.embed_query(query)?), sparse: None, filter: f, limit: 1, prefetch: 1, weights: Default::default() })?;
        Ok(hits.into_iter().next().map(|h| (h.score, h.payload)))
    }
}

/// Today's date (local time).
pub fn today() -> NaiveDate {
    chrono::Local::now().date_naive()
}

/// What the embedder sees for a chunk: title and section give the chunk its context.
pub fn embed_text(title: &str, section: &[String], text: &str) -> String {
    let mut s = String::with_capacity(title.len() + text.len() + 32);
    s.push_str(title);
    if !section.is_empty() {
        s.push_str(" | ");
        s.push_str(&section.join(" > "));
    }
    s.push('\n');
    s.push_str(text);
    s
}

fn rel_id(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        // Hidden entries (the store itself lives in `.index`), sidecars and folder READMEs.
        if name.starts_with('.') || name.ends_with(".meta") || name.eq_ignore_ascii_case("README.md") {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// One file → its documents (a FAQ file gives one per entry).
fn source_docs(rel: &str, bytes: &[u8], loaded: Loaded) -> Vec<SourceDoc> {
    match loaded {
        Loaded::Document { meta, body } => vec![SourceDoc {
            doc_id: rel.to_string(),
            hash: content_hash(bytes),
            kind: EntryKind::Doc,
            meta,
            body,
            faq: None,
        }],
        Loaded::Faq(entries) => entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let key = e.id.clone().unwrap_or_else(|| format!("{}", i + 1));
                let body = format!("问：{}\n答：{}", e.question.trim(), e.answer.trim());
                let meta = DocMeta {
                    title: e.question.trim().to_string(),
                    agency: e.department.clone(),
                    region: e.region.clone(),
                    category: e.category.clone(),
                    ..Default::default()
                };
                SourceDoc {
                    doc_id: format!("{rel}#{key}"),
                    hash: content_hash(serde_json::to_string(&e).unwrap_or_default().as_bytes()),
                    kind: EntryKind::Faq,
                    meta,
                    body,
                    faq: Some(e),
                }
            })
            .collect(),
    }
}

/// Supported extensions, for messages.
pub fn supported() -> String {
    SUPPORTED.join(", ")
}
