//! `zhengwu`: the government-hotline assistant binary.
//!
//! - `zhengwu serve`: the OpenAI-compatible model server (chat + embeddings).
//! - `zhengwu models list|fetch`: the model registry in `models.toml`.
//! - `zhengwu chat`: one question to the chat model from the terminal.
//! - `zhengwu eval SUITE`: quality and speed suites writing report.json / report.md.

mod config;
mod finetune;
mod kb_cli;
mod server;
mod train;
mod web;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use zhengwu_inference::e5::E5Embedder;
use zhengwu_inference::llm::{EngineOptions, LlmEngine};
use zhengwu_inference::registry::{FetchOptions, ModelKind, Registry};
use zhengwu_inference::{ChatMessage, ChatRequest, GenerationEvent, GenerationParams, Generator};

use config::FileConfig;
use server::{AppState, ServerLimits};

const DEFAULT_CHAT: &str = "qwen2.5-1.5b-instruct";
const DEFAULT_EMBEDDING: &str = "multilingual-e5-small";

#[derive(Parser)]
#[command(name = "zhengwu", version, about = "12345 hotline and policy assistant: local LLM server, RAG, hotline modules")]
struct Cli {
    /// Config file (TOML); defaults to ./zhengwu.toml when present.
    #[arg(long, global = true, env = "ZHENGWU_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Inspect and download models named in models.toml.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Ask the chat model one question and stream the answer to stdout.
    Chat {
        /// The question.
        prompt: String,
        #[arg(long)]
        system: Option<String>,
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        #[arg(long, default_value_t = 0.0)]
        temperature: f64,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Run an evaluation suite and write report.json + report.md.
    Eval(zhengwu_eval::EvalArgs),
    /// Knowledge base: ingest, list, delete, search (hit testing), ask.
    Kb(kb_cli::KbArgs),
    /// Fine-tune a chat model with LoRA on chat JSONL; the adapter is served via models.toml.
    Finetune {
        #[command(flatten)]
        args: finetune::FinetuneArgs,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Build fine-tuning JSONL for a task (`replies`) from a data folder.
    FinetuneData(finetune::FinetuneDataArgs),
    /// Train the hotline models (classify, dispatch, callback, all) from a data folder.
    Train {
        #[command(flatten)]
        args: train::TrainArgs,
        #[command(flatten)]
        models: ModelArgs,
    },
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Show every model, where it comes from and whether it is present.
    List,
    /// Download (or assemble) models and verify their hashes. No name: the default chat and embedding models.
    Fetch {
        names: Vec<String>,
        /// Fetch every model in the registry.
        #[arg(long)]
        all: bool,
    },
}

/// Where models come from and how they run.
#[derive(Args, Clone, Default)]
struct ModelArgs {
    /// Model registry file.
    #[arg(long, env = "ZHENGWU_MODELS_TOML")]
    models_toml: Option<PathBuf>,
    /// Directory holding downloaded models (default: the user's cache dir).
    #[arg(long, env = "ZHENGWU_MODELS")]
    models_dir: Option<PathBuf>,
    /// Chat model name from models.toml, or `none`.
    #[arg(long, env = "ZHENGWU_CHAT_MODEL")]
    chat_model: Option<String>,
    /// Embedding model name from models.toml, or `none`.
    #[arg(long, env = "ZHENGWU_EMBEDDING_MODEL")]
    embedding_model: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, env = "ZHENGWU_DEVICE")]
    device: Option<String>,
    /// CPU threads for the engine (1 is fastest on small shared machines).
    #[arg(long, env = "ZHENGWU_THREADS")]
    threads: Option<usize>,
    /// Longest context the engine accepts (prompt + completion).
    #[arg(long, env = "ZHENGWU_MAX_CONTEXT")]
    max_context: Option<usize>,
    /// Fetch missing models before loading them.
    #[arg(long, env = "ZHENGWU_FETCH")]
    fetch: bool,
    /// Use a remote OpenAI-compatible server (base URL, e.g. `http://10.0.0.5:8080`) for the
    /// chat model instead of loading it here; `--chat-model` is then the name it serves.
    #[arg(long, env = "ZHENGWU_CHAT_REMOTE_URL")]
    chat_remote_url: Option<String>,
    /// Bearer key for the remote chat server.
    #[arg(long, env = "ZHENGWU_CHAT_REMOTE_API_KEY", hide_env_values = true)]
    chat_remote_api_key: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, env = "ZHENGWU_HOST")]
    host: Option<String>,
    #[arg(long, env = "ZHENGWU_PORT")]
    port: Option<u16>,
    /// Require `Authorization: Bearer <key>` on /v1.
    #[arg(long, env = "ZHENGWU_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[arg(long, env = "ZHENGWU_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    #[arg(long, env = "ZHENGWU_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: Option<u64>,
    #[arg(long, env = "ZHENGWU_DEFAULT_MAX_TOKENS")]
    default_max_tokens: Option<usize>,
    /// Generations running at once.
    #[arg(long, env = "ZHENGWU_MAX_ACTIVE")]
    max_active: Option<usize>,
    /// Generations allowed to wait; more get 429.
    #[arg(long, env = "ZHENGWU_MAX_QUEUED")]
    max_queued: Option<usize>,
    /// Ticket database: sqlite:///path/tickets.db (default <data dir>/zhengwu/tickets.db) or postgres://...
    #[arg(long, env = "ZHENGWU_TICKETS_DB")]
    tickets_db: Option<String>,
    /// Bearer key that lets agents see citizens' personal data in /api/tickets answers.
    #[arg(long, env = "ZHENGWU_TICKETS_AGENT_KEY", hide_env_values = true)]
    tickets_agent_key: Option<String>,
    /// Serve with no users configured on a non-loopback address: no logins, everyone is admin.
    /// Refused without this (or `[web] open = true`); on loopback open mode needs no flag.
    #[arg(long, env = "ZHENGWU_INSECURE_OPEN")]
    insecure_open: bool,
    #[command(flatten)]
    models: ModelArgs,
}

