//! Speed suites. `llm`: prefill and decode tokens/s, peak RSS and memory bandwidth for each
//! chat model, each measured in its own child process so peak RSS is per model; plus the same
//! GGUF through llama.cpp's `llama-bench` at equal threads when `--llama-bench` is given.
//! `embed`: embedding throughput and a small retrieval check on rag/ncp_policy_qa.jsonl.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use zhengwu_inference::llm::{EngineOptions, LlmEngine};
use zhengwu_inference::registry::Registry;
use zhengwu_inference::{EmbedKind, Embedder, GenerationEvent, GenerationParams, GenerationRequest};

use crate::report::{bar_chart_svg, fmt_num, Report};
use crate::EvalArgs;

const DEFAULT_MODELS: &[&str] = &["qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct"];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Peak resident set of this process (VmHWM), in MB.
pub fn peak_rss_mb(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Single-thread sequential read bandwidth in GB/s (in the inference crate, which is built
/// optimised in every profile, so the figure is the machine's and not the build's).
pub fn read_bandwidth_gb_s() -> f64 {
    zhengwu_inference::device::read_bandwidth_gb_s()
}

/// Real citizen text from the data folder, used to build prompts of a given length.
fn sample_text(data: &Path) -> anyhow::Result<String> {
    let path = data.join("messages/teddy2020_messages_with_official_replies_2816.jsonl");
    let file = fs_err::File::open(&path).with_context(|| format!("benchmark prompts come from {}", path.display()))?;
    let mut text = String::new();
    for line in std::io::BufReader::new(file).lines().take(50) {
        let v: Value = serde_json::from_str(&line?)?;
        for key in ["detail", "title", "reply"] {
            if let Some(s) = v.get(key).and_then(Value::as_str) {
                text.push_str(s);
            }
        }
        if text.chars().count() > 6000 {
            break;
        }
    }
    if text.is_empty() {
        bail!("no text found in {}", path.display());
    }
    Ok(text)
}

/// Child mode: load one model, measure, print one JSON line.
pub fn child(args: &EvalArgs) -> anyhow::Result<()> {
    let name = args.models.first().context("child run needs --models NAME")?;
    let registry = Registry::load(&args.models_toml)?;
    let path = registry.locate(name)?;
    let t = Instant::now();
    let engine = LlmEngine::load(&path, name, &candle_core::Device::Cpu, EngineOptions::default())?;
    let load_secs = t.elapsed().as_secs_f64();
    let text = sample_text(&args.data)?;
    let ids = engine.tokenizer().encode(text.as_str(), false).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ids = ids.get_ids();
    if ids.len() < args.prompt_tokens {
        bail!("sample text has only {} tokens", ids.len());
    }
    let prompt = engine
        .tokenizer()
        .decode(&ids[..args.prompt_tokens], false)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    let mut prompt_tokens = 0;
    let mut gen_tokens = 0;
    for _ in 0..args.repeat.max(1) {
        let params = GenerationParams { max_tokens: args.gen_tokens, ignore_eos: true, ..Default::default() };
        let mut rx = engine.submit(GenerationRequest { prompt: prompt.clone(), params, deadline: None })?;
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                GenerationEvent::Delta(_) => {}
                GenerationEvent::Done(c) => {
                    prompt_tokens = c.prompt_tokens;
                    gen_tokens = c.completion_tokens;
                    prefill.push(c.prompt_tokens as f64 / c.prefill_secs);
                    decode.push((c.completion_tokens.saturating_sub(1)) as f64 / c.decode_secs);
                    break;
                }
                GenerationEvent::Failed(e) => return Err(e.into()),
            }
        }
    }
    let rss = peak_rss_mb(None).unwrap_or(f64::NAN);
    let out = json!({
        "model": name,
        "gguf": path,
        "gguf_mb": fs_err::metadata(&path)?.len() as f64 / 1e6,
        "weight_mb": engine.weight_bytes as f64 / 1e6,
        "load_secs": load_secs,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "prefill_tok_s": median(prefill.clone()),
        "decode_tok_s": median(decode.clone()),
        "prefill_runs": prefill,
        "decode_runs": decode,
        "peak_rss_mb": rss,
        "read_gb_s": read_bandwidth_gb_s(),
    });
    println!("{out}");
    Ok(())
}

fn threads(args: &EvalArgs) -> usize {
    args.threads.unwrap_or(1)
}

