//! `zhengwu finetune`: train a LoRA adapter for a GGUF chat model on chat JSONL, and
//! `zhengwu finetune-data replies`: build that JSONL for the reply-drafting task from a data
//! folder laid out like `../shared/data` plus the knowledge base's out-of-scope questions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use zhengwu_hotline::intel::replies;
use zhengwu_inference::finetune::{self, LoraAdapter, LoraSpec, TrainOptions, TrainState};
use zhengwu_inference::registry::Registry;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// Base chat model (registry name; a GGUF chat model).
    #[arg(long, default_value = "qwen2.5-0.5b-instruct")]
    pub base: String,
    /// Training data: JSONL, one {"messages": [{"role", "content"}, ...]} per line.
    #[arg(long)]
    pub data: PathBuf,
    /// Where the adapter goes (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// Target modules: q,k,v,o,gate,up,down (or attn, mlp, all).
    #[arg(long, default_value = "q,k,v,o")]
    pub targets: String,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 1.0)]
    pub epochs: f64,
    /// Stop after this many optimizer steps (overrides --epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 8)]
    pub grad_accum: usize,
    /// Longest training sequence in tokens (longer ones are cut).
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip the global gradient norm (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Save a checkpoint every N steps (0 = only at the end).
    #[arg(long, default_value_t = 20)]
    pub checkpoint_every: usize,
    /// Checkpoint folder (default: <out>.ckpt). A matching checkpoint there is resumed.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Ignore (delete) an existing checkpoint and start over.
    #[arg(long)]
    pub restart: bool,
    /// End this session after N total steps; run the command again to resume.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Also add/refresh a `format = "lora"` entry of this name in models.toml.
    #[arg(long)]
    pub register: Option<String>,
    /// Kernel for the frozen base weights: `int8` (Q8_0 on the VNNI kernel, about 3x faster on
    /// CPUs that have it; falls back to f32 elsewhere) or `f32`.
    #[arg(long, default_value = "int8")]
    pub frozen: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

struct Bar {
    bar: ProgressBar,
}

impl finetune::Progress for Bar {
    fn step(&mut self, s: &TrainState, lr: f64) {
        // The run's average so far (a resumed run counts its earlier sessions too).
        let tok_s = s.tokens as f64 / s.secs.max(1e-9);
        self.bar.set_position(s.step as u64);
        self.bar.set_message(format!("loss {:.3} · lr {lr:.2e} · {tok_s:.0} tok/s", s.losses.last().copied().unwrap_or(f64::NAN)));
        if self.bar.is_hidden() {
            eprintln!("step {}/{} loss {:.4} lr {lr:.2e} {tok_s:.0} tok/s", s.step, s.total_steps, s.losses.last().copied().unwrap_or(f64::NAN));
        }
    }
    fn checkpoint(&mut self, path: &Path, s: &TrainState) {
        self.bar.println(format!("checkpoint at step {} -> {}", s.step, path.display()));
    }
}

pub fn run(args: FinetuneArgs, registry: &Registry, registry_path: &Path, device: &candle_core::Device) -> anyhow::Result<()> {
    let started = Instant::now();
    let spec = registry.get(&args.base)?;
    if spec.kind != zhengwu_inference::registry::ModelKind::Chat || spec.format != "gguf" {
        bail!("--base `{}` is not a GGUF chat model", args.base);
    }
    let base_path = registry.locate(&args.base).with_context(|| format!("base model `{}` (run `zhengwu models fetch {}`)", args.base, args.base))?;
    let lora = LoraSpec { rank: args.rank, alpha: args.alpha, targets: finetune::parse_targets(&args.targets)? };
    let opts = TrainOptions {
        lora,
        learning_rate: args.lr,
        epochs: args.epochs,
        max_steps: args.max_steps,
        batch: args.batch,
        grad_accum: args.grad_accum,
        max_len: args.max_len,
        seed: args.seed,
        warmup_steps: args.warmup,
        weight_decay: args.weight_decay,
        clip_norm: args.clip,
    };
    opts.validate()?;
    let dataset = finetune::read_jsonl(&args.data)?;

    // Tokenizer and template from the GGUF, then the trainable copy of the weights.
    let mut file = fs_err::File::open(&base_path)?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)
        .map_err(|e| anyhow::anyhow!("{}: not a readable GGUF file: {e}", base_path.display()))?;
    let (tokenizer, template) = zhengwu_inference::llm::engine::tokenizer_and_template(&content, &args.base)?;
    let mut data = Vec::new();
    let mut dropped = 0usize;
    for ex in &dataset.examples {
        match finetune::tokenize(ex, &template, &tokenizer, args.max_len)? {
            Some(t) => data.push(t),
            None => dropped += 1,
        }
    }
    let cut = data.iter().filter(|t| t.ids.len() == args.max_len).count();
    let tokens: usize = data.iter().map(|t| t.ids.len()).sum();
    eprintln!(
        "finetune: {} examples ({} tokens, {} cut at {} tokens, {} without targets dropped), sha256 {}",
        data.len(),
        tokens,
        cut,
        args.max_len,
        dropped,
        &dataset.sha256[..12]
    );
    let int8 = match args.frozen.as_str() {
        "int8" => true,
        "f32" => false,
        other => bail!("--frozen must be int8 or f32, not `{other}`"),
    };
    let load_started = Instant::now();
    let mut model = finetune::TrainableModel::from_gguf(&content, &mut file, device, args.max_len.max(64), int8)?;
    eprintln!(
        "finetune: base `{}` loaded in {:.1} s (frozen weights: {})",
        args.base,
        load_started.elapsed().as_secs_f64(),
        if model.int8 { "int8 kernel" } else { "f32" }
    );

    let ckpt_dir = args.checkpoint_dir.clone().unwrap_or_else(|| {
        let mut p = args.out.clone().into_os_string();
        p.push(".ckpt");
        PathBuf::from(p)
    });
    if args.restart && ckpt_dir.exists() {
        fs_err::remove_dir_all(&ckpt_dir)?;
    }
    fs_err::create_dir_all(&ckpt_dir)?;
    let total = opts.total_steps(data.len());
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps · {msg} · eta {eta}")?);
    let mut progress = Bar { bar };
    let state = finetune::train(&mut model, &data, &opts, Some(&ckpt_dir), args.checkpoint_every, args.stop_after, &mut progress)?;
    progress.bar.finish_and_clear();
    let first = state.losses.first().copied().unwrap_or(f64::NAN);
    let last_n = state.losses.len().min(10).max(1);
    let tail_mean = state.losses.iter().rev().take(last_n).sum::<f64>() / last_n as f64;
    eprintln!(
        "finetune: {}/{} steps, loss {first:.4} -> {tail_mean:.4} (mean of last {last_n}), {} tokens in {:.0} s ({:.0} tok/s)",
        state.step,
        state.total_steps,
        state.tokens,
        state.secs,
        state.tokens as f64 / state.secs.max(1e-9)
    );
    if state.step < state.total_steps {
        eprintln!("finetune: stopped early; run the same command again to resume from {}", ckpt_dir.display());
        return Ok(());
    }

    let mut metrics = std::collections::BTreeMap::new();
    metrics.insert("first_loss".into(), first);
    metrics.insert("final_loss_mean10".into(), tail_mean);
    metrics.insert("train_secs".into(), state.secs);
    metrics.insert("wall_secs".into(), started.elapsed().as_secs_f64());
    metrics.insert("tokens_per_sec".into(), state.tokens as f64 / state.secs.max(1e-9));
    if let Some(rss) = finetune::peak_rss_mb() {
        metrics.insert("peak_rss_mb".into(), rss);
    }
    let mut manifest = finetune::AdapterManifest::new(&args.base, &spec.sha256, &opts, &dataset.sha256, data.len(), &state);
    manifest.hyper.insert("frozen".into(), serde_json::json!(if model.int8 { "int8" } else { "f32" }));
    manifest.metrics = metrics;
    let adapter = LoraAdapter { manifest, weights: model.lora_weights()? };
    adapter.save(&args.out)?;
    let sha = zhengwu_inference::registry::sha256_file(&args.out)?;
    let size = fs_err::metadata(&args.out)?.len();
    eprintln!("finetune: adapter saved to {} ({} KB, sha256 {sha})", args.out.display(), size / 1024);
    if let Some(name) = &args.register {
        register(registry_path, name, &args.base, &args.out, &sha, size)?;
        eprintln!("finetune: models.toml entry `{name}` now points at it");
    }
    Ok(())
}