/// Model settings after layering flags/env over the config file.
struct ModelSettings {
    registry: Registry,
    chat: Option<String>,
    embedding: Option<String>,
    device: candle_core::Device,
    threads: usize,
    max_context: usize,
    fetch: bool,
    /// Where the chat model runs when it is not loaded here.
    chat_remote: Option<zhengwu_inference::remote::RemoteOptions>,
}

fn none_means_off(name: String) -> Option<String> {
    if name.eq_ignore_ascii_case("none") || name.is_empty() {
        None
    } else {
        Some(name)
    }
}

fn model_settings(args: &ModelArgs, file: &FileConfig) -> anyhow::Result<ModelSettings> {
    let f = &file.models;
    let registry_path = args.models_toml.clone().or(f.registry.clone()).unwrap_or_else(default_registry_path);
    let mut registry = Registry::load(&registry_path).with_context(|| format!("loading {}", registry_path.display()))?;
    if let Some(dir) = args.models_dir.clone().or(f.dir.clone()) {
        registry = registry.with_models_dir(dir);
    }
    let threads = args.threads.or(f.threads).unwrap_or(1).max(1);
    init_threads(threads);
    let device_spec = args.device.clone().or(f.device.clone()).unwrap_or_else(|| "cpu".into());
    let device = zhengwu_inference::device::parse_device(&device_spec)?;
    let chat = none_means_off(args.chat_model.clone().or(f.chat.clone()).unwrap_or_else(|| DEFAULT_CHAT.into()));
    let max_context = args.max_context.or(f.max_context).unwrap_or(8192);
    let chat_remote = match (args.chat_remote_url.clone().or(f.chat_remote_url.clone()).filter(|u| !u.trim().is_empty()), &chat) {
        (Some(url), Some(model)) => Some(zhengwu_inference::remote::RemoteOptions {
            api_key: args.chat_remote_api_key.clone().or(f.chat_remote_api_key.clone()).filter(|k| !k.is_empty()),
            context_length: max_context,
            ..zhengwu_inference::remote::RemoteOptions::new(&url, model)
        }),
        (Some(_), None) => bail!("a remote chat server is configured but the chat model is `none`: name the model it serves"),
        (None, _) => None,
    };
    Ok(ModelSettings {
        registry,
        chat,
        embedding: none_means_off(
            args.embedding_model.clone().or(f.embedding.clone()).unwrap_or_else(|| DEFAULT_EMBEDDING.into()),
        ),
        device,
        threads,
        max_context,
        fetch: args.fetch,
        chat_remote,
    })
}

