//! The training loop: mini-batches with gradient accumulation, AdamW, warm-up then cosine decay,
//! gradient-norm clipping, checkpoints every N steps and exact resume.
//!
//! The data order is a function of (seed, epoch), the LoRA initialisation a function of the seed,
//! and a checkpoint holds the LoRA matrices, both AdamW moments and the step: a run interrupted
//! and resumed from its checkpoint computes the same updates as an uninterrupted one.

use candle_core::{Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::adapter::LoraSpec;
use crate::tensor_file::write_safetensors;
use super::data::TokenizedExample;
use super::model::TrainableModel;
use super::optim::{AdamW, AdamWConfig};
use crate::{Error, Result};

/// Hyper-parameters of one run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    pub lora: LoraSpec,
    pub learning_rate: f64,
    /// Passes over the data (fractions allowed); ignored when `max_steps` is set.
    pub epochs: f64,
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch (each runs forward/backward on its own, no padding).
    pub batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Longest sequence in tokens; longer ones are cut.
    pub max_len: usize,
    pub seed: u64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub clip_norm: f64,
}

impl TrainOptions {
    pub fn sequences_per_step(&self) -> usize {
        self.batch.max(1) * self.grad_accum.max(1)
    }

    pub fn total_steps(&self, examples: usize) -> usize {
        match self.max_steps {
            Some(s) => s,
            None => ((self.epochs * examples as f64) / self.sequences_per_step() as f64).ceil().max(1.0) as usize,
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.lora.validate()?;
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::Invalid(format!("learning rate must be positive, got {}", self.learning_rate)));
        }
        if self.max_steps.is_none() && !(self.epochs.is_finite() && self.epochs > 0.0) {
            return Err(Error::Invalid(format!("epochs must be positive, got {}", self.epochs)));
        }
        if self.max_steps == Some(0) {
            return Err(Error::Invalid("max steps must be at least 1".into()));
        }
        if self.batch == 0 || self.grad_accum == 0 {
            return Err(Error::Invalid("batch and gradient accumulation must be at least 1".into()));
        }
        if self.max_len < 8 {
            return Err(Error::Invalid(format!("max length {} is too short", self.max_len)));
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based): linear warm-up, then cosine decay to a tenth.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let base = self.learning_rate;
        if step < self.warmup_steps {
            return base * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        base * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
    }
}

/// Where a run stands; saved in every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    pub total_steps: usize,
    /// Mean loss per target token of each step done.
    pub losses: Vec<f64>,
    /// Tokens run through the model (context + targets).
    pub tokens: u64,
    pub target_tokens: u64,
    /// Seconds spent training, over all sessions of the run.
    pub secs: f64,
    /// Hash of the options and the tokenized data: a checkpoint only resumes the same run.
    pub fingerprint: String,
}

/// What the caller hears about during training.
pub trait Progress {
    fn step(&mut self, state: &TrainState, lr: f64);
    fn checkpoint(&mut self, _path: &Path, _state: &TrainState) {}
}

/// Progress that says nothing.
pub struct Quiet;
impl Progress for Quiet {
    fn step(&mut self, _state: &TrainState, _lr: f64) {}
}

fn fingerprint(opts: &TrainOptions, data: &[TokenizedExample]) -> String {
    let mut bytes = serde_json::to_vec(opts).unwrap_or_default();
    for ex in data {
        for (&id, &t) in ex.ids.iter().zip(&ex.targets) {
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.push(t as u8);
        }
        bytes.push(0xff);
    }
    crate::registry::sha256_bytes(&bytes)
}

const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

fn save_checkpoint(dir: &Path, vars: &[(String, Var)], opt: &AdamW, state: &TrainState) -> Result<std::path::PathBuf> {
    let mut named = Vec::with_capacity(vars.len() * 3);
    for (i, (name, var)) in vars.iter().enumerate() {
        named.push((name.clone(), var.as_tensor().clone()));
        named.push((format!("adam_m.{name}"), opt.m[i].clone()));
        named.push((format!("adam_v.{name}"), opt.v[i].clone()));
    }
    let meta = serde_json::to_string(state).map_err(|e| Error::Invalid(e.to_string()))?;
    let path = dir.join(CHECKPOINT_FILE);
    write_safetensors(&path, &named, &[("state", meta), ("adam_t", opt.t.to_string())])?;
    Ok(path)
}

