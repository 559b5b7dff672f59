//! `rag` suite: retrieval quality of the knowledge base on `rag/ncp_policy_*.jsonl`.
//!
//! The 599 policy documents are ingested (chunked, e5 + BM25) into a fresh temporary embedded
//! store; every question of `ncp_policy_qa.jsonl` is searched with dense, sparse and hybrid
//! (RRF) retrieval. A hit is a chunk of the question's gold `docid`. Metrics:
//! `rag.<mode>.recall@1`, `.recall@5`, `.mrr@10`, `.latency_p50_ms`, `.latency_p95_ms`;
//! `rag.ingest.chunks_per_s`; `rag.gate.*`, the refusal gate calibrated on held-out questions
//! (see [`calibrate_gate`]). `--rag-store DIR` keeps the ingested store for the next run. With `--rag-answers N` the first N questions are also answered
//! with the chat model (`--models`, default the 1.5B), with the parts of each answer's latency
//! (`rag.answer.retrieve_secs_mean` = query embedding + search, `prefill_secs_mean`,
//! `decode_secs_mean`, `total_secs_p50/p95`): `rag.answer.containment` (gold answer
//! text inside the answer as served, with its 原文摘录 excerpt), `rag.answer.containment_generated`
//! (inside the model's own text), `rag.answer.with_excerpt`, `rag.answer.char_f1`, and `rag.refusal.out_of_scope` (share of N
//! questions from `dispatch/msgabench_nlu_dept.jsonl` that are refused).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::Value;
use zhengwu_inference::registry::Registry;
use zhengwu_rag::answer::{question_coverage, AnswerConfig, AnswerKind, Answerer, AskRequest, Plan};
use zhengwu_rag::document::{content_hash, DocMeta};
use zhengwu_rag::edge::EdgeStore;
use zhengwu_rag::kb::{Progress, SourceDoc};
use zhengwu_rag::store::{EntryKind, FusionWeights};
use zhengwu_rag::{KnowledgeBase, Mode, SearchRequest};

use crate::report::{bar_chart_svg, fmt_num, Report};
use crate::EvalArgs;

pub(crate) fn read_jsonl(p: &Path) -> anyhow::Result<Vec<Value>> {
    let f = fs_err::File::open(p)?;
    std::io::BufReader::new(f)
        .lines()
        .enumerate()
        .filter(|(_, l)| l.as_ref().map(|l| !l.trim().is_empty()).unwrap_or(true))
        .map(|(i, l)| serde_json::from_str::<Value>(&l?).with_context(|| format!("{} line {}", p.display(), i + 1)))
        .collect()
}

fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(|x| x.as_str()).unwrap_or_default().to_string()
}

pub(crate) fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((v.len() - 1) as f64 * p).round() as usize;
    v[idx]
}

