//! Sparse BM25 vectors computed client-side with Qdrant's own BM25 (`EdgeBm25`): the
//! multilingual tokenizer (charabia, which segments Chinese with jieba) and Chinese stopwords.
//! Term weights (TF with length normalisation) are computed here; IDF is applied by the store
//! (`Modifier::Idf` on the sparse vector), so documents and queries agree in every backend.

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::TokenizerType;

use crate::error::{Error, Result};
use crate::store::SparseVec;

pub struct Bm25 {
    model: EdgeBm25,
}

impl std::fmt::Debug for Bm25 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bm25(multilingual, chinese)")
    }
}

impl Bm25 {
    /// Qdrant's defaults (k1 1.2, b 0.75, average length 256) with the multilingual tokenizer
    /// and Chinese stopwords: the configuration of the server's `qdrant/bm25` with language
    /// `chinese`, so vectors are portable between backends.
    pub fn chinese() -> Result<Self> {
        let config = EdgeBm25Config {
            tokenizer: TokenizerType::Multilingual,
            language: Some("chinese".into()),
            ..Default::default()
        };
        let model = EdgeBm25::new(config).map_err(|e| Error::invalid(format!("bm25 config: {e}")))?;
        Ok(Self { model })
    }

    pub fn document(&self, text: &str) -> SparseVec {
        let v = self.model.embed_document(text);
        normalise(v.indices, v.values)
    }

    pub fn query(&self, text: &str) -> SparseVec {
        let v = self.model.embed_query(text);
        normalise(v.indices, v.values)
    }
}

/// Sorted, unique indices (duplicate hashes summed), as the store expects.
fn normalise(indices: Vec<u32>, values: Vec<f32>) -> SparseVec {
    let mut pairs: Vec<(u32, f32)> = indices.into_iter().zip(values).collect();
    pairs.sort_by_key(|p| p.0);
    let mut out = SparseVec::default();
    for (i, v) in pairs {
        if out.indices.last() == Some(&i) {
            *out.values.last_mut().expect("value") += v;
        } else {
            out.indices.push(i);
            out.values.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_text_is_segmented_into_words() {
        let bm = Bm25::chinese().unwrap();
        let q = bm.query("居住证怎么办理");
        // Segmented into words (居住证 / 怎么 / 办理 ...), not one token per character or one
        // token for the whole phrase.
        assert!(q.indices.len() >= 2 && q.indices.len() < 7, "{q:?}");
        let d = bm.document("申领居住证需要提交身份证和居住证明。居住证每年签注一次。");
        let unrelated = bm.document("机动车驾驶证期满换证");
        let shared = |v: &SparseVec| q.indices.iter().filter(|i| v.indices.contains(i)).count();
        assert!(shared(&d) >= 2, "q={q:?} d={d:?}");
        assert!(shared(&d) > shared(&unrelated), "q={q:?} unrelated={unrelated:?}");
        // Term frequency raises a term's weight: the most frequent term outweighs a single one.
        let max = d.values.iter().cloned().fold(0.0f32, f32::max);
        let min = d.values.iter().cloned().fold(f32::MAX, f32::min);
        assert!(max > min, "{d:?}");
        assert!(d.indices.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    }
}