/// models.toml next to the binary's working directory, else the one compiled in with the source tree.
fn default_registry_path() -> PathBuf {
    let local = PathBuf::from("models.toml");
    if local.exists() {
        local
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models.toml")
    }
}

/// Set the thread count for candle's CPU kernels (rayon + gemm) before any of them run.
fn init_threads(n: usize) {
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    // Fails only if the pool already exists (e.g. called twice); the env var covers gemm.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
}

fn locate(settings: &ModelSettings, name: &str) -> anyhow::Result<PathBuf> {
    if settings.fetch {
        Ok(settings.registry.fetch(name, &FetchOptions { progress: true, ..Default::default() })?)
    } else {
        Ok(settings.registry.locate(name)?)
    }
}

/// The chat model: the remote server when one is configured, else the local engine.
fn load_generator(settings: &ModelSettings, name: &str, opts: EngineOptions) -> anyhow::Result<Arc<dyn Generator>> {
    if let Some(remote) = &settings.chat_remote {
        tracing::info!(url = %remote.base_url, model = %remote.model, "chat model on a remote server");
        return Ok(Arc::new(zhengwu_inference::remote::RemoteGenerator::new(remote.clone())?));
    }
    Ok(Arc::new(load_chat(settings, name, opts)?))
}

fn load_chat(settings: &ModelSettings, name: &str, opts: EngineOptions) -> anyhow::Result<LlmEngine> {
    let locate_one = |n: &str| -> zhengwu_inference::Result<PathBuf> {
        locate(settings, n).map_err(|e| zhengwu_inference::Error::Models(zhengwu_inference::registry::Error::Registry(format!("{e:#}"))))
    };
    Ok(LlmEngine::from_registry(&settings.registry, name, &settings.device, opts, &locate_one)?)
}

fn load_embedder(settings: &ModelSettings, name: &str) -> anyhow::Result<E5Embedder> {
    let spec = settings.registry.get(name)?;
    if spec.kind != ModelKind::Embedding {
        bail!("model `{name}` is not an embedding model");
    }
    let path = locate(settings, name)?;
    Ok(E5Embedder::load(&path, name, &settings.device)?)
}

fn main() -> anyhow::Result<()> {
    // Our CPU kernels can be turned off for A/B runs against candle's (before any model loads).
    zhengwu_inference::llm::model::set_kernel_switches(zhengwu_inference::llm::model::KernelSwitches {
        q8: std::env::var_os("ZHENGWU_NO_Q8_KERNEL").is_none(),
        kquant: std::env::var_os("ZHENGWU_NO_KQUANT_KERNEL").is_none(),
        host_decode: std::env::var_os("ZHENGWU_NO_HOST_DECODE").is_none(),
    });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve(args, &file),
        Command::Models { action, models } => models_cmd(action, &models, &file),
        Command::Chat { prompt, system, max_tokens, temperature, models } => {
            chat_cmd(&prompt, system, max_tokens, temperature, &models, &file)
        }
        Command::Kb(args) => kb_cli::run(args, &file),
        Command::Train { args, models } => {
            let settings = model_settings(&models, &file)?;
            let registry_path = models.models_toml.clone().or(file.models.registry.clone()).unwrap_or_else(default_registry_path);
            train::run(args, &registry_path, &settings.registry, settings.embedding.clone())
        }
        Command::Finetune { args, models } => {
            let settings = model_settings(&models, &file)?;
            let registry_path = models.models_toml.clone().or(file.models.registry.clone()).unwrap_or_else(default_registry_path);
            finetune::run(args, &settings.registry, &registry_path, &settings.device)
        }
        Command::FinetuneData(args) => finetune::prepare(args),
        Command::Eval(args) => {
            let threads = args.threads.unwrap_or(1);
            init_threads(threads);
            zhengwu_eval::run(&args)
        }
    }
}

