//! LoRA adapters on disk: one safetensors file holding `<weight>.lora_a` (rank × in) and
//! `<weight>.lora_b` (out × rank) for each adapted GGUF weight, plus a JSON manifest in the
//! safetensors metadata (base model and hash, rank, alpha, targets, training data hash, metrics).
//!
//! The server merges an adapter into the base weights when it loads the model
//! (`W' = W + alpha/rank · B·A`, re-quantized to Q8_0), so generation runs at base speed.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::{Error, Result};

/// Manifest format tag; bumped when the layout changes.
pub const ADAPTER_FORMAT: &str = "zhengwu-lora-v1";

/// The projections an adapter may target, by their GGUF short names.
pub const TARGETS: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

/// Map a user-facing module name (`q`, `k`, `v`, `o`, `gate`, `up`, `down`, `mlp`, `attn`, `all`,
/// or the GGUF names) to GGUF short names.
pub fn parse_targets(list: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let names: &[&str] = match raw {
            "q" | "q_proj" | "attn_q" => &["attn_q"],
            "k" | "k_proj" | "attn_k" => &["attn_k"],
            "v" | "v_proj" | "attn_v" => &["attn_v"],
            "o" | "o_proj" | "attn_output" => &["attn_output"],
            "gate" | "gate_proj" | "ffn_gate" => &["ffn_gate"],
            "up" | "up_proj" | "ffn_up" => &["ffn_up"],
            "down" | "down_proj" | "ffn_down" => &["ffn_down"],
            "attn" => &["attn_q", "attn_k", "attn_v", "attn_output"],
            "mlp" => &["ffn_gate", "ffn_up", "ffn_down"],
            "all" => &TARGETS,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown LoRA target `{other}` (use q, k, v, o, gate, up, down, attn, mlp or all)"
                )))
            }
        };
        for n in names {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid("no LoRA target modules given".into()));
    }
    // Canonical order, so the same set always gives the same manifest.
    out.sort_by_key(|n| TARGETS.iter().position(|t| t == n));
    Ok(out)
}

/// Shape of the low-rank update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    /// GGUF short names (`attn_q`, ..., `ffn_down`).
    pub targets: Vec<String>,
}

impl LoraSpec {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 || self.rank > 256 {
            return Err(Error::Invalid(format!("LoRA rank must be in 1..=256, got {}", self.rank)));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::Invalid(format!("LoRA alpha must be positive, got {}", self.alpha)));
        }
        for t in &self.targets {
            if !TARGETS.contains(&t.as_str()) {
                return Err(Error::Invalid(format!("unknown LoRA target `{t}`")));
            }
        }
        Ok(())
    }
}

/// What an adapter was trained on and how well it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterManifest {
    pub format: String,
    /// Registry name of the base model.
    pub base_model: String,
    /// sha256 of the base GGUF file the adapter was trained against.
    pub base_sha256: String,
    pub lora: LoraSpec,
    /// sha256 of the training JSONL file.
    pub data_sha256: String,
    pub examples: usize,
    pub steps: usize,
    pub tokens_trained: u64,
    pub seed: u64,
    /// Training hyper-parameters as given (learning rate, batch, ...).
    pub hyper: BTreeMap<String, serde_json::Value>,
    /// Measurements (first/last loss, seconds, peak RSS, ...).
    pub metrics: BTreeMap<String, f64>,
}

impl AdapterManifest {
    /// The manifest of a run of `opts` on `data_sha256` (`examples` tokenized examples) that
    /// reached `state`, for base `base_model` (file hash `base_sha256`). Hyper-parameters are
    /// taken from `opts`; metrics start empty.
    pub fn new(
        base_model: &str,
        base_sha256: &str,
        opts: &super::TrainOptions,
        data_sha256: &str,
        examples: usize,
        state: &super::TrainState,
    ) -> Self {
        let hyper = serde_json::to_value(opts)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .map(|o| o.into_iter().collect())
            .unwrap_or_default();
        AdapterManifest {
            format: ADAPTER_FORMAT.into(),
            base_model: base_model.into(),
            base_sha256: base_sha256.into(),
            lora: opts.lora.clone(),
            data_sha256: data_sha256.into(),
            examples,
            steps: state.step,
            tokens_trained: state.tokens,
            seed: opts.seed,
            hyper,
            metrics: BTreeMap::new(),
        }
    }
}

