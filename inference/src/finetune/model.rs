//! A trainable copy of a GGUF decoder (Qwen2 / Qwen3 layout) for LoRA fine-tuning.
//!
//! The base weights are dequantized to f32 once and stay frozen. On the CPU a frozen projection
//! is a custom op whose backward pass returns only the gradient of its input: candle's plain
//! matmul would also compute (and store) a gradient for every frozen weight, a third more work
//! and a second copy of the model in memory. Other devices use the plain matmul.
//!
//! Only the LoRA matrices are `Var`s. The language-model head runs on the positions whose next
//! token is a training target, not on the whole sequence.

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::adapter::{LoraAdapter, LoraSpec};
use crate::llm::model::{ModelConfig, RopeStyle};
use crate::llm::q8::Q8Linear;
use crate::{Error, Result};

/// The contiguous f32 input of a frozen-weight op as a CPU tensor of its own shape.
fn input_tensor(op: &str, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Tensor> {
    let data = match storage {
        CpuStorage::F32(v) => v,
        _ => candle_core::bail!("{op}: expected an f32 input"),
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input must be contiguous")))?;
    Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)
}

/// `x · Wᵀ` with a frozen `W` (out × in): backward gives only the input's gradient.
struct FrozenMatmul {
    w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = input_tensor(self.name(), storage, layout)?;
        let dims = layout.dims();
        let in_dim = *dims.last().unwrap_or(&0);
        let (out_dim, w_in) = self.w.dims2()?;
        if in_dim != w_in {
            candle_core::bail!("frozen-matmul: input has {in_dim} features, weight expects {w_in}");
        }
        let rows = if in_dim == 0 { 0 } else { x.elem_count() / in_dim };
        let y = x.reshape((rows, in_dim))?.matmul(&self.w.t()?)?;
        let mut out_dims = dims.to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = out_dim;
        }
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), Shape::from(out_dims)))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.broadcast_matmul(&self.w)?))
    }
}

/// The same product on the int8 (VNNI) kernel: `W` and `Wᵀ` are both held as Q8_0, the input
/// (forward) and the incoming gradient (backward) are quantized per 32 values, as in inference.
/// About three times the f32 throughput on this kind of CPU; the weights are exactly the Q8_0
/// weights the server runs when the base is a Q8_0 GGUF.
struct FrozenQ8 {
    w: Arc<Q8Linear>,
    wt: Arc<Q8Linear>,
}

fn q8_err(e: crate::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

impl CustomOp1 for FrozenQ8 {
    fn name(&self) -> &'static str {
        "frozen-q8"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = input_tensor(self.name(), storage, layout)?;
        let y = self.w.forward(&x).map_err(q8_err)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.wt.forward(&grad_res.contiguous()?).map_err(q8_err)?))
    }
}

/// A frozen weight (out × in) in the form the chosen kernel wants.
#[derive(Clone)]
enum Frozen {
    F32(Tensor),
    Q8 { w: Arc<Q8Linear>, wt: Arc<Q8Linear> },
}

impl Frozen {
    fn new(w: Tensor, q8: bool) -> Result<Self> {
        if q8 {
            let make = |t: &Tensor| -> Result<Option<Q8Linear>> {
                let (_, cols) = t.dims2()?;
                if cols % GgmlDType::Q8_0.block_size() != 0 {
                    return Ok(None);
                }
                Q8Linear::from_qtensor(&QTensor::quantize(t, GgmlDType::Q8_0)?)
            };
            if let (Some(fwd), Some(bwd)) = (make(&w)?, make(&w.t()?.contiguous()?)?) {
                return Ok(Frozen::Q8 { w: Arc::new(fwd), wt: Arc::new(bwd) });
            }
        }
        Ok(Frozen::F32(w))
    }

    /// From the GGUF tensor itself: a Q8_0 weight keeps its own blocks for the forward
    /// direction (re-quantizing Q8_0 values to Q8_0 would give the same blocks), so only `Wᵀ`
    /// is quantized at load.
    fn from_qtensor(q: &QTensor, q8: bool, device: &Device) -> Result<Self> {
        let w = q.dequantize(device)?.to_dtype(DType::F32)?;
        if q8 && q.dtype() == GgmlDType::Q8_0 {
            // Wᵀ has the rows of W as its columns: they must split into Q8_0 blocks too.
            let (rows, _) = w.dims2()?;
            if rows % GgmlDType::Q8_0.block_size() == 0 {
                if let (Some(fwd), Some(bwd)) = (
                    Q8Linear::from_qtensor(q)?,
                    Q8Linear::from_qtensor(&QTensor::quantize(&w.t()?.contiguous()?, GgmlDType::Q8_0)?)?,
                ) {
                    return Ok(Frozen::Q8 { w: Arc::new(fwd), wt: Arc::new(bwd) });
                }
            }
        }
        Self::new(w, q8)
    }

    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Frozen::F32(w) => frozen(x, w),
            Frozen::Q8 { w, wt } => Ok(x.contiguous()?.apply_op1(FrozenQ8 { w: w.clone(), wt: wt.clone() })?),
        }
    }
}

