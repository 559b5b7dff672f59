//! `finetune`: the base chat model against base + LoRA adapter on the held-out part of the
//! reply history (character ROUGE-L F1 against the official reply, format of the official
//! style) and on held-out out-of-scope questions (refusal with hand-off), plus the adapter's
//! own training measurements from its manifest.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use zhengwu_hotline::intel::replies::{self, ReplyCase};
use zhengwu_inference::llm::{EngineOptions, LlmEngine};
use zhengwu_inference::registry::Registry;
use zhengwu_inference::{ChatMessage, ChatRequest, GenerationParams, Generator};

use crate::report::{fmt_num, Report};
use crate::EvalArgs;

const DEFAULT_BASE: &str = "qwen2.5-0.5b-instruct";
const DEFAULT_ADAPTER: &str = "reply-drafter-0.5b";
/// Most new tokens per drafted reply (the official replies run to about 280 characters).
const REPLY_MAX_TOKENS: usize = 320;

/// Greedy generation of one chat turn.
pub fn draft(engine: &dyn Generator, messages: &[ChatMessage], max_tokens: usize) -> anyhow::Result<String> {
    let params = GenerationParams { max_tokens, repetition_penalty: 1.05, ..Default::default() };
    let stream = engine.chat(ChatRequest::new(messages.to_vec(), params))?;
    Ok(zhengwu_inference::collect_blocking(stream)?.text)
}

#[derive(Default)]
struct Scores {
    rouge: Vec<f64>,
    greeting: usize,
    body: usize,
    closing: usize,
    format: usize,
    false_refusals: usize,
    refusals: usize,
    refusals_as_message: usize,
    oos: usize,
    chars: usize,
    secs: f64,
}

fn knowledge_dir(models_toml: &Path) -> PathBuf {
    let here = models_toml.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    here.join("knowledge-base")
}

