//! Embedded backend: Qdrant's in-process engine (`qdrant-edge`), data in a directory.
//!
//! Durability: qdrant-edge 0.7.2 writes every update to its WAL but does not replay the WAL
//! when a shard is loaded, so an update is only on disk once the shard is flushed. Every write
//! here (upsert, delete) is therefore flushed before it returns: a crash loses nothing
//! acknowledged (test `acknowledged_writes_survive_a_crash`). Writes are serialised, since the
//! engine's flush expects no concurrent update. The engine never optimizes by itself, so
//! [`VectorStore::optimize`] is called after bulk loads (else every search is a brute-force scan).

use std::path::{Path, PathBuf};

use qdrant_edge::{
    CountRequest, EdgeConfigBuilder, EdgeShard, EdgeSparseVectorParamsBuilder, EdgeVectorParamsBuilder, Filter,
    Fusion, Modifier, NamedQuery, PayloadFieldSchema, PointId, PointInsertOperations, PointOperations, PointStruct,
    Prefetch, QueryEnum, QueryRequest, ScoringQuery, ScrollRequest, UpdateOperation, Vector, VectorInternal,
    WithPayloadInterface, WithVector,
};

use crate::error::{Error, Result};
use crate::store::{
    sort_hits, ChunkPayload, DocSummary, Point, SparseVec, StoreQuery, StoredHit, VectorStore, DENSE, SPARSE,
};

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// Payload fields with an index (filters on them stay fast at scale).
const KEYWORD_FIELDS: &[&str] = &["doc_id", "kind", "region", "agency", "category"];
const INTEGER_FIELDS: &[&str] = &["effective", "expiry"];

pub struct EdgeStore {
    shard: EdgeShard,
    path: PathBuf,
    /// Held by every write, optimize and flush.
    writes: std::sync::Mutex<()>,
}

impl std::fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStore").field("path", &self.path).finish()
    }
}

impl EdgeStore {
    /// Open the store in `dir`, creating it (with `dim`-dimensional dense vectors) when empty.
    /// Reopening checks that the stored dimension matches.
    pub fn open(dir: &Path, dim: usize) -> Result<Self> {
        fs_err::create_dir_all(dir)?;
        let config = EdgeConfigBuilder::new()
            .vector(DENSE, EdgeVectorParamsBuilder::new(dim, qdrant_edge::Distance::Cosine).build())
            .sparse_vector(SPARSE, EdgeSparseVectorParamsBuilder::new().modifier(Modifier::Idf).build())
            .build();
        let fresh = !dir.join("edge_config.json").exists();
        let shard = if fresh {
            EdgeShard::new(dir, config).map_err(store_err)?
        } else {
            let shard = EdgeShard::load(dir, None).map_err(|e| store_err(format!("opening {}: {e}", dir.display())))?;
            let stored = shard.config().vectors.get(DENSE).map(|v| v.size);
            if stored != Some(dim) {
                return Err(Error::Store(format!(
                    "{} holds {DENSE} vectors of dimension {stored:?}, the embedder gives {dim}; use another store directory",
                    dir.display()
                )));
            }
            shard
        };
        let store = Self { shard, path: dir.to_path_buf(), writes: std::sync::Mutex::new(()) };
        if fresh {
            store.create_indexes()?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn create_indexes(&self) -> Result<()> {
        let fields = KEYWORD_FIELDS.iter().map(|f| (f, "keyword")).chain(INTEGER_FIELDS.iter().map(|f| (f, "integer")));
        for (field, schema) in fields {
            let schema: PayloadFieldSchema = serde_json::from_value(serde_json::json!(schema))?;
            let op = qdrant_edge::FieldIndexOperations::CreateIndex(qdrant_edge::CreateIndex {
                field_name: field.parse().map_err(|_| store_err(format!("bad field name {field}")))?,
                field_schema: Some(schema),
            });
            self.write(UpdateOperation::FieldIndexOperation(op))?;
        }
        Ok(())
    }

    fn filter(q: &crate::store::KbFilter) -> Result<Option<Filter>> {
        q.to_qdrant_json().map(|j| serde_json::from_value::<Filter>(j).map_err(store_err)).transpose()
    }

    fn scroll_all(&self, filter: Option<Filter>, with_payload: WithPayloadInterface) -> Result<Vec<(u64, ChunkPayload)>> {
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let (records, next) = self
                .shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(1000),
                    filter: filter.clone(),
                    with_payload: Some(with_payload.clone()),
                    with_vector: WithVector::Bool(false),
                    order_by: None,
                })
                .map_err(store_err)?;
            for r in records {
                let id = num_id(r.id)?;
                let payload = r.payload.ok_or_else(|| store_err("point without payload"))?;
                out.push((id, decode_payload(payload)?));
            }
            match next {
                Some(n) => offset = Some(n),
                None => break,
            }
        }
        Ok(out)
    }
}

fn num_id(id: PointId) -> Result<u64> {
    match id {
        PointId::NumId(n) => Ok(n),
        PointId::Uuid(u) => Err(store_err(format!("unexpected UUID point id {u}"))),
    }
}