fn frozen(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && w.dtype() == DType::F32 {
        Ok(x.contiguous()?.apply_op1(FrozenMatmul { w: w.clone() })?)
    } else {
        Ok(x.broadcast_matmul(&w.t()?)?)
    }
}

/// RMS norm from differentiable primitives (candle's fused kernel has no backward pass).
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let norm = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?.broadcast_mul(weight)?)
}

/// Rotate the two halves of each head (Qwen layout). `x`: (heads, L, hd); cos/sin: (L, hd/2).
fn rope_halves(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
    let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
}

/// One projection: frozen weight and bias, optional trainable low-rank update.
struct TrainLinear {
    /// GGUF weight name, e.g. `blk.0.attn_q.weight`.
    name: String,
    w: Frozen,
    /// (out, in)
    dims: (usize, usize),
    bias: Option<Tensor>,
    lora: Option<(Var, Var)>,
}

impl TrainLinear {
    fn forward(&self, x: &Tensor, scale: f64) -> Result<Tensor> {
        let mut y = self.w.apply(x)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some((a, b)) = &self.lora {
            let low = x.broadcast_matmul(&a.as_tensor().t()?)?;
            let up = low.broadcast_matmul(&b.as_tensor().t()?)?;
            y = (y + (up * scale)?)?;
        }
        Ok(y)
    }
}

struct TrainBlock {
    attn_norm: Tensor,
    q: TrainLinear,
    k: TrainLinear,
    v: TrainLinear,
    o: TrainLinear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: TrainLinear,
    up: TrainLinear,
    down: TrainLinear,
}

impl TrainBlock {
    fn linears(&self) -> [&TrainLinear; 7] {
        [&self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down]
    }
    fn linears_mut(&mut self) -> [&mut TrainLinear; 7] {
        [&mut self.q, &mut self.k, &mut self.v, &mut self.o, &mut self.gate, &mut self.up, &mut self.down]
    }
}

/// The frozen base plus trainable LoRA matrices.
pub struct TrainableModel {
    pub config: ModelConfig,
    /// Frozen projections run on the int8 kernel.
    pub int8: bool,
    embed: Tensor,
    output: Frozen,
    blocks: Vec<TrainBlock>,
    norm: Tensor,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    lora: Option<LoraSpec>,
}