/// Character-level F1 (whitespace and punctuation ignored).
pub fn char_f1(pred: &str, gold: &str) -> f64 {
    let keep = |s: &str| s.chars().filter(|c| c.is_alphanumeric()).collect::<Vec<char>>();
    let (p, g) = (keep(pred), keep(gold));
    if p.is_empty() || g.is_empty() {
        return 0.0;
    }
    let mut counts: HashMap<char, i64> = HashMap::new();
    for c in &g {
        *counts.entry(*c).or_default() += 1;
    }
    let mut common = 0;
    for c in &p {
        if let Some(n) = counts.get_mut(c) {
            if *n > 0 {
                *n -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let prec = common as f64 / p.len() as f64;
    let rec = common as f64 / g.len() as f64;
    2.0 * prec * rec / (prec + rec)
}

fn normalise(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).collect()
}

pub fn run(args: &EvalArgs) -> anyhow::Result<Report> {
    let docs_path = args.data.join("rag/ncp_policy_docs.jsonl");
    let qa_path = args.data.join("rag/ncp_policy_qa.jsonl");
    let docs = read_jsonl(&docs_path)?;
    let qa = read_jsonl(&qa_path)?;
    let registry = Registry::load(&args.models_toml)?;
    let e5_name = "multilingual-e5-small";
    let e5 = zhengwu_inference::e5::E5Embedder::load(&registry.locate(e5_name)?, e5_name, &candle_core::Device::Cpu)?;
    let dim = zhengwu_inference::Embedder::dim(&e5);

    let (dir, keep_store) = match &args.rag_store {
        Some(d) => (d.clone(), true),
        None => (std::env::temp_dir().join(format!("zhengwu-rag-eval-{}", std::process::id())), false),
    };
    if !keep_store {
        let _ = fs_err::remove_dir_all(&dir);
    }
    let store = EdgeStore::open(&dir, dim)?;
    let kb = Arc::new(KnowledgeBase::new(Arc::new(store), Arc::new(e5))?);

    let sources: Vec<SourceDoc> = docs
        .iter()
        .map(|d| {
            let text = s(d, "text");
            SourceDoc {
                doc_id: s(d, "docid"),
                hash: content_hash(text.as_bytes()),
                kind: EntryKind::Doc,
                meta: DocMeta::default(),
                body: text,
                faq: None,
            }
        })
        .filter(|d| !d.doc_id.is_empty() && !d.body.trim().is_empty())
        .collect();
    eprintln!("rag: ingesting {} documents into {}", sources.len(), dir.display());
    let t = Instant::now();
    let mut last = Instant::now();
    let report_in = kb.ingest_docs(&sources, true, &mut |p| {
        if let Progress::File { i, n, .. } = p {
            if last.elapsed().as_secs() >= 15 || i == n {
                eprintln!("rag: [{i}/{n}] {:.0}s", t.elapsed().as_secs_f64());
                last = Instant::now();
            }
        }
    })?;
    let ingest_secs = t.elapsed().as_secs_f64();
    let chunks = report_in.chunks_written;
    eprintln!("rag: {chunks} chunks written in {ingest_secs:.0}s ({} documents unchanged)", report_in.unchanged);

    let mut report = Report::new("RAG retrieval on ncp_policy (599 documents, 451 questions)");
    report.metric("rag.ingest.documents", sources.len() as f64);
    report.metric("rag.ingest.chunks", kb.store().count()? as f64);
    // Throughput only when this run embedded (a reused store with nothing changed writes nothing).
    if report_in.unchanged == 0 && chunks > 0 {
        report.metric("rag.ingest.chunks_per_s", chunks as f64 / ingest_secs);
    }

    let questions: Vec<(String, String)> =
        qa.iter().map(|q| (s(q, "question"), s(q, "docid"))).filter(|(q, d)| !q.is_empty() && !d.is_empty()).collect();
    let mut table = String::from("| retriever | recall@1 | recall@5 | MRR@10 | p50 ms | p95 ms |\n|---|---:|---:|---:|---:|---:|\n");
    let mut bars = Vec::new();
    // The three retrievers as served, then hybrid with other dense:sparse fusion weights.
    let w = |d: f32, s: f32, k: usize| Some(FusionWeights { dense: d, sparse: s, k });
    let mut runs: Vec<(Mode, String, Option<FusionWeights>)> = vec![
        (Mode::Dense, "dense".into(), None),
        (Mode::Sparse, "sparse".into(), None),
        (Mode::Hybrid, "hybrid".into(), None),
    ];
    // The sweep: weights at the default k, then smaller k (the top ranks count for more).
    let sweep: &[(f32, f32, usize)] = if args.no_rag_sweep {
        &[]
    } else {
        &[(1.0, 2.0, 60), (1.0, 3.0, 60), (2.0, 1.0, 60), (1.0, 1.0, 5), (1.0, 1.0, 10), (1.0, 1.0, 20), (1.0, 2.0, 10), (1.0, 2.0, 5)]
    };
    for &(d, s, k) in sweep {
        let name = if k == 60 { format!("hybrid_w{d}_{s}") } else { format!("hybrid_k{k}_w{d}_{s}") };
        runs.push((Mode::Hybrid, name, w(d, s, k)));
    }
    for (mode, name, weights) in runs {
        let (mut r1, mut r5, mut mrr) = (0.0, 0.0, 0.0);
        let mut lat = Vec::with_capacity(questions.len());
        for (q, gold) in &questions {
            let mut req = SearchRequest::new(q.clone());
            req.mode = mode;
            req.limit = 10;
            req.include_expired = true;
            req.weights = weights;
            let t = Instant::now();
            let hits = kb.search(&req)?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            if let Some(pos) = hits.iter().position(|h| &h.chunk.doc_id == gold) {
                if pos == 0 {
                    r1 += 1.0;
                }
                if pos < 5 {
                    r5 += 1.0;
                }
                mrr += 1.0 / (pos + 1) as f64;
            }
        }
        let n = questions.len().max(1) as f64;
        let (r1, r5, mrr) = (r1 / n, r5 / n, mrr / n);
        let (p50, p95) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.95));
        report.metric(format!("rag.{name}.recall@1"), r1);
        report.metric(format!("rag.{name}.recall@5"), r5);
        report.metric(format!("rag.{name}.mrr@10"), mrr);
        report.metric(format!("rag.{name}.latency_p50_ms"), p50);
        report.metric(format!("rag.{name}.latency_p95_ms"), p95);
        table.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            fmt_num(r1),
            fmt_num(r5),
            fmt_num(mrr),
            fmt_num(p50),
            fmt_num(p95)
        ));
        bars.push((format!("{name} recall@5"), r5));
        eprintln!("rag: {name}: recall@1 {r1:.3} recall@5 {r5:.3} mrr@10 {mrr:.3} (p50 {p50:.1} ms)");
    }
    report.section(format!(
        "## Retrieval\n\n{} questions; a hit is any chunk of the gold document. `hybrid_wD_S` / `hybrid_kK_wD_S` rows: the same fusion with dense weight D, sparse weight S and RRF k = K (60 when not named; `hybrid` is the served default, {:?}). Latency includes embedding the query (e5 on CPU) and, for hybrid, the per-retriever look-ups used for hit testing.\n\n{table}\n{}",
        questions.len(),
        kb.weights,
        bar_chart_svg("recall@5", &bars)
    ));

    let gate = calibrate_gate(args, &kb, &qa, &mut report)?;
    if args.rag_answers > 0 {
        answer_metrics(args, &registry, kb.clone(), &qa, gate, &mut report)?;
    }
    drop(kb);
    if !keep_store {
        let _ = fs_err::remove_dir_all(&dir);
    }
    Ok(report)
}

