//! Knowledge base and retrieval-augmented answers.
//!
//! - [`chunker`]: Chinese-aware chunking (章/节/条/款, headings, lists, sentence budget, overlap).
//! - [`document`]: Markdown/TXT/HTML/DOCX/PDF/FAQ loading with front-matter metadata.
//! - [`store`]: the [`store::VectorStore`] seam; [`edge::EdgeStore`] is the embedded Qdrant backend,
//!   [`qdrant_server::QdrantServerStore`] a Qdrant server or cluster ([`open_store`] picks one).
//! - [`sparse`]: BM25 sparse vectors (Qdrant's BM25, Chinese segmentation).
//! - [`kb`]: incremental ingestion and dense / sparse / hybrid (RRF) search with filters.
//! - [`answer`]: grounded answers with numbered citations, FAQ verbatim answers, refusal + 转人工.
//! - [`understand`]: what a message is (question, service request, status, small talk, harmful),
//!   the aspect asked and the 证件/事项, from word lists and a small kind model.
//! - [`grounding`]: after generation, sentences whose facts are not in the sources are dropped.
//! - [`http`]: `/api/ask`, `/api/kb/search` and friends.

pub mod answer;
pub mod chunker;
pub mod document;
pub mod edge;
pub mod error;
pub mod grounding;
pub mod http;
pub mod kb;
pub mod qdrant_server;
pub mod sparse;
pub mod store;
pub mod understand;
/// The behaviour suite every `VectorStore` backend runs (used by the backends' tests).
#[doc(hidden)]
pub mod store_suite;
/// An in-process Qdrant gRPC server over qdrant-edge, for tests.
#[cfg(feature = "test-server")]
pub mod grpc_test_server;

pub use error::{Error, Result};
pub use kb::{Hit, KnowledgeBase, Mode, SearchRequest};
pub use store::{FusionWeights, KbFilter, VectorStore};

/// The configured vector store: the Qdrant server or cluster when `qdrant` is given
/// ([`qdrant_server::QdrantServerStore`]), otherwise the embedded store in `dir`
/// ([`edge::EdgeStore`]). `dim` is the embedder's dimension.
pub fn open_store(
    dir: &std::path::Path,
    qdrant: Option<&qdrant_server::ServerConfig>,
    dim: usize,
) -> Result<std::sync::Arc<dyn VectorStore>> {
    match qdrant {
        Some(config) => Ok(std::sync::Arc::new(qdrant_server::QdrantServerStore::open(config.clone(), dim)?)),
        None => Ok(std::sync::Arc::new(edge::EdgeStore::open(dir, dim)?)),
    }
}

/// Where [`open_store`] keeps the knowledge base, for messages.
pub fn store_location(dir: &std::path::Path, qdrant: Option<&qdrant_server::ServerConfig>) -> String {
    match qdrant {
        Some(c) => format!("Qdrant server {} (collection `{}`)", c.url, c.collection),
        None => dir.display().to_string(),
    }
}