pub fn run(args: &EvalArgs) -> anyhow::Result<Report> {
    let registry = Registry::load(&args.models_toml)?;
    let base = args.models.first().cloned().unwrap_or_else(|| DEFAULT_BASE.into());
    let adapter = args.models.get(1).cloned().unwrap_or_else(|| DEFAULT_ADAPTER.into());
    let cases: Vec<ReplyCase> = replies::load_cases(&args.data)?
        .into_iter()
        .filter(|c| replies::is_heldout(&c.id))
        .filter_map(|c| replies::usable_reply(&c.reply).map(|reply| ReplyCase { reply, ..c }))
        .take(args.finetune_cases)
        .collect();
    let oos: Vec<_> = replies::load_out_of_scope(&knowledge_dir(&args.models_toml))?
        .into_iter()
        .filter(|q| replies::is_heldout_question(&q.question))
        .collect();
    anyhow::ensure!(!cases.is_empty(), "no held-out reply cases under {}", args.data.display());
    let locate = |n: &str| Ok(registry.locate(n)?);
    let mut report = Report::new("Fine-tuned reply drafting: base model vs base + LoRA adapter");
    let mut table = String::from("| model | cases | ROUGE-L F1 | format (all three) | greeting | closing | refuses out-of-scope (asked / as message) | refuses real messages | mean chars | seconds |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut samples = String::new();
    for (label, name) in [("base", &base), ("adapter", &adapter)] {
        let engine = LlmEngine::from_registry(&registry, name, &candle_core::Device::Cpu, EngineOptions::default(), &locate)
            .with_context(|| format!("loading `{name}`"))?;
        let mut s = Scores::default();
        let t0 = Instant::now();
        let bar = indicatif::ProgressBar::new((cases.len() + 2 * oos.len()) as u64);
        bar.set_message(label);
        for (i, c) in cases.iter().enumerate() {
            let msgs = replies::chat(&c.title, &c.detail, None, 240);
            let text = draft(&engine, &msgs, REPLY_MAX_TOKENS)?;
            s.rouge.push(replies::rouge_l_f1(&text, &c.reply));
            let f = replies::format_check(&text);
            s.greeting += f.greeting as usize;
            s.body += f.body as usize;
            s.closing += f.closing as usize;
            s.format += f.all() as usize;
            s.false_refusals += replies::is_refusal(&text) as usize;
            s.chars += text.chars().count();
            if i < 2 {
                let head: String = text.chars().take(160).collect();
                samples.push_str(&format!("- {label}, case {}: {}…\n", c.id, head.replace('\n', " ")));
            }
            bar.inc(1);
        }
        for q in &oos {
            let text = draft(&engine, &replies::chat_out_of_scope(q, false), 160)?;
            s.refusals += replies::is_refusal(&text) as usize;
            let text = draft(&engine, &replies::chat_out_of_scope_as_message(q, false), 160)?;
            s.refusals_as_message += replies::is_refusal(&text) as usize;
            s.oos += 1;
            bar.inc(2);
        }
        bar.finish_and_clear();
        s.secs = t0.elapsed().as_secs_f64();
        let n = cases.len() as f64;
        let rouge = s.rouge.iter().sum::<f64>() / n;
        let p = format!("finetune.{label}");
        report.metric(format!("{p}.rouge_l"), rouge);
        report.metric(format!("{p}.format_rate"), s.format as f64 / n);
        report.metric(format!("{p}.greeting_rate"), s.greeting as f64 / n);
        report.metric(format!("{p}.closing_rate"), s.closing as f64 / n);
        report.metric(format!("{p}.false_refusal_rate"), s.false_refusals as f64 / n);
        if s.oos > 0 {
            report.metric(format!("{p}.refusal_rate"), s.refusals as f64 / s.oos as f64);
            report.metric(format!("{p}.refusal_rate_as_message"), s.refusals_as_message as f64 / s.oos as f64);
        }
        report.metric(format!("{p}.mean_chars"), s.chars as f64 / n);
        report.metric(format!("{p}.secs"), s.secs);
        table.push_str(&format!(
            "| {name} | {} | {} | {}/{} | {} | {} | {}/{} / {}/{} | {} | {:.0} | {:.0} |\n",
            cases.len(),
            fmt_num(rouge),
            s.format,
            cases.len(),
            s.greeting,
            s.closing,
            s.refusals,
            s.oos,
            s.refusals_as_message,
            s.oos,
            s.false_refusals,
            s.chars as f64 / n,
            s.secs
        ));
        if label == "adapter" {
            let spec = registry.get(name)?;
            if spec.format == "lora" {
                let a = zhengwu_inference::finetune::LoraAdapter::load(&registry.locate(name)?, &candle_core::Device::Cpu)?;
                for (k, v) in &a.manifest.metrics {
                    report.metric(format!("finetune.train.{k}"), *v);
                }
                report.metric("finetune.train.steps", a.manifest.steps as f64);
                report.metric("finetune.train.examples", a.manifest.examples as f64);
                report.metric("finetune.train.tokens", a.manifest.tokens_trained as f64);
                report.section(format!(
                    "## Adapter\n\n`{name}`: rank {}, alpha {}, targets {}, {} steps over {} examples ({} tokens), data sha256 {}.\n",
                    a.manifest.lora.rank,
                    a.manifest.lora.alpha,
                    a.manifest.lora.targets.join(", "),
                    a.manifest.steps,
                    a.manifest.examples,
                    a.manifest.tokens_trained,
                    &a.manifest.data_sha256[..12]
                ));
            }
        }
    }
    if let (Some(b), Some(a)) = (report.metrics.get("finetune.base.rouge_l").copied(), report.metrics.get("finetune.adapter.rouge_l").copied()) {
        report.metric("finetune.rouge_l_gain", a - b);
    }
    report.section(format!(
        "## Held-out drafts\n\nHeld-out: one message in ten by a stable hash of its id (the training file leaves them out), the first {} of them; {} held-out out-of-scope questions, each asked as it is and posted as a message (title and content). The official replies are scored with the publisher's anonymised account ids removed. Greedy decoding, repetition penalty 1.05, at most {} new tokens.\n\n{table}",
        cases.len(),
        oos.len(),
        REPLY_MAX_TOKENS
    ));
    report.section(format!("## First characters of two drafts per model\n\n{samples}"));
    Ok(report)
}
