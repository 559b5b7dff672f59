//! A quantized decoder-only transformer read from GGUF: the Qwen2 / Qwen3 / Llama family.
//!
//! Differences from candle's own `quantized_qwen2`:
//! - the weights are immutable and shared (`&self`); each request owns a [`KvCache`], so many
//!   conversations can be interleaved by the scheduler;
//! - the token-embedding table stays quantized (rows are dequantized on lookup) instead of being
//!   expanded to f32, which saves hundreds of MB of RSS; when the model has its own output
//!   matrix, the table is not loaded at all and rows are read from the GGUF file;
//! - one-token decode steps on the CPU run on plain vectors between the projections, with
//!   attention reading the KV cache in place ([`QuantizedTransformer::set_host_decode`]);
//! - grouped-query attention is computed by folding the query heads of a group together instead
//!   of copying K/V `n_rep` times.

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::sync::Arc;

use super::kquant::KQuantLinear;
use super::q8::Q8Linear;
use crate::{Error, Result};

/// Which layout of rotary embedding the weights expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate the two halves of each head (GPT-NeoX / Qwen style).
    Halves,
    /// Rotate adjacent pairs (GGUF Llama, whose q/k weights llama.cpp permuted).
    Interleaved,
}

/// Hyper-parameters read from GGUF metadata.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub context_length: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
    pub rope_style: RopeStyle,
}

impl ModelConfig {
    pub(crate) fn from_gguf(ct: &gguf_file::Content, max_context: usize) -> Result<Self> {
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| Error::Load {
                model: "gguf".into(),
                msg: "metadata has no general.architecture".into(),
            })?;
        let rope_style = match arch.as_str() {
            "qwen2" | "qwen3" => RopeStyle::Halves,
            "llama" => RopeStyle::Interleaved,
            other => {
                return Err(Error::Load {
                    model: "gguf".into(),
                    msg: format!("unsupported architecture `{other}` (supported: qwen2, qwen3, llama)"),
                })
            }
        };
        let get = |key: &str| -> Result<&gguf_file::Value> {
            ct.metadata.get(&format!("{arch}.{key}")).ok_or_else(|| Error::Load {
                model: arch.clone(),
                msg: format!("metadata key `{arch}.{key}` missing"),
            })
        };
        let u = |key: &str| -> Result<usize> { Ok(get(key)?.to_u32()? as usize) };
        let n_head = u("attention.head_count")?;
        let n_kv_head = u("attention.head_count_kv").unwrap_or(n_head);
        let hidden = u("embedding_length")?;
        let head_dim = u("attention.key_length").unwrap_or(hidden / n_head);
        let n_layer = u("block_count")?;
        let context_length = u("context_length")?.min(max_context);
        let rms_eps = get("attention.layer_norm_rms_epsilon")?.to_f32()? as f64;
        let rope_base = get("rope.freq_base").and_then(|v| Ok(v.to_f32()?)).unwrap_or(10_000.0);
        let vocab = ct
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| Error::Load { model: arch.clone(), msg: "no token_embd.weight".into() })?;
        if n_head % n_kv_head != 0 {
            return Err(Error::Load {
                model: arch,
                msg: format!("head_count {n_head} is not a multiple of head_count_kv {n_kv_head}"),
            });
        }
        Ok(Self {
            arch,
            n_layer,
            n_head,
            n_kv_head,
            head_dim,
            hidden,
            vocab,
            context_length,
            rms_eps,
            rope_base,
            rope_style,
        })
    }
}

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)?)
    }
}

/// Which of our own kernels and paths the process allows (for A/B runs against candle's). The
/// binary sets them from its configuration before loading a model (`ZHENGWU_NO_Q8_KERNEL`,
/// `ZHENGWU_NO_KQUANT_KERNEL`, `ZHENGWU_NO_HOST_DECODE`); unset, everything the CPU supports
/// is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSwitches {
    pub q8: bool,
    pub kquant: bool,
    pub host_decode: bool,
}

impl Default for KernelSwitches {
    fn default() -> Self {
        Self { q8: true, kquant: true, host_decode: true }
    }
}

static SWITCHES: std::sync::OnceLock<KernelSwitches> = std::sync::OnceLock::new();

/// Set the process's kernel switches once, before the first model loads; false when they were
/// already set (or read by a load).
pub fn set_kernel_switches(switches: KernelSwitches) -> bool {
    SWITCHES.set(switches).is_ok()
}

fn kernel_switches() -> KernelSwitches {
    *SWITCHES.get_or_init(KernelSwitches::default)
}

