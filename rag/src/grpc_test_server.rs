//! An in-process Qdrant gRPC server for tests (cargo feature `test-server`).
//!
//! It serves the tonic service traits that `qdrant-client` ships (`Collections`, `Points`,
//! `Qdrant`) on `127.0.0.1:<free port>` and forwards what [`crate::qdrant_server`] uses to real
//! qdrant-edge shards, one per collection, in a directory: create / exists / info / delete a
//! collection, payload indexes, upsert, delete by filter, count, scroll and the Query API (nearest
//! dense or sparse, prefetches, RRF with `k` and weights). Every other RPC answers
//! `UNIMPLEMENTED`, as do the parts of a request it does not understand, so the client path is
//! exercised for real: protobuf on a socket, the server's filter and query semantics.
//!
//! The server runs on its own thread and runtime and stops when the [`TestServer`] is dropped.
//! qdrant-edge 0.7.2 does not ship Qdrant's gRPC conversions (its `api` feature is not
//! published), so the few conversions needed are written here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use qdrant_client::qdrant as g;
use qdrant_client::qdrant::collections_server::{Collections, CollectionsServer};
use qdrant_client::qdrant::points_server::{Points, PointsServer};
use qdrant_client::qdrant::qdrant_server::{Qdrant as QdrantService, QdrantServer};
use qdrant_edge::{
    CountRequest, EdgeConfigBuilder, EdgeShard, EdgeSparseVectorParamsBuilder, EdgeVectorParamsBuilder, Filter,
    Fusion, NamedQuery, PayloadFieldSchema, PointId, PointInsertOperations, PointOperations, PointStruct, Prefetch,
    QueryEnum, QueryRequest, ScoringQuery, ScrollRequest, UpdateOperation, Vector, VectorInternal,
    WithPayloadInterface, WithVector,
};
use serde_json::{json, Value as Json};
use tonic::{Request, Response, Status};

/// The Qdrant API level the server implements (RRF with `k` and weights: 1.17).
pub const API_VERSION: &str = "1.17.0";
/// Qdrant's RRF `k` when a request names none.
const DEFAULT_RRF_K: usize = 2;

type Rpc<T> = Result<Response<T>, Status>;

/// A running server; dropping it stops the server and waits for its thread.
pub struct TestServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").field("addr", &self.addr).finish()
    }
}

impl TestServer {
    /// Start a server keeping its collections under `dir` (which must outlive the server).
    pub fn start(dir: &Path) -> std::io::Result<Self> {
        Self::start_with_version(dir, API_VERSION)
    }

    /// A server that reports `version` in its health check (to test version-dependent paths).
    pub fn start_with_version(dir: &Path, version: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let engine = Arc::new(Engine {
            dir: dir.to_path_buf(),
            version: version.to_string(),
            collections: Mutex::new(HashMap::new()),
        });
        let (tx_addr, rx_addr) = std::sync::mpsc::channel();
        let (tx_stop, rx_stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("qdrant-test-server".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx_addr.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx_addr.send(Err(e));
                        return;
                    }
                };
                let _ = tx_addr.send(listener.local_addr());
                let (tx_inner, rx_inner) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(CollectionsServer::new(Service(engine.clone())))
                        .add_service(PointsServer::new(Service(engine.clone())))
                        .add_service(QdrantServer::new(Service(engine)))
                        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                            let _ = rx_inner.await;
                        }),
                );
                let _ = rx_stop.await;
                let _ = tx_inner.send(());
                // Graceful stop, but never wait long for clients that keep a connection open.
                match tokio::time::timeout(std::time::Duration::from_secs(3), server).await {
                    Ok(Ok(Err(e))) => eprintln!("qdrant test server stopped: {e}"),
                    Ok(Err(e)) => eprintln!("qdrant test server task failed: {e}"),
                    _ => {}
                }
            });
            rt.shutdown_background();
        })?;
        let addr = rx_addr
            .recv()
            .map_err(|_| std::io::Error::other("test server thread ended before binding"))??;
        Ok(TestServer { addr, shutdown: Some(tx_stop), thread: Some(thread) })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Engine {
    dir: PathBuf,
    version: String,
    collections: Mutex<HashMap<String, Arc<EdgeShard>>>,
}

