//! Server backend: a Qdrant server or cluster over gRPC (the official `qdrant-client`).
//!
//! Same collection layout as the embedded backend ([`crate::edge::EdgeStore`]): a named dense
//! vector [`DENSE`] (cosine), a named sparse vector [`SPARSE`] with the IDF modifier, and payload
//! indexes on the filtered fields. Filters are the same JSON filters ([`KbFilter::to_qdrant_json`])
//! turned into gRPC conditions; hybrid queries are two prefetches fused by weighted RRF with an
//! explicit `k`, so scores and order match the embedded backend.
//!
//! [`VectorStore`] is synchronous; the async client runs on a small runtime owned by the store.
//! A call spawns its future there and waits for it, from plain threads and from inside tokio
//! alike (inside a multi-thread runtime the wait goes through `block_in_place`).
//!
//! Configuration: a [`ServerConfig`] (the binary fills it from `[kb] qdrant_url`, `qdrant_api_key`,
//! `qdrant_collection` or `ZHENGWU_QDRANT_URL`, `_API_KEY`, `_COLLECTION`; a URL selects this
//! backend; the collection defaults to [`DEFAULT_COLLECTION`]).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use qdrant_client::qdrant::{
    condition::ConditionOneOf, point_id::PointIdOptions, points_selector::PointsSelectorOneOf, query::Variant,
    r#match::MatchValue, vector_input, vectors::VectorsOptions, vectors_config, with_payload_selector,
    with_vectors_selector, CollectionStatus, Condition, CountPoints, CreateCollection, CreateFieldIndexCollection,
    DeletePoints, DenseVector, Distance, FieldCondition, FieldType, Filter, GetCollectionInfoRequest, IsEmptyCondition,
    IsNullCondition, Match, Modifier, NamedVectors, OptimizersConfigDiff, PointId, PointStruct, PointsSelector,
    PrefetchQuery, Query, QueryPoints, Range, Rrf, ScrollPoints, SparseVector, SparseVectorConfig, SparseVectorParams,
    UpdateCollection, UpsertPoints, Vector, VectorInput, VectorParams, VectorParamsMap, Vectors, VectorsConfig,
    WithPayloadSelector, WithVectorsSelector,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::store::{
    sort_hits, ChunkPayload, DocSummary, KbFilter, Point, SparseVec, StoreQuery, StoredHit, VectorStore, DENSE,
    SPARSE,
};

/// Collection used when none is configured.
pub const DEFAULT_COLLECTION: &str = "zhengwu_kb";

/// Payload fields with an index (the same as the embedded backend's).
const KEYWORD_FIELDS: &[&str] = &["doc_id", "kind", "region", "agency", "category"];
const INTEGER_FIELDS: &[&str] = &["effective", "expiry"];
/// Points per upsert request (keeps requests well under gRPC message limits).
const UPSERT_BATCH: usize = 256;
/// Points per scroll page.
const SCROLL_PAGE: u32 = 1000;
/// First server versions with RRF's `k` and with RRF weights in the Query API. Older servers
/// ignore the fields they do not know (protobuf), which would silently change the scores.
const MIN_VERSION_RRF_K: (u64, u64) = (1, 16);
const MIN_VERSION_RRF_WEIGHTS: (u64, u64) = (1, 17);

/// Where the server is and which collection holds the knowledge base.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// gRPC URL, e.g. `http://localhost:6334`.
    pub url: String,
    pub api_key: Option<String>,
    pub collection: String,
    /// Per-request timeout.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// How long [`VectorStore::optimize`] waits for the server to finish indexing.
    pub optimize_wait: Duration,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("collection", &self.collection)
            .finish()
    }
}

impl ServerConfig {
    pub fn new(url: impl Into<String>, collection: impl Into<String>) -> Self {
        ServerConfig {
            url: url.into(),
            api_key: None,
            collection: collection.into(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            optimize_wait: Duration::from_secs(300),
        }
    }
}

/// A [`VectorStore`] in a Qdrant server collection.
pub struct QdrantServerStore {
    client: Qdrant,
    config: ServerConfig,
    /// Runs the client's futures; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    server_version: String,
}

impl std::fmt::Debug for QdrantServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantServerStore")
            .field("url", &self.config.url)
            .field("collection", &self.config.collection)
            .field("server_version", &self.server_version)
            .finish()
    }
}