fn decode_payload(p: qdrant_edge::Payload) -> Result<ChunkPayload> {
    serde_json::from_value(serde_json::Value::Object(p.0.into_iter().collect())).map_err(store_err)
}

fn sparse_vector(v: &SparseVec) -> Result<Vector> {
    Vector::new_sparse(v.indices.clone(), v.values.clone()).map_err(store_err)
}

fn nearest(name: &str, v: VectorInternal) -> ScoringQuery {
    ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery { query: v, using: Some(name.to_string()) }))
}

impl VectorStore for EdgeStore {
    fn upsert(&self, points: Vec<Point>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let mut list = Vec::with_capacity(points.len());
        for p in points {
            let vectors = qdrant_edge::Vectors::new_named([
                (DENSE.to_string(), Vector::new_dense(p.dense)),
                (SPARSE.to_string(), sparse_vector(&p.sparse)?),
            ]);
            let payload = serde_json::to_value(&p.payload)?;
            list.push(PointStruct::new(p.id, vectors, payload).into());
        }
        let op = PointOperations::UpsertPoints(PointInsertOperations::PointsList(list));
        self.write(UpdateOperation::PointOperation(op))
    }

    fn delete_doc(&self, doc_id: &str) -> Result<usize> {
        let f = crate::store::KbFilter { doc_id: Some(doc_id.to_string()), ..Default::default() };
        let filter = Self::filter(&f)?.expect("doc filter");
        let n = self
            .shard
            .count(CountRequest { filter: Some(filter.clone()), exact: true })
            .map_err(store_err)?;
        if n > 0 {
            let op = PointOperations::DeletePointsByFilter(filter);
            self.write(UpdateOperation::PointOperation(op))?;
        }
        Ok(n)
    }

    fn query(&self, q: &StoreQuery) -> Result<Vec<StoredHit>> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let filter = Self::filter(&q.filter)?;
        let dense = q.dense.as_ref().map(|d| nearest(DENSE, VectorInternal::Dense(d.clone())));
        let sparse = match &q.sparse {
            // An empty sparse query (only stopwords) matches nothing.
            Some(s) if s.indices.is_empty() => None,
            Some(s) => Some(nearest(SPARSE, sparse_vector(s)?.0)),
            None => None,
        };
        if q.sparse.is_some() && sparse.is_none() && dense.is_none() {
            return Ok(Vec::new());
        }
        // Ask for a few more than needed so ties at the cut are decided by id, not by chance.
        let fetch = q.limit + 8;
        let request = match (dense, sparse) {
            (Some(d), Some(s)) => {
                let prefetch = q.prefetch.max(q.limit);
                let pf = |query| Prefetch {
                    prefetches: Vec::new(),
                    query: Some(query),
                    limit: prefetch,
                    params: None,
                    filter: None,
                    score_threshold: None,
                };
                QueryRequest {
                    prefetches: vec![pf(d), pf(s)],
                    query: Some(ScoringQuery::Fusion(Fusion::Rrf {
                        k: q.weights.k,
                        // Weights of 1 score exactly as Qdrant's unweighted RRF.
                        weights: Some(vec![
                            ordered_float::OrderedFloat(q.weights.dense),
                            ordered_float::OrderedFloat(q.weights.sparse),
                        ]),
                    })),
                    filter,
                    score_threshold: None,
                    limit: fetch,
                    offset: 0,
                    params: None,
                    with_vector: WithVector::Bool(false),
                    with_payload: WithPayloadInterface::Bool(true),
                }
            }
            (Some(one), None) | (None, Some(one)) => QueryRequest {
                prefetches: Vec::new(),
                query: Some(one),
                filter,
                score_threshold: None,
                limit: fetch,
                offset: 0,
                params: None,
                with_vector: WithVector::Bool(false),
                with_payload: WithPayloadInterface::Bool(true),
            },
            (None, None) => return Err(Error::invalid("query without a dense or sparse vector")),
        };
        let points = self.shard.query(request).map_err(store_err)?;
        let mut hits = points
            .into_iter()
            .map(|p| {
                Ok(StoredHit {
                    id: num_id(p.id)?,
                    score: p.score,
                    payload: decode_payload(p.payload.ok_or_else(|| store_err("hit without payload"))?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        sort_hits(&mut hits);
        hits.truncate(q.limit);
        Ok(hits)
    }

    fn documents(&self) -> Result<Vec<DocSummary>> {
        let points = self.scroll_all(None, WithPayloadInterface::Bool(true))?;
        Ok(DocSummary::collect(points.iter().map(|(_, p)| p)))
    }

    fn doc_chunks(&self, doc_id: &str) -> Result<Vec<StoredHit>> {
        let f = crate::store::KbFilter { doc_id: Some(doc_id.to_string()), ..Default::default() };
        let mut hits: Vec<StoredHit> = self
            .scroll_all(Self::filter(&f)?, WithPayloadInterface::Bool(true))?
            .into_iter()
            .map(|(id, payload)| StoredHit { id, score: 0.0, payload })
            .collect();
        hits.sort_by_key(|h| h.payload.chunk_index);
        Ok(hits)
    }

    fn count(&self) -> Result<usize> {
        self.shard.count(CountRequest { filter: None, exact: true }).map_err(store_err)
    }

    fn optimize(&self) -> Result<()> {
        let _writes = self.writes.lock().map_err(|_| store_err("store write lock poisoned"))?;
        self.shard.optimize().map_err(store_err)?;
        self.flush_locked()
    }

    fn flush(&self) -> Result<()> {
        let _writes = self.writes.lock().map_err(|_| store_err("store write lock poisoned"))?;
        self.flush_locked()
    }
}

impl EdgeStore {
    /// Apply one update and flush it to disk (see the module docs on durability).
    fn write(&self, op: UpdateOperation) -> Result<()> {
        let _writes = self.writes.lock().map_err(|_| store_err("store write lock poisoned"))?;
        self.shard.update(op).map_err(store_err)?;
        self.flush_locked()
    }

    /// The engine's flush panics on an I/O error; that becomes an error here.
    fn flush_locked(&self) -> Result<()> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.shard.flush()))
            .map_err(|_| store_err(format!("flushing the store in {} failed (disk full or unwritable?)", self.path.display())))
    }
}

/// What [`EdgeStore::import_snapshot`] restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotImport {
    pub points: usize,
    /// Dimension of the dense vectors (the embedder that searches the store must match it).
    pub dim: usize,
    pub segments: usize,
}