impl Engine {
    fn shard(&self, name: &str) -> Result<Arc<EdgeShard>, Status> {
        let map = self.collections.lock().map_err(|_| Status::internal("lock poisoned"))?;
        map.get(name).cloned().ok_or_else(|| Status::not_found(format!("Collection `{name}` doesn't exist!")))
    }
}

#[derive(Clone)]
struct Service(Arc<Engine>);

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!("the test server does not implement {what}"))
}

// ---- conversions: gRPC -> qdrant-edge -----------------------------------------------------------

fn edge_distance(d: i32) -> Result<qdrant_edge::Distance, Status> {
    Ok(match g::Distance::try_from(d) {
        Ok(g::Distance::Cosine) => qdrant_edge::Distance::Cosine,
        Ok(g::Distance::Euclid) => qdrant_edge::Distance::Euclid,
        Ok(g::Distance::Dot) => qdrant_edge::Distance::Dot,
        Ok(g::Distance::Manhattan) => qdrant_edge::Distance::Manhattan,
        _ => return Err(invalid(format!("unknown distance {d}"))),
    })
}

fn grpc_distance(d: &qdrant_edge::Distance) -> i32 {
    (match d {
        qdrant_edge::Distance::Cosine => g::Distance::Cosine,
        qdrant_edge::Distance::Euclid => g::Distance::Euclid,
        qdrant_edge::Distance::Dot => g::Distance::Dot,
        qdrant_edge::Distance::Manhattan => g::Distance::Manhattan,
    }) as i32
}

fn edge_point_id(id: Option<g::PointId>) -> Result<PointId, Status> {
    match id.and_then(|i| i.point_id_options) {
        Some(g::point_id::PointIdOptions::Num(n)) => Ok(PointId::NumId(n)),
        Some(g::point_id::PointIdOptions::Uuid(u)) => {
            Ok(PointId::Uuid(u.parse().map_err(|e| invalid(format!("bad uuid {u}: {e}")))?))
        }
        None => Err(invalid("point without id")),
    }
}

fn grpc_point_id(id: PointId) -> g::PointId {
    let o = match id {
        PointId::NumId(n) => g::point_id::PointIdOptions::Num(n),
        PointId::Uuid(u) => g::point_id::PointIdOptions::Uuid(u.to_string()),
    };
    g::PointId { point_id_options: Some(o) }
}

fn payload_to_json(p: HashMap<String, g::Value>) -> Json {
    qdrant_client::Payload::from(p).into()
}

fn payload_from_edge(p: Option<qdrant_edge::Payload>) -> Result<HashMap<String, g::Value>, Status> {
    let Some(p) = p else { return Ok(HashMap::new()) };
    let json = Json::Object(p.0.into_iter().collect());
    Ok(qdrant_client::Payload::try_from(json).map_err(internal)?.into())
}

fn edge_vector(v: g::Vector) -> Result<Vector, Status> {
    match v.vector {
        Some(g::vector::Vector::Dense(d)) => Ok(Vector::new_dense(d.data)),
        Some(g::vector::Vector::Sparse(s)) => Vector::new_sparse(s.indices, s.values).map_err(invalid),
        Some(_) => Err(unsupported("multi-dense, document, image or object vectors")),
        None => Err(unsupported("the deprecated vector fields (data / indices)")),
    }
}

fn edge_query_vector(v: g::VectorInput) -> Result<VectorInternal, Status> {
    match v.variant {
        Some(g::vector_input::Variant::Dense(d)) => Ok(VectorInternal::Dense(d.data)),
        Some(g::vector_input::Variant::Sparse(s)) => Ok(Vector::new_sparse(s.indices, s.values).map_err(invalid)?.0),
        _ => Err(unsupported("query inputs other than dense or sparse vectors")),
    }
}