impl Drop for QdrantServerStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside async code: let it go in the
        // background instead (nothing is pending once a call has returned).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn qdrant_err(e: QdrantError) -> String {
    match e {
        QdrantError::ResponseError { status } => format!("{} ({:?})", status.message(), status.code()),
        other => other.to_string(),
    }
}

impl QdrantServerStore {
    /// Connect to the server and open the collection, creating it (dense vectors of `dim`
    /// dimensions, the sparse vector, payload indexes) when it does not exist. An existing
    /// collection must have the same layout and dimension.
    pub fn open(config: ServerConfig, dim: usize) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("zhengwu-qdrant")
            .enable_all()
            .build()
            .map_err(|e| Error::Store(format!("qdrant {}: starting the client runtime: {e}", config.url)))?;
        let client = {
            let _guard = rt.enter();
            let mut b = Qdrant::from_url(&config.url)
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout)
                .skip_compatibility_check();
            if let Some(key) = &config.api_key {
                b = b.api_key(key.clone());
            }
            b.build().map_err(|e| Error::Store(format!("qdrant {}: bad client configuration: {}", config.url, qdrant_err(e))))?
        };
        let mut store = QdrantServerStore { client, config, rt: Some(rt), server_version: String::new() };
        let c = store.client.clone();
        let reply = store
            .call("health check (is the server running, is the URL its gRPC port, usually 6334?)", async move {
                c.health_check().await
            })?;
        store.server_version = reply.version;
        store.ensure_collection(dim)?;
        Ok(store)
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The version the server reported in its health check.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// Delete the whole collection (tests, re-exports). The store is unusable afterwards.
    pub fn delete_collection(&self) -> Result<()> {
        let (c, name) = (self.client.clone(), self.config.collection.clone());
        self.call("deleting the collection", async move { c.delete_collection(name).await })?;
        Ok(())
    }

    fn ctx(&self, op: &str, e: impl std::fmt::Display) -> Error {
        Error::Store(format!("qdrant {} collection `{}`: {op}: {e}", self.config.url, self.config.collection))
    }

    /// Run a client call on the store's runtime and wait for it (safe inside tokio too).
    fn call<T, F>(&self, op: &str, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, QdrantError>> + Send + 'static,
    {
        let rt = self.rt.as_ref().ok_or_else(|| self.ctx(op, "store is closing"))?;
        let task = rt.spawn(fut);
        let wait = move || futures::executor::block_on(task);
        let joined = match tokio::runtime::Handle::try_current() {
            // Blocking a worker of a multi-thread runtime: tell tokio so it moves its other tasks.
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            // Plain threads and current-thread runtimes just wait (the work runs on our runtime).
            _ => wait(),
        };
        joined.map_err(|e| self.ctx(op, format!("client task failed: {e}")))?.map_err(|e| self.ctx(op, qdrant_err(e)))
    }

    fn ensure_collection(&self, dim: usize) -> Result<()> {
        let (c, name) = (self.client.clone(), self.config.collection.clone());
        let exists = self.call("checking whether the collection exists", async move { c.collection_exists(name).await })?;
        if exists {
            return self.check_layout(dim);
        }
        let request = CreateCollection {
            collection_name: self.config.collection.clone(),
            vectors_config: Some(VectorsConfig {
                config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                    map: HashMap::from([(
                        DENSE.to_string(),
                        VectorParams { size: dim as u64, distance: Distance::Cosine as i32, ..Default::default() },
                    )]),
                })),
            }),
            sparse_vectors_config: Some(SparseVectorConfig {
                map: HashMap::from([(
                    SPARSE.to_string(),
                    SparseVectorParams { index: None, modifier: Some(Modifier::Idf as i32) },
                )]),
            }),
            ..Default::default()
        };
        let c = self.client.clone();
        self.call("creating the collection", async move { c.create_collection(request).await })?;
        let fields = KEYWORD_FIELDS
            .iter()
            .map(|f| (*f, FieldType::Keyword))
            .chain(INTEGER_FIELDS.iter().map(|f| (*f, FieldType::Integer)));
        for (field, ty) in fields {
            let request = CreateFieldIndexCollection {
                collection_name: self.config.collection.clone(),
                wait: Some(true),
                field_name: field.to_string(),
                field_type: Some(ty as i32),
                ..Default::default()
            };
            let c = self.client.clone();
            self.call(&format!("creating the payload index on `{field}`"), async move {
                c.create_field_index(request).await
            })?;
        }
        Ok(())
    }

    /// An existing collection must have the dense vector (cosine, `dim`) and the IDF sparse vector.
    fn check_layout(&self, dim: usize) -> Result<()> {
        let (c, name) = (self.client.clone(), self.config.collection.clone());
        let info = self.call("reading the collection info", async move { c.collection_info(name).await })?;
        let params = info.result.and_then(|i| i.config).and_then(|c| c.params);
        let Some(params) = params else {
            return Err(self.ctx("reading the collection info", "the server sent no collection parameters"));
        };
        let dense = match params.vectors_config.and_then(|v| v.config) {
            Some(vectors_config::Config::ParamsMap(m)) => m.map.get(DENSE).cloned(),
            _ => None,
        };
        let Some(dense) = dense else {
            return Err(self.ctx(
                "checking the collection layout",
                format!("it has no named dense vector `{DENSE}`; it was not made by zhengwu, use another collection"),
            ));
        };
        if dense.size != dim as u64 {
            return Err(self.ctx(
                "checking the collection layout",
                format!(
                    "it holds `{DENSE}` vectors of dimension {}, the embedder gives {dim}; use another collection \
                     (ZHENGWU_QDRANT_COLLECTION) or re-ingest into a fresh one",
                    dense.size
                ),
            ));
        }
        if dense.distance != Distance::Cosine as i32 {
            return Err(self.ctx("checking the collection layout", format!("`{DENSE}` does not use cosine distance")));
        }
        let sparse = params.sparse_vectors_config.and_then(|s| s.map.get(SPARSE).cloned());
        match sparse {
            Some(s) if s.modifier == Some(Modifier::Idf as i32) => Ok(()),
            Some(_) => Err(self.ctx(
                "checking the collection layout",
                format!("sparse vector `{SPARSE}` has no IDF modifier (BM25 scores would be wrong)"),
            )),
            None => Err(self.ctx("checking the collection layout", format!("it has no sparse vector `{SPARSE}`"))),
        }
    }

    fn version_at_least(&self, min: (u64, u64)) -> bool {
        version_at_least(&self.server_version, min)
    }

    fn scroll_all(&self, filter: Option<Filter>) -> Result<Vec<(u64, ChunkPayload)>> {
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let request = ScrollPoints {
                collection_name: self.config.collection.clone(),
                filter: filter.clone(),
                offset: offset.take(),
                limit: Some(SCROLL_PAGE),
                with_payload: Some(payload_on()),
                with_vectors: Some(WithVectorsSelector {
                    selector_options: Some(with_vectors_selector::SelectorOptions::Enable(false)),
                }),
                ..Default::default()
            };
            let c = self.client.clone();
            let page = self.call("scrolling points", async move { c.scroll(request).await })?;
            for p in page.result {
                let id = num_id(p.id).map_err(|e| self.ctx("scrolling points", e))?;
                out.push((id, decode_payload(p.payload).map_err(|e| self.ctx("decoding a payload", e))?));
            }
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    fn count_filtered(&self, filter: Option<Filter>) -> Result<usize> {
        let request = CountPoints {
            collection_name: self.config.collection.clone(),
            filter,
            exact: Some(true),
            ..Default::default()
        };
        let c = self.client.clone();
        let r = self.call("counting points", async move { c.count(request).await })?;
        Ok(r.result.map(|r| r.count as usize).unwrap_or(0))
    }
}

