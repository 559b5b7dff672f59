//! Knowledge base and retrieval-augmented answers (issue 3).
//!
//! - [`chunker`]: Chinese-aware chunking (章/节/条/款, headings, lists, sentence budget, overlap).
//! - [`document`]: Markdown/TXT/HTML/DOCX/PDF/FAQ loading with front-matter metadata.
//! - [`store`]: the [`store::VectorStore`] seam; [`edge::EdgeStore`] is the embedded Qdrant backend.
//! - [`sparse`]: BM25 sparse vectors (Qdrant's BM25, Chinese segmentation).
//! - [`kb`]: incremental ingestion and dense / sparse / hybrid (RRF) search with filters.
//! - [`answer`]: grounded answers with numbered citations, FAQ verbatim answers, refusal + 转人工.
//! - [`http`]: `/api/ask`, `/api/kb/search` and friends.

pub mod answer;
pub mod chunker;
pub mod document;
pub mod edge;
pub mod error;
pub mod http;
pub mod kb;
pub mod sparse;
pub mod store;
/// The behaviour suite every `VectorStore` backend runs (used by the backends' tests).
#[doc(hidden)]
pub mod store_suite;

pub use error::{Error, Result};
pub use kb::{Hit, KnowledgeBase, Mode, SearchRequest};
pub use store::{FusionWeights, KbFilter, VectorStore};