fn load_checkpoint(dir: &Path, vars: &[(String, Var)], opt: &mut AdamW, fingerprint: &str) -> Result<Option<TrainState>> {
    let path = dir.join(CHECKPOINT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bad = |msg: String| Error::ModelFile { path: path.clone(), msg };
    let bytes = fs_err::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let state: TrainState = serde_json::from_str(meta.get("state").map(String::as_str).unwrap_or(""))
        .map_err(|e| bad(format!("checkpoint state: {e}")))?;
    if state.fingerprint != fingerprint {
        return Err(bad(
            "this checkpoint belongs to a run with other options or data; remove it (or pass --restart) to start over"
                .into(),
        ));
    }
    let t: usize = meta.get("adam_t").and_then(|s| s.parse().ok()).ok_or_else(|| bad("no adam_t".into()))?;
    let device = vars.first().map(|(_, v)| v.device().clone()).unwrap_or(candle_core::Device::Cpu);
    let tensors = candle_core::safetensors::load_buffer(&bytes, &device).map_err(|e| bad(e.to_string()))?;
    let take = |k: &str| tensors.get(k).cloned().ok_or_else(|| bad(format!("checkpoint lacks `{k}`")));
    for (i, (name, var)) in vars.iter().enumerate() {
        var.set(&take(name)?)?;
        opt.m[i] = take(&format!("adam_m.{name}"))?;
        opt.v[i] = take(&format!("adam_v.{name}"))?;
    }
    opt.t = t;
    Ok(Some(state))
}

/// Train LoRA matrices on `data`. With a checkpoint directory, a matching checkpoint there is
/// resumed and a new one is written every `checkpoint_every` steps and at the end. `stop_after`
/// ends the session after that many total steps (the run can be resumed later).
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &mut TrainableModel,
    data: &[TokenizedExample],
    opts: &TrainOptions,
    checkpoint_dir: Option<&Path>,
    checkpoint_every: usize,
    stop_after: Option<usize>,
    progress: &mut dyn Progress,
) -> Result<TrainState> {
    opts.validate()?;
    if data.is_empty() {
        return Err(Error::Invalid("no training examples with target tokens".into()));
    }
    model.init_lora(&opts.lora, opts.seed)?;
    let named_vars = model.lora_vars();
    let vars: Vec<Var> = named_vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(&vars, AdamWConfig { weight_decay: opts.weight_decay, ..Default::default() })?;
    let fp = fingerprint(opts, data);
    let total_steps = opts.total_steps(data.len());
    let resumed = match checkpoint_dir {
        Some(dir) => load_checkpoint(dir, &named_vars, &mut opt, &fp)?,
        None => None,
    };
    let mut state = resumed.unwrap_or(TrainState {
        step: 0,
        total_steps,
        losses: Vec::new(),
        tokens: 0,
        target_tokens: 0,
        secs: 0.0,
        fingerprint: fp,
    });
    let per_step = opts.sequences_per_step();
    let mut orders: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut order = |g: usize| -> usize {
        let epoch = g / data.len();
        let perm = orders.entry(epoch).or_insert_with(|| {
            let mut p: Vec<usize> = (0..data.len()).collect();
            let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            p.shuffle(&mut rng);
            p
        });
        perm[g % data.len()]
    };
    let end = stop_after.map(|s| s.min(total_steps)).unwrap_or(total_steps);
    while state.step < end {
        let started = Instant::now();
        let batch: Vec<&TokenizedExample> = (0..per_step).map(|j| &data[order(state.step * per_step + j)]).collect();
        let n_targets: usize = batch.iter().map(|e| e.n_targets()).sum();
        let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut loss_total = 0f64;
        for ex in &batch {
            let (loss, _) = model.loss_sum(&ex.ids, &ex.targets)?;
            loss_total += loss.to_scalar::<f32>()? as f64;
            let scaled = (loss / n_targets as f64)?;
            let gs = scaled.backward()?;
            for (i, var) in vars.iter().enumerate() {
                if let Some(g) = gs.get(var.as_tensor()) {
                    grads[i] = Some(match grads[i].take() {
                        Some(acc) => (acc + g)?,
                        None => g.clone(),
                    });
                }
            }
            state.tokens += ex.ids.len() as u64;
        }
        let mut grads: Vec<Tensor> = grads
            .into_iter()
            .zip(&vars)
            .map(|(g, v)| g.map(Ok).unwrap_or_else(|| v.as_tensor().zeros_like()))
            .collect::<candle_core::Result<_>>()?;
        if opts.clip_norm > 0.0 {
            let mut sq = 0f64;
            for g in &grads {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
            let norm = sq.sqrt();
            if !norm.is_finite() {
                return Err(Error::Invalid(format!("gradient norm is {norm} at step {}", state.step + 1)));
            }
            if norm > opts.clip_norm {
                let f = opts.clip_norm / norm;
                grads = grads.iter().map(|g| g * f).collect::<candle_core::Result<_>>()?;
            }
        }
        let lr = opts.lr_at(state.step, total_steps);
        opt.step(&vars, &grads, lr)?;
        let mean = loss_total / n_targets.max(1) as f64;
        if !mean.is_finite() {
            return Err(Error::Invalid(format!("loss is {mean} at step {}", state.step + 1)));
        }
        state.losses.push(mean);
        state.target_tokens += n_targets as u64;
        state.step += 1;
        state.secs += started.elapsed().as_secs_f64();
        progress.step(&state, lr);
        if let Some(dir) = checkpoint_dir {
            if (checkpoint_every > 0 && state.step % checkpoint_every == 0) || state.step == end {
                let path = save_checkpoint(dir, &named_vars, &opt, &state)?;
                progress.checkpoint(&path, &state);
            }
        }
    }
    Ok(state)
}