/// Add a `format = "lora"` entry to models.toml, or refresh the hash and size of an existing one.
fn register(registry_path: &Path, name: &str, base: &str, adapter: &Path, sha: &str, size: u64) -> anyhow::Result<()> {
    let text = fs_err::read_to_string(registry_path)?;
    let updated = match crate::train::update_registry_text(&text, name, sha, size) {
        Some(t) => t,
        None => {
            let dir = registry_path.parent().unwrap_or(Path::new("."));
            let abs = std::path::absolute(adapter)?;
            let rel = abs.strip_prefix(std::path::absolute(dir)?).map(Path::to_path_buf).unwrap_or(abs.clone());
            let file = adapter.file_name().and_then(|f| f.to_str()).unwrap_or("adapter.safetensors");
            format!(
                "{}\n[[model]]\nname = \"{name}\"\nkind = \"chat\"\ndescription = \"LoRA adapter on {base} (zhengwu finetune)\"\nformat = \"lora\"\narch = \"qwen2\"\nbase = \"{base}\"\ncontext_length = 32768\nchat_template = \"gguf\"\nfile = \"{file}\"\nsha256 = \"{sha}\"\nsize = {size}\n\n[[model.sources]]\ntype = \"path\"\npath = \"{}\"\n",
                text.trim_end(),
                rel.display()
            )
        }
    };
    Registry::parse(&updated, registry_path).context("models.toml would not parse after the update")?;
    fs_err::write(registry_path, updated)?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct FinetuneDataArgs {
    /// Which task: `replies` (department replies to citizen messages + out-of-scope refusals).
    pub task: String,
    /// Data folder with the layout of ../shared/data.
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// Knowledge base folder (for finetune/out_of_scope.jsonl).
    #[arg(long, default_value = "knowledge-base")]
    pub kb: PathBuf,
    /// Output JSONL.
    #[arg(long)]
    pub out: PathBuf,
    /// Characters of each message kept in the prompt.
    #[arg(long, default_value_t = 240)]
    pub max_detail_chars: usize,
    /// Leave out replies longer than this many characters.
    #[arg(long, default_value_t = 420)]
    pub max_reply_chars: usize,
    /// How many times each out-of-scope question goes in (alternately asked as it is and
    /// posted as a message), so refusals are not drowned by the replies.
    #[arg(long, default_value_t = 12)]
    pub out_of_scope_repeat: usize,
}

pub fn prepare(args: FinetuneDataArgs) -> anyhow::Result<()> {
    if args.task != "replies" {
        bail!("unknown fine-tuning task `{}` (known: replies)", args.task);
    }
    let cases = replies::load_cases(&args.data)?;
    let oos = replies::load_out_of_scope(&args.kb)?;
    let p = replies::prepare(
        &cases,
        &oos,
        &replies::PrepareOptions { max_detail_chars: args.max_detail_chars, max_reply_chars: args.max_reply_chars, out_of_scope_repeat: args.out_of_scope_repeat },
    );
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs_err::create_dir_all(dir)?;
    }
    let mut f = std::io::BufWriter::new(fs_err::File::create(&args.out)?);
    for line in &p.train {
        writeln!(f, "{line}")?;
    }
    f.flush()?;
    eprintln!(
        "finetune-data: {} training lines ({} replies, {} out-of-scope x{}) -> {}; held out {} replies and {} out-of-scope questions; {} replies longer than {} chars and {} empty ones left out",
        p.train.len(),
        p.train_replies,
        p.train_out_of_scope,
        args.out_of_scope_repeat.max(1),
        args.out.display(),
        p.heldout_replies,
        p.heldout_out_of_scope,
        p.skipped_long,
        args.max_reply_chars,
        p.skipped_empty
    );
    Ok(())
}