fn models_cmd(action: ModelsAction, args: &ModelArgs, file: &FileConfig) -> anyhow::Result<()> {
    let settings = model_settings(args, file)?;
    match action {
        ModelsAction::List => {
            println!("{:<26} {:<10} {:<6} {:>10}  {:<8} path", "NAME", "KIND", "FORMAT", "SIZE", "STATUS");
            for m in settings.registry.models() {
                let (status, path) = match settings.registry.status(&m.name)? {
                    zhengwu_inference::registry::ModelStatus::Missing => ("missing".to_string(), String::new()),
                    zhengwu_inference::registry::ModelStatus::Present { path, verified } => {
                        (if verified { "ok" } else { "unverified" }.to_string(), path.display().to_string())
                    }
                };
                println!(
                    "{:<26} {:<10} {:<6} {:>8}MB  {:<8} {}",
                    m.name,
                    format!("{:?}", m.kind).to_lowercase(),
                    m.format,
                    m.size / 1_000_000,
                    status,
                    path
                );
            }
            Ok(())
        }
        ModelsAction::Fetch { names, all } => {
            let names: Vec<String> = if all {
                settings.registry.models().iter().map(|m| m.name.clone()).collect()
            } else if names.is_empty() {
                [settings.chat.clone(), settings.embedding.clone()].into_iter().flatten().collect()
            } else {
                names
            };
            for name in names {
                let path = settings.registry.fetch(&name, &FetchOptions { progress: true, ..Default::default() })?;
                println!("{name}: {}", path.display());
            }
            Ok(())
        }
    }
}