/// A gRPC filter as Qdrant's JSON filter, which qdrant-edge parses.
fn filter_json(f: &g::Filter) -> Result<Json, Status> {
    if f.min_should.is_some() {
        return Err(unsupported("min_should"));
    }
    let list = |c: &[g::Condition]| c.iter().map(condition_json).collect::<Result<Vec<_>, _>>();
    let mut out = serde_json::Map::new();
    for (key, conds) in [("must", &f.must), ("should", &f.should), ("must_not", &f.must_not)] {
        if !conds.is_empty() {
            out.insert(key.into(), Json::Array(list(conds)?));
        }
    }
    Ok(Json::Object(out))
}

fn condition_json(c: &g::Condition) -> Result<Json, Status> {
    use g::condition::ConditionOneOf as C;
    match &c.condition_one_of {
        Some(C::Filter(f)) => filter_json(f),
        Some(C::IsEmpty(e)) => Ok(json!({"is_empty": {"key": e.key}})),
        Some(C::IsNull(n)) => Ok(json!({"is_null": {"key": n.key}})),
        Some(C::HasId(h)) => {
            let ids = h
                .has_id
                .iter()
                .map(|id| match &id.point_id_options {
                    Some(g::point_id::PointIdOptions::Num(n)) => Ok(json!(n)),
                    Some(g::point_id::PointIdOptions::Uuid(u)) => Ok(json!(u)),
                    None => Err(invalid("has_id without id")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json!({"has_id": ids}))
        }
        Some(C::Field(f)) => {
            let set = [
                f.r#match.is_some(),
                f.range.is_some(),
                f.is_empty.is_some(),
                f.is_null.is_some(),
                f.geo_bounding_box.is_some() || f.geo_radius.is_some() || f.geo_polygon.is_some(),
                f.values_count.is_some() || f.datetime_range.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 || set[4] || set[5] {
                return Err(unsupported("field conditions other than one match / range / is_empty / is_null"));
            }
            if let Some(m) = &f.r#match {
                use g::r#match::MatchValue as M;
                let m = match &m.match_value {
                    Some(M::Keyword(s)) => json!({"value": s}),
                    Some(M::Integer(i)) => json!({"value": i}),
                    Some(M::Boolean(b)) => json!({"value": b}),
                    Some(M::Keywords(k)) => json!({"any": k.strings}),
                    Some(M::Integers(i)) => json!({"any": i.integers}),
                    _ => return Err(unsupported("this match kind")),
                };
                return Ok(json!({"key": f.key, "match": m}));
            }
            if let Some(r) = &f.range {
                let mut range = serde_json::Map::new();
                for (k, v) in [("lt", r.lt), ("gt", r.gt), ("gte", r.gte), ("lte", r.lte)] {
                    if let Some(v) = v {
                        range.insert(k.into(), json!(v));
                    }
                }
                return Ok(json!({"key": f.key, "range": range}));
            }
            if f.is_empty == Some(true) {
                return Ok(json!({"is_empty": {"key": f.key}}));
            }
            if f.is_null == Some(true) {
                return Ok(json!({"is_null": {"key": f.key}}));
            }
            Err(unsupported("is_empty / is_null = false"))
        }
        Some(_) => Err(unsupported("nested, has_vector or slice conditions")),
        None => Err(invalid("empty condition")),
    }
}

fn edge_filter(f: Option<&g::Filter>) -> Result<Option<Filter>, Status> {
    f.map(|f| serde_json::from_value::<Filter>(filter_json(f)?).map_err(invalid)).transpose()
}

fn payload_selector(s: Option<&g::WithPayloadSelector>) -> Result<WithPayloadInterface, Status> {
    match s.and_then(|s| s.selector_options.as_ref()) {
        None => Ok(WithPayloadInterface::Bool(false)),
        Some(g::with_payload_selector::SelectorOptions::Enable(b)) => Ok(WithPayloadInterface::Bool(*b)),
        Some(_) => Err(unsupported("payload include / exclude selectors")),
    }
}

fn check_no_vectors(s: Option<&g::WithVectorsSelector>) -> Result<(), Status> {
    match s.and_then(|s| s.selector_options.as_ref()) {
        None | Some(g::with_vectors_selector::SelectorOptions::Enable(false)) => Ok(()),
        Some(_) => Err(unsupported("returning vectors")),
    }
}

fn scoring_query(q: Option<g::Query>, using: Option<String>) -> Result<Option<ScoringQuery>, Status> {
    let Some(variant) = q.and_then(|q| q.variant) else { return Ok(None) };
    Ok(Some(match variant {
        g::query::Variant::Nearest(v) => {
            ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery { query: edge_query_vector(v)?, using }))
        }
        g::query::Variant::Rrf(r) => {
            let weights = (!r.weights.is_empty())
                .then(|| r.weights.iter().map(|w| ordered_float::OrderedFloat(*w)).collect());
            ScoringQuery::Fusion(Fusion::Rrf { k: r.k.map_or(DEFAULT_RRF_K, |k| k as usize), weights })
        }
        g::query::Variant::Fusion(f) if f == g::Fusion::Rrf as i32 => {
            ScoringQuery::Fusion(Fusion::Rrf { k: DEFAULT_RRF_K, weights: None })
        }
        _ => return Err(unsupported("query kinds other than nearest and RRF")),
    }))
}

