//! The evaluation harness: `zhengwu eval SUITE --data DIR --out DIR`.
//!
//! Every suite writes `report.json` (a flat map from metric name to number) and `report.md`
//! (tables, SVG plots where a picture helps) into `--out`. `--data` takes a folder laid out
//! like `../shared/data`; later issues add their suites here and name their metrics.

pub mod asr;
pub mod citizen;
pub mod classify_cv;
pub mod finetune;
pub mod intel;
pub mod kb_scale;
pub mod llm_speed;
pub mod rag;
pub mod report;
mod rng;
pub mod soak;

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

pub use report::Report;

/// Arguments shared by every suite.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Suite to run: `llm` (speed: prefill/decode tok/s, peak RSS, llama.cpp ratio),
    /// `embed` (embedding throughput). Run with no suite to list them.
    pub suite: Option<String>,
    /// Data folder with the layout of ../shared/data.
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// Output folder for report.json and report.md (default eval/out/<suite>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// CPU threads for our engine and for llama.cpp (compared at equal threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Models to benchmark (registry names); default both chat models.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Path to llama.cpp's `llama-bench`, for the peer comparison.
    #[arg(long, env = "LLAMA_BENCH")]
    pub llama_bench: Option<PathBuf>,
    /// Prompt length in tokens for the speed runs.
    #[arg(long, default_value_t = 64)]
    pub prompt_tokens: usize,
    /// Tokens generated in the speed runs (greedy).
    #[arg(long, default_value_t = 64)]
    pub gen_tokens: usize,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Model registry file.
    #[arg(long, default_value = "models.toml")]
    pub models_toml: PathBuf,
    /// `rag` suite: also answer this many questions (and as many out-of-scope ones) with the
    /// chat model (first of `--models`, default the 1.5B); 0 = retrieval only.
    #[arg(long, default_value_t = 0)]
    pub rag_answers: usize,
    /// `rag` suite: answer questions from this index on (in-scope and out-of-scope alike), e.g.
    /// to confirm on fresh questions a change chosen on the first ones.
    #[arg(long, default_value_t = 0)]
    pub rag_answers_from: usize,
    /// `rag` suite: keep the ingested store in this folder and reuse it on the next run
    /// (incremental ingest skips unchanged documents); default a fresh temporary store.
    #[arg(long)]
    pub rag_store: Option<PathBuf>,
    /// `rag` suite: skip the sweep of fusion weights and k (only dense, sparse and the served
    /// hybrid are measured).
    #[arg(long)]
    pub no_rag_sweep: bool,
    /// `classify` suite: ask the chat model (first of `--models`, default the 0.5B) for a second
    /// opinion on up to this many low-confidence rows (top class below 0.5) per classifier, as
    /// the server does; 0 = off.
    #[arg(long, default_value_t = 0)]
    pub second_opinion: usize,
    /// `finetune` suite: held-out reply cases to draft with each model.
    #[arg(long, default_value_t = 24)]
    pub finetune_cases: usize,
    /// `soak` suite: concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// `soak` suite: seconds of traffic (the in-flight requests then finish).
    #[arg(long, default_value_t = 600)]
    pub duration_secs: u64,
    /// `soak` suite: mean think time between a client's requests in ms (uniform 0..2x); 0 = none.
    #[arg(long, default_value_t = 250)]
    pub think_ms: u64,
    /// `citizen` suite: which part of eval/sets/citizen.jsonl to run: `dev`, `report` or `all`.
    #[arg(long, default_value = "all")]
    pub citizen_split: String,
    /// `dispatch` suite: also write every row's evidence (rule, model, duty model and keyword
    /// scores) as JSON lines to this file, for studying how to combine them on the dev part.
    #[arg(long)]
    pub dispatch_dump: Option<PathBuf>,
    /// Internal: run one model's measurement in this process and print JSON.
    #[arg(long, hide = true)]
    pub child: bool,
}

pub const SUITES: &[(&str, &str)] = &[
    ("llm", "chat-model speed: prefill/decode tok/s, peak RSS, bandwidth, ratio to llama.cpp"),
    ("embed", "embedding speed: texts/s and tokens/s for the e5 model"),
    ("rag", "knowledge base: recall@1/5, MRR@10 of dense, sparse, hybrid retrieval on rag/ncp_policy"),
    ("kbscale", "embedded vector store at 10k and 100k synthetic chunks: upsert rate, query latency p50/p95"),
    ("asr", "speech: CER, real-time factor, peak RSS of whisper-base on asr/aishell_sample"),
    ("classify", "ticket classifiers: accuracy, macro-F1 on classify/ (teddy categories, msgabench type and domain)"),
    ("dispatch", "dispatcher: top-1/top-3, auto-dispatch coverage and accuracy on dispatch/"),
    ("callback", "callback quality: sign accuracy and Spearman against the STC-3 annotators (quality/)"),
    ("hotspots", "hot-spot clusters of messages/ with votes and time"),
    ("finetune", "fine-tuned reply drafting: ROUGE-L, format, refusals of base vs base + LoRA adapter (messages/)"),
    ("copilot", "agent co-pilot: latency per transcript update (knowledge, classification, form, dispatch)"),
    ("citizen", "citizen chat on our written set: correct, confidently wrong, near-miss refusal, service requests, FAQ precision"),
    ("soak", "soak: mixed HTTP traffic from --clients for --duration-secs; 5xx, lost tickets, RSS growth, /health p99"),
];

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let Some(suite) = args.suite.as_deref() else {
        println!("suites:");
        for (name, what) in SUITES {
            println!("  {name:<8} {what}");
        }
        return Ok(());
    };
    if args.child {
        return llm_speed::child(args);
    }
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("eval/out").join(suite));
    let report = match suite {
        "llm" => llm_speed::run(args)?,
        "embed" => llm_speed::run_embed(args)?,
        "rag" => rag::run(args)?,
        "kbscale" => kb_scale::run(args)?,
        "asr" => asr::run(args)?,
        "classify" => intel::run_classify(args)?,
        "dispatch" => intel::run_dispatch(args)?,
        "callback" => intel::run_callback(args)?,
        "hotspots" => intel::run_hotspots(args)?,
        "copilot" => intel::run_copilot(args)?,
        "finetune" => finetune::run(args)?,
        "soak" => soak::run(args)?,
        "citizen" => citizen::run(args)?,
        other => bail!("unknown suite `{other}`; run `zhengwu eval` to list them"),
    };
    report.write(&out)?;
    println!("wrote {}/report.json and report.md", out.display());
    Ok(())
}