fn chat_cmd(
    prompt: &str,
    system: Option<String>,
    max_tokens: usize,
    temperature: f64,
    args: &ModelArgs,
    file: &FileConfig,
) -> anyhow::Result<()> {
    let settings = model_settings(args, file)?;
    let name = settings.chat.clone().context("no chat model configured")?;
    tracing::info!(features = %zhengwu_inference::device::cpu_features(), "engine");
    let engine = load_generator(&settings, &name, EngineOptions { max_context: settings.max_context, ..Default::default() })?;
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(ChatMessage::new("system", s));
    }
    messages.push(ChatMessage::new("user", prompt));
    let params = GenerationParams { max_tokens, temperature, ..Default::default() };
    let mut rx = engine.chat(ChatRequest::new(messages, params))?;
    let mut out = std::io::stdout();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenerationEvent::Delta(d) => {
                out.write_all(d.as_bytes())?;
                out.flush()?;
            }
            GenerationEvent::Done(c) => {
                println!();
                eprintln!(
                    "[{} prompt tokens in {:.2}s = {:.1} tok/s; {} generated in {:.2}s = {:.1} tok/s; {:?}]",
                    c.prompt_tokens,
                    c.prefill_secs,
                    c.prompt_tokens as f64 / c.prefill_secs.max(1e-9),
                    c.completion_tokens,
                    c.decode_secs,
                    (c.completion_tokens.saturating_sub(1)) as f64 / c.decode_secs.max(1e-9),
                    c.finish_reason
                );
                break;
            }
            GenerationEvent::Failed(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn serve(args: ServeArgs, file: &FileConfig) -> anyhow::Result<()> {
    // Supervised mode (test harnesses): exit when the parent closes our stdin, so a parent that
    // dies or never drops its handle cannot leave the server running.
    if std::env::var_os("ZHENGWU_EXIT_ON_STDIN_EOF").is_some() {
        std::thread::spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            tracing::info!("stdin closed; exiting (ZHENGWU_EXIT_ON_STDIN_EOF)");
            std::process::exit(0);
        });
    }
    let s = &file.server;
    let settings = model_settings(&args.models, file)?;
    let host = args.host.or(s.host.clone()).unwrap_or_else(|| "127.0.0.1".into());
    let port = args.port.or(s.port).unwrap_or(8080);
    let api_key = args.api_key.or(s.api_key.clone()).filter(|k| !k.is_empty());
    let defaults = ServerLimits::default();
    let limits = ServerLimits {
        max_body_bytes: args.max_body_bytes.or(s.max_body_bytes).unwrap_or(defaults.max_body_bytes),
        request_timeout: args
            .request_timeout_secs
            .or(s.request_timeout_secs)
            .map(Duration::from_secs)
            .unwrap_or(defaults.request_timeout),
        default_max_tokens: args.default_max_tokens.or(s.default_max_tokens).unwrap_or(defaults.default_max_tokens),
        ..defaults
    };
    let engine_opts = EngineOptions {
        max_active: args.max_active.or(s.max_active).unwrap_or(4).max(1),
        max_queued: args.max_queued.or(s.max_queued).unwrap_or(16),
        max_context: settings.max_context,
        ..Default::default()
    };
    // Check names before binding so a typo fails at once (a remote server names its own).
    let local_chat = if settings.chat_remote.is_some() { &None } else { &settings.chat };
    for name in [local_chat, &settings.embedding].into_iter().flatten() {
        settings.registry.get(name)?;
    }
    tracing::info!(
        features = %zhengwu_inference::device::cpu_features(),
        threads = settings.threads,
        device = ?settings.device,
        "engine configuration"
    );
    let state = Arc::new(AppState::new(settings.chat.is_some(), settings.embedding.is_some(), api_key, limits));
    // Speech: whisper-base loads on the first /api/asr request, 1 whisper thread.
    let whisper_registry = settings.registry.clone();
    let asr = Arc::new(zhengwu_hotline::asr::http::AsrService::new(
        move || whisper_registry.locate_whisper("whisper-base").map_err(|e| e.to_string()),
        "whisper-base",
        zhengwu_hotline::asr::WhisperConfig::default(),
        1,
    ));
    let addr: SocketAddr = format!("{host}:{port}").parse().with_context(|| format!("bad listen address {host}:{port}"))?;
    // Safe by default: with no users every caller is admin, which is only acceptable on loopback.
    let has_users = !file.web.users.is_empty() || std::env::var("ZHENGWU_WEB_USERS").is_ok_and(|v| !v.trim().is_empty());
    if !has_users && !addr.ip().is_loopback() && !(args.insecure_open || file.web.open) {
        bail!(
            "refusing to serve on {addr} with no users configured: every caller would act as administrator and see citizens' personal data. \
             Configure users ([web] users in zhengwu.toml or ZHENGWU_WEB_USERS=name:role:key,...), listen on 127.0.0.1, \
             or pass --insecure-open (or [web] open = true) to accept an open server"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        // Printed on stdout so scripts and tests can find an ephemeral port.
        println!("listening on http://{local}");
        tracing::info!(%local, "listening; loading models");
        let loader_state = state.clone();
        let intel_slot: Arc<std::sync::Mutex<Option<Arc<zhengwu_hotline::intel::http::IntelService>>>> = Default::default();
        let loader_slot = intel_slot.clone();
        let loader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            if let Some(name) = &settings.embedding {
                let e = load_embedder(&settings, name)?;
                let _ = loader_state.embedder.set(Arc::new(e));
                tracing::info!(model = %name, "embedding model ready");
            }
            // Hotline models: after the embedder, which their features may use.
            let emb: Option<Arc<dyn zhengwu_inference::Embedder>> = loader_state.embedder.get().cloned();
            let models = load_intel_models(&settings.registry, emb);
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            loop {
                let slot = loader_slot.lock().ok().and_then(|s| s.clone());
                if let Some(svc) = slot {
                    svc.set_models(models)?;
                    break;
                }
                if std::time::Instant::now() > deadline {
                    tracing::error!("the hotline service never started; its models are not installed");
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Some(name) = &settings.chat {
                let g = load_generator(&settings, name, engine_opts)?;
                let _ = loader_state.generator.set(g.clone());
                if let Some(svc) = loader_slot.lock().ok().and_then(|s| s.clone()) {
                    let _ = svc.generator.set(g);
                }
                tracing::info!(model = %name, "chat model ready");
            }
            Ok(())
        });
        let fail_state = state.clone();
        tokio::spawn(async move {
            match loader.await {
                Ok(Ok(())) => tracing::info!("ready"),
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "loading models failed; /ready stays 503");
                    let _ = fail_state.load_error.set(format!("{e:#}"));
                }
                Err(e) => {
                    let _ = fail_state.load_error.set(format!("model loader crashed: {e}"));
                }
            }
        });
        // [wiring] Product APIs (/api/...) from the rag and hotline crates are merged here.
        let api = axum::Router::new().merge(zhengwu_hotline::asr::http::router(asr));
        let mut tickets_cfg = file.tickets.clone();
        tickets_cfg.db = args.tickets_db.clone().or(tickets_cfg.db);
        tickets_cfg.agent_key = args.tickets_agent_key.clone().or(tickets_cfg.agent_key);
        // Web app: users from [web] and ZHENGWU_WEB_USERS; with users, staff act with
        // the ticket agent key (a random one when none is configured).
        let web_cfg = file.web.clone().with_env_users(std::env::var("ZHENGWU_WEB_USERS").ok().as_deref())?;
        if !web_cfg.users.is_empty() && tickets_cfg.agent_key.is_none() {
            tickets_cfg.agent_key = Some(uuid::Uuid::new_v4().simple().to_string());
        }
        let audit_path = web_cfg
            .audit_log
            .clone()
            .or_else(|| std::env::var_os("ZHENGWU_AUDIT_LOG").filter(|v| !v.is_empty()).map(PathBuf::from))
            .unwrap_or_else(default_audit_path);
        let web_state = Arc::new(web::WebState::new(&web_cfg, audit_path.clone(), tickets_cfg.agent_key.clone())?);
        tracing::info!(users = web_cfg.users.len(), audit = %audit_path.display(), "web app");
        if web_cfg.users.is_empty() {
            tracing::warn!(
                "LOGINS ARE OFF (open mode): no users are configured, so every caller of {local} acts as administrator and sees citizens' personal data; \
                 configure [web] users or ZHENGWU_WEB_USERS before anyone else can reach this server"
            );
        }
        let _ = state.web.set(web_state.clone());
        let tickets = zhengwu_hotline::tickets::TicketService::from_config(&tickets_cfg).await.context("opening the ticket store")?;
        let tickets = Arc::new(tickets);
        let api = api.merge(zhengwu_hotline::tickets::http::routes(tickets.clone()));
        let intel = Arc::new(intel_service(tickets, &file.dispatch)?);
        for c in intel.metrics.collectors() {
            state.metrics.register(c).context("registering hotline metrics")?;
        }
        zhengwu_hotline::intel::http::spawn_metrics_refresh(&intel, Duration::from_secs(60));
        let api = api.merge(zhengwu_hotline::intel::http::routes(intel.clone()));
        *intel_slot.lock().map_err(|_| anyhow::anyhow!("intel slot poisoned"))? = Some(intel.clone());
        let (rag_routes, rag_state) = zhengwu_rag::http::routes_with_state(
            file.kb.rag()?,
            { let s = state.clone(); move || s.embedder.get().cloned() },
            { let s = state.clone(); move || s.generator.get().cloned() },
        );
        let api = api.merge(rag_routes);
        let _ = state.rag.set(rag_state.clone());
        // Service requests in the citizen chat are drafted as tickets by the hotline.
        rag_state.set_drafter(Arc::new(server::requests::HotlineDrafter { intel: intel.clone() }));
        let kind_state = rag_state.clone();
        let _ = intel.message_kind.set(Arc::new(move |t: &str| kind_state.message_kind(t)));
        let search: zhengwu_hotline::intel::http::KnowledgeSearch = Arc::new(move |q: &str, n: usize| rag_state.search_json(q, n));
        let _ = intel.knowledge.set(search);
        let api = api
            .merge(web::routes(web_state.clone()))
            .layer(axum::middleware::from_fn_with_state(web_state, web::guard));
        let app = server::router(state, api);
        // The peer address is what login throttling counts failures by.
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown_signal()).await?;
        tracing::info!("shut down");
        Ok::<_, anyhow::Error>(())
    })
}