/// The answer path's two gate signals for each question: the best dense score among the
/// retrieved sources and the question's bigram coverage by them (same search as `/api/ask`).
fn gate_signals(kb: &KnowledgeBase, questions: &[String], chunks: usize) -> anyhow::Result<Vec<(f32, f32)>> {
    questions
        .iter()
        .map(|q| {
            let mut req = SearchRequest::new(q.clone());
            req.mode = Mode::Hybrid;
            req.limit = chunks;
            req.include_expired = true;
            let hits = kb.search(&req)?;
            let relevance = hits.iter().filter_map(|h| h.dense.map(|d| d.score)).fold(0.0f32, f32::max);
            Ok((relevance, question_coverage(q, &hits)))
        })
        .collect()
}

/// Share of questions the gate lets through.
fn pass_rate(v: &[(f32, f32)], g: &Gate) -> f64 {
    let config = g.config();
    v.iter().filter(|(r, c)| config.admits(*r, *c)).count() as f64 / v.len().max(1) as f64
}

/// The calibrated gate: thresholds on the dense score (plus `weight` × question coverage) and
/// on question coverage, as [`AnswerConfig::admits`] applies them.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub relevance: f32,
    pub coverage: f32,
    pub weight: f32,
}

impl Gate {
    fn config(&self) -> AnswerConfig {
        AnswerConfig {
            relevance_threshold: self.relevance,
            coverage_threshold: self.coverage,
            coverage_weight: self.weight,
            ..AnswerConfig::default()
        }
    }
}