/// Which of our own CPU kernels this process uses (decided once at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    /// Q8_0 on AVX-512 VNNI.
    pub q8: bool,
    /// Q4_K / Q6_K on AVX2 + FMA.
    pub kquant: bool,
}

impl Kernels {
    fn detect(device: &Device) -> Self {
        let cpu = matches!(device, Device::Cpu);
        let allow = kernel_switches();
        Self { q8: cpu && super::q8::supported() && allow.q8, kquant: cpu && super::kquant::supported() && allow.kquant }
    }
}

/// A projection: candle's quantized matmul, or one of our kernels where the CPU has them.
enum Proj {
    Candle(QMatMul),
    Q8(Q8Linear),
    K(KQuantLinear),
}

impl Proj {
    fn new(t: QTensor, kernels: Kernels) -> Result<Self> {
        if kernels.q8 {
            if let Some(q) = Q8Linear::from_qtensor(&t)? {
                return Ok(Proj::Q8(q));
            }
        }
        if kernels.kquant {
            if let Some(q) = KQuantLinear::from_qtensor(&t)? {
                return Ok(Proj::K(q));
            }
        }
        Ok(Proj::Candle(QMatMul::from_qtensor(t)?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Proj::Candle(m) => Ok(m.forward(x)?),
            Proj::Q8(q) => q.forward(x),
            Proj::K(q) => q.forward(x),
        }
    }

    /// One or more rows of f32 in, rows out, without building tensors (the host decode path).
    fn forward_vec(&self, x: &[f32], k: usize, device: &Device) -> Result<Vec<f32>> {
        match self {
            Proj::Q8(q) => Ok(q.forward_slice(x)),
            Proj::K(q) => Ok(q.forward_slice(x)),
            Proj::Candle(m) => {
                let t = Tensor::from_slice(x, (x.len() / k, k), device)?;
                Ok(m.forward(&t)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Proj::Candle(QMatMul::QTensor(t)) => t.storage_size_in_bytes(),
            Proj::Candle(QMatMul::Tensor(t)) | Proj::Candle(QMatMul::TensorF16(t)) => {
                t.elem_count() * t.dtype().size_in_bytes()
            }
            Proj::Q8(q) => q.storage_bytes(),
            Proj::K(q) => q.storage_bytes(),
        }
    }
}

struct Linear {
    weight: Proj,
    bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    gate: Proj,
    up: Proj,
    down: Proj,
}

/// Per-request attention state: one growing K/V buffer per layer.
pub struct KvCache {
    layers: Vec<candle_nn::kv_cache::KvCache>,
    len: usize,
}

impl KvCache {
    /// Tokens already in the cache (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where token-embedding rows come from when the table is not the output matrix.
enum Embeddings {
    /// The quantized table in memory.
    Memory(Arc<QTensor>),
    /// Rows read from the GGUF file on demand: a lookup touches one row per token, so the table
    /// (136M values for Qwen2.5 0.5B) costs no resident memory (as with llama.cpp's mmap).
    File(FileEmbeddings),
}

struct FileEmbeddings {
    file: std::sync::Mutex<std::fs::File>,
    path: std::path::PathBuf,
    /// Offset of row 0 in the file.
    start: u64,
    row_bytes: usize,
    dtype: GgmlDType,
    vocab: usize,
    hidden: usize,
}

impl FileEmbeddings {
    fn open(path: &std::path::Path, ct: &gguf_file::Content, name: &str) -> Result<Self> {
        let err = |msg: String| Error::ModelFile { path: path.to_path_buf(), msg };
        let info = ct.tensor_infos.get(name).ok_or_else(|| err(format!("no tensor `{name}`")))?;
        let (vocab, hidden) = match info.shape.dims() {
            [v, h] => (*v, *h),
            d => return Err(err(format!("`{name}` has shape {d:?}, expected two dimensions"))),
        };
        let dtype = info.ggml_dtype;
        if hidden % dtype.block_size() != 0 {
            return Err(err(format!("`{name}`: width {hidden} is not whole {dtype:?} blocks")));
        }
        let row_bytes = hidden / dtype.block_size() * dtype.type_size();
        let start = ct.tensor_data_offset + info.offset;
        let file = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?.len();
        if start + (vocab * row_bytes) as u64 > len {
            return Err(err(format!("`{name}` runs past the end of the file ({len} bytes): truncated download?")));
        }
        Ok(Self { file: std::sync::Mutex::new(file), path: path.to_path_buf(), start, row_bytes, dtype, vocab, hidden })
    }

    fn row(&self, t: usize) -> Result<Vec<f32>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut buf = vec![0u8; self.row_bytes];
        {
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.seek(SeekFrom::Start(self.start + (t * self.row_bytes) as u64))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| Error::io(format!("reading embedding row {t} from {}", self.path.display()), e))?;
        }
        let q = candle_core::quantized::ggml_file::qtensor_from_ggml(self.dtype, &buf, vec![1, self.hidden], &Device::Cpu)?;
        host_vec(&q.dequantize(&Device::Cpu)?)
    }
}

/// The loaded weights; immutable, shared between requests.
pub struct QuantizedTransformer {
    pub config: ModelConfig,
    /// Token embeddings; `None` when they are tied to `output` and read from it.
    embed: Option<Embeddings>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: Proj,
    /// Which of our kernels the projections may run on (for the start-up log).
    pub kernels: Kernels,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    /// Norms, biases and rotary tables as plain vectors, for the one-token decode path on the
    /// CPU (`None` on other devices or with the host-decode switch off).
    host: Option<HostDecode>,
}

impl QuantizedTransformer {
    /// Build the model from an opened GGUF file. `max_context` caps the rotary table and
    /// the longest sequence accepted (the GGUF's own context length if lower).
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        max_context: usize,
        adapter: Option<&crate::finetune::LoraAdapter>,
    ) -> Result<Self> {
        Self::build(ct, reader, device, max_context, adapter, None)
    }

    /// As [`Self::from_gguf`], for the GGUF file at `path`: on the CPU, a token-embedding table
    /// that is not also the output matrix stays in the file and rows are read on lookup.
    pub fn from_gguf_path(
        path: &std::path::Path,
        ct: &gguf_file::Content,
        device: &Device,
        max_context: usize,
        adapter: Option<&crate::finetune::LoraAdapter>,
    ) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Self::build(ct, &mut file, device, max_context, adapter, Some(path))
    }