fn prefetch(p: g::PrefetchQuery) -> Result<Prefetch, Status> {
    if p.lookup_from.is_some() || p.params.is_some() || p.score_threshold.is_some() {
        return Err(unsupported("lookup_from / params / score_threshold in prefetches"));
    }
    Ok(Prefetch {
        prefetches: p.prefetch.into_iter().map(prefetch).collect::<Result<_, _>>()?,
        query: scoring_query(p.query, p.using)?,
        limit: p.limit.unwrap_or(10) as usize,
        params: None,
        filter: edge_filter(p.filter.as_ref())?,
        score_threshold: None,
    })
}

fn ok<T>(t: T) -> Rpc<T> {
    Ok(Response::new(t))
}

fn update_ok() -> g::PointsOperationResponse {
    g::PointsOperationResponse {
        result: Some(g::UpdateResult { operation_id: None, status: g::UpdateStatus::Completed as i32 }),
        ..Default::default()
    }
}

fn valid_name(name: &str) -> Result<(), Status> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(invalid(format!("collection name `{name}`: use letters, digits, _ and -")));
    }
    Ok(())
}

// ---- services ------------------------------------------------------------------------------------

#[tonic::async_trait]
impl QdrantService for Service {
    async fn health_check(&self, _: Request<g::HealthCheckRequest>) -> Rpc<g::HealthCheckReply> {
        ok(g::HealthCheckReply {
            title: "zhengwu in-process test server (qdrant-edge 0.7.2)".into(),
            version: self.0.version.clone(),
            commit: None,
        })
    }
}

#[tonic::async_trait]
impl Collections for Service {
    async fn get(&self, r: Request<g::GetCollectionInfoRequest>) -> Rpc<g::GetCollectionInfoResponse> {
        let shard = self.0.shard(&r.get_ref().collection_name)?;
        let info = shard.info();
        let config = shard.config();
        let vectors = config
            .vectors
            .iter()
            .map(|(name, v)| {
                let params = g::VectorParams { size: v.size as u64, distance: grpc_distance(&v.distance), ..Default::default() };
                (name.to_string(), params)
            })
            .collect();
        let sparse = config
            .sparse_vectors
            .iter()
            .map(|(name, s)| {
                let modifier = match s.modifier {
                    Some(qdrant_edge::Modifier::Idf) => Some(g::Modifier::Idf as i32),
                    Some(qdrant_edge::Modifier::None) => Some(g::Modifier::None as i32),
                    None => None,
                };
                (name.to_string(), g::SparseVectorParams { index: None, modifier })
            })
            .collect();
        let params = g::CollectionParams {
            shard_number: 1,
            vectors_config: Some(g::VectorsConfig {
                config: Some(g::vectors_config::Config::ParamsMap(g::VectorParamsMap { map: vectors })),
            }),
            sparse_vectors_config: Some(g::SparseVectorConfig { map: sparse }),
            ..Default::default()
        };
        ok(g::GetCollectionInfoResponse {
            result: Some(g::CollectionInfo {
                // Edge indexes only on demand; searches are exact meanwhile, so always "green".
                status: g::CollectionStatus::Green as i32,
                segments_count: info.segments_count as u64,
                points_count: Some(info.points_count as u64),
                indexed_vectors_count: Some(info.indexed_vectors_count as u64),
                config: Some(g::CollectionConfig { params: Some(params), ..Default::default() }),
                ..Default::default()
            }),
            time: 0.0,
        })
    }