/// Copy every point of the embedded store in `dir` (vectors and payloads) into the server
/// collection of `config`, which is created with the embedded store's dimension if missing.
/// Returns the number of points copied; `progress` gets (copied so far) after each batch.
/// Points already on the server with the same ids are replaced; others are kept.
pub fn export_edge_dir(dir: &std::path::Path, config: ServerConfig, progress: &mut dyn FnMut(usize)) -> Result<usize> {
    use qdrant_edge::{EdgeShard, ScrollRequest, VectorStructInternal, WithPayloadInterface, WithVector};
    if !dir.join("edge_config.json").exists() {
        return Err(Error::Store(format!("{}: no embedded store there", dir.display())));
    }
    let shard = EdgeShard::load(dir, None).map_err(|e| Error::Store(format!("opening {}: {e}", dir.display())))?;
    let dim = shard
        .config()
        .vectors
        .get(DENSE)
        .map(|v| v.size)
        .ok_or_else(|| Error::Store(format!("{}: no `{DENSE}` vectors", dir.display())))?;
    let target = QdrantServerStore::open(config, dim)?;
    let bad = |what: String| Error::Store(format!("{}: {what}", dir.display()));
    let mut offset = None;
    let mut copied = 0;
    loop {
        let (records, next) = shard
            .scroll(ScrollRequest {
                offset,
                limit: Some(UPSERT_BATCH),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(true),
                order_by: None,
            })
            .map_err(|e| bad(format!("reading points: {e}")))?;
        let mut batch = Vec::with_capacity(records.len());
        for r in records {
            let id = match r.id {
                qdrant_edge::PointId::NumId(n) => n,
                other => return Err(bad(format!("unexpected point id {other:?}"))),
            };
            let payload = r.payload.ok_or_else(|| bad(format!("point {id} without payload")))?;
            let payload: ChunkPayload = serde_json::from_value(Json::Object(payload.0.into_iter().collect()))?;
            let Some(VectorStructInternal::Named(mut vectors)) = r.vector else {
                return Err(bad(format!("point {id} without named vectors")));
            };
            let dense = match vectors.remove(DENSE) {
                Some(qdrant_edge::VectorInternal::Dense(d)) => d,
                _ => return Err(bad(format!("point {id} without `{DENSE}` vector"))),
            };
            let sparse = match vectors.remove(SPARSE) {
                Some(qdrant_edge::VectorInternal::Sparse(s)) => SparseVec { indices: s.indices, values: s.values },
                None => SparseVec::default(),
                Some(_) => return Err(bad(format!("point {id}: `{SPARSE}` is not sparse"))),
            };
            batch.push(Point { id, dense, sparse, payload });
        }
        copied += batch.len();
        target.upsert(batch)?;
        progress(copied);
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    target.optimize()?;
    Ok(copied)
}

/// Whether `version` (`x.y.z`, as the health check reports it) is at least `min` (major, minor).
/// Versions that do not parse count as new enough.
pub fn version_at_least(version: &str, min: (u64, u64)) -> bool {
    let mut parts = version.trim().trim_start_matches('v').split(['.', '-', '+']);
    let major = parts.next().and_then(|p| p.parse::<u64>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u64>().ok());
    match (major, minor) {
        (Some(a), Some(b)) => (a, b) >= min,
        _ => true,
    }
}

fn payload_on() -> WithPayloadSelector {
    WithPayloadSelector { selector_options: Some(with_payload_selector::SelectorOptions::Enable(true)) }
}

fn num_id(id: Option<PointId>) -> std::result::Result<u64, String> {
    match id.and_then(|i| i.point_id_options) {
        Some(PointIdOptions::Num(n)) => Ok(n),
        Some(PointIdOptions::Uuid(u)) => Err(format!("unexpected UUID point id {u}")),
        None => Err("point without id".into()),
    }
}

fn point_id(n: u64) -> PointId {
    PointId { point_id_options: Some(PointIdOptions::Num(n)) }
}

fn decode_payload(p: HashMap<String, qdrant_client::qdrant::Value>) -> std::result::Result<ChunkPayload, String> {
    let json: Json = Payload::from(p).into();
    serde_json::from_value(json).map_err(|e| e.to_string())
}

fn dense_vector(v: Vec<f32>) -> Vector {
    Vector { vector: Some(qdrant_client::qdrant::vector::Vector::Dense(DenseVector { data: v })), ..Default::default() }
}

fn sparse_vector(v: &SparseVec) -> Vector {
    Vector {
        vector: Some(qdrant_client::qdrant::vector::Vector::Sparse(SparseVector {
            indices: v.indices.clone(),
            values: v.values.clone(),
        })),
        ..Default::default()
    }
}

fn nearest(v: vector_input::Variant) -> Query {
    Query { variant: Some(Variant::Nearest(VectorInput { variant: Some(v) })) }
}

/// A Qdrant JSON filter (the subset [`KbFilter::to_qdrant_json`] writes: `must` / `should` /
/// `must_not`, keyword / integer / bool `match`, `range`, `is_empty`, `is_null`, nested filters)
/// as a gRPC filter. The embedded backend parses the same JSON, so both filter alike.
pub fn json_filter_to_grpc(j: &Json) -> std::result::Result<Filter, String> {
    let obj = j.as_object().ok_or_else(|| format!("filter is not an object: {j}"))?;
    let mut f = Filter::default();
    for (key, value) in obj {
        let list = value.as_array().ok_or_else(|| format!("`{key}` is not a list: {value}"))?;
        let conds = list.iter().map(json_condition_to_grpc).collect::<std::result::Result<Vec<_>, _>>()?;
        match key.as_str() {
            "must" => f.must = conds,
            "should" => f.should = conds,
            "must_not" => f.must_not = conds,
            other => return Err(format!("unsupported filter clause `{other}`")),
        }
    }
    Ok(f)
}

fn json_condition_to_grpc(j: &Json) -> std::result::Result<Condition, String> {
    let obj = j.as_object().ok_or_else(|| format!("condition is not an object: {j}"))?;
    let one = |c: ConditionOneOf| Ok(Condition { condition_one_of: Some(c) });
    if obj.contains_key("must") || obj.contains_key("should") || obj.contains_key("must_not") {
        return one(ConditionOneOf::Filter(json_filter_to_grpc(j)?));
    }
    let key_of = |v: &Json| v.get("key").and_then(Json::as_str).map(str::to_string);
    if let Some(v) = obj.get("is_empty") {
        return one(ConditionOneOf::IsEmpty(IsEmptyCondition { key: key_of(v).ok_or("is_empty without key")? }));
    }
    if let Some(v) = obj.get("is_null") {
        return one(ConditionOneOf::IsNull(IsNullCondition { key: key_of(v).ok_or("is_null without key")? }));
    }
    let key = key_of(j).ok_or_else(|| format!("unsupported condition {j}"))?;
    let mut field = FieldCondition { key, ..Default::default() };
    if let Some(m) = obj.get("match") {
        let value = m.get("value").ok_or_else(|| format!("unsupported match {m}"))?;
        let mv = match value {
            Json::String(s) => MatchValue::Keyword(s.clone()),
            Json::Bool(b) => MatchValue::Boolean(*b),
            Json::Number(n) => MatchValue::Integer(n.as_i64().ok_or_else(|| format!("match on a non-integer {n}"))?),
            other => return Err(format!("unsupported match value {other}")),
        };
        field.r#match = Some(Match { match_value: Some(mv) });
    } else if let Some(r) = obj.get("range") {
        let bound = |k: &str| r.get(k).and_then(Json::as_f64);
        field.range = Some(Range { lt: bound("lt"), gt: bound("gt"), gte: bound("gte"), lte: bound("lte") });
    } else {
        return Err(format!("unsupported condition {j}"));
    }
    one(ConditionOneOf::Field(field))
}

fn grpc_filter(f: &KbFilter) -> Result<Option<Filter>> {
    f.to_qdrant_json()
        .map(|j| json_filter_to_grpc(&j).map_err(|e| Error::Store(format!("converting filter {j}: {e}"))))
        .transpose()
}

impl VectorStore for QdrantServerStore {
    fn upsert(&self, points: Vec<Point>) -> Result<()> {
        let mut points = points.into_iter().peekable();
        while points.peek().is_some() {
            let mut batch = Vec::with_capacity(UPSERT_BATCH);
            for p in points.by_ref().take(UPSERT_BATCH) {
                let payload = Payload::try_from(serde_json::to_value(&p.payload)?)
                    .map_err(|e| self.ctx("encoding a payload", qdrant_err(e)))?;
                batch.push(PointStruct {
                    id: Some(point_id(p.id)),
                    payload: payload.into(),
                    vectors: Some(Vectors {
                        vectors_options: Some(VectorsOptions::Vectors(NamedVectors {
                            vectors: HashMap::from([
                                (DENSE.to_string(), dense_vector(p.dense)),
                                (SPARSE.to_string(), sparse_vector(&p.sparse)),
                            ]),
                        })),
                    }),
                });
            }
            let request = UpsertPoints {
                collection_name: self.config.collection.clone(),
                wait: Some(true),
                points: batch,
                ..Default::default()
            };
            let c = self.client.clone();
            self.call("upserting points", async move { c.upsert_points(request).await })?;
        }
        Ok(())
    }

    fn delete_doc(&self, doc_id: &str) -> Result<usize> {
        let f = KbFilter { doc_id: Some(doc_id.to_string()), ..Default::default() };
        let filter = grpc_filter(&f)?.expect("doc filter");
        let n = self.count_filtered(Some(filter.clone()))?;
        if n > 0 {
            let request = DeletePoints {
                collection_name: self.config.collection.clone(),
                wait: Some(true),
                points: Some(PointsSelector { points_selector_one_of: Some(PointsSelectorOneOf::Filter(filter)) }),
                ..Default::default()
            };
            let c = self.client.clone();
            self.call(&format!("deleting the points of {doc_id}"), async move { c.delete_points(request).await })?;
        }
        Ok(n)
    }

    fn query(&self, q: &StoreQuery) -> Result<Vec<StoredHit>> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let filter = grpc_filter(&q.filter)?;
        let dense = q.dense.as_ref().map(|d| nearest(vector_input::Variant::Dense(DenseVector { data: d.clone() })));
        let sparse = match &q.sparse {
            // An empty sparse query (only stopwords) matches nothing, as in the embedded backend.
            Some(s) if s.indices.is_empty() => None,
            Some(s) => Some(nearest(vector_input::Variant::Sparse(SparseVector {
                indices: s.indices.clone(),
                values: s.values.clone(),
            }))),
            None => None,
        };
        if q.sparse.is_some() && sparse.is_none() && dense.is_none() {
            return Ok(Vec::new());
        }
        // A few more than needed so ties at the cut are decided by id (as in the embedded backend).
        let fetch = (q.limit + 8) as u64;
        let mut request = QueryPoints {
            collection_name: self.config.collection.clone(),
            filter: filter.clone(),
            limit: Some(fetch),
            with_payload: Some(payload_on()),
            ..Default::default()
        };
        match (dense, sparse) {
            (Some(d), Some(s)) => {
                q.weights.validate()?;
                if !self.version_at_least(MIN_VERSION_RRF_K) {
                    return Err(self.ctx(
                        "hybrid query",
                        format!(
                            "server version {} does not support RRF with an explicit k (needs Qdrant >= {}.{}); \
                             it would silently fuse with its default k",
                            self.server_version, MIN_VERSION_RRF_K.0, MIN_VERSION_RRF_K.1
                        ),
                    ));
                }
                let unweighted = q.weights.dense == 1.0 && q.weights.sparse == 1.0;
                let weights = if self.version_at_least(MIN_VERSION_RRF_WEIGHTS) {
                    // Weights of 1 score exactly as unweighted RRF; always send them, as edge does.
                    vec![q.weights.dense, q.weights.sparse]
                } else if unweighted {
                    Vec::new()
                } else {
                    return Err(self.ctx(
                        "hybrid query",
                        format!(
                            "server version {} does not support weighted RRF (needs Qdrant >= {}.{}); fusion weights \
                             dense {} / sparse {} cannot be applied (use 1:1, or upgrade the server)",
                            self.server_version,
                            MIN_VERSION_RRF_WEIGHTS.0,
                            MIN_VERSION_RRF_WEIGHTS.1,
                            q.weights.dense,
                            q.weights.sparse
                        ),
                    ));
                };
                let prefetch = q.prefetch.max(q.limit) as u64;
                // The top-level filter applies to the prefetches too (Qdrant propagates it, in
                // the server as in the embedded engine), so the request matches the edge backend's.
                let pf = |query: Query, using: &str| PrefetchQuery {
                    query: Some(query),
                    using: Some(using.to_string()),
                    limit: Some(prefetch),
                    ..Default::default()
                };
                request.prefetch = vec![pf(d, DENSE), pf(s, SPARSE)];
                let k = u32::try_from(q.weights.k).map_err(|_| Error::invalid(format!("RRF k {} too large", q.weights.k)))?;
                request.query = Some(Query { variant: Some(Variant::Rrf(Rrf { k: Some(k), weights })) });
            }
            (Some(d), None) => {
                request.query = Some(d);
                request.using = Some(DENSE.to_string());
            }
            (None, Some(s)) => {
                request.query = Some(s);
                request.using = Some(SPARSE.to_string());
            }
            (None, None) => return Err(Error::invalid("query without a dense or sparse vector")),
        }
        let c = self.client.clone();
        let response = self.call("querying", async move { c.query(request).await })?;
        let mut hits = response
            .result
            .into_iter()
            .map(|p| {
                Ok(StoredHit {
                    id: num_id(p.id).map_err(|e| self.ctx("querying", e))?,
                    score: p.score,
                    payload: decode_payload(p.payload).map_err(|e| self.ctx("decoding a payload", e))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        sort_hits(&mut hits);
        hits.truncate(q.limit);
        Ok(hits)
    }

    fn documents(&self) -> Result<Vec<DocSummary>> {
        let points = self.scroll_all(None)?;
        Ok(DocSummary::collect(points.iter().map(|(_, p)| p)))
    }

    fn doc_chunks(&self, doc_id: &str) -> Result<Vec<StoredHit>> {
        let f = KbFilter { doc_id: Some(doc_id.to_string()), ..Default::default() };
        let mut hits: Vec<StoredHit> = self
            .scroll_all(grpc_filter(&f)?)?
            .into_iter()
            .map(|(id, payload)| StoredHit { id, score: 0.0, payload })
            .collect();
        hits.sort_by_key(|h| h.payload.chunk_index);
        Ok(hits)
    }

    fn count(&self) -> Result<usize> {
        self.count_filtered(None)
    }

    /// The server indexes by itself; wait (up to `optimize_wait`) until the collection is green,
    /// nudging the optimizers once when they are idle with work pending (grey).
    fn optimize(&self) -> Result<()> {
        let start = Instant::now();
        let mut nudged = false;
        loop {
            let (c, name) = (self.client.clone(), self.config.collection.clone());
            let info = self.call("waiting for indexing", async move {
                c.collection_info(GetCollectionInfoRequest { collection_name: name }).await
            })?;
            let status = info.result.map(|i| i.status).unwrap_or_default();
            match CollectionStatus::try_from(status) {
                Ok(CollectionStatus::Green) => return Ok(()),
                Ok(CollectionStatus::Red) => return Err(self.ctx("waiting for indexing", "collection status is red")),
                Ok(CollectionStatus::Grey) if !nudged => {
                    nudged = true;
                    let request = UpdateCollection {
                        collection_name: self.config.collection.clone(),
                        optimizers_config: Some(OptimizersConfigDiff::default()),
                        ..Default::default()
                    };
                    let c = self.client.clone();
                    self.call("starting the optimizers", async move { c.update_collection(request).await })?;
                }
                _ => {}
            }
            if start.elapsed() >= self.config.optimize_wait {
                tracing::warn!(
                    collection = %self.config.collection,
                    "qdrant is still indexing after {:?}; searches work meanwhile",
                    self.config.optimize_wait
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Writes are acknowledged after the server applied them (`wait = true`), durably in its WAL.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(version_at_least("1.17.0", (1, 17)));
        assert!(version_at_least("1.18.2", (1, 17)));
        assert!(version_at_least("2.0.0", (1, 17)));
        assert!(!version_at_least("1.16.3", (1, 17)));
        assert!(!version_at_least("v1.9.0", (1, 16)));
        assert!(version_at_least("dev", (1, 17)), "unparsable versions count as new");
    }

    #[test]
    fn filter_json_to_grpc() {
        let f = KbFilter {
            region: Some("示例市".into()),
            kind: Some(crate::store::EntryKind::Faq),
            valid_on: chrono::NaiveDate::from_ymd_opt(2025, 6, 1),
            ..Default::default()
        };
        let g = grpc_filter(&f).unwrap().unwrap();
        assert_eq!(g.must.len(), 4);
        let Some(ConditionOneOf::Filter(region)) = &g.must[0].condition_one_of else { panic!("{g:?}") };
        assert_eq!(region.should.len(), 3);
        assert!(matches!(&region.should[2].condition_one_of, Some(ConditionOneOf::IsEmpty(c)) if c.key == "region"));
        let Some(ConditionOneOf::Field(kind)) = &g.must[1].condition_one_of else { panic!("{g:?}") };
        assert_eq!(kind.r#match.as_ref().unwrap().match_value, Some(MatchValue::Keyword("faq".into())));
        assert!(grpc_filter(&KbFilter::default()).unwrap().is_none());
        assert!(json_filter_to_grpc(&serde_json::json!({"must": [{"key": "x", "geo_radius": {}}]})).is_err());
    }

    #[test]
    fn config_debug_hides_the_key() {
        let mut c = ServerConfig::new("http://h:6334", "c");
        c.api_key = Some("secret".into());
        assert!(!format!("{c:?}").contains("secret"));
    }
}