    fn build<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        max_context: usize,
        adapter: Option<&crate::finetune::LoraAdapter>,
        path: Option<&std::path::Path>,
    ) -> Result<Self> {
        let config = ModelConfig::from_gguf(ct, max_context)?;
        let kernels = Kernels::detect(device);
        let mut get = |name: &str| -> Result<QTensor> {
            let t = ct.tensor(reader, name, device).map_err(|e| Error::Load {
                model: config.arch.clone(),
                msg: format!("tensor `{name}`: {e}"),
            })?;
            match adapter {
                Some(a) => a.merge(name, t, device),
                None => Ok(t),
            }
        };
        let norm = |t: QTensor| -> Result<RmsNorm> {
            Ok(RmsNorm { weight: t.dequantize(device)?, eps: config.rms_eps as f32 })
        };
        let output_norm = norm(get("output_norm.weight")?)?;
        // A separate output matrix: embedding rows from the file (CPU, no adapter) or from the
        // table in memory. Tied word embeddings: with our kernel the output matrix also serves
        // embedding lookups, so the table is held once.
        let untied = ct.tensor_infos.contains_key("output.weight");
        let (output, embed) = match path {
            Some(p) if untied && matches!(device, Device::Cpu) && adapter.is_none() => (
                Proj::new(get("output.weight")?, kernels)?,
                Some(Embeddings::File(FileEmbeddings::open(p, ct, "token_embd.weight")?)),
            ),
            _ if untied => {
                let embed_q = get("token_embd.weight")?;
                (Proj::new(get("output.weight")?, kernels)?, Some(Embeddings::Memory(Arc::new(embed_q))))
            }
            _ => {
                let embed_q = get("token_embd.weight")?;
                match embed_q.dtype() {
                GgmlDType::Q8_0 if kernels.q8 => (Proj::new(embed_q, kernels)?, None),
                GgmlDType::Q4K | GgmlDType::Q6K if kernels.kquant => (Proj::new(embed_q, kernels)?, None),
                _ => {
                    let e = Arc::new(embed_q);
                    (Proj::Candle(QMatMul::from_arc(e.clone())?), Some(Embeddings::Memory(e)))
                }
                }
            }
        };
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = format!("blk.{i}");
            let mut lin = |name: &str, bias: bool| -> Result<Linear> {
                let weight = Proj::new(get(&format!("{p}.{name}.weight"))?, kernels)?;
                let bias = if bias {
                    match get(&format!("{p}.{name}.bias")) {
                        Ok(b) => Some(b.dequantize(device)?),
                        Err(_) => None,
                    }
                } else {
                    None
                };
                Ok(Linear { weight, bias })
            };
            let q = lin("attn_q", true)?;
            let k = lin("attn_k", true)?;
            let v = lin("attn_v", true)?;
            let o = lin("attn_output", false)?;
            let gate = lin("ffn_gate", false)?.weight;
            let up = lin("ffn_up", false)?.weight;
            let down = lin("ffn_down", false)?.weight;
            let q_norm = match get(&format!("{p}.attn_q_norm.weight")) {
                Ok(t) => Some(norm(t)?),
                Err(_) => None,
            };
            let k_norm = match get(&format!("{p}.attn_k_norm.weight")) {
                Ok(t) => Some(norm(t)?),
                Err(_) => None,
            };
            blocks.push(Block {
                attn_norm: norm(get(&format!("{p}.attn_norm.weight"))?)?,
                q,
                k,
                v,
                o,
                q_norm,
                k_norm,
                ffn_norm: norm(get(&format!("{p}.ffn_norm.weight"))?)?,
                gate,
                up,
                down,
            });
        }
        let (cos, sin) = rope_tables(config.head_dim, config.rope_base, config.context_length, device)?;
        let host = match device {
            Device::Cpu if kernel_switches().host_decode => {
                Some(HostDecode::new(&blocks, &output_norm, &cos, &sin)?)
            }
            _ => None,
        };
        Ok(Self { config, embed, blocks, norm: output_norm, output, kernels, cos, sin, device: device.clone(), host })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Turn the one-token host decode path on or off (on by default on the CPU; for A/B runs
    /// and the test that checks it against the tensor path). Returns whether it is on.
    pub fn set_host_decode(&mut self, on: bool) -> Result<bool> {
        self.host = match (on, &self.device) {
            (true, Device::Cpu) => Some(HostDecode::new(&self.blocks, &self.norm, &self.cos, &self.sin)?),
            _ => None,
        };
        Ok(self.host.is_some())
    }

    /// A fresh, empty cache for one request.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: (0..self.config.n_layer).map(|_| candle_nn::kv_cache::KvCache::new(2, 256)).collect(),
            len: 0,
        }
    }

    /// True when token-embedding rows are read from the GGUF file rather than held in memory.
    pub fn embeddings_in_file(&self) -> bool {
        matches!(self.embed, Some(Embeddings::File(_)))
    }

    /// Bytes of weights (quantized size), for the bandwidth report.
    pub fn weight_bytes(&self) -> usize {
        let q = |m: &Proj| m.bytes();
        let mut total = q(&self.output);
        for b in &self.blocks {
            total += q(&b.q.weight) + q(&b.k.weight) + q(&b.v.weight) + q(&b.o.weight);
            total += q(&b.gate) + q(&b.up) + q(&b.down);
        }
        total
    }

    /// Run `tokens` through the model at the cache's current position, append their K/V to
    /// the cache, and return the logits of the last token (shape `[vocab]`, f32).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        let seq_len = tokens.len();
        if seq_len == 0 {
            return Err(Error::Invalid("forward called with no tokens".into()));
        }
        let pos = cache.len;
        if pos + seq_len > self.config.context_length {
            return Err(Error::ContextOverflow {
                model: self.config.arch.clone(),
                tokens: pos + seq_len,
                limit: self.config.context_length,
            });
        }
        if let (1, Some(host)) = (seq_len, &self.host) {
            return self.decode_on_host(host, tokens[0], cache);
        }
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed_tokens(tokens, &ids)?.unsqueeze(0)?; // (1, L, hidden)
        let mask = if seq_len > 1 { Some(causal_mask(seq_len, pos, &self.device)?) } else { None };
        let cos = self.cos.narrow(0, pos, seq_len)?;
        let sin = self.sin.narrow(0, pos, seq_len)?;
        for (block, layer_cache) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = block.attn_norm.forward(&x)?;
            let attn = self.attention(block, &h, layer_cache, mask.as_ref(), &cos, &sin)?;
            x = (x + attn)?;
            let h = block.ffn_norm.forward(&x)?;
            let gate = candle_nn::ops::silu(&block.gate.forward(&h)?)?;
            let up = block.up.forward(&h)?;
            let mlp = block.down.forward(&(gate * up)?)?;
            x = (x + mlp)?;
        }
        cache.len += seq_len;
        let last = x.narrow(1, seq_len - 1, 1)?;
        let last = self.norm.forward(&last)?;
        let logits = self.output.forward(&last)?;
        Ok(logits.flatten_all()?.to_dtype(DType::F32)?)
    }

    fn embed_tokens(&self, tokens: &[u32], ids: &Tensor) -> Result<Tensor> {
        match (&self.embed, &self.output) {
            (Some(Embeddings::Memory(e)), _) => Ok(e.embedding(ids)?),
            (Some(Embeddings::File(f)), _) => self.embed_rows(tokens, f.vocab, |t| f.row(t)),
            (None, Proj::Q8(q)) => self.embed_rows(tokens, q.out_dim(), |t| Ok(q.row(t))),
            (None, Proj::K(q)) => self.embed_rows(tokens, q.out_dim(), |t| Ok(q.row(t))),
            (None, Proj::Candle(_)) => Err(Error::Invalid("model has no embedding table".into())),
        }
    }

    /// Embeddings read row by row (from a tied output matrix held by one of our kernels, or
    /// from the GGUF file).
    fn embed_rows(&self, tokens: &[u32], vocab: usize, row: impl Fn(usize) -> Result<Vec<f32>>) -> Result<Tensor> {
        let mut data = Vec::with_capacity(tokens.len() * self.config.hidden);
        for &t in tokens {
            if t as usize >= vocab {
                return Err(Error::Invalid(format!("token id {t} outside the vocabulary of {vocab}")));
            }
            data.extend(row(t as usize)?);
        }
        Ok(Tensor::from_vec(data, (tokens.len(), self.config.hidden), &self.device)?)
    }

    fn attention(
        &self,
        b: &Block,
        x: &Tensor,
        cache: &mut candle_nn::kv_cache::KvCache,
        mask: Option<&Tensor>,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (_, seq_len, _) = x.dims3()?;
        let hd = c.head_dim;
        let q = b.q.forward(x)?.reshape((1, seq_len, c.n_head, hd))?;
        let k = b.k.forward(x)?.reshape((1, seq_len, c.n_kv_head, hd))?;
        let v = b.v.forward(x)?.reshape((1, seq_len, c.n_kv_head, hd))?;
        let q = match &b.q_norm {
            Some(n) => n.forward(&q)?,
            None => q,
        };
        let k = match &b.k_norm {
            Some(n) => n.forward(&k)?,
            None => k,
        };
        let q = q.transpose(1, 2)?.contiguous()?;
        let k = k.transpose(1, 2)?.contiguous()?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let (q, k) = match c.rope_style {
            RopeStyle::Halves => (
                candle_nn::rotary_emb::rope(&q, cos, sin)?,
                candle_nn::rotary_emb::rope(&k, cos, sin)?,
            ),
            RopeStyle::Interleaved => (
                candle_nn::rotary_emb::rope_i(&q, cos, sin)?,
                candle_nn::rotary_emb::rope_i(&k, cos, sin)?,
            ),
        };
        let (k, v) = cache.append(&k, &v)?; // (1, n_kv, kv_len, hd)
        let kv_len = k.dim(2)?;
        let n_rep = c.n_head / c.n_kv_head;
        // Fold the n_rep query heads that share one K/V head into the row dimension.
        let q = q.reshape((1, c.n_kv_head, n_rep * seq_len, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?; // (1, n_kv, n_rep*L, kv)
        let scores = match mask {
            Some(m) => scores
                .reshape((1, c.n_kv_head, n_rep, seq_len, kv_len))?
                .broadcast_add(m)?
                .reshape((1, c.n_kv_head, n_rep * seq_len, kv_len))?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(&v.contiguous()?)?; // (1, n_kv, n_rep*L, hd)
        let y = y.reshape((1, c.n_head, seq_len, hd))?.transpose(1, 2)?.reshape((1, seq_len, c.n_head * hd))?;
        b.o.forward(&y)
    }
}

/// What the one-token decode path needs besides the projections, as plain vectors.
struct HostDecode {
    layers: Vec<HostLayer>,
    out_norm: Vec<f32>,
    /// Rotary tables `[position][head_dim / 2]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

struct HostLayer {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    q_bias: Option<Vec<f32>>,
    k_bias: Option<Vec<f32>>,
    v_bias: Option<Vec<f32>>,
    o_bias: Option<Vec<f32>>,
}

fn host_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

impl HostDecode {
    fn new(blocks: &[Block], out_norm: &RmsNorm, cos: &Tensor, sin: &Tensor) -> Result<Self> {
        let opt = |t: &Option<Tensor>| t.as_ref().map(host_vec).transpose();
        let norm = |n: &Option<RmsNorm>| n.as_ref().map(|n| host_vec(&n.weight)).transpose();
        let layers = blocks
            .iter()
            .map(|b| {
                Ok(HostLayer {
                    attn_norm: host_vec(&b.attn_norm.weight)?,
                    ffn_norm: host_vec(&b.ffn_norm.weight)?,
                    q_norm: norm(&b.q_norm)?,
                    k_norm: norm(&b.k_norm)?,
                    q_bias: opt(&b.q.bias)?,
                    k_bias: opt(&b.k.bias)?,
                    v_bias: opt(&b.v.bias)?,
                    o_bias: opt(&b.o.bias)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, out_norm: host_vec(&out_norm.weight)?, cos: host_vec(cos)?, sin: host_vec(sin)? })
    }
}

/// `x · w / sqrt(mean(x²) + eps)`, as candle's `rms_norm`, per row of `w.len()` values.
fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(w.len()) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / w.len() as f32;
        let r = 1.0 / (ms + eps).sqrt();
        out.extend(row.iter().zip(w).map(|(v, g)| v * r * g));
    }
    out
}

fn add_bias(x: &mut [f32], b: &Option<Vec<f32>>) {
    if let Some(b) = b {
        x.iter_mut().zip(b).for_each(|(v, b)| *v += b);
    }
}

/// Rotate every head of `x` (heads of `hd` values) by the angles of one position, as candle's
/// `rope` (halves) or `rope_i` (adjacent pairs).
fn rope_in_place(x: &mut [f32], hd: usize, cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = hd / 2;
    for head in x.chunks_exact_mut(hd) {
        for i in 0..half {
            let (c, s) = (cos[i], sin[i]);
            let (a, b) = match style {
                RopeStyle::Halves => (i, i + half),
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so the compiler keeps them in one vector register.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// The f32 contents of a contiguous CPU tensor (the KV cache buffers).
fn with_cpu_f32<T>(t: &Tensor, f: impl FnOnce(&[f32]) -> T) -> Result<T> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(Error::Invalid("host decode on a tensor that is not in CPU memory".into()));
    };
    if !layout.is_contiguous() {
        return Err(Error::Invalid("host decode on a non-contiguous KV cache".into()));
    }
    let all = cpu.as_slice::<f32>()?;
    Ok(f(&all[layout.start_offset()..layout.start_offset() + layout.shape().elem_count()]))
}

/// Sizes for [`attend_one_token`].
#[derive(Debug, Clone, Copy)]
struct AttnShape {
    n_head: usize,
    n_kv: usize,
    hd: usize,
    /// Positions in the cache, the new token's included.
    kv_len: usize,
    /// Positions the cache buffers hold room for.
    cap: usize,
}

/// Attention of one new token: `q` is `[n_head][hd]` (rotated), `kc`/`vc` the cache buffers laid
/// out `[n_kv][cap][hd]` of which the first `kv_len` positions are filled. Query head `h` reads
/// K/V head `h / (n_head / n_kv)` (grouped-query attention). Returns `[n_head][hd]`.
fn attend_one_token(q: &[f32], kc: &[f32], vc: &[f32], s: AttnShape) -> Vec<f32> {
    use rayon::prelude::*;
    let width = (s.n_head / s.n_kv) * s.hd;
    let mut y = vec![0f32; s.n_head * s.hd];
    // Threads pay off only when the cache is long.
    if s.kv_len >= 256 && rayon::current_num_threads() > 1 {
        y.par_chunks_mut(width).enumerate().for_each(|(g, out)| attend_group(g, out, q, kc, vc, s));
    } else {
        for (g, out) in y.chunks_mut(width).enumerate() {
            attend_group(g, out, q, kc, vc, s);
        }
    }
    y
}

/// One K/V group: its `n_rep` query heads (`out` is `[n_rep][hd]`), on AVX2 where the CPU has it.
fn attend_group(g: usize, out: &mut [f32], q: &[f32], kc: &[f32], vc: &[f32], s: AttnShape) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        #[allow(unsafe_code)]
        return unsafe { attend_group_avx2(g, out, q, kc, vc, s) };
    }
    attend_group_generic(g, out, q, kc, vc, s, dot)
}

/// [`attend_group_generic`] compiled for AVX2, with an FMA dot product (LLVM keeps the generic
/// one scalar).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_group_avx2(g: usize, out: &mut [f32], q: &[f32], kc: &[f32], vc: &[f32], s: AttnShape) {
    attend_group_generic(g, out, q, kc, vc, s, |a, b| super::simd::dot_f32(a, b))
}

/// The group's query heads meet every cached position while the position's K (then V) row is
/// in L1. Plain loops only: closures handed to iterator adapters would be compiled outside the
/// AVX2 copy.
#[inline(always)]
fn attend_group_generic(
    g: usize,
    out: &mut [f32],
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    s: AttnShape,
    dot: impl Fn(&[f32], &[f32]) -> f32,
) {
    let AttnShape { n_head, n_kv, hd, kv_len, cap } = s;
    let n_rep = n_head / n_kv;
    let scale = 1.0 / (hd as f32).sqrt();
    let qs = &q[g * n_rep * hd..(g + 1) * n_rep * hd];
    let base = g * cap * hd;
    // scores[r * kv_len + t]
    let mut scores = vec![0f32; n_rep * kv_len];
    for t in 0..kv_len {
        let kt = &kc[base + t * hd..base + (t + 1) * hd];
        for r in 0..n_rep {
            scores[r * kv_len + t] = dot(&qs[r * hd..(r + 1) * hd], kt) * scale;
        }
    }
    for r in 0..n_rep {
        let row = &mut scores[r * kv_len..(r + 1) * kv_len];
        let mut max = f32::NEG_INFINITY;
        for v in row.iter() {
            max = max.max(*v);
        }
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
    for t in 0..kv_len {
        let vt = &vc[base + t * hd..base + (t + 1) * hd];
        for r in 0..n_rep {
            let w = scores[r * kv_len + t];
            for (o, v) in out[r * hd..(r + 1) * hd].iter_mut().zip(vt) {
                *o += w * v;
            }
        }
    }
}

impl QuantizedTransformer {
    /// One token through the model with plain vectors between the projections: no tensor is
    /// built per operation, and attention reads the KV cache in place (no copy of the cache
    /// per token). Same arithmetic as the tensor path up to float summation order.
    fn decode_on_host(&self, host: &HostDecode, token: u32, cache: &mut KvCache) -> Result<Tensor> {
        let c = &self.config;
        let (hd, n_head, n_kv) = (c.head_dim, c.n_head, c.n_kv_head);
        let eps = c.rms_eps as f32;
        let pos = cache.len;
        let half = hd / 2;
        let (cos, sin) = (&host.cos[pos * half..(pos + 1) * half], &host.sin[pos * half..(pos + 1) * half]);
        let ids = Tensor::new(&[token], &self.device)?;
        let mut x = host_vec(&self.embed_tokens(&[token], &ids)?)?;
        for ((b, hl), lc) in self.blocks.iter().zip(&host.layers).zip(cache.layers.iter_mut()) {
            let h = rms_norm_rows(&x, &hl.attn_norm, eps);
            let mut q = b.q.weight.forward_vec(&h, c.hidden, &self.device)?;
            let mut k = b.k.weight.forward_vec(&h, c.hidden, &self.device)?;
            let mut v = b.v.weight.forward_vec(&h, c.hidden, &self.device)?;
            add_bias(&mut q, &hl.q_bias);
            add_bias(&mut k, &hl.k_bias);
            add_bias(&mut v, &hl.v_bias);
            if let Some(w) = &hl.q_norm {
                q = rms_norm_rows(&q, w, eps);
            }
            if let Some(w) = &hl.k_norm {
                k = rms_norm_rows(&k, w, eps);
            }
            rope_in_place(&mut q, hd, cos, sin, c.rope_style);
            rope_in_place(&mut k, hd, cos, sin, c.rope_style);
            lc.append(&Tensor::from_vec(k, (1, n_kv, 1, hd), &self.device)?, &Tensor::from_vec(v, (1, n_kv, 1, hd), &self.device)?)?;
            let kv_len = pos + 1;
            let cap = lc.k_cache().max_seq_len();
            let (Some(kb), Some(vb)) = (lc.k_cache().all_data(), lc.v_cache().all_data()) else {
                return Err(Error::Invalid("KV cache empty after append".into()));
            };
            let shape = AttnShape { n_head, n_kv, hd, kv_len, cap };
            let y = with_cpu_f32(kb, |kc| with_cpu_f32(vb, |vc| attend_one_token(&q, kc, vc, shape)))??;
            let mut o = b.o.weight.forward_vec(&y, n_head * hd, &self.device)?;
            add_bias(&mut o, &hl.o_bias);
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            let h = rms_norm_rows(&x, &hl.ffn_norm, eps);
            let gate = b.gate.forward_vec(&h, c.hidden, &self.device)?;
            let up = b.up.forward_vec(&h, c.hidden, &self.device)?;
            let act: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let down = b.down.forward_vec(&act, act.len(), &self.device)?;
            x.iter_mut().zip(&down).for_each(|(x, d)| *x += d);
        }
        cache.len += 1;
        let h = rms_norm_rows(&x, &host.out_norm, eps);
        let logits = self.output.forward_vec(&h, c.hidden, &self.device)?;
        let n = logits.len();
        Ok(Tensor::from_vec(logits, n, &self.device)?)
    }
}

pub(crate) fn rope_tables(head_dim: usize, base: f32, len: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..head_dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / head_dim as f32)).collect();
    let inv = Tensor::new(inv.as_slice(), device)?.unsqueeze(0)?;
    let t = Tensor::arange(0u32, len as u32, device)?.to_dtype(DType::F32)?.unsqueeze(1)?;
    let freqs = t.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Additive mask (L, pos+L): 0 where a query may look, -inf at future positions.
fn causal_mask(seq_len: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let kv = pos + seq_len;
    let data: Vec<f32> = (0..seq_len)
        .flat_map(|i| (0..kv).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (seq_len, kv), device)?)
}

/// Re-quantization helper shared with the registry: true for the legacy low-bit block types
/// that candle's CPU kernels run slowly.
pub fn is_slow_legacy_quant(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}


#[cfg(test)]
mod host_decode_tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0).collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
    }

    #[test]
    fn host_rms_norm_and_rope_match_candle() {
        let dev = Device::Cpu;
        let (heads, hd) = (3, 8);
        let x = data(heads * hd, 1);
        let w = data(hd, 2);
        let t = Tensor::from_vec(x.clone(), (heads, hd), &dev).unwrap();
        let wt = Tensor::from_vec(w.clone(), hd, &dev).unwrap();
        let want: Vec<f32> = candle_nn::ops::rms_norm(&t, &wt, 1e-6).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(max_diff(&rms_norm_rows(&x, &w, 1e-6), &want) < 1e-5);
        let (cos, sin) = rope_tables(hd, 10_000.0, 16, &dev).unwrap();
        let pos = 11;
        let (c, s) = (host_vec(&cos).unwrap(), host_vec(&sin).unwrap());
        let (c, s) = (&c[pos * hd / 2..(pos + 1) * hd / 2], &s[pos * hd / 2..(pos + 1) * hd / 2]);
        let t4 = t.reshape((1, heads, 1, hd)).unwrap();
        let (cn, sn) = (cos.narrow(0, pos, 1).unwrap(), sin.narrow(0, pos, 1).unwrap());
        for (style, want) in [
            (RopeStyle::Halves, candle_nn::rotary_emb::rope(&t4, &cn, &sn).unwrap()),
            (RopeStyle::Interleaved, candle_nn::rotary_emb::rope_i(&t4, &cn, &sn).unwrap()),
        ] {
            let mut got = x.clone();
            rope_in_place(&mut got, hd, c, s, style);
            let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
            assert!(max_diff(&got, &want) < 1e-5, "{style:?}");
        }
    }

    #[test]
    fn host_attention_matches_the_tensor_formula() {
        let dev = Device::Cpu;
        let (n_head, n_kv, hd, kv_len, cap) = (6, 2, 16, 37, 64);
        let q = data(n_head * hd, 3);
        let kc = data(n_kv * cap * hd, 4);
        let vc = data(n_kv * cap * hd, 5);
        let got = attend_one_token(&q, &kc, &vc, AttnShape { n_head, n_kv, hd, kv_len, cap });
        // The tensor path: fold the query heads of a group, scores, softmax, weighted values.
        let k = Tensor::from_vec(kc, (1, n_kv, cap, hd), &dev).unwrap().narrow(2, 0, kv_len).unwrap();
        let v = Tensor::from_vec(vc, (1, n_kv, cap, hd), &dev).unwrap().narrow(2, 0, kv_len).unwrap();
        let qt = Tensor::from_vec(q, (1, n_kv, n_head / n_kv, hd), &dev).unwrap();
        let scores = (qt.matmul(&k.contiguous().unwrap().t().unwrap()).unwrap() * (1.0 / (hd as f64).sqrt())).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let want: Vec<f32> = probs.matmul(&v.contiguous().unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(max_diff(&got, &want) < 1e-5, "{}", max_diff(&got, &want));
    }
}
