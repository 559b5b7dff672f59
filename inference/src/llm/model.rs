//! A quantized decoder-only transformer read from GGUF: the Qwen2 / Qwen3 / Llama family.
//!
//! Differences from candle's own `quantized_qwen2`:
//! - the weights are immutable and shared (`&self`); each request owns a [`KvCache`], so many
//!   conversations can be interleaved by the scheduler;
//! - the token-embedding table stays quantized (rows are dequantized on lookup) instead of being
//!   expanded to f32, which saves hundreds of MB of RSS;
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

/// Which of our own CPU kernels this process may use (decided once at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    /// Q8_0 on AVX-512 VNNI (`ZHENGWU_NO_Q8_KERNEL` turns it off).
    pub q8: bool,
    /// Q4_K / Q6_K on AVX2 + FMA (`ZHENGWU_NO_KQUANT_KERNEL` turns it off).
    pub kquant: bool,
}

impl Kernels {
    fn detect(device: &Device) -> Self {
        let cpu = matches!(device, Device::Cpu);
        Self {
            q8: cpu && super::q8::supported() && std::env::var_os("ZHENGWU_NO_Q8_KERNEL").is_none(),
            kquant: cpu && super::kquant::supported() && std::env::var_os("ZHENGWU_NO_KQUANT_KERNEL").is_none(),
        }
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

/// The loaded weights; immutable, shared between requests.
pub struct QuantizedTransformer {
    pub config: ModelConfig,
    /// Token embeddings; `None` when they are tied to `output` and read from it.
    embed: Option<Arc<QTensor>>,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: Proj,
    /// Which of our kernels the projections may run on (for the start-up log).
    pub kernels: Kernels,
    cos: Tensor,
    sin: Tensor,
    device: Device,
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
        let embed_q = get("token_embd.weight")?;
        let norm = |t: QTensor| -> Result<RmsNorm> {
            Ok(RmsNorm { weight: t.dequantize(device)?, eps: config.rms_eps as f32 })
        };
        let output_norm = norm(get("output_norm.weight")?)?;
        // Tied word embeddings: with our kernel the output matrix also serves embedding lookups,
        // so the table is held once.
        let (output, embed) = match get("output.weight") {
            Ok(t) => (Proj::new(t, kernels)?, Some(Arc::new(embed_q))),
            Err(_) => match embed_q.dtype() {
                GgmlDType::Q8_0 if kernels.q8 => (Proj::new(embed_q, kernels)?, None),
                GgmlDType::Q4K | GgmlDType::Q6K if kernels.kquant => (Proj::new(embed_q, kernels)?, None),
                _ => {
                    let e = Arc::new(embed_q);
                    (Proj::Candle(QMatMul::from_arc(e.clone())?), Some(e))
                }
            },
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
        Ok(Self { config, embed, blocks, norm: output_norm, output, kernels, cos, sin, device: device.clone() })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A fresh, empty cache for one request.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: (0..self.config.n_layer).map(|_| candle_nn::kv_cache::KvCache::new(2, 256)).collect(),
            len: 0,
        }
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
            (Some(e), _) => Ok(e.embedding(ids)?),
            (None, Proj::Q8(q)) => self.embed_rows(tokens, q.out_dim(), |t| q.row(t)),
            (None, Proj::K(q)) => self.embed_rows(tokens, q.out_dim(), |t| q.row(t)),
            (None, Proj::Candle(_)) => Err(Error::Invalid("model has no embedding table".into())),
        }
    }

    /// Embeddings read row by row from a tied output matrix held by one of our kernels.
    fn embed_rows(&self, tokens: &[u32], vocab: usize, row: impl Fn(usize) -> Vec<f32>) -> Result<Tensor> {
        let mut data = Vec::with_capacity(tokens.len() * self.config.hidden);
        for &t in tokens {
            if t as usize >= vocab {
                return Err(Error::Invalid(format!("token id {t} outside the vocabulary of {vocab}")));
            }
            data.extend(row(t as usize));
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