impl TrainableModel {
    /// Read a GGUF model's weights: dequantized to f32, and for the frozen projections either
    /// kept in f32 or (with `int8`, CPU with VNNI only) re-packed for the int8 kernel.
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        max_context: usize,
        int8: bool,
    ) -> Result<Self> {
        let q8 = int8 && device.is_cpu() && crate::llm::q8::supported();
        let config = ModelConfig::from_gguf(ct, max_context)?;
        if config.rope_style != RopeStyle::Halves {
            return Err(Error::Load {
                model: config.arch.clone(),
                msg: "fine-tuning supports the Qwen2/Qwen3 layout only".into(),
            });
        }
        let mut get = |name: &str| -> Result<QTensor> {
            ct.tensor(reader, name, device).map_err(|e| Error::Load {
                model: config.arch.clone(),
                msg: format!("tensor `{name}`: {e}"),
            })
        };
        let deq = |q: QTensor| -> Result<Tensor> { Ok(q.dequantize(device)?.to_dtype(DType::F32)?) };
        let has = |name: &str| ct.tensor_infos.contains_key(name);
        let embed = deq(get("token_embd.weight")?)?;
        let output = if has("output.weight") {
            Frozen::from_qtensor(&get("output.weight")?, q8, device)?
        } else {
            Frozen::new(embed.clone(), q8)?
        };
        let norm = deq(get("output_norm.weight")?)?;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let p = format!("blk.{i}");
            let mut lin = |short: &str, with_bias: bool| -> Result<TrainLinear> {
                let name = format!("{p}.{short}.weight");
                let qt = get(&name)?;
                let dims = qt.shape().dims2()?;
                let w = Frozen::from_qtensor(&qt, q8, device)?;
                let bias_name = format!("{p}.{short}.bias");
                let bias = if with_bias && has(&bias_name) { Some(deq(get(&bias_name)?)?) } else { None };
                Ok(TrainLinear { name, w, dims, bias, lora: None })
            };
            let q = lin("attn_q", true)?;
            let k = lin("attn_k", true)?;
            let v = lin("attn_v", true)?;
            let o = lin("attn_output", false)?;
            let gate = lin("ffn_gate", false)?;
            let up = lin("ffn_up", false)?;
            let down = lin("ffn_down", false)?;
            let opt = |name: String, get: &mut dyn FnMut(&str) -> Result<QTensor>| -> Result<Option<Tensor>> {
                if has(&name) {
                    Ok(Some(deq(get(&name)?)?))
                } else {
                    Ok(None)
                }
            };
            let q_norm = opt(format!("{p}.attn_q_norm.weight"), &mut get)?;
            let k_norm = opt(format!("{p}.attn_k_norm.weight"), &mut get)?;
            blocks.push(TrainBlock {
                attn_norm: deq(get(&format!("{p}.attn_norm.weight"))?)?,
                q,
                k,
                v,
                o,
                q_norm,
                k_norm,
                ffn_norm: deq(get(&format!("{p}.ffn_norm.weight"))?)?,
                gate,
                up,
                down,
            });
        }
        let (cos, sin) = crate::llm::model::rope_tables(config.head_dim, config.rope_base, config.context_length, device)?;
        Ok(Self { config, int8: q8, embed, output, blocks, norm, cos, sin, device: device.clone(), lora: None })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn lora_spec(&self) -> Option<&LoraSpec> {
        self.lora.as_ref()
    }

    /// (Re-)create the LoRA matrices: A uniform in ±1/√in from `seed`, B zero, so a fresh
    /// adapter leaves the model's output unchanged.
    pub fn init_lora(&mut self, spec: &LoraSpec, seed: u64) -> Result<()> {
        spec.validate()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let device = self.device.clone();
        for block in &mut self.blocks {
            for lin in block.linears_mut() {
                let short = lin.name.split('.').nth(2).unwrap_or_default().to_string();
                if !spec.targets.contains(&short) {
                    lin.lora = None;
                    continue;
                }
                let (out_dim, in_dim) = lin.dims;
                let bound = 1.0 / (in_dim as f32).sqrt();
                let a: Vec<f32> = (0..spec.rank * in_dim).map(|_| rng.random_range(-bound..bound)).collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (spec.rank, in_dim), &device)?)?;
                let b = Var::from_tensor(&Tensor::zeros((out_dim, spec.rank), DType::F32, &device)?)?;
                lin.lora = Some((a, b));
            }
        }
        self.lora = Some(spec.clone());
        Ok(())
    }

    /// Every LoRA matrix, named `<weight>.lora_a` / `<weight>.lora_b`, in a fixed order.
    pub fn lora_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for block in &self.blocks {
            for lin in block.linears() {
                if let Some((a, b)) = &lin.lora {
                    out.push((format!("{}.lora_a", lin.name), a.clone()));
                    out.push((format!("{}.lora_b", lin.name), b.clone()));
                }
            }
        }
        out
    }

    /// Copies of the current LoRA matrices, keyed by GGUF weight name.
    pub fn lora_weights(&self) -> Result<BTreeMap<String, (Tensor, Tensor)>> {
        let mut out = BTreeMap::new();
        for block in &self.blocks {
            for lin in block.linears() {
                if let Some((a, b)) = &lin.lora {
                    out.insert(lin.name.clone(), (a.as_tensor().copy()?, b.as_tensor().copy()?));
                }
            }
        }
        Ok(out)
    }

    /// Put a saved adapter's matrices into this model (same base, same spec).
    pub fn load_adapter(&mut self, adapter: &LoraAdapter) -> Result<()> {
        self.init_lora(&adapter.manifest.lora, 0)?;
        let mut used = 0usize;
        for block in &mut self.blocks {
            for lin in block.linears_mut() {
                if let Some((a, b)) = &lin.lora {
                    let (sa, sb) = adapter.weights.get(&lin.name).ok_or_else(|| {
                        Error::Invalid(format!("adapter has no weights for `{}` although it targets it", lin.name))
                    })?;
                    if sa.dims() != a.as_tensor().dims() || sb.dims() != b.as_tensor().dims() {
                        return Err(Error::Invalid(format!("adapter weights for `{}` do not fit this model", lin.name)));
                    }
                    a.set(&sa.to_device(&self.device)?)?;
                    b.set(&sb.to_device(&self.device)?)?;
                    used += 1;
                }
            }
        }
        if used != adapter.weights.len() {
            return Err(Error::Invalid(format!(
                "adapter holds {} weights, this model takes {used} of them",
                adapter.weights.len()
            )));
        }
        Ok(())
    }

    /// Final hidden states (after the output norm) for every position: (L, hidden).
    fn hidden(&self, ids: &[u32]) -> Result<Tensor> {
        let c = &self.config;
        let len = ids.len();
        if len == 0 {
            return Err(Error::Invalid("empty sequence".into()));
        }
        if len > c.context_length {
            return Err(Error::ContextOverflow { model: c.arch.clone(), tokens: len, limit: c.context_length });
        }
        let vocab = self.embed.dim(0)?;
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Invalid(format!("token id {bad} outside the vocabulary of {vocab}")));
        }
        let scale = self.lora.as_ref().map(|l| l.scale()).unwrap_or(0.0);
        let idx = Tensor::new(ids, &self.device)?;
        let mut x = self.embed.index_select(&idx, 0)?; // (L, hidden)
        let cos = self.cos.narrow(0, 0, len)?;
        let sin = self.sin.narrow(0, 0, len)?;
        let mask: Vec<f32> =
            (0..len).flat_map(|i| (0..len).map(move |j| if j > i { -1e9f32 } else { 0.0 })).collect();
        let mask = Tensor::from_vec(mask, (len, len), &self.device)?;
        let n_rep = c.n_head / c.n_kv_head;
        let hd = c.head_dim;
        let attn_scale = 1.0 / (hd as f64).sqrt();
        for b in &self.blocks {
            let h = rms_norm(&x, &b.attn_norm, c.rms_eps)?;
            let q = b.q.forward(&h, scale)?.reshape((len, c.n_head, hd))?;
            let k = b.k.forward(&h, scale)?.reshape((len, c.n_kv_head, hd))?;
            let v = b.v.forward(&h, scale)?.reshape((len, c.n_kv_head, hd))?;
            let q = match &b.q_norm {
                Some(w) => rms_norm(&q, w, c.rms_eps)?,
                None => q,
            };
            let k = match &b.k_norm {
                Some(w) => rms_norm(&k, w, c.rms_eps)?,
                None => k,
            };
            let q = rope_halves(&q.transpose(0, 1)?.contiguous()?, &cos, &sin)?; // (heads, L, hd)
            let k = rope_halves(&k.transpose(0, 1)?.contiguous()?, &cos, &sin)?;
            let v = v.transpose(0, 1)?.contiguous()?;
            // The n_rep query heads sharing one K/V head are folded into the row dimension.
            let q = q.reshape((c.n_kv_head, n_rep * len, hd))?;
            let scores = (q.matmul(&k.t()?)? * attn_scale)?; // (kv, n_rep*L, L)
            let scores = scores.reshape((c.n_kv_head, n_rep, len, len))?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?.reshape((c.n_kv_head, n_rep * len, len))?;
            let y = probs.matmul(&v)?; // (kv, n_rep*L, hd)
            let y = y.reshape((c.n_head, len, hd))?.transpose(0, 1)?.reshape((len, c.n_head * hd))?;
            x = (x + b.o.forward(&y, scale)?)?;
            let h = rms_norm(&x, &b.ffn_norm, c.rms_eps)?;
            let gate = b.gate.forward(&h, scale)?.silu()?;
            let up = b.up.forward(&h, scale)?;
            x = (x + b.down.forward(&(gate * up)?, scale)?)?;
        }
        rms_norm(&x, &self.norm, c.rms_eps)
    }

    /// Summed cross-entropy over the target tokens (`targets[t]` true: token t is predicted
    /// from the tokens before it) and how many there are. Differentiable w.r.t. the LoRA vars.
    pub fn loss_sum(&self, ids: &[u32], targets: &[bool]) -> Result<(Tensor, usize)> {
        if ids.len() != targets.len() {
            return Err(Error::Invalid("ids and targets differ in length".into()));
        }
        let pos: Vec<u32> = (1..ids.len()).filter(|&t| targets[t]).map(|t| (t - 1) as u32).collect();
        if pos.is_empty() {
            return Err(Error::Invalid("sequence has no target tokens".into()));
        }
        let labels: Vec<u32> = pos.iter().map(|&p| ids[p as usize + 1]).collect();
        let h = self.hidden(ids)?;
        let sel = h.index_select(&Tensor::new(pos.as_slice(), &self.device)?, 0)?;
        let logits = self.output.apply(&sel)?;
        let labels = Tensor::new(labels.as_slice(), &self.device)?;
        let mean = candle_nn::loss::cross_entropy(&logits, &labels)?;
        Ok(((mean * pos.len() as f64)?, pos.len()))
    }

    /// Logits of the last position (vocab,), for comparing adapters.
    pub fn last_logits(&self, ids: &[u32]) -> Result<Tensor> {
        let h = self.hidden(ids)?;
        let last = h.narrow(0, ids.len() - 1, 1)?;
        Ok(self.output.apply(&last)?.flatten_all()?.detach())
    }
}