/// `<data dir>/zhengwu/audit.jsonl` (e.g. ~/.local/share/zhengwu/audit.jsonl).
fn default_audit_path() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("zhengwu")
        .join("audit.jsonl")
}

/// The intelligence service: department catalogue, dispatch rules, callback phrases from the
/// knowledge base; models are installed later by the loader.
fn intel_service(
    tickets: Arc<zhengwu_hotline::tickets::TicketService>,
    dispatch: &zhengwu_hotline::intel::dispatch::DispatchConfig,
) -> anyhow::Result<zhengwu_hotline::intel::http::IntelService> {
    use zhengwu_hotline::intel::{callback::CallbackChecker, departments::Catalogue, dispatch::load_rules};
    use zhengwu_hotline::tickets::knowledge_file;
    let deps = knowledge_file("departments.toml").context("knowledge-base/departments.toml not found")?;
    let catalogue = Arc::new(Catalogue::load(&deps)?);
    let rules = match knowledge_file("dispatch_rules.toml") {
        Some(p) => load_rules(&p, &catalogue)?,
        None => Vec::new(),
    };
    let mut callback = CallbackChecker::load(knowledge_file("callback_phrases.toml").as_deref())?;
    callback.screener = tickets.screener.clone();
    let mut svc = zhengwu_hotline::intel::http::IntelService::new(tickets, catalogue, rules, dispatch.clone(), callback)?;
    // Off unless configured (the 0.5B model's second opinion did not help on unsure rows).
    if let Some(v) = std::env::var("ZHENGWU_SECOND_OPINION_BELOW").ok().filter(|v| !v.trim().is_empty()) {
        let t: f32 = v.trim().parse().ok().filter(|t| (0.0..=1.0).contains(t)).with_context(|| format!("ZHENGWU_SECOND_OPINION_BELOW=`{v}` is not a confidence in 0..=1"))?;
        svc.second_opinion_below = t;
    }
    Ok(svc)
}

