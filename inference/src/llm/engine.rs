//! The scheduler: one engine thread owns the forward passes; requests wait in a bounded
//! queue and the active ones take turns (a prefill chunk or one decoded token each), so a
//! long prompt cannot starve a short one. Each request keeps its own KV cache.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::Device;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

use super::model::{KvCache, QuantizedTransformer};
use super::text::{ChatMessage, ChatTemplate, IncrementalDecoder};
use super::{ChatRequest, Completion, FinishReason, GenerationEvent, GenerationRequest, GenerationStream, Generator};
use crate::{Error, Result};

/// Scheduler and model limits.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Requests generating at the same time (each holds a KV cache).
    pub max_active: usize,
    /// Requests allowed to wait beyond the active ones; more are refused at once.
    pub max_queued: usize,
    /// Tokens per prefill step; bounds attention memory and keeps turns short.
    pub prefill_chunk: usize,
    /// Upper bound on the context window (the GGUF's own is used when smaller).
    pub max_context: usize,
    /// A LoRA adapter merged into the weights at load time.
    pub adapter: Option<Arc<crate::finetune::LoraAdapter>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { max_active: 4, max_queued: 16, prefill_chunk: 256, max_context: 8192, adapter: None }
    }
}

struct Shared {
    model_id: String,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    eos_ids: Vec<u32>,
    context_length: usize,
    in_flight: AtomicUsize,
    capacity: usize,
}

/// The tokenizer and chat template a GGUF file carries.
pub fn tokenizer_and_template(content: &gguf_file::Content, model_id: &str) -> Result<(Tokenizer, ChatTemplate)> {
    let load_err = |msg: String| Error::Load { model: model_id.to_string(), msg };
    let tokenizer = Tokenizer::from_gguf(content).map_err(|e| load_err(format!("tokenizer from GGUF: {e}")))?;
    let meta_str = |k: &str| content.metadata.get(k).and_then(|v| v.to_string().ok()).cloned();
    let template_src =
        meta_str("tokenizer.chat_template").ok_or_else(|| load_err("GGUF has no tokenizer.chat_template".into()))?;
    let token_text = |key: &str| -> String {
        content
            .metadata
            .get(key)
            .and_then(|v| v.to_u32().ok())
            .and_then(|id| tokenizer.id_to_token(id))
            .unwrap_or_default()
    };
    let bos = token_text("tokenizer.ggml.bos_token_id");
    let eos = token_text("tokenizer.ggml.eos_token_id");
    let template = ChatTemplate::new(&template_src, &bos, &eos)?;
    Ok((tokenizer, template))
}

/// A GGUF chat model served by a scheduler thread.
pub struct LlmEngine {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    /// Bytes of quantized weights (for bandwidth figures).
    pub weight_bytes: usize,
}

struct Job {
    prompt_ids: Vec<u32>,
    request: GenerationRequest,
    events: UnboundedSender<GenerationEvent>,
    enqueued: Instant,
}

impl LlmEngine {
    /// Load a GGUF file (weights, tokenizer and chat template all come from it).
    pub fn load(path: &Path, model_id: &str, device: &Device, opts: EngineOptions) -> Result<Self> {
        let mut file = fs_err::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| Error::ModelFile { path: path.to_path_buf(), msg: format!("not a readable GGUF file: {e}") })?;
        let (tokenizer, template) = tokenizer_and_template(&content, model_id)?;
        let mut eos_ids: Vec<u32> = Vec::new();
        if let Some(id) = content.metadata.get("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok()) {
            eos_ids.push(id);
        }
        for t in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>"] {
            if let Some(id) = tokenizer.token_to_id(t) {
                if !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        drop(file);
        let model =
            QuantizedTransformer::from_gguf_path(path, &content, device, opts.max_context, opts.adapter.as_deref())?;
        let weight_bytes = model.weight_bytes();
        tracing::info!(
            model = model_id,
            arch = %model.config.arch,
            layers = model.config.n_layer,
            hidden = model.config.hidden,
            context = model.config.context_length,
            weight_mb = weight_bytes / 1_000_000,
            q8_kernel = model.kernels.q8,
            kquant_kernel = model.kernels.kquant,
            "chat model loaded"
        );
        let shared = Arc::new(Shared {
            model_id: model_id.to_string(),
            tokenizer,
            template,
            eos_ids,
            context_length: model.config.context_length,
            in_flight: AtomicUsize::new(0),
            capacity: opts.max_active + opts.max_queued,
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("engine-{model_id}"))
            .spawn(move || run_scheduler(model, thread_shared, rx, opts))
            .map_err(|e| Error::io("spawning engine thread", e))?;
        Ok(Self { shared, jobs: tx, weight_bytes })
    }

    /// Load a chat model named in the registry. A `format = "lora"` entry loads its base model
    /// with the adapter merged in, after checking the adapter was trained on that base.
    /// `locate` turns a registry name into a verified local file (fetching it or not).
    pub fn from_registry(
        registry: &crate::registry::Registry,
        name: &str,
        device: &Device,
        mut opts: EngineOptions,
        locate: &dyn Fn(&str) -> Result<std::path::PathBuf>,
    ) -> Result<Self> {
        let spec = registry.get(name)?;
        if spec.kind != crate::registry::ModelKind::Chat {
            return Err(Error::Invalid(format!("model `{name}` is not a chat model")));
        }
        if spec.format != "lora" {
            return Self::load(&locate(name)?, name, device, opts);
        }
        let base_name = spec.base.as_deref().ok_or_else(|| Error::Models(zhengwu_registry::Error::Registry(format!("`{name}` has no base"))))?;
        let base = registry.get(base_name)?;
        let adapter_path = locate(name)?;
        let adapter = crate::finetune::LoraAdapter::load(&adapter_path, &Device::Cpu)?;
        if adapter.manifest.base_sha256 != base.sha256 {
            return Err(Error::Load {
                model: name.to_string(),
                msg: format!(
                    "adapter {} was trained on a base with sha256 {}, but `{base_name}` is {}",
                    adapter_path.display(),
                    adapter.manifest.base_sha256,
                    base.sha256
                ),
            });
        }
        opts.adapter = Some(Arc::new(adapter));
        Self::load(&locate(base_name)?, name, device, opts)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }
}

impl LlmEngine {
    /// Render chat messages with the model's template (generation prompt appended).
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        self.shared.template.render(messages, true)
    }