    async fn list(&self, _: Request<g::ListCollectionsRequest>) -> Rpc<g::ListCollectionsResponse> {
        let map = self.0.collections.lock().map_err(|_| internal("lock poisoned"))?;
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        ok(g::ListCollectionsResponse {
            collections: names.into_iter().map(|n| g::CollectionDescription { name: n.clone() }).collect(),
            time: 0.0,
        })
    }

    async fn create(&self, r: Request<g::CreateCollection>) -> Rpc<g::CollectionOperationResponse> {
        let r = r.into_inner();
        valid_name(&r.collection_name)?;
        let mut builder = EdgeConfigBuilder::new();
        match r.vectors_config.and_then(|v| v.config) {
            Some(g::vectors_config::Config::ParamsMap(m)) => {
                for (name, p) in m.map {
                    if p.multivector_config.is_some() || p.quantization_config.is_some() {
                        return Err(unsupported("multivectors / quantization"));
                    }
                    builder = builder.vector(name, EdgeVectorParamsBuilder::new(p.size as usize, edge_distance(p.distance)?).build());
                }
            }
            Some(g::vectors_config::Config::Params(_)) => return Err(unsupported("an unnamed vector")),
            None => {}
        }
        for (name, s) in r.sparse_vectors_config.map(|s| s.map).unwrap_or_default() {
            let mut b = EdgeSparseVectorParamsBuilder::new();
            if s.modifier == Some(g::Modifier::Idf as i32) {
                b = b.modifier(qdrant_edge::Modifier::Idf);
            }
            builder = builder.sparse_vector(name, b.build());
        }
        let mut map = self.0.collections.lock().map_err(|_| internal("lock poisoned"))?;
        if map.contains_key(&r.collection_name) {
            return Err(Status::already_exists(format!("Collection `{}` already exists!", r.collection_name)));
        }
        let dir = self.0.dir.join(&r.collection_name);
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let shard = EdgeShard::new(&dir, builder.build()).map_err(internal)?;
        map.insert(r.collection_name, Arc::new(shard));
        ok(g::CollectionOperationResponse { result: true, time: 0.0 })
    }

    async fn update(&self, r: Request<g::UpdateCollection>) -> Rpc<g::CollectionOperationResponse> {
        let r = r.into_inner();
        let shard = self.0.shard(&r.collection_name)?;
        // The one update the client sends: "start the optimizers".
        if r.optimizers_config.is_some() {
            shard.optimize().map_err(internal)?;
        }
        ok(g::CollectionOperationResponse { result: true, time: 0.0 })
    }

    async fn delete(&self, r: Request<g::DeleteCollection>) -> Rpc<g::CollectionOperationResponse> {
        let name = r.into_inner().collection_name;
        let removed = self.0.collections.lock().map_err(|_| internal("lock poisoned"))?.remove(&name);
        if let Some(shard) = removed {
            drop(shard);
            let _ = std::fs::remove_dir_all(self.0.dir.join(&name));
        }
        ok(g::CollectionOperationResponse { result: true, time: 0.0 })
    }

    async fn collection_exists(&self, r: Request<g::CollectionExistsRequest>) -> Rpc<g::CollectionExistsResponse> {
        let map = self.0.collections.lock().map_err(|_| internal("lock poisoned"))?;
        let exists = map.contains_key(&r.get_ref().collection_name);
        ok(g::CollectionExistsResponse { result: Some(g::CollectionExists { exists }), time: 0.0 })
    }