/// Calibrate the refusal gate of the answer path on held-out questions and measure it on
/// others.
///
/// Calibration: the in-scope questions after the first `max(--rag-answers-from + --rag-answers,
/// 100)` ones (so never a question that is answered), against
/// up to 400 questions of `dispatch/msgabench_gov_qa.jsonl` (another domain). The thresholds
/// maximise balanced accuracy (mean of the in-scope pass rate and the out-of-scope refusal
/// rate) for three gate shapes: the dense score alone; dense score and question coverage each
/// above a threshold; and the linear gate `dense + w × coverage ≥ t` with a coverage floor
/// (the first two are special cases of the third). Test: the in-scope questions before those
/// against `dispatch/msgabench_nlu_dept.jsonl`. Returns the linear gate, or
/// `None` when the dispatch files are missing. The per-question signals go to
/// `$TMPDIR/zhengwu-rag-gate-signals.jsonl`.
fn calibrate_gate(args: &EvalArgs, kb: &KnowledgeBase, qa: &[Value], report: &mut Report) -> anyhow::Result<Option<Gate>> {
    let cal_path = args.data.join("dispatch/msgabench_gov_qa.jsonl");
    let test_path = args.data.join("dispatch/msgabench_nlu_dept.jsonl");
    let in_scope: Vec<String> = qa.iter().map(|q| s(q, "question")).filter(|q| !q.trim().is_empty()).collect();
    if !cal_path.is_file() || !test_path.is_file() || in_scope.len() < 20 {
        eprintln!("rag: refusal gate not calibrated (needs dispatch/msgabench_gov_qa.jsonl, dispatch/msgabench_nlu_dept.jsonl and 20+ questions)");
        return Ok(None);
    }
    let chunks = AnswerConfig::default().context_chunks;
    // Never calibrate on a question that is answered: the split is past all of them.
    let answered = args.rag_answers_from + args.rag_answers;
    let split = answered.max(100).min(in_scope.len() / 2).max(answered);
    if in_scope.len() < split + 20 {
        anyhow::bail!(
            "--rag-answers-from {} --rag-answers {}: the refusal gate is calibrated on the in-scope questions after those answered and needs 20 of them ({} questions in the data)",
            args.rag_answers_from,
            args.rag_answers,
            in_scope.len()
        );
    }
    let questions = |p: &Path, n: usize| -> anyhow::Result<Vec<String>> {
        Ok(read_jsonl(p)?.iter().map(|q| s(q, "question")).filter(|q| !q.trim().is_empty()).take(n).collect())
    };
    eprintln!("rag: calibrating the refusal gate");
    let test_in = gate_signals(kb, &in_scope[..split], chunks)?;
    let cal_in = gate_signals(kb, &in_scope[split..], chunks)?;
    let cal_out = gate_signals(kb, &questions(&cal_path, 400)?, chunks)?;
    let test_out = gate_signals(kb, &questions(&test_path, 400)?, chunks)?;
    let mut signals = String::new();
    for (set, v) in [("test_in", &test_in), ("cal_in", &cal_in), ("cal_out", &cal_out), ("test_out", &test_out)] {
        for (i, (r, c)) in v.iter().enumerate() {
            signals.push_str(&serde_json::json!({"set": set, "i": i, "dense": r, "coverage": c}).to_string());
            signals.push('\n');
        }
    }
    fs_err::write(std::env::temp_dir().join("zhengwu-rag-gate-signals.jsonl"), signals)?;
    let balanced = |g: &Gate| 0.5 * (pass_rate(&cal_in, g) + (1.0 - pass_rate(&cal_out, g)));
    let grid = |from: f32, to: f32, step: f32| {
        let n = ((to - from) / step).round() as usize;
        (0..=n).map(move |i| from + i as f32 * step)
    };
    let zero = Gate { relevance: 0.0, coverage: 0.0, weight: 0.0 };
    let (mut dense_only, mut joint, mut linear) = ((f64::MIN, zero), (f64::MIN, zero), (f64::MIN, zero));
    for weight in [0.0f32, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3] {
        for relevance in grid(0.70, 0.98 + weight, 0.0025) {
            for coverage in grid(0.0, 1.0, 0.025) {
                let g = Gate { relevance, coverage, weight };
                let b = balanced(&g);
                if weight == 0.0 && coverage == 0.0 && b > dense_only.0 {
                    dense_only = (b, g);
                }
                if weight == 0.0 && b > joint.0 {
                    joint = (b, g);
                }
                if b > linear.0 {
                    linear = (b, g);
                }
            }
        }
    }
    let served = AnswerConfig::default();
    let served_g = Gate { relevance: served.relevance_threshold, coverage: served.coverage_threshold, weight: served.coverage_weight };
    let mut table = String::from(
        "| gate | dense + w·coverage ≥ | w | coverage ≥ | calibration balanced acc. | test in-scope pass | test out-of-scope refused |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, bal, g, key) in [
        ("built-in default", balanced(&served_g), served_g, "default"),
        ("dense score, calibrated", dense_only.0, dense_only.1, "dense"),
        ("dense + coverage, calibrated", joint.0, joint.1, "joint"),
        ("dense + w·coverage, calibrated (served)", linear.0, linear.1, "linear"),
    ] {
        let (pass, refused) = (pass_rate(&test_in, &g), 1.0 - pass_rate(&test_out, &g));
        report.metric(format!("rag.gate.{key}.in_scope_pass"), pass);
        report.metric(format!("rag.gate.{key}.out_of_scope_refused"), refused);
        table.push_str(&format!(
            "| {name} | {:.4} | {:.3} | {:.3} | {} | {} | {} |\n",
            g.relevance,
            g.weight,
            g.coverage,
            fmt_num(bal),
            fmt_num(pass),
            fmt_num(refused)
        ));
    }
    let gate = linear.1;
    report.metric("rag.gate.relevance_threshold", gate.relevance as f64);
    report.metric("rag.gate.coverage_threshold", gate.coverage as f64);
    report.metric("rag.gate.coverage_weight", gate.weight as f64);
    let q = |v: &[(f32, f32)], f: fn(&(f32, f32)) -> f32, p: f64| {
        let mut v: Vec<f64> = v.iter().map(|x| f(x) as f64).collect();
        percentile(&mut v, p)
    };
    let mut dist = String::from("| set | n | dense p5 | dense p50 | dense p95 | coverage p5 | coverage p50 | coverage p95 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (name, v) in [
        ("in-scope, calibration", &cal_in),
        ("out-of-scope, calibration (gov_qa)", &cal_out),
        ("in-scope, test", &test_in),
        ("out-of-scope, test (nlu_dept)", &test_out),
    ] {
        let (d, c): (fn(&(f32, f32)) -> f32, fn(&(f32, f32)) -> f32) = (|x| x.0, |x| x.1);
        dist.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |\n",
            v.len(),
            fmt_num(q(v, d, 0.05)),
            fmt_num(q(v, d, 0.5)),
            fmt_num(q(v, d, 0.95)),
            fmt_num(q(v, c, 0.05)),
            fmt_num(q(v, c, 0.5)),
            fmt_num(q(v, c, 0.95))
        ));
    }
    let (r, c, w) = (gate.relevance, gate.coverage, gate.weight);
    report.section(format!(
        "## Refusal gate\n\nThe answer path refuses (and hands off to a human) when the best dense cosine of the retrieved sources, plus w times the share of the question's character bigrams found in them (coverage), is below a threshold, or when coverage alone is below a floor. Thresholds are chosen on the calibration sets (in-scope questions {}.., 400 of dispatch/msgabench_gov_qa) and measured on the test sets (in-scope questions 0..{split}, dispatch/msgabench_nlu_dept). Serve the calibrated gate with `ZHENGWU_RAG_RELEVANCE={r:.4} ZHENGWU_RAG_COVERAGE={c:.3} ZHENGWU_RAG_COVERAGE_WEIGHT={w:.3}`. Per-question signals: `$TMPDIR/zhengwu-rag-gate-signals.jsonl`.\n\n{table}\n{dist}",
        split
    ));
    eprintln!("rag: gate dense + {w:.3} x coverage >= {r:.4}, coverage >= {c:.3}");
    Ok(Some(gate))
}

