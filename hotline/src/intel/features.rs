//! Text → feature vector: hashed character n-grams (sparse lexical evidence such as 公积金, 驾驶证)
//! concatenated with a sentence embedding (semantic similarity), both L2-normalised.
//!
//! The hashing is FNV-1a over the UTF-8 bytes of each n-gram, so a trained artifact gives the
//! same features on every machine and build.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zhengwu_core::{EmbedKind, Embedder};

use crate::intel::IntelError;

/// How features are made; stored in every trained artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// Hash buckets for character n-grams (0 = no lexical features).
    pub ngram_buckets: usize,
    /// Longest n-gram (1 = characters only).
    pub ngram_max: usize,
    /// Embedding model (registry name) whose vector is appended, if any.
    pub embedding_model: Option<String>,
    /// Embedding dimension (0 without an embedding model).
    pub embedding_dim: usize,
    /// Characters of the text that are featurised (longer texts are cut here, head kept).
    pub max_chars: usize,
    /// Characters given to the embedding model (its cost grows with length; the head of a
    /// message, usually its title, carries the topic).
    #[serde(default = "default_embed_chars")]
    pub embed_chars: usize,
    /// Weight of the embedding part relative to the n-gram part (both unit length before it).
    pub embedding_weight: f32,
}

impl FeatureConfig {
    pub fn dim(&self) -> usize {
        self.ngram_buckets + self.embedding_dim
    }
}

fn default_embed_chars() -> usize {
    128
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            ngram_buckets: 1 << 13,
            ngram_max: 2,
            embedding_model: None,
            embedding_dim: 0,
            max_chars: 400,
            embed_chars: default_embed_chars(),
            embedding_weight: 1.0,
        }
    }
}