    async fn update_aliases(&self, _: Request<g::ChangeAliases>) -> Rpc<g::CollectionOperationResponse> {
        Err(unsupported("update_aliases"))
    }
    async fn list_collection_aliases(&self, _: Request<g::ListCollectionAliasesRequest>) -> Rpc<g::ListAliasesResponse> {
        Err(unsupported("list_collection_aliases"))
    }
    async fn list_aliases(&self, _: Request<g::ListAliasesRequest>) -> Rpc<g::ListAliasesResponse> {
        Err(unsupported("list_aliases"))
    }
    async fn collection_cluster_info(
        &self,
        _: Request<g::CollectionClusterInfoRequest>,
    ) -> Rpc<g::CollectionClusterInfoResponse> {
        Err(unsupported("collection_cluster_info"))
    }
    async fn update_collection_cluster_setup(
        &self,
        _: Request<g::UpdateCollectionClusterSetupRequest>,
    ) -> Rpc<g::UpdateCollectionClusterSetupResponse> {
        Err(unsupported("update_collection_cluster_setup"))
    }
    async fn create_shard_key(&self, _: Request<g::CreateShardKeyRequest>) -> Rpc<g::CreateShardKeyResponse> {
        Err(unsupported("create_shard_key"))
    }
    async fn delete_shard_key(&self, _: Request<g::DeleteShardKeyRequest>) -> Rpc<g::DeleteShardKeyResponse> {
        Err(unsupported("delete_shard_key"))
    }
    async fn list_shard_keys(&self, _: Request<g::ListShardKeysRequest>) -> Rpc<g::ListShardKeysResponse> {
        Err(unsupported("list_shard_keys"))
    }
}

#[tonic::async_trait]
impl Points for Service {
    async fn upsert(&self, r: Request<g::UpsertPoints>) -> Rpc<g::PointsOperationResponse> {
        let r = r.into_inner();
        if r.update_filter.is_some() || r.shard_key_selector.is_some() {
            return Err(unsupported("conditional upserts / shard keys"));
        }
        let shard = self.0.shard(&r.collection_name)?;
        let mut list = Vec::with_capacity(r.points.len());
        for p in r.points {
            let vectors = match p.vectors.and_then(|v| v.vectors_options) {
                Some(g::vectors::VectorsOptions::Vectors(named)) => qdrant_edge::Vectors::new_named(
                    named.vectors.into_iter().map(|(k, v)| Ok((k, edge_vector(v)?))).collect::<Result<Vec<_>, Status>>()?,
                ),
                _ => return Err(unsupported("points without named vectors")),
            };
            list.push(PointStruct::new(edge_point_id(p.id)?, vectors, payload_to_json(p.payload)).into());
        }
        let op = PointOperations::UpsertPoints(PointInsertOperations::PointsList(list));
        shard.update(UpdateOperation::PointOperation(op)).map_err(invalid)?;
        ok(update_ok())
    }

