//! Sentence embeddings: the trait the knowledge base and the hotline's features embed through.

use crate::Result;

/// Which prefix an E5-style embedder puts in front of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedKind {
    /// A search query (`query: ` prefix).
    Query,
    /// A document passage (`passage: ` prefix).
    Passage,
    /// The text as given, no prefix.
    Raw,
}

/// Result of embedding a batch of texts.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One L2-normalised vector per input text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens consumed (including special tokens), for `usage` reporting.
    pub prompt_tokens: usize,
}

/// A sentence-embedding model.
pub trait Embedder: Send + Sync {
    /// Registry name of the model (e.g. `multilingual-e5-small`).
    fn model_id(&self) -> &str;
    /// Output dimension.
    fn dim(&self) -> usize;
    /// Longest input in tokens; longer inputs are an error, never silently truncated.
    fn max_tokens(&self) -> usize;
    /// Number of tokens `text` takes with the given prefix (including special tokens).
    fn count_tokens(&self, text: &str, kind: EmbedKind) -> Result<usize>;
    /// Embed `texts`; each output vector is L2-normalised.
    fn embed(&self, texts: &[&str], kind: EmbedKind) -> Result<Embeddings>;
}