fn answer_metrics(
    args: &EvalArgs,
    registry: &Registry,
    kb: Arc<KnowledgeBase>,
    qa: &[Value],
    gate: Option<Gate>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let model = args.models.first().cloned().unwrap_or_else(|| "qwen2.5-1.5b-instruct".into());
    let engine = zhengwu_inference::llm::LlmEngine::load(
        &registry.locate(&model)?,
        &model,
        &candle_core::Device::Cpu,
        Default::default(),
    )?;
    let mut config = AnswerConfig::default();
    if let Some(g) = gate {
        config.relevance_threshold = g.relevance;
        config.coverage_threshold = g.coverage;
        config.coverage_weight = g.weight;
    }
    // The starter knowledge base's lists without its entities (they name starter documents).
    let lexicon = match zhengwu_rag::http::RagConfig::default_lexicon_dir(std::path::Path::new("knowledge-base/policy")) {
        Some(d) => zhengwu_rag::understand::Lexicon::load(&d)?.without_entities(),
        None => zhengwu_rag::understand::Lexicon::default(),
    };
    let answerer = Answerer { kb, generator: Arc::new(engine), config, lexicon: Arc::new(lexicon) };
    let (from, n) = (args.rag_answers_from, args.rag_answers);
    let (mut contained, mut f1, mut refused) = (0.0, 0.0, 0.0);
    // Containment of the model's own text (without the 原文摘录 excerpt), and excerpts attached.
    let (mut contained_generated, mut with_excerpt) = (0.0, 0.0);
    let mut asked = 0.0;
    // Per-question answers, for reading failures (outside the project: it holds data text).
    let detail_path = std::env::temp_dir().join("zhengwu-rag-answers.jsonl");
    let mut detail = String::new();
    let (mut prefill, mut decode, mut retrieve, mut ptoks) = (0.0, 0.0, 0.0, 0usize);
    // End-to-end latency of each generated answer (retrieve + prefill + decode).
    let mut totals: Vec<f64> = Vec::new();
    for q in qa.iter().skip(from).take(n) {
        let gold = q.get("answer").and_then(|a| a.get("text")).and_then(|t| t.as_str()).unwrap_or_default();
        let ask = AskRequest { question: s(q, "question"), filter: Default::default(), stream: false, max_tokens: Some(160), history: Vec::new() };
        let plan = answerer.plan(&ask)?;
        // The sources the answer path saw and the text after each (for re-scoring excerpt rules).
        let sources: Vec<Value> = match &plan {
            Plan::Generate { sources, following, .. } => sources
                .iter()
                .zip(following)
                .map(|(h, f)| serde_json::json!({"doc_id": h.chunk.doc_id, "chunk_index": h.chunk.chunk_index, "start": h.chunk.start, "text": h.chunk.text, "following": f}))
                .collect(),
            Plan::Final(_) => Vec::new(),
        };
        let a = answerer.carry_out(&ask, plan)?;
        asked += 1.0;
        if a.kind == AnswerKind::Refusal {
            refused += 1.0;
        }
        let holds = |text: &str| !gold.is_empty() && normalise(text).contains(&normalise(gold));
        if holds(&a.answer) {
            contained += 1.0;
        }
        if holds(a.generated_text()) {
            contained_generated += 1.0;
        }
        if a.excerpt.is_some() {
            with_excerpt += 1.0;
        }
        f1 += char_f1(&a.answer, gold);
        prefill += a.timings.prefill_secs;
        decode += a.timings.decode_secs;
        retrieve += a.timings.retrieve_secs;
        if a.kind == AnswerKind::Generated {
            totals.push(a.timings.retrieve_secs + a.timings.prefill_secs + a.timings.decode_secs);
        }
        ptoks += a.timings.prompt_tokens;
        detail.push_str(&serde_json::json!({"question": s(q, "question"), "gold": gold, "gold_doc": s(q, "docid"), "answer": a.answer, "generated": a.generated_text(), "kind": a.kind, "relevance": a.relevance, "contained": holds(&a.answer), "contained_generated": holds(a.generated_text()), "excerpt": a.excerpt, "citations": a.citations, "sources": sources}).to_string());
        detail.push('\n');
        eprintln!("rag: answered {}/{n}: containment so far {:.3}", asked as usize, contained / asked);
    }
    fs_err::write(&detail_path, &detail)?;
    eprintln!("rag: per-question answers in {}", detail_path.display());
    let asked = f64::max(asked, 1.0);
    report.metric("rag.answer.containment", contained / asked);
    report.metric("rag.answer.containment_generated", contained_generated / asked);
    report.metric("rag.answer.with_excerpt", with_excerpt / asked);
    report.metric("rag.answer.char_f1", f1 / asked);
    report.metric("rag.answer.refusal_in_scope", refused / asked);
    report.metric("rag.answer.prompt_tokens_mean", ptoks as f64 / asked);
    report.metric("rag.answer.prefill_secs_mean", prefill / asked);
    report.metric("rag.answer.decode_secs_mean", decode / asked);
    report.metric("rag.answer.retrieve_secs_mean", retrieve / asked);
    if !totals.is_empty() {
        report.metric("rag.answer.total_secs_p50", percentile(&mut totals, 0.5));
        report.metric("rag.answer.total_secs_p95", percentile(&mut totals, 0.95));
    }
    // Out of scope: hotline questions of another domain (should be refused).
    let oos_path = args.data.join("dispatch/msgabench_nlu_dept.jsonl");
    let mut oos_refused = 0.0;
    let mut oos_n = 0.0;
    let mut oos_invalid = 0usize;
    // The same indices as the in-scope questions, wrapping around a shorter set.
    let mut oos_from = 0;
    if oos_path.is_file() {
        let oos = read_jsonl(&oos_path)?;
        oos_from = from % oos.len().max(1);
        for q in oos.iter().cycle().skip(oos_from).take(n.min(oos.len())) {
            let ask = AskRequest { question: s(q, "question"), filter: Default::default(), stream: false, max_tokens: Some(160), history: Vec::new() };
            let a = match answerer.ask_blocking(&ask) {
                // The answer path refuses such input with a client error (e.g. over 1000 characters).
                Err(zhengwu_rag::Error::Invalid(e)) => {
                    eprintln!("rag: out-of-scope question {} skipped: {e}", (oos_from + oos_n as usize + oos_invalid) % oos.len());
                    oos_invalid += 1;
                    continue;
                }
                r => r?,
            };
            oos_n += 1.0;
            if a.kind == AnswerKind::Refusal {
                oos_refused += 1.0;
            }
        }
        // No questions, no measurement: never a refusal rate of 0 from an empty set.
        if oos_n > 0.0 {
            report.metric("rag.refusal.out_of_scope", oos_refused / oos_n);
        }
    }
    report.section(format!(
        "## Answers\n\nModel `{model}`, questions {from}..{end} (greedy, max 160 tokens), relevance gate {gate}. Out-of-scope: {oos_count} questions of dispatch/msgabench_nlu_dept.jsonl from question {oos_from} on, wrapping around its end ({oos_refused} refused, {oos_invalid} skipped as invalid input, e.g. over 1000 characters). `containment` is measured on the answer as served (the model's text plus the 原文摘录 excerpt of the cited source it rests on, when the text does not already hold it); `containment_generated` on the model's text alone; `with_excerpt` is the share of answers with an excerpt.",
        end = from + asked as usize,
        oos_count = oos_n as usize,
        gate = match gate {
            Some(g) => format!("dense + {:.3} × coverage ≥ {:.4}, coverage ≥ {:.3} (calibrated above)", g.weight, g.relevance, g.coverage),
            None => format!("dense ≥ {} (built-in default)", answerer.config.relevance_threshold),
        }
    ));
    Ok(())
}