    async fn delete(&self, r: Request<g::DeletePoints>) -> Rpc<g::PointsOperationResponse> {
        let r = r.into_inner();
        let shard = self.0.shard(&r.collection_name)?;
        let filter = match r.points.and_then(|p| p.points_selector_one_of) {
            Some(g::points_selector::PointsSelectorOneOf::Filter(f)) => edge_filter(Some(&f))?.expect("filter"),
            _ => return Err(unsupported("deleting by id list")),
        };
        shard.update(UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter))).map_err(invalid)?;
        ok(update_ok())
    }

    async fn create_field_index(&self, r: Request<g::CreateFieldIndexCollection>) -> Rpc<g::PointsOperationResponse> {
        let r = r.into_inner();
        let shard = self.0.shard(&r.collection_name)?;
        if r.field_index_params.is_some() {
            return Err(unsupported("field index parameters"));
        }
        let schema = match r.field_type.map(g::FieldType::try_from) {
            Some(Ok(g::FieldType::Keyword)) => "keyword",
            Some(Ok(g::FieldType::Integer)) => "integer",
            Some(Ok(g::FieldType::Float)) => "float",
            Some(Ok(g::FieldType::Bool)) => "bool",
            _ => return Err(unsupported("this field type")),
        };
        let schema: PayloadFieldSchema = serde_json::from_value(json!(schema)).map_err(internal)?;
        let op = qdrant_edge::FieldIndexOperations::CreateIndex(qdrant_edge::CreateIndex {
            field_name: r.field_name.parse().map_err(|_| invalid(format!("bad field name {}", r.field_name)))?,
            field_schema: Some(schema),
        });
        shard.update(UpdateOperation::FieldIndexOperation(op)).map_err(invalid)?;
        ok(update_ok())
    }

    async fn scroll(&self, r: Request<g::ScrollPoints>) -> Rpc<g::ScrollResponse> {
        let r = r.into_inner();
        if r.order_by.is_some() {
            return Err(unsupported("order_by"));
        }
        check_no_vectors(r.with_vectors.as_ref())?;
        let shard = self.0.shard(&r.collection_name)?;
        let (records, next) = shard
            .scroll(ScrollRequest {
                offset: r.offset.map(|o| edge_point_id(Some(o))).transpose()?,
                limit: Some(r.limit.unwrap_or(10) as usize),
                filter: edge_filter(r.filter.as_ref())?,
                with_payload: Some(payload_selector(r.with_payload.as_ref())?),
                with_vector: WithVector::Bool(false),
                order_by: None,
            })
            .map_err(invalid)?;
        let result = records
            .into_iter()
            .map(|rec| {
                Ok(g::RetrievedPoint {
                    id: Some(grpc_point_id(rec.id)),
                    payload: payload_from_edge(rec.payload)?,
                    ..Default::default()
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        ok(g::ScrollResponse { next_page_offset: next.map(grpc_point_id), result, time: 0.0, usage: None })
    }

    async fn count(&self, r: Request<g::CountPoints>) -> Rpc<g::CountResponse> {
        let r = r.into_inner();
        let shard = self.0.shard(&r.collection_name)?;
        let count = shard
            .count(CountRequest { filter: edge_filter(r.filter.as_ref())?, exact: r.exact.unwrap_or(true) })
            .map_err(invalid)?;
        ok(g::CountResponse { result: Some(g::CountResult { count: count as u64 }), time: 0.0, usage: None })
    }

    async fn query(&self, r: Request<g::QueryPoints>) -> Rpc<g::QueryResponse> {
        let r = r.into_inner();
        if r.lookup_from.is_some() || r.params.is_some() || r.shard_key_selector.is_some() {
            return Err(unsupported("lookup_from / params / shard keys"));
        }
        check_no_vectors(r.with_vectors.as_ref())?;
        let shard = self.0.shard(&r.collection_name)?;
        let request = QueryRequest {
            prefetches: r.prefetch.into_iter().map(prefetch).collect::<Result<_, _>>()?,
            query: scoring_query(r.query, r.using)?,
            filter: edge_filter(r.filter.as_ref())?,
            score_threshold: None,
            limit: r.limit.unwrap_or(10) as usize,
            offset: r.offset.unwrap_or(0) as usize,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: payload_selector(r.with_payload.as_ref())?,
        };
        if r.score_threshold.is_some() {
            return Err(unsupported("score_threshold"));
        }
        let points = shard.query(request).map_err(invalid)?;
        let result = points
            .into_iter()
            .map(|p| {
                Ok(g::ScoredPoint {
                    id: Some(grpc_point_id(p.id)),
                    payload: payload_from_edge(p.payload)?,
                    score: p.score,
                    version: p.version,
                    ..Default::default()
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        ok(g::QueryResponse { result, time: 0.0, usage: None })
    }

    async fn get(&self, _: Request<g::GetPoints>) -> Rpc<g::GetResponse> {
        Err(unsupported("get"))
    }
    async fn update_vectors(&self, _: Request<g::UpdatePointVectors>) -> Rpc<g::PointsOperationResponse> {
        Err(unsupported("update_vectors"))
    }
    async fn delete_vectors(&self, _: Request<g::DeletePointVectors>) -> Rpc<g::PointsOperationResponse> {
        Err(unsupported("delete_vectors"))
    }
    async fn set_payload(&self, _: Request<g::SetPayloadPoints>) -> Rpc<g::PointsOperationResponse> {
        Err(unsupported("set_payload"))
    }
    async fn overwrite_payload(&self, _: Request<g::SetPayloadPoints>) -> Rpc<g::PointsOperationResponse> {
        Err(unsupported("overwrite_payload"))
    }
    async fn delete_payload(&self, _: Request<g::DeletePayloadPoints>) -> Rpc<g::PointsOperationResponse> {
        Err(unsupported("delete_payload"))
    }
    async fn clear_payload(&self, _: Request<g::ClearPayloadPoints>) -> Rpc<g::PointsOperationResponse> {
        Err(unsupported("clear_payload"))
    }
    async fn delete_field_index(&self, _: Request<g::DeleteFieldIndexCollection>) -> Rpc<g::PointsOperationResponse> {
        Err(unsupported("delete_field_index"))
    }
    async fn create_vector_name(&self, _: Request<g::CreateVectorNameRequest>) -> Rpc<g::PointsOperationResponse> {
        Err(unsupported("create_vector_name"))
    }
    async fn delete_vector_name(&self, _: Request<g::DeleteVectorNameRequest>) -> Rpc<g::PointsOperationResponse> {
        Err(unsupported("delete_vector_name"))
    }
    async fn search(&self, _: Request<g::SearchPoints>) -> Rpc<g::SearchResponse> {
        Err(unsupported("search"))
    }
    async fn search_batch(&self, _: Request<g::SearchBatchPoints>) -> Rpc<g::SearchBatchResponse> {
        Err(unsupported("search_batch"))
    }
    async fn search_groups(&self, _: Request<g::SearchPointGroups>) -> Rpc<g::SearchGroupsResponse> {
        Err(unsupported("search_groups"))
    }
    async fn recommend(&self, _: Request<g::RecommendPoints>) -> Rpc<g::RecommendResponse> {
        Err(unsupported("recommend"))
    }
    async fn recommend_batch(&self, _: Request<g::RecommendBatchPoints>) -> Rpc<g::RecommendBatchResponse> {
        Err(unsupported("recommend_batch"))
    }
    async fn recommend_groups(&self, _: Request<g::RecommendPointGroups>) -> Rpc<g::RecommendGroupsResponse> {
        Err(unsupported("recommend_groups"))
    }
    async fn discover(&self, _: Request<g::DiscoverPoints>) -> Rpc<g::DiscoverResponse> {
        Err(unsupported("discover"))
    }
    async fn discover_batch(&self, _: Request<g::DiscoverBatchPoints>) -> Rpc<g::DiscoverBatchResponse> {
        Err(unsupported("discover_batch"))
    }
    async fn update_batch(&self, _: Request<g::UpdateBatchPoints>) -> Rpc<g::UpdateBatchResponse> {
        Err(unsupported("update_batch"))
    }
    async fn query_batch(&self, _: Request<g::QueryBatchPoints>) -> Rpc<g::QueryBatchResponse> {
        Err(unsupported("query_batch"))
    }
    async fn query_groups(&self, _: Request<g::QueryPointGroups>) -> Rpc<g::QueryGroupsResponse> {
        Err(unsupported("query_groups"))
    }
    async fn facet(&self, _: Request<g::FacetCounts>) -> Rpc<g::FacetResponse> {
        Err(unsupported("facet"))
    }
    async fn search_matrix_pairs(&self, _: Request<g::SearchMatrixPoints>) -> Rpc<g::SearchMatrixPairsResponse> {
        Err(unsupported("search_matrix_pairs"))
    }
    async fn search_matrix_offsets(&self, _: Request<g::SearchMatrixPoints>) -> Rpc<g::SearchMatrixOffsetsResponse> {
        Err(unsupported("search_matrix_offsets"))
    }
}