/// A trained adapter: the manifest and the (A, B) pair of each adapted weight.
#[derive(Debug)]
pub struct LoraAdapter {
    pub manifest: AdapterManifest,
    /// Keyed by GGUF weight name, e.g. `blk.3.attn_q.weight`.
    pub weights: BTreeMap<String, (Tensor, Tensor)>,
}

impl LoraAdapter {
    /// Write the adapter atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = serde_json::to_string(&self.manifest).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (name, (a, b)) in &self.weights {
            named.push((format!("{name}.lora_a"), a.to_dtype(DType::F32)?.to_device(&Device::Cpu)?));
            named.push((format!("{name}.lora_b"), b.to_dtype(DType::F32)?.to_device(&Device::Cpu)?));
        }
        crate::tensor_file::write_safetensors(path, &named, &[("manifest", meta)])
    }

    /// Read an adapter; a file that is not one says so.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let bad = |msg: String| Error::ModelFile { path: path.to_path_buf(), msg };
        let bytes = fs_err::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let manifest_json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("manifest"))
            .ok_or_else(|| bad("no `manifest` in the safetensors metadata (not a zhengwu LoRA adapter)".into()))?;
        let manifest: AdapterManifest =
            serde_json::from_str(manifest_json).map_err(|e| bad(format!("manifest: {e}")))?;
        if manifest.format != ADAPTER_FORMAT {
            return Err(bad(format!("adapter format `{}` is not {ADAPTER_FORMAT}", manifest.format)));
        }
        manifest.lora.validate().map_err(|e| bad(e.to_string()))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| bad(e.to_string()))?;
        let mut weights = BTreeMap::new();
        for (name, a) in &tensors {
            let Some(base) = name.strip_suffix(".lora_a") else { continue };
            let b = tensors
                .get(&format!("{base}.lora_b"))
                .ok_or_else(|| bad(format!("`{base}.lora_a` has no matching `{base}.lora_b`")))?;
            let (r, _) = a.dims2().map_err(|e| bad(format!("{name}: {e}")))?;
            let (_, rb) = b.dims2().map_err(|e| bad(format!("{base}.lora_b: {e}")))?;
            if r != manifest.lora.rank || rb != manifest.lora.rank {
                return Err(bad(format!("{base}: rank {r}/{rb} does not match the manifest's {}", manifest.lora.rank)));
            }
            weights.insert(base.to_string(), (a.clone(), b.clone()));
        }
        if weights.is_empty() {
            return Err(bad("the adapter holds no LoRA weights".into()));
        }
        Ok(Self { manifest, weights })
    }

    /// `alpha/rank · B·A` for one GGUF weight, shape (out, in), f32.
    pub fn delta(&self, name: &str) -> Result<Option<Tensor>> {
        let Some((a, b)) = self.weights.get(name) else { return Ok(None) };
        Ok(Some((b.matmul(a)? * self.manifest.lora.scale())?))
    }

    /// Merge this adapter's update into one quantized base weight, if it has one for `name`.
    /// The merged weight is re-quantized to Q8_0 (or kept f32 when its rows do not split into
    /// Q8_0 blocks).
    pub fn merge(&self, name: &str, weight: QTensor, device: &Device) -> Result<QTensor> {
        let Some(delta) = self.delta(name)? else { return Ok(weight) };
        let w = weight.dequantize(device)?;
        if w.dims() != delta.dims() {
            return Err(Error::Load {
                model: self.manifest.base_model.clone(),
                msg: format!("adapter update for `{name}` has shape {:?}, the base weight {:?}", delta.dims(), w.dims()),
            });
        }
        let merged = (w + delta.to_device(device)?)?;
        let cols = merged.dims().last().copied().unwrap_or(0);
        let dtype = if cols % GgmlDType::Q8_0.block_size() == 0 { GgmlDType::Q8_0 } else { GgmlDType::F32 };
        Ok(QTensor::quantize(&merged, dtype)?)
    }

    /// sha256 of the adapter file (what models.toml pins).
    pub fn file_sha256(path: &Path) -> Result<String> {
        Ok(crate::registry::sha256_file(path)?)
    }
}