    /// Tokens in `text` as the model would see it.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.shared.tokenizer.encode(text, false)?.len())
    }

    /// Queue a generation of an already rendered prompt (benchmarks that need an exact
    /// prompt; everything else goes through [`Generator::chat`]).
    pub fn submit(&self, request: GenerationRequest) -> Result<GenerationStream> {
        zhengwu_core::validate_params(&request.params)?;
        let prompt_ids = self.shared.tokenizer.encode(request.prompt.as_str(), false)?.get_ids().to_vec();
        self.enqueue(prompt_ids, request)
    }

    /// Check the prompt fits, then hand it to the scheduler thread (or refuse at once when
    /// the queue is full).
    fn enqueue(&self, prompt_ids: Vec<u32>, request: GenerationRequest) -> Result<GenerationStream> {
        if prompt_ids.is_empty() {
            return Err(Error::Invalid("prompt is empty".into()));
        }
        if prompt_ids.len() + 1 > self.shared.context_length {
            return Err(Error::ContextOverflow {
                model: self.shared.model_id.clone(),
                tokens: prompt_ids.len(),
                limit: self.shared.context_length,
            });
        }
        // Fail fast instead of queueing without bound.
        let prev = self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if prev >= self.shared.capacity {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Overloaded { capacity: self.shared.capacity });
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let job = Job { prompt_ids, request, events: tx, enqueued: Instant::now() };
        if self.jobs.send(job).is_err() {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Load { model: self.shared.model_id.clone(), msg: "engine thread has stopped".into() });
        }
        Ok(rx)
    }
}

impl Generator for LlmEngine {
    fn model_id(&self) -> &str {
        &self.shared.model_id
    }

    fn context_length(&self) -> usize {
        self.shared.context_length
    }

    /// Template, tokenize and check once, here: callers hand over messages, never a prompt.
    fn chat(&self, request: ChatRequest) -> zhengwu_core::Result<GenerationStream> {
        request.validate()?;
        let prompt = self.render_chat(&request.messages)?;
        let prompt_ids = self.shared.tokenizer.encode(prompt.as_str(), false).map_err(Error::from)?.get_ids().to_vec();
        let mut params = request.params;
        let room = self.shared.context_length.saturating_sub(prompt_ids.len());
        if params.max_tokens > room {
            if !request.fit_max_tokens || room == 0 {
                return Err(zhengwu_core::Error::ContextOverflow {
                    model: self.shared.model_id.clone(),
                    tokens: prompt_ids.len() + if request.fit_max_tokens { 0 } else { params.max_tokens },
                    limit: self.shared.context_length,
                });
            }
            params.max_tokens = room;
        }
        Ok(self.enqueue(prompt_ids, GenerationRequest { prompt, params, deadline: request.deadline })?)
    }

    fn queue_depth(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }
}

/// One request being served.
struct Sequence {
    job: Job,
    cache: KvCache,
    sampler: LogitsProcessor,
    /// Prompt tokens already run through the model.
    prefilled: usize,
    generated: Vec<u32>,
    decoder: IncrementalDecoder,
    started: Option<Instant>,
    prefill_done: Option<Instant>,
}

enum Step {
    Continue,
    Finished,
}