/// Characters kept for n-grams: letters and digits of any script, lower-cased; digits become `0`
/// (a phone number is not a topic), everything else is a boundary.
fn normalise(text: &str, max_chars: usize) -> Vec<Vec<char>> {
    let mut runs = Vec::new();
    let mut cur = Vec::new();
    for c in text.chars().take(max_chars) {
        let c = if c.is_ascii_digit() || ('０'..='９').contains(&c) {
            '0'
        } else if ('Ａ'..='Ｚ').contains(&c) || ('ａ'..='ｚ').contains(&c) {
            char::from_u32(c as u32 - 0xFEE0).unwrap_or(c).to_ascii_lowercase()
        } else {
            c.to_lowercase().next().unwrap_or(c)
        };
        if c.is_alphanumeric() {
            cur.push(c);
        } else if !cur.is_empty() {
            runs.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        runs.push(cur);
    }
    runs
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Stable hash of a text (for train/dev splits and "seen in training" checks).
pub fn text_hash(text: &str) -> u64 {
    fnv1a(text.trim().as_bytes())
}

/// Hashed n-gram vector, `log(1 + count)` weighted, L2-normalised; all zeros for empty text.
pub fn ngram_vector(text: &str, buckets: usize, max_n: usize, max_chars: usize) -> Vec<f32> {
    let mut v = vec![0f32; buckets];
    if buckets == 0 {
        return v;
    }
    let mut buf = String::new();
    for run in normalise(text, max_chars) {
        for n in 1..=max_n.max(1) {
            if run.len() < n {
                break;
            }
            for w in run.windows(n) {
                buf.clear();
                buf.extend(w.iter());
                let h = fnv1a(buf.as_bytes()) ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                v[(h % buckets as u64) as usize] += 1.0;
            }
        }
    }
    let mut norm = 0f32;
    for x in &mut v {
        if *x > 0.0 {
            *x = (1.0 + *x).ln();
            norm += *x * *x;
        }
    }
    if norm > 0.0 {
        let inv = norm.sqrt().recip();
        v.iter_mut().for_each(|x| *x *= inv);
    }
    v
}

/// Embeddings already computed, by text hash; optionally backed by an append-only file so
/// training and evaluation runs do not embed the same texts again. File records: u64 hash
/// (little-endian) then `dim` f32 values.
pub struct EmbeddingCache {
    dim: usize,
    map: std::sync::Mutex<std::collections::HashMap<u64, Vec<f32>>>,
    file: Option<std::path::PathBuf>,
    /// In-memory bound (entries); the cache is emptied when it would grow past it.
    capacity: Option<usize>,
}

impl EmbeddingCache {
    pub fn in_memory(dim: usize) -> EmbeddingCache {
        EmbeddingCache { dim, map: Default::default(), file: None, capacity: None }
    }

    /// An in-memory cache of at most `capacity` vectors (the server shares one between its
    /// models, so a text is embedded once however many models read it).
    pub fn bounded(dim: usize, capacity: usize) -> EmbeddingCache {
        EmbeddingCache { dim, map: Default::default(), file: None, capacity: Some(capacity.max(1)) }
    }

    /// Open (or start) a cache file; a torn last record is ignored.
    pub fn open(path: &std::path::Path, dim: usize) -> Result<EmbeddingCache, IntelError> {
        let mut map = std::collections::HashMap::new();
        if let Ok(bytes) = fs_err::read(path) {
            let rec = 8 + 4 * dim;
            for r in bytes.chunks_exact(rec) {
                let h = u64::from_le_bytes(r[..8].try_into().unwrap_or_default());
                let v: Vec<f32> = r[8..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                map.insert(h, v);
            }
        }
        Ok(EmbeddingCache { dim, map: std::sync::Mutex::new(map), file: Some(path.to_path_buf()), capacity: None })
    }

    fn key(model: &str, text: &str) -> u64 {
        fnv1a(model.as_bytes()) ^ fnv1a(text.as_bytes()).rotate_left(17)
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, model: &str, text: &str) -> Option<Vec<f32>> {
        self.map.lock().ok()?.get(&Self::key(model, text)).cloned()
    }

    fn put(&self, model: &str, items: &[(&str, &Vec<f32>)]) -> Result<(), IntelError> {
        let mut buf = Vec::new();
        if let Ok(mut m) = self.map.lock() {
            if let Some(cap) = self.capacity {
                if m.len() + items.len() > cap {
                    m.clear();
                }
            }
            for (t, v) in items {
                if v.len() != self.dim {
                    continue;
                }
                let k = Self::key(model, t);
                if m.insert(k, (*v).clone()).is_none() {
                    buf.extend_from_slice(&k.to_le_bytes());
                    v.iter().for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
                }
            }
        }
        if let (Some(p), false) = (&self.file, buf.is_empty()) {
            use std::io::Write;
            if let Some(d) = p.parent() {
                fs_err::create_dir_all(d)?;
            }
            let mut f = fs_err::OpenOptions::new().create(true).append(true).open(p)?;
            f.write_all(&buf)?;
        }
        Ok(())
    }
}

/// Makes feature vectors; holds the embedder when the config names one.
#[derive(Clone)]
pub struct Featurizer {
    pub config: FeatureConfig,
    embedder: Option<Arc<dyn Embedder>>,
    cache: Option<Arc<EmbeddingCache>>,
}

impl std::fmt::Debug for Featurizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Featurizer").field("config", &self.config).finish()
    }
}

/// Cut a text to at most `max_chars` characters on a char boundary.
pub fn head_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

impl Featurizer {
    /// `embedder` must be given exactly when the config names an embedding model, and must be
    /// that model with that dimension.
    pub fn new(config: FeatureConfig, embedder: Option<Arc<dyn Embedder>>) -> Result<Featurizer, IntelError> {
        match (&config.embedding_model, &embedder) {
            (Some(name), Some(e)) => {
                if e.model_id() != name || e.dim() != config.embedding_dim {
                    return Err(IntelError::Model(format!(
                        "features need embedding model {name} (dim {}), got {} (dim {})",
                        config.embedding_dim,
                        e.model_id(),
                        e.dim()
                    )));
                }
            }
            (Some(name), None) => {
                return Err(IntelError::Model(format!("features need embedding model {name}, which is not loaded")));
            }
            (None, _) => {}
        }
        if config.ngram_buckets == 0 && config.embedding_model.is_none() {
            return Err(IntelError::Model("features: neither n-grams nor an embedding model".into()));
        }
        let embedder = if config.embedding_model.is_some() { embedder } else { None };
        Ok(Featurizer { config, embedder, cache: None })
    }

    /// Reuse embeddings across calls (and runs, with a file-backed cache).
    pub fn with_cache(mut self, cache: Arc<EmbeddingCache>) -> Featurizer {
        self.cache = Some(cache);
        self
    }

    pub fn dim(&self) -> usize {
        self.config.dim()
    }

    /// Feature vectors for a batch of texts (row-major, `texts.len() × dim`).
    pub fn features(&self, texts: &[&str]) -> Result<Vec<f32>, IntelError> {
        let c = &self.config;
        let dim = c.dim();
        let mut out = vec![0f32; texts.len() * dim];
        for (i, t) in texts.iter().enumerate() {
            let ng = ngram_vector(t, c.ngram_buckets, c.ngram_max, c.max_chars);
            out[i * dim..i * dim + c.ngram_buckets].copy_from_slice(&ng);
        }
        if let Some(e) = &self.embedder {
            let model = e.model_id().to_string();
            let mut vecs: Vec<Option<Vec<f32>>> = texts.iter().map(|t| self.cache.as_ref().and_then(|c| c.get(&model, head_chars(t, self.config.embed_chars)))).collect();
            let missing: Vec<usize> = (0..texts.len()).filter(|&i| vecs[i].is_none()).collect();
            for chunk in missing.chunks(64) {
                let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
                let got = embed_truncated(e.as_ref(), &batch, c.embed_chars)?;
                if let Some(cache) = &self.cache {
                    let items: Vec<(&str, &Vec<f32>)> = batch.iter().map(|t| head_chars(t, c.embed_chars)).zip(got.iter()).collect();
                    cache.put(&model, &items)?;
                }
                for (&i, v) in chunk.iter().zip(got) {
                    vecs[i] = Some(v);
                }
            }
            let vecs: Vec<Vec<f32>> = vecs.into_iter().map(Option::unwrap_or_default).collect();
            for (i, v) in vecs.iter().enumerate() {
                let row = &mut out[i * dim + c.ngram_buckets..(i + 1) * dim];
                for (o, x) in row.iter_mut().zip(v) {
                    *o = x * c.embedding_weight;
                }
            }
        }
        Ok(out)
    }
}

/// Embed texts as queries, each cut to fit the model's token limit (the head is kept: the
/// title and first sentences carry the topic). Batches of 16.
pub fn embed_truncated(e: &dyn Embedder, texts: &[&str], max_chars: usize) -> Result<Vec<Vec<f32>>, IntelError> {
    let mut cut: Vec<&str> = Vec::with_capacity(texts.len());
    for t in texts {
        let mut n = max_chars.min(t.chars().count()).max(1);
        let mut s = head_chars(t, n);
        while n > 8 && e.count_tokens(s, EmbedKind::Query).map_err(IntelError::embed)? > e.max_tokens() {
            n = n * 3 / 4;
            s = head_chars(t, n);
        }
        cut.push(if s.trim().is_empty() { "。" } else { s });
    }
    let mut out = Vec::with_capacity(texts.len());
    for chunk in cut.chunks(16) {
        out.extend(e.embed(chunk, EmbedKind::Query).map_err(IntelError::embed)?.vectors);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngrams_are_stable_normalised_and_ignore_digits_and_punctuation() {
        let a = ngram_vector("公积金提取，电话13800000000", 1024, 2, 400);
        let b = ngram_vector("公积金提取 电话13911112222！", 1024, 2, 400);
        assert_eq!(a, b, "digits and punctuation must not change the features");
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        let c = ngram_vector("驾驶证换证", 1024, 2, 400);
        let dot: f32 = a.iter().zip(&c).map(|(x, y)| x * y).sum();
        assert!(dot < 0.3, "unrelated texts share little: {dot}");
        assert!(ngram_vector("", 16, 2, 400).iter().all(|x| *x == 0.0));
        // Fixed hash: changing it would silently break every trained artifact.
        assert_eq!(fnv1a(b"abc"), 0xe71fa2190541574b);
    }

    #[test]
    fn head_chars_cuts_on_char_boundaries() {
        assert_eq!(head_chars("一二三四", 2), "一二");
        assert_eq!(head_chars("ab", 5), "ab");
    }
}