fn run_child(args: &EvalArgs, model: &str) -> anyhow::Result<Value> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .args(["eval", "llm", "--child", "--models", model])
        .arg("--threads")
        .arg(threads(args).to_string())
        .arg("--prompt-tokens")
        .arg(args.prompt_tokens.to_string())
        .arg("--gen-tokens")
        .arg(args.gen_tokens.to_string())
        .arg("--repeat")
        .arg(args.repeat.to_string())
        .arg("--data")
        .arg(&args.data)
        .arg("--models-toml")
        .arg(&args.models_toml)
        .stderr(Stdio::inherit())
        .output()
        .context("running the measurement child")?;
    if !output.status.success() {
        bail!("measuring {model} failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("child printed no JSON")?;
    Ok(serde_json::from_str(line)?)
}

struct PeerResult {
    prefill_tok_s: f64,
    decode_tok_s: f64,
    peak_rss_mb: f64,
}

/// Run llama.cpp's llama-bench on the same GGUF at equal threads.
fn run_llama_bench(bench: &Path, gguf: &str, args: &EvalArgs) -> anyhow::Result<PeerResult> {
    let mut child = Command::new(bench)
        .arg("-m")
        .arg(gguf)
        .args(["-p", &args.prompt_tokens.to_string(), "-n", &args.gen_tokens.to_string()])
        .args(["-t", &threads(args).to_string(), "-r", &args.repeat.max(1).to_string(), "-o", "json"])
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bench.display()))?;
    // Poll the child's high-water mark while it runs.
    let pid = child.id();
    let mut rss: f64 = 0.0;
    loop {
        if let Some(r) = peak_rss_mb(Some(pid)) {
            rss = rss.max(r);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output()?;
    let v: Value = serde_json::from_slice(&output.stdout).context("parsing llama-bench JSON")?;
    let mut prefill = f64::NAN;
    let mut decode = f64::NAN;
    for e in v.as_array().context("llama-bench JSON is not an array")? {
        let np = e.get("n_prompt").and_then(Value::as_u64).unwrap_or(0);
        let ng = e.get("n_gen").and_then(Value::as_u64).unwrap_or(0);
        let ts = e.get("avg_ts").and_then(Value::as_f64).unwrap_or(f64::NAN);
        if np > 0 && ng == 0 {
            prefill = ts;
        } else if ng > 0 && np == 0 {
            decode = ts;
        }
    }
    Ok(PeerResult { prefill_tok_s: prefill, decode_tok_s: decode, peak_rss_mb: rss })
}

fn short(model: &str) -> String {
    model.trim_start_matches("qwen2.5-").trim_end_matches("-instruct").to_string()
}

pub fn run(args: &EvalArgs) -> anyhow::Result<Report> {
    let models: Vec<String> = if args.models.is_empty() {
        DEFAULT_MODELS.iter().map(|s| s.to_string()).collect()
    } else {
        args.models.clone()
    };
    let mut report = Report::new("LLM speed (zhengwu engine vs llama.cpp)");
    let mut table = String::from(
        "| model | prompt tok | gen tok | prefill tok/s | decode tok/s | peak RSS MB | GGUF MB | llama.cpp prefill | llama.cpp decode | llama.cpp RSS MB | decode ratio | prefill ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut bars = Vec::new();
    let mut notes = Vec::new();
    for model in &models {
        eprintln!("measuring {model} ({} threads)", threads(args));
        let r = run_child(args, model)?;
        let m = short(model);
        let f = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let (prefill, decode, rss, weight_mb, gb_s) =
            (f("prefill_tok_s"), f("decode_tok_s"), f("peak_rss_mb"), f("weight_mb"), f("read_gb_s"));
        report.metric(format!("llm.{m}.prefill_tok_s"), prefill);
        report.metric(format!("llm.{m}.decode_tok_s"), decode);
        report.metric(format!("llm.{m}.peak_rss_mb"), rss);
        report.metric(format!("llm.{m}.load_secs"), f("load_secs"));
        // Each decoded token reads every weight once (plus a small KV cache).
        let bytes_per_token_mb = weight_mb;
        report.metric(format!("llm.{m}.decode_mb_per_token"), bytes_per_token_mb);
        report.metric(format!("llm.{m}.decode_gb_s"), bytes_per_token_mb * decode / 1000.0);
        report.metric(format!("llm.{m}.decode_bandwidth_fraction"), bytes_per_token_mb * decode / 1000.0 / gb_s);
        report.metric("mem.read_gb_s_1thread", gb_s);
        bars.push((format!("{m} decode (zhengwu)"), decode));
        let gguf = r.get("gguf").and_then(Value::as_str).unwrap_or_default().to_string();
        let peer = match &args.llama_bench {
            Some(bench) => match run_llama_bench(bench, &gguf, args) {
                Ok(p) => Some(p),
                Err(e) => {
                    notes.push(format!("llama-bench failed for {model}: {e:#}"));
                    None
                }
            },
            None => None,
        };
        let (lp, ld, lr) = match &peer {
            Some(p) => {
                report.metric(format!("llamacpp.{m}.prefill_tok_s"), p.prefill_tok_s);
                report.metric(format!("llamacpp.{m}.decode_tok_s"), p.decode_tok_s);
                report.metric(format!("llamacpp.{m}.peak_rss_mb"), p.peak_rss_mb);
                report.metric(format!("llm.{m}.decode_vs_llamacpp"), decode / p.decode_tok_s);
                report.metric(format!("llm.{m}.prefill_vs_llamacpp"), prefill / p.prefill_tok_s);
                report.metric(format!("llm.{m}.rss_vs_llamacpp"), rss / p.peak_rss_mb);
                bars.push((format!("{m} decode (llama.cpp)"), p.decode_tok_s));
                (p.prefill_tok_s, p.decode_tok_s, p.peak_rss_mb)
            }
            None => (f64::NAN, f64::NAN, f64::NAN),
        };
        table.push_str(&format!(
            "| {model} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
            r.get("gen_tokens").and_then(Value::as_u64).unwrap_or(0),
            fmt_num(prefill),
            fmt_num(decode),
            fmt_num(rss),
            fmt_num(f("gguf_mb")),
            fmt_num(lp),
            fmt_num(ld),
            fmt_num(lr),
            fmt_num(decode / ld),
            fmt_num(prefill / lp),
        ));
    }
    report.section(format!(
        "## Runs\n\nThreads: {} (both engines). Prompt {} tokens of real citizen text from `--data`, greedy {} tokens, EOS ignored, median of {} runs. llama.cpp: {}.\n\n{table}",
        threads(args),
        args.prompt_tokens,
        args.gen_tokens,
        args.repeat,
        match &args.llama_bench {
            Some(p) => format!("`{}` with OMP_WAIT_POLICY=PASSIVE", p.display()),
            None => "not run (pass --llama-bench PATH)".into(),
        }
    ));
    if !notes.is_empty() {
        report.section(format!("## Notes\n\n{}", notes.join("\n\n")));
    }
    let out_svg = bar_chart_svg("decode tokens/s", &bars);
    report.section(format!("## Decode speed\n\n{out_svg}"));
    Ok(report)
}

pub fn run_embed(args: &EvalArgs) -> anyhow::Result<Report> {
    let registry = Registry::load(&args.models_toml)?;
    let name = "multilingual-e5-small";
    let path = registry.locate(name)?;
    let e5 = zhengwu_inference::e5::E5Embedder::load(&path, name, &candle_core::Device::Cpu)?;
    let qa_path = args.data.join("rag/ncp_policy_qa.jsonl");
    let docs_path = args.data.join("rag/ncp_policy_docs.jsonl");
    let read = |p: &Path| -> anyhow::Result<Vec<Value>> {
        let f = fs_err::File::open(p)?;
        std::io::BufReader::new(f)
            .lines()
            .map(|l| Ok(serde_json::from_str::<Value>(&l?)?))
            .collect()
    };
    let docs = read(&docs_path)?;
    let qa = read(&qa_path)?;
    let field = |v: &Value, keys: &[&str]| -> String {
        keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_str().map(str::to_string).or_else(|| x.as_i64().map(|n| n.to_string())))).unwrap_or_default()
    };
    // Passages: the first 300 characters of each document (fits the 512-token window).
    let doc_ids: Vec<String> = docs.iter().map(|d| field(d, &["docid", "id"])).collect();
    let passages: Vec<String> = docs.iter().map(|d| field(d, &["text", "content"]).chars().take(300).collect()).collect();
    let n_docs = passages.len();
    let t = Instant::now();
    let mut doc_vecs = Vec::with_capacity(n_docs);
    let mut tokens = 0;
    for chunk in passages.chunks(16) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let e = e5.embed(&refs, EmbedKind::Passage)?;
        tokens += e.prompt_tokens;
        doc_vecs.extend(e.vectors);
    }
    let secs = t.elapsed().as_secs_f64();
    let mut report = Report::new("Embedding speed and retrieval (multilingual-e5-small)");
    report.metric("embed.passages_per_s", n_docs as f64 / secs);
    report.metric("embed.tokens_per_s", tokens as f64 / secs);
    let questions: Vec<(String, String)> = qa
        .iter()
        .take(200)
        .map(|q| (field(q, &["question", "query"]), field(q, &["docid"])))
        .filter(|(q, d)| !q.is_empty() && !d.is_empty())
        .collect();
    let mut hit1 = 0;
    let mut hit5 = 0;
    for (q, want) in &questions {
        let v = e5.embed(&[q.as_str()], EmbedKind::Query)?.vectors.remove(0);
        let mut scored: Vec<(f32, usize)> =
            doc_vecs.iter().enumerate().map(|(i, d)| (d.iter().zip(&v).map(|(a, b)| a * b).sum(), i)).collect();
        scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        if let Some(pos) = scored.iter().position(|(_, i)| &doc_ids[*i] == want) {
            if pos == 0 {
                hit1 += 1;
            }
            if pos < 5 {
                hit5 += 1;
            }
        }
    }
    let n = questions.len().max(1) as f64;
    report.metric("embed.ncp_doc_recall_at_1", hit1 as f64 / n);
    report.metric("embed.ncp_doc_recall_at_5", hit5 as f64 / n);
    report.section(format!(
        "Dense retrieval only, document = first 300 characters of each of {n_docs} documents, {} questions. \
         This is a baseline for the RAG issue (chunking and hybrid retrieval will do better).",
        questions.len()
    ));
    Ok(report)
}