fn run_scheduler(model: QuantizedTransformer, shared: Arc<Shared>, rx: mpsc::Receiver<Job>, opts: EngineOptions) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut active: VecDeque<Sequence> = VecDeque::new();
    loop {
        // Collect new jobs; block only when there is nothing to do.
        if active.is_empty() && waiting.is_empty() {
            match rx.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return, // engine dropped
            }
        }
        while let Ok(job) = rx.try_recv() {
            waiting.push_back(job);
        }
        while active.len() < opts.max_active {
            let Some(job) = waiting.pop_front() else { break };
            if job.events.is_closed() {
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            active.push_back(new_sequence(&model, job));
        }
        // One turn for the sequence at the front, then it goes to the back.
        let Some(mut seq) = active.pop_front() else { continue };
        let outcome = step(&model, &shared, &mut seq, opts.prefill_chunk);
        match outcome {
            Ok(Step::Continue) => active.push_back(seq),
            Ok(Step::Finished) => {
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Err(e) => {
                let _ = seq.job.events.send(GenerationEvent::Failed(e.into()));
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

fn new_sequence(model: &QuantizedTransformer, job: Job) -> Sequence {
    let p = &job.request.params;
    let sampling = if p.temperature <= 0.0 {
        Sampling::ArgMax
    } else {
        match (p.top_k, p.top_p) {
            (None, None) => Sampling::All { temperature: p.temperature },
            (Some(k), None) => Sampling::TopK { k, temperature: p.temperature },
            (None, Some(p_)) => Sampling::TopP { p: p_, temperature: p.temperature },
            (Some(k), Some(p_)) => Sampling::TopKThenTopP { k, p: p_, temperature: p.temperature },
        }
    };
    Sequence {
        sampler: LogitsProcessor::from_sampling(p.seed, sampling),
        cache: model.new_cache(),
        prefilled: 0,
        generated: Vec::new(),
        decoder: IncrementalDecoder::new(p.stop.clone()),
        started: None,
        prefill_done: None,
        job,
    }
}

fn step(model: &QuantizedTransformer, shared: &Shared, seq: &mut Sequence, chunk: usize) -> Result<Step> {
    if seq.job.events.is_closed() {
        tracing::debug!("client went away; generation cancelled");
        return Ok(Step::Finished);
    }
    if let Some(deadline) = seq.job.request.deadline {
        if Instant::now() > deadline {
            return Err(Error::Cancelled("request deadline exceeded".into()));
        }
    }
    let started = *seq.started.get_or_insert_with(Instant::now);
    let n_prompt = seq.job.prompt_ids.len();
    let logits = if seq.prefilled < n_prompt {
        let end = (seq.prefilled + chunk.max(1)).min(n_prompt);
        let logits = model.forward(&seq.job.prompt_ids[seq.prefilled..end], &mut seq.cache)?;
        seq.prefilled = end;
        if end < n_prompt {
            return Ok(Step::Continue);
        }
        seq.prefill_done = Some(Instant::now());
        logits
    } else {
        let last = *seq.generated.last().expect("decode step after at least one sampled token");
        model.forward(&[last], &mut seq.cache)?
    };
    let p = &seq.job.request.params;
    let logits = if p.repetition_penalty != 1.0 {
        let start = seq.generated.len().saturating_sub(p.repeat_last_n);
        candle_transformers::utils::apply_repeat_penalty(&logits, p.repetition_penalty, &seq.generated[start..])?
    } else {
        logits
    };
    let next = seq.sampler.sample(&logits)?;
    let is_eos = !p.ignore_eos && shared.eos_ids.contains(&next);
    if !is_eos {
        seq.generated.push(next);
    }
    let mut delta = if is_eos { String::new() } else { seq.decoder.push(&shared.tokenizer, next)? };
    let stopped = seq.decoder.stopped();
    let full_len = seq.generated.len() >= p.max_tokens;
    let ctx_full = seq.cache.len() + 1 >= shared.context_length;
    let finished = is_eos || stopped || full_len || ctx_full;
    if finished && !stopped {
        delta.push_str(&seq.decoder.finish());
    }
    if !delta.is_empty() && seq.job.events.send(GenerationEvent::Delta(delta)).is_err() {
        return Ok(Step::Finished);
    }
    if finished {
        let now = Instant::now();
        let prefill_done = seq.prefill_done.unwrap_or(now);
        let completion = Completion {
            finish_reason: if is_eos || stopped { FinishReason::Stop } else { FinishReason::Length },
            prompt_tokens: n_prompt,
            completion_tokens: seq.generated.len(),
            queue_secs: started.duration_since(seq.job.enqueued).as_secs_f64(),
            prefill_secs: prefill_done.duration_since(started).as_secs_f64(),
            decode_secs: now.duration_since(prefill_done).as_secs_f64(),
        };
        let _ = seq.job.events.send(GenerationEvent::Done(completion));
        return Ok(Step::Finished);
    }
    Ok(Step::Continue)
}