/// Every trained hotline artifact that is present and verified; a missing one is logged and
/// left out (its API answers say `model: null`), a corrupt one is an error in the log.
fn load_intel_models(
    registry: &Registry,
    embedder: Option<Arc<dyn zhengwu_inference::Embedder>>,
) -> zhengwu_hotline::intel::http::IntelModels {
    use zhengwu_hotline::intel::artifact::Artifact;
    use zhengwu_hotline::intel::tasks::Task;
    // One bounded embedding cache for all models: the co-pilot's classifiers and dispatcher read
    // the same transcript, which is then embedded once.
    let cache = embedder.as_ref().map(|e| Arc::new(zhengwu_hotline::intel::features::EmbeddingCache::bounded(e.dim(), 4096)));
    let load = |task: Task| -> Option<Arc<Artifact>> {
        let name = task.model_name();
        let path = match registry.locate(name) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(model = name, error = %e, "hotline model not available");
                return None;
            }
        };
        match Artifact::read_manifest(&path) {
            Ok(m) => {
                if let (Some(need), None) = (&m.features.embedding_model, &embedder) {
                    tracing::warn!(model = name, "hotline model not loaded: it needs the embedding model {need}, which is off");
                    return None;
                }
            }
            Err(e) => {
                tracing::error!(model = name, error = %e, "hotline model unreadable");
                return None;
            }
        }
        match Artifact::load(&path, embedder.clone()) {
            Ok(a) => {
                tracing::info!(model = name, version = %a.version(), "hotline model ready");
                let a = match &cache {
                    Some(c) => a.with_cache(c.clone()),
                    None => a,
                };
                Some(Arc::new(a))
            }
            Err(e) => {
                tracing::error!(model = name, error = %e, "hotline model failed to load");
                None
            }
        }
    };
    let hotspot_featurizer = embedder.clone().and_then(|e| {
        let cfg = zhengwu_hotline::intel::features::FeatureConfig {
            ngram_buckets: 4096,
            embedding_model: Some(e.model_id().to_string()),
            embedding_dim: e.dim(),
            ..Default::default()
        };
        zhengwu_hotline::intel::features::Featurizer::new(cfg, Some(e)).ok()
    });
    zhengwu_hotline::intel::http::IntelModels {
        type_model: load(Task::ClassifyMsgabenchType),
        category_model: load(Task::ClassifyTeddy),
        dispatch_model: load(Task::Dispatch),
        callback_model: load(Task::Callback),
        hotspot_featurizer,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing open requests");
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