impl EdgeStore {
    /// Restore a Qdrant shard snapshot as the embedded store in `dir`: the way a collection moves
    /// from a Qdrant server (`POST /collections/{name}/shards/{shard}/snapshot`) to the embedded
    /// backend, with its segments and indexes as the server built them.
    ///
    /// `dir` must be absent or empty. The archive is unpacked by the engine's own snapshot
    /// restore into a staging directory beside `dir`, opened, checked for this store's layout
    /// (cosine [`DENSE`] vectors, [`SPARSE`] vectors with the IDF modifier), given the payload
    /// indexes the filters use, flushed, and only then renamed to `dir`; on any error the
    /// staging directory is removed and `dir` is left as it was. Only the segments count: the
    /// embedded engine does not replay a WAL (see the module docs), and a server snapshot holds
    /// its points in segments.
    pub fn import_snapshot(snapshot: &Path, dir: &Path) -> Result<SnapshotImport> {
        let meta = fs_err::metadata(snapshot)?;
        if !meta.is_file() {
            return Err(Error::invalid(format!("{} is not a snapshot file", snapshot.display())));
        }
        if dir.exists() && fs_err::read_dir(dir)?.next().is_some() {
            return Err(Error::invalid(format!(
                "{} is not empty: import a snapshot into a new store directory",
                dir.display()
            )));
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "store".into());
        let staging = dir.with_file_name(format!(".{name}.importing"));
        if staging.exists() {
            fs_err::remove_dir_all(&staging)?;
        }
        match Self::restore_into(snapshot, &staging) {
            Ok(report) => {
                if dir.exists() {
                    fs_err::remove_dir(dir)?;
                }
                fs_err::rename(&staging, dir)?;
                Ok(report)
            }
            Err(e) => {
                let _ = fs_err::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    fn restore_into(snapshot: &Path, staging: &Path) -> Result<SnapshotImport> {
        let what = |e: &dyn std::fmt::Display| store_err(format!("restoring the snapshot {}: {e}", snapshot.display()));
        EdgeShard::unpack_snapshot(snapshot, staging).map_err(|e| what(&e))?;
        let segments = fs_err::read_dir(staging.join("segments"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
            .count();
        if segments == 0 {
            return Err(what(&"the archive holds no segments (is it a shard snapshot?)"));
        }
        let shard = EdgeShard::load(staging, None).map_err(|e| what(&e))?;
        let dim = {
            let config = shard.config();
            let dense = config
                .vectors
                .get(DENSE)
                .ok_or_else(|| what(&format!("it has no dense vector `{DENSE}` (vectors: {:?})", config.vectors.keys().collect::<Vec<_>>())))?;
            if dense.distance != qdrant_edge::Distance::Cosine {
                return Err(what(&format!("`{DENSE}` uses {:?} distance, this store searches by cosine", dense.distance)));
            }
            match config.sparse_vectors.get(SPARSE) {
                Some(s) if s.modifier == Some(Modifier::Idf) => {}
                Some(_) => return Err(what(&format!("sparse vector `{SPARSE}` has no IDF modifier (BM25 scores would be wrong)"))),
                None => return Err(what(&format!("it has no sparse vector `{SPARSE}`"))),
            }
            dense.size
        };
        let store = Self { shard, path: staging.to_path_buf(), writes: std::sync::Mutex::new(()) };
        store.create_indexes()?;
        store.optimize()?;
        let points = store.count()?;
        Ok(SnapshotImport { points, dim, segments })
    }
}
