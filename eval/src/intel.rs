//! Suites `classify`, `dispatch`, `callback`, `hotspots`: the trained hotline models (artifacts
//! named in models.toml) on every row of the data folder that they were not trained on.
//!
//! Rows whose text was in an artifact's training or calibration split are skipped (and counted),
//! so on `../shared/data` the numbers are held-out numbers, and on another folder with the same
//! layout every row counts.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use zhengwu_hotline::intel::artifact::{Artifact, Target};
use zhengwu_hotline::intel::callback::{CallbackChecker, Speaker, Turn};
use zhengwu_hotline::intel::data;
use zhengwu_hotline::intel::departments::Catalogue;
use zhengwu_hotline::intel::dispatch::{load_rules, Bucket, DispatchConfig, Dispatcher};
use zhengwu_hotline::intel::features::{EmbeddingCache, Featurizer, FeatureConfig};
use zhengwu_hotline::intel::hotspots::{self, HotspotConfig};
use zhengwu_hotline::intel::score;
use zhengwu_hotline::intel::tasks::Task;
use zhengwu_hotline::tickets::knowledge_file;
use zhengwu_inference::registry::Registry;
use zhengwu_inference::Embedder;

use crate::report::fmt_num;
use crate::{EvalArgs, Report};

/// The e5 embedder when an artifact needs it, shared, with the on-disk embedding cache.
pub struct Models {
    registry: Registry,
    embedder: Option<Arc<dyn Embedder>>,
    pub cache: Option<Arc<EmbeddingCache>>,
}

pub fn cache_root() -> std::path::PathBuf {
    std::env::var_os("ZHENGWU_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/zhengwu")))
        .unwrap_or_else(|| std::path::PathBuf::from(".cache"))
}

impl Models {
    pub fn new(models_toml: &Path) -> anyhow::Result<Models> {
        Ok(Models { registry: Registry::load(models_toml)?, embedder: None, cache: None })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Load (once) the named embedding model, with a file-backed embedding cache.
    pub fn embedder(&mut self, name: &str) -> anyhow::Result<Arc<dyn Embedder>> {
        if let Some(e) = &self.embedder {
            if e.model_id() == name {
                return Ok(e.clone());
            }
        }
        let path = self.registry.locate(name)?;
        let e: Arc<dyn Embedder> = Arc::new(zhengwu_inference::e5::E5Embedder::load(&path, name, &candle_core::Device::Cpu)?);
        let cache = Arc::new(EmbeddingCache::open(&cache_root().join("embcache").join(format!("{name}.bin")), e.dim())?);
        eprintln!("embedding cache: {} vectors", cache.len());
        self.cache = Some(cache);
        self.embedder = Some(e.clone());
        Ok(e)
    }

    /// A featurizer for `cfg` (with the embedder and cache when it names a model).
    pub fn featurizer(&mut self, cfg: FeatureConfig) -> anyhow::Result<Featurizer> {
        let emb = match &cfg.embedding_model {
            Some(n) => Some(self.embedder(n)?),
            None => None,
        };
        let mut f = Featurizer::new(cfg, emb)?;
        if let Some(c) = &self.cache {
            f = f.with_cache(c.clone());
        }
        Ok(f)
    }

    /// The artifact without the embedding cache (for latency measurements).
    pub fn artifact_uncached(&mut self, task: Task) -> anyhow::Result<Artifact> {
        let path = self
            .registry
            .locate(task.model_name())
            .with_context(|| format!("artifact for {}: train it with `zhengwu train {}`", task.model_name(), task.group()))?;
        let manifest = Artifact::read_manifest(&path)?;
        let emb = match &manifest.features.embedding_model {
            Some(n) => Some(self.embedder(n)?),
            None => None,
        };
        Ok(Artifact::load(&path, emb)?)
    }

    /// The trained artifact of a task, from the registry.
    pub fn artifact(&mut self, task: Task) -> anyhow::Result<Artifact> {
        let mut art = self.artifact_uncached(task)?;
        if let Some(c) = &self.cache {
            art = art.with_cache(c.clone());
        }
        Ok(art)
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// `classify`: accuracy and macro-F1 of the three classifiers.
pub fn run_classify(args: &EvalArgs) -> anyhow::Result<Report> {
    let mut models = Models::new(&args.models_toml)?;
    let chat: Option<Arc<dyn zhengwu_inference::Generator>> = if args.second_opinion > 0 {
        let name = args.models.first().cloned().unwrap_or_else(|| "qwen2.5-0.5b-instruct".into());
        let path = models.registry().locate(&name)?;
        Some(Arc::new(zhengwu_inference::llm::LlmEngine::load(&path, &name, &candle_core::Device::Cpu, Default::default())?))
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut second = String::new();
    let mut report = Report::new("Ticket classification (request type, category, domain)");
    let mut md = String::from("## Classifiers\n\nEvaluated on every row of the data folder that the artifact did not train or calibrate on.\n\n| model | rows evaluated | skipped (seen in training) | accuracy | macro-F1 | dev accuracy at training | seconds |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (task, metric) in [
        (Task::ClassifyTeddy, "classify.teddy"),
        (Task::ClassifyMsgabenchType, "classify.msgabench_type"),
        (Task::ClassifyMsgabenchDomain, "classify.msgabench_domain"),
    ] {
        let t0 = Instant::now();
        let art = models.artifact(task)?;
        let loaded = task.load(&args.data, None)?;
        let rows: Vec<_> = loaded.examples.iter().filter(|e| !art.seen(&e.text)).collect();
        let skipped = loaded.examples.len() - rows.len();
        if rows.is_empty() {
            md.push_str(&format!("| {} | 0 | {skipped} | – | – | – | – |\n", task.model_name()));
            continue;
        }
        let texts: Vec<&str> = rows.iter().map(|e| e.text.as_str()).collect();
        let labels = art.labels().to_vec();
        let k = labels.len();
        let mut pred = Vec::new();
        let mut ranked = Vec::new();
        for chunk in texts.chunks(256) {
            for r in art.classify(chunk)? {
                pred.push(labels.iter().position(|l| *l == r[0].label).unwrap_or(k));
                ranked.push(r);
            }
        }
        let gold: Vec<usize> = rows
            .iter()
            .map(|e| match &e.target {
                Target::Class(c) => labels.iter().position(|l| l == c).unwrap_or(k),
                Target::Values(_) => k,
            })
            .collect();
        if let Some(g) = &chat {
            // The server's second opinion on the unsure rows: does it help?
            let unsure: Vec<usize> = (0..rows.len()).filter(|&i| ranked[i][0].confidence < 0.5).take(args.second_opinion).collect();
            let (mut model_right, mut llm_right, mut answered) = (0usize, 0usize, 0usize);
            for &i in &unsure {
                let top: Vec<_> = ranked[i].iter().take(3).cloned().collect();
                let (pick, _raw) = rt.block_on(zhengwu_hotline::intel::http::llm_pick(g.clone(), texts[i], &top)).map_err(|e| anyhow::anyhow!(e))?;
                let chosen = pick.map(|p| top[p].label.clone()).unwrap_or_else(|| top[0].label.clone());
                answered += usize::from(pick.is_some());
                model_right += usize::from(pred[i] == gold[i]);
                llm_right += usize::from(labels.iter().position(|l| *l == chosen).unwrap_or(k) == gold[i]);
            }
            let n = unsure.len().max(1) as f64;
            report.metric(format!("{metric}.second_opinion.rows"), unsure.len() as f64);
            report.metric(format!("{metric}.second_opinion.classifier_accuracy"), model_right as f64 / n);
            report.metric(format!("{metric}.second_opinion.llm_accuracy"), llm_right as f64 / n);
            second.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                task.model_name(),
                unsure.len(),
                answered,
                pct(model_right as f64 / n),
                pct(llm_right as f64 / n)
            ));
        }
        let acc = score::accuracy(&gold, &pred);
        let f1 = score::macro_f1(&gold, &pred, k + 1);
        report.metric(format!("{metric}.accuracy"), acc);
        report.metric(format!("{metric}.macro_f1"), f1);
        report.metric(format!("{metric}.rows"), rows.len() as f64);
        let dev = art.manifest.metrics.get("dev.accuracy").copied().map(pct).unwrap_or_else(|| "–".into());
        md.push_str(&format!(
            "| {} | {} | {skipped} | {} | {} | {dev} | {:.0} |\n",
            task.model_name(),
            rows.len(),
            pct(acc),
            pct(f1),
            t0.elapsed().as_secs_f64()
        ));
        eprintln!("{metric}: accuracy {acc:.3} macro-F1 {f1:.3} on {} rows", rows.len());
    }
    md.push_str(&crate::classify_cv::teddy_cross_validation(&mut models, &args.data, &mut report)?);
    if !second.is_empty() {
        md.push_str(&format!(
            "\n### Chat-model second opinion on unsure rows (top class < 0.5)\n\nThe chat model ({}) picks among the classifier's top 3, as `/api/classify` does.\n\n| model | unsure rows asked | answered with a valid pick | classifier right | with the chat model's pick |\n|---|---:|---:|---:|---:|\n{second}",
            chat.as_ref().map(|g| g.model_id().to_string()).unwrap_or_default()
        ));
    }
    report.section(md);
    Ok(report)
}

/// `dispatch`: top-1/top-3, coverage and accuracy of automatic dispatch.
pub fn run_dispatch(args: &EvalArgs) -> anyhow::Result<Report> {
    let mut models = Models::new(&args.models_toml)?;
    let catalogue = Arc::new(Catalogue::load(&knowledge_file("departments.toml").context("knowledge-base/departments.toml not found")?)?);
    let rules = load_rules(&knowledge_file("dispatch_rules.toml").context("knowledge-base/dispatch_rules.toml not found")?, &catalogue)?;
    let art = Arc::new(models.artifact(Task::Dispatch)?);
    let loaded = Task::Dispatch.load(&args.data, Some(&catalogue))?;
    let rows: Vec<_> = loaded.examples.iter().filter(|e| !art.seen(&e.text)).collect();
    let skipped = loaded.examples.len() - rows.len();
    anyhow::ensure!(!rows.is_empty(), "no unseen dispatch rows under {}", args.data.display());
    let texts: Vec<&str> = rows.iter().map(|e| e.text.as_str()).collect();
    let gold: Vec<&str> = rows.iter().map(|e| if let Target::Class(c) = &e.target { c.as_str() } else { "" }).collect();
    let config = DispatchConfig::default();
    let mut report = Report::new("Dispatch (分流派发)");
    let mut md = format!(
        "## Dispatch\n\n{} unseen rows ({skipped} skipped as training/calibration rows, {} data rows skipped: unknown department or empty). Auto threshold {}, review threshold {}.\n\n| dispatcher | top-1 | top-3 | auto coverage | accuracy on auto | review share | human share |\n|---|---:|---:|---:|---:|---:|---:|\n",
        rows.len(),
        loaded.skipped,
        config.auto_threshold,
        config.review_threshold
    );
    let mut curve = String::new();
    let mut rules_line = String::new();
    for (label, with_rules, prefix) in [("rules + model + keywords (deployed)", true, "dispatch"), ("model + keywords, no rules", false, "dispatch.no_rules")] {
        let d = Dispatcher::new(catalogue.clone(), if with_rules { rules.clone() } else { Vec::new() }, Some(art.clone()), config.clone())?;
        let mut sugg = Vec::new();
        for chunk in texts.chunks(256) {
            sugg.extend(d.suggest_many(chunk, &[], &vec![Vec::new(); chunk.len()])?);
        }
        let n = rows.len() as f64;
        let top1 = sugg.iter().zip(&gold).filter(|(s, g)| s.lead.as_ref().is_some_and(|l| l.dept == **g)).count() as f64 / n;
        let top3 = sugg.iter().zip(&gold).filter(|(s, g)| s.candidates.iter().take(3).any(|c| c.dept == **g)).count() as f64 / n;
        let auto: Vec<bool> = sugg.iter().map(|s| s.bucket == Bucket::Auto).collect();
        let n_auto = auto.iter().filter(|a| **a).count();
        let right_auto = sugg.iter().zip(&gold).zip(&auto).filter(|((s, g), a)| **a && s.lead.as_ref().is_some_and(|l| l.dept == **g)).count();
        let review = sugg.iter().filter(|s| s.bucket == Bucket::Review).count() as f64 / n;
        let human = sugg.iter().filter(|s| s.bucket == Bucket::Human).count() as f64 / n;
        let coverage = n_auto as f64 / n;
        let auto_acc = if n_auto > 0 { right_auto as f64 / n_auto as f64 } else { 0.0 };
        report.metric(format!("{prefix}.top1"), top1);
        report.metric(format!("{prefix}.top3"), top3);
        report.metric(format!("{prefix}.coverage"), coverage);
        report.metric(format!("{prefix}.auto_accuracy"), auto_acc);
        md.push_str(&format!("| {label} | {} | {} | {} | {} | {} | {} |\n", pct(top1), pct(top3), pct(coverage), pct(auto_acc), pct(review), pct(human)));
        if with_rules {
            let fired = sugg.iter().filter(|s| s.decided_by == "rule").count();
            let fired_right = sugg.iter().zip(&gold).filter(|(s, g)| s.decided_by == "rule" && s.lead.as_ref().is_some_and(|l| l.dept == **g)).count();
            report.metric("dispatch.rules_fired", fired as f64 / n);
            report.metric("dispatch.rules_accuracy", if fired > 0 { fired_right as f64 / fired as f64 } else { 0.0 });
            // Coverage/accuracy trade-off over the auto threshold.
            curve.push_str("\n### Auto threshold trade-off (deployed dispatcher)\n\n| threshold | coverage | accuracy on auto |\n|---:|---:|---:|\n");
            for th in [0.5f32, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95] {
                let sel: Vec<usize> = (0..sugg.len()).filter(|&i| sugg[i].lead.as_ref().is_some_and(|l| l.confidence >= th)).collect();
                let right = sel.iter().filter(|&&i| sugg[i].lead.as_ref().is_some_and(|l| l.dept == gold[i])).count();
                curve.push_str(&format!(
                    "| {th} | {} | {} |\n",
                    pct(sel.len() as f64 / n),
                    if sel.is_empty() { "–".into() } else { pct(right as f64 / sel.len() as f64) }
                ));
            }
            rules_line = format!("\nRules decided {} of rows and were right on {} of those.\n", pct(fired as f64 / n), if fired > 0 { pct(fired_right as f64 / fired as f64) } else { "–".into() });
        }
    }
    md.push_str(&rules_line);
    md.push_str(&curve);
    report.section(md);
    realistic_dispatch(&mut report, &catalogue, &rules, &art, &texts, &gold)?;
    citizen_request_departments(&mut report, &catalogue, &rules, &art)?;
    if let Some(out) = &args.dispatch_dump {
        let e5 = models.embedder("multilingual-e5-small")?;
        dump_dispatch_evidence(out, &catalogue, &rules, &art, e5.as_ref(), &texts, &gold)?;
    }
    Ok(report)
}

/// `dispatch.citizen_requests.*`: the department of the service requests in the citizen chat set
/// (`eval/sets/citizen.jsonl`, kind `service_request`), which `/api/ask` drafts as tickets: the
/// same dispatcher, on messages written for another purpose.
fn citizen_request_departments(
    report: &mut Report,
    catalogue: &Arc<Catalogue>,
    rules: &[zhengwu_hotline::intel::dispatch::Rule],
    art: &Arc<Artifact>,
) -> anyhow::Result<()> {
    let Some(path) = crate::citizen::set_path() else { return Ok(()) };
    let d = Dispatcher::new(catalogue.clone(), rules.to_vec(), Some(art.clone()), DispatchConfig::default())?;
    let mut md = String::from("## Service requests of the citizen chat set\n\nThe `service_request` messages of `eval/sets/citizen.jsonl` with their expected department, through the deployed dispatcher (what `/api/ask` puts in a drafted ticket).\n\n| part | requests | top-1 | automatic | accuracy on automatic |\n|---|---:|---:|---:|---:|\n");
    for part in ["dev", "report"] {
        let mut rows: Vec<(String, String)> = Vec::new();
        for l in fs_err::read_to_string(&path)?.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(l)?;
            if v["kind"] == "service_request" && v["split"] == part {
                if let (Some(q), Some(dept)) = (v["question"].as_str(), v["department"].as_str()) {
                    rows.push((q.to_string(), dept.to_string()));
                }
            }
        }
        if rows.is_empty() {
            continue;
        }
        let texts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let sugg = d.suggest_many(&texts, &[], &vec![Vec::new(); texts.len()])?;
        let right = |i: usize| sugg[i].lead.as_ref().is_some_and(|l| l.dept == rows[i].1);
        let n = rows.len() as f64;
        let top1 = (0..rows.len()).filter(|&i| right(i)).count() as f64 / n;
        let auto: Vec<usize> = (0..rows.len()).filter(|&i| sugg[i].bucket == Bucket::Auto).collect();
        let auto_acc = if auto.is_empty() { 0.0 } else { auto.iter().filter(|&&i| right(i)).count() as f64 / auto.len() as f64 };
        let name = |m: &str| if part == "report" { format!("dispatch.citizen_requests.{m}") } else { format!("dispatch.citizen_requests.dev.{m}") };
        report.metric(name("top1"), top1);
        report.metric(name("coverage"), auto.len() as f64 / n);
        report.metric(name("auto_accuracy"), auto_acc);
        md.push_str(&format!("| {part} | {} | {} | {} | {} |\n", rows.len(), pct(top1), pct(auto.len() as f64 / n), if auto.is_empty() { "–".into() } else { pct(auto_acc) }));
    }
    report.section(md);
    Ok(())
}

/// Every row's evidence, one JSON object per line: `id`, `split` (`msga`, `dev` or `report`),
/// `gold`, `text`, `rule` (lead of the first matching rule), `model` and `duty` (top 5 as
/// `[dept, probability]`), `keywords` (`[dept, score]`).
fn dump_dispatch_evidence(
    out: &Path,
    catalogue: &Catalogue,
    rules: &[zhengwu_hotline::intel::dispatch::Rule],
    art: &Artifact,
    e5: &dyn Embedder,
    msga_texts: &[&str],
    msga_gold: &[&str],
) -> anyhow::Result<()> {
    // The written examples, embedded, for a nearest-examples voice (`e5`: per department the
    // best cosine similarity of the row to one of its examples).
    let examples_dir = knowledge_file("dispatch_examples").context("knowledge-base/dispatch_examples not found")?;
    let examples = zhengwu_hotline::intel::duty::read_examples(&examples_dir)?;
    let ex_texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let ex_vecs = zhengwu_hotline::intel::features::embed_truncated(e5, &ex_texts, 200)?;
    let mut rows: Vec<(String, String, String, String)> = msga_texts.iter().zip(msga_gold).enumerate().map(|(i, (t, g))| (format!("msga-{i}"), "msga".into(), g.to_string(), t.to_string())).collect();
    for r in read_realistic_set()?.unwrap_or_default() {
        rows.push((r.id, r.split, r.dept, r.text));
    }
    let texts: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    let mut model = Vec::new();
    for chunk in texts.chunks(256) {
        model.extend(art.classify(chunk)?);
    }
    let row_vecs = zhengwu_hotline::intel::features::embed_truncated(e5, &texts, 200)?;
    let mut f = std::io::BufWriter::new(fs_err::File::create(out)?);
    for (i, (id, split, gold, text)) in rows.iter().enumerate() {
        let mut best: std::collections::HashMap<&str, f32> = std::collections::HashMap::new();
        for (e, v) in examples.iter().zip(&ex_vecs) {
            let cos: f32 = v.iter().zip(&row_vecs[i]).map(|(a, b)| a * b).sum();
            let b = best.entry(e.dept.as_str()).or_insert(f32::MIN);
            *b = b.max(cos);
        }
        let mut e5_top: Vec<(String, f32)> = best.into_iter().map(|(d, c)| (d.to_string(), c)).collect();
        e5_top.sort_by(|a, b| b.1.total_cmp(&a.1));
        e5_top.truncate(8);
        let rule = rules.iter().find(|r| r.matches(text).is_some()).map(|r| r.lead.clone());
        let duty: Vec<(String, f32)> = catalogue.duty_model().map(|m| m.predict(text).into_iter().take(5).map(|s| (s.dept, s.probability)).collect()).unwrap_or_default();
        let m: Vec<(String, f32)> = model[i].iter().take(5).map(|r| (r.label.clone(), r.confidence)).collect();
        let kw: Vec<(String, f32)> = catalogue.keyword_hits(text).into_iter().map(|h| (h.dept, h.score)).collect();
        let line = serde_json::json!({"id": id, "split": split, "gold": gold, "text": text, "rule": rule, "model": m, "duty": duty, "keywords": kw, "e5": e5_top});
        std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes())?;
    }
    std::io::Write::flush(&mut f)?;
    Ok(())
}

/// One request of the written dispatch set (`eval/sets/dispatch_realistic.jsonl`).
#[derive(serde::Deserialize)]
struct RealisticRequest {
    id: String,
    text: String,
    dept: String,
    matter: String,
    split: String,
}

/// The written set of requests in citizens' own words (eval/sets/ in the checkout).
fn realistic_set_path() -> Option<std::path::PathBuf> {
    let local = Path::new("eval/sets/dispatch_realistic.jsonl");
    if local.exists() {
        return Some(local.to_path_buf());
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("sets/dispatch_realistic.jsonl");
    built.exists().then_some(built)
}

/// The written dispatch set, every line parsed (`None` when the file is not there).
fn read_realistic_set() -> anyhow::Result<Option<Vec<RealisticRequest>>> {
    let Some(path) = realistic_set_path() else { return Ok(None) };
    let text = fs_err::read_to_string(&path)?;
    let set = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1)))
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(set))
}

/// Expected calibration error of `(confidence, right)` over 10 equal-width bins, and the bins
/// as (low, high, count, mean confidence, accuracy).
fn calibration(points: &[(f32, bool)]) -> (f64, Vec<(f64, f64, usize, f64, f64)>) {
    let n = points.len().max(1) as f64;
    let mut bins = Vec::new();
    let mut ece = 0.0;
    for b in 0..10 {
        let (lo, hi) = (b as f64 / 10.0, (b + 1) as f64 / 10.0);
        let inside: Vec<&(f32, bool)> = points.iter().filter(|(c, _)| { let c = *c as f64; c >= lo && (c < hi || (b == 9 && c <= hi)) }).collect();
        if inside.is_empty() {
            continue;
        }
        let conf = inside.iter().map(|(c, _)| *c as f64).sum::<f64>() / inside.len() as f64;
        let acc = inside.iter().filter(|(_, r)| *r).count() as f64 / inside.len() as f64;
        ece += inside.len() as f64 / n * (conf - acc).abs();
        bins.push((lo, hi, inside.len(), conf, acc));
    }
    (ece, bins)
}

/// `dispatch.realistic.*`: the written requests (dev and report parts), with the deployed
/// dispatcher and with the duty match off (the dispatcher as it was before it learned the duties), plus a reliability
/// table of the lead's confidence on the report part.
fn realistic_dispatch(
    report: &mut Report,
    catalogue: &Arc<Catalogue>,
    rules: &[zhengwu_hotline::intel::dispatch::Rule],
    art: &Arc<Artifact>,
    msga_texts: &[&str],
    msga_gold: &[&str],
) -> anyhow::Result<()> {
    let Some(set) = read_realistic_set()? else {
        report.section("## Realistic requests\n\neval/sets/dispatch_realistic.jsonl not found: not measured.\n");
        return Ok(());
    };
    for r in &set {
        anyhow::ensure!(catalogue.get(&r.dept).is_some(), "{}: department {} is not in the catalogue", r.id, r.dept);
    }
    let mut md = format!(
        "## Realistic requests\n\n{} requests written for this project in citizens' own words ({} kinds of matter), each with the department the starter catalogue gives it; `dev` rows were looked at while changing the dispatcher, `report` rows were not.\n\n| dispatcher | part | rows | top-1 | top-3 | auto coverage | accuracy on auto | ECE |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
        set.len(),
        set.iter().map(|r| r.matter.as_str()).collect::<std::collections::BTreeSet<_>>().len()
    );
    let mut reliability = String::new();
    let mut misses = String::new();
    let mut sweep = String::from("\n### Settings (chosen on the dev part and MSGABench; the report part was not used to choose)\n\n| setting | dev top-1 | dev auto coverage | dev accuracy on auto | MSGABench top-1 | MSGABench auto coverage | MSGABench accuracy on auto |\n|---|---:|---:|---:|---:|---:|---:|\n");
    let deployed = DispatchConfig::default();
    // The catalogue without its written requests: keywords and duties only, no duty model.
    let bare = Arc::new(Catalogue::parse(&fs_err::read_to_string(knowledge_file("departments.toml").context("knowledge-base/departments.toml not found")?)?).map_err(|e| anyhow::anyhow!(e))?);
    // The calibration refit on the dev part (a deployment that edits its written requests or
    // its catalogue refits here and copies the numbers into `[dispatch] calibration`).
    let refit = {
        let d = Dispatcher::new(catalogue.clone(), rules.to_vec(), Some(art.clone()), deployed.clone())?;
        let dev: Vec<&RealisticRequest> = set.iter().filter(|r| r.split == "dev").collect();
        let texts: Vec<&str> = dev.iter().map(|r| r.text.as_str()).collect();
        let sugg = d.suggest_many(&texts, &[], &vec![Vec::new(); texts.len()])?;
        let points: Vec<(zhengwu_hotline::intel::dispatch::BlendEvidence, bool)> =
            sugg.iter().zip(&dev).filter_map(|(s, r)| s.blend.map(|e| (e, s.lead.as_ref().is_some_and(|l| l.dept == r.dept)))).collect();
        zhengwu_hotline::intel::dispatch::fit_calibration(&points)
    };
    report.section(format!(
        "## Calibration of blended leads\n\nDeployed `[dispatch] calibration` = {:?}; refit on the dev part now = [{}].\n",
        deployed.calibration,
        refit.iter().map(|c| format!("{c:.2}")).collect::<Vec<_>>().join(", ")
    ));
    let mut variants: Vec<(String, Arc<Catalogue>, DispatchConfig, Option<String>)> = vec![
        (format!("deployed (duty model on {} written requests)", catalogue.duty_model().map_or(0, |m| m.examples())), catalogue.clone(), deployed.clone(), Some("dispatch.realistic".into())),
        ("calibration refit on the dev part".into(), catalogue.clone(), DispatchConfig { calibration: refit, ..deployed.clone() }, Some("dispatch.realistic.refit".into())),
        ("without the duty model".into(), bare, deployed.clone(), Some("dispatch.realistic.no_duty_model".into())),
    ];
    // The sweep the deployed values were chosen from (on the dev part and MSGABench only).
    for trusted in [0.9f32, 0.95, 0.97, 0.99, 2.0] {
        for veto in [0.6f32, 0.7, 0.8, 1.0] {
            for auto in [0.75f32, 0.8, 0.85] {
                variants.push((
                    format!("sweep: model alone from {trusted}, model veto from {veto}, auto from {auto}"),
                    catalogue.clone(),
                    DispatchConfig { model_trusted_from: trusted, model_veto_from: veto, auto_threshold: auto, ..deployed.clone() },
                    None,
                ));
            }
        }
    }
    for (label, catalogue, config, prefix) in &variants {
        let duty = prefix.as_deref() == Some("dispatch.realistic");
        let prefix = prefix.clone().unwrap_or_default();
        let d = Dispatcher::new(catalogue.clone(), rules.to_vec(), Some(art.clone()), config.clone())?;
        let mut msga = Vec::new();
        for chunk in msga_texts.chunks(256) {
            msga.extend(d.suggest_many(chunk, &[], &vec![Vec::new(); chunk.len()])?);
        }
        let m_n = msga.len().max(1) as f64;
        let m_right = |i: usize| msga[i].lead.as_ref().is_some_and(|l| l.dept == msga_gold[i]);
        let m_auto: Vec<usize> = (0..msga.len()).filter(|&i| msga[i].bucket == Bucket::Auto).collect();
        let m_top1 = (0..msga.len()).filter(|&i| m_right(i)).count() as f64 / m_n;
        let m_cov = m_auto.len() as f64 / m_n;
        let m_acc = if m_auto.is_empty() { 0.0 } else { m_auto.iter().filter(|&&i| m_right(i)).count() as f64 / m_auto.len() as f64 };
        let mut dev_cells = String::new();
        for part in ["dev", "report"] {
            // Settings are chosen on the dev part: the sweep never reads the report part.
            if prefix.is_empty() && part == "report" {
                continue;
            }
            let rows: Vec<&RealisticRequest> = set.iter().filter(|r| r.split == part).collect();
            if rows.is_empty() {
                continue;
            }
            let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
            let sugg = d.suggest_many(&texts, &[], &vec![Vec::new(); texts.len()])?;
            let n = rows.len() as f64;
            let right = |i: usize| sugg[i].lead.as_ref().is_some_and(|l| l.dept == rows[i].dept);
            let top1 = (0..rows.len()).filter(|&i| right(i)).count() as f64 / n;
            let top3 = (0..rows.len()).filter(|&i| sugg[i].candidates.iter().take(3).any(|c| c.dept == rows[i].dept)).count() as f64 / n;
            let auto: Vec<usize> = (0..rows.len()).filter(|&i| sugg[i].bucket == Bucket::Auto).collect();
            let coverage = auto.len() as f64 / n;
            let auto_acc = if auto.is_empty() { 0.0 } else { auto.iter().filter(|&&i| right(i)).count() as f64 / auto.len() as f64 };
            let points: Vec<(f32, bool)> = (0..rows.len()).map(|i| (sugg[i].lead.as_ref().map_or(0.0, |l| l.confidence), right(i))).collect();
            let (ece, bins) = calibration(&points);
            let name = |m: &str| if part == "report" { format!("{prefix}.{m}") } else { format!("{prefix}.dev.{m}") };
            if !prefix.is_empty() {
                report.metric(name("top1"), top1);
                report.metric(name("top3"), top3);
                report.metric(name("coverage"), coverage);
                report.metric(name("auto_accuracy"), auto_acc);
                report.metric(name("ece"), ece);
            }
            if !prefix.is_empty() {
                md.push_str(&format!("| {label} | {part} | {} | {} | {} | {} | {} | {:.3} |\n", rows.len(), pct(top1), pct(top3), pct(coverage), if auto.is_empty() { "–".into() } else { pct(auto_acc) }, ece));
            }
            if part == "dev" {
                dev_cells = format!("{} | {} | {}", pct(top1), pct(coverage), if auto.is_empty() { "–".into() } else { pct(auto_acc) });
            }
            if duty && part == "report" {
                reliability.push_str("\n### Reliability of the lead's confidence (deployed, report part)\n\n| confidence | rows | mean confidence | accuracy |\n|---|---:|---:|---:|\n");
                for (lo, hi, k, conf, acc) in bins {
                    reliability.push_str(&format!("| {lo:.1}-{hi:.1} | {k} | {conf:.2} | {} |\n", pct(acc)));
                }
                misses.push_str("\n### Misses on the report part (deployed)\n\n| id | matter | expected | lead | confidence | bucket | decided by |\n|---|---|---|---|---:|---|---|\n");
                for i in (0..rows.len()).filter(|&i| !right(i)) {
                    let lead = sugg[i].lead.as_ref();
                    misses.push_str(&format!(
                        "| {} | {} | {} | {} | {} | {} | {} |\n",
                        rows[i].id,
                        rows[i].matter,
                        rows[i].dept,
                        lead.map_or("–", |l| l.dept.as_str()),
                        lead.map_or("–".into(), |l| format!("{:.2}", l.confidence)),
                        sugg[i].bucket.as_str(),
                        sugg[i].decided_by
                    ));
                }
            }
        }
        sweep.push_str(&format!("| {label} | {dev_cells} | {} | {} | {} |\n", pct(m_top1), pct(m_cov), pct(m_acc)));
    }
    md.push_str(&sweep);
    md.push_str(&reliability);
    md.push_str(&misses);
    report.section(md);
    Ok(())
}

/// `callback`: agreement with the STC-3 annotators.
pub fn run_callback(args: &EvalArgs) -> anyhow::Result<Report> {
    let mut models = Models::new(&args.models_toml)?;
    let art = Arc::new(models.artifact(Task::Callback)?);
    let (dialogues, bad) = data::stc3(&args.data)?;
    let rows: Vec<_> = dialogues.iter().filter(|d| !art.seen(&d.model_text())).collect();
    let skipped = dialogues.len() - rows.len();
    anyhow::ensure!(!rows.is_empty(), "no unseen dialogues under {}", args.data.display());
    let checker = CallbackChecker::load(knowledge_file("callback_phrases.toml").as_deref())?;
    let convs: Vec<Vec<Turn>> = rows
        .iter()
        .map(|d| d.turns.iter().map(|(s, t)| Turn { speaker: if s == "customer" { Speaker::Citizen } else { Speaker::Agent }, text: t.clone() }).collect())
        .collect();
    let mut assessed = Vec::new();
    for chunk in convs.chunks(256) {
        assessed.extend(checker.assess_many(chunk, Some(art.as_ref()))?);
    }
    let gold_a: Vec<f64> = rows.iter().map(|d| f64::from(d.mean_a)).collect();
    let gold_s: Vec<f64> = rows.iter().map(|d| f64::from(d.mean_s)).collect();
    let pred_a: Vec<f64> = assessed.iter().map(|a| a.model.as_ref().map(|m| f64::from(m.accomplished)).unwrap_or(0.0)).collect();
    let pred_s: Vec<f64> = assessed.iter().map(|a| a.model.as_ref().map(|m| f64::from(m.satisfaction)).unwrap_or(0.0)).collect();
    // The product's verdict (rule when the citizen says it, else model) as a sign of A.
    let verdict: Vec<f64> = assessed.iter().map(|a| match a.solved.value { Some(true) => 1.0, Some(false) => -1.0, None => 0.0 }).collect();
    let sign = |g: &[f64], p: &[f64]| -> f64 {
        g.iter().zip(p).filter(|(g, p)| (**g > 0.0) == (**p > 0.0)).count() as f64 / g.len() as f64
    };
    let by_rule: Vec<usize> = (0..rows.len()).filter(|&i| assessed[i].solved.source == "rule").collect();
    let rule_acc = if by_rule.is_empty() { 0.0 } else { by_rule.iter().filter(|&&i| (gold_a[i] > 0.0) == (verdict[i] > 0.0)).count() as f64 / by_rule.len() as f64 };
    let majority = {
        let pos = gold_a.iter().filter(|g| **g > 0.0).count() as f64 / gold_a.len() as f64;
        pos.max(1.0 - pos)
    };
    let mut report = Report::new("Callback quality (回访) against STC-3 annotators");
    report.metric("callback.sign_accuracy", sign(&gold_a, &verdict));
    report.metric("callback.model_sign_accuracy_a", sign(&gold_a, &pred_a));
    report.metric("callback.sign_accuracy_s", sign(&gold_s, &pred_s));
    report.metric("callback.spearman_s", score::spearman(&gold_s, &pred_s));
    report.metric("callback.spearman_a", score::spearman(&gold_a, &pred_a));
    report.metric("callback.rule_coverage", by_rule.len() as f64 / rows.len() as f64);
    report.metric("callback.rule_sign_accuracy", rule_acc);
    report.metric("callback.majority_baseline", majority);
    report.section(format!(
        "## Callback\n\n{} unseen dialogues ({skipped} skipped as training/calibration rows, {bad} unreadable). \
`callback.sign_accuracy`: does the product's solved/not-solved verdict (the citizen's own words when the phrase rules find them, \
else the model) agree with the sign of the annotators' mean A (task accomplished, > 0)? Majority-class baseline {}. \
`callback.spearman_s`: Spearman between the model's satisfaction estimate and the annotators' mean S. \
Phrase rules decided {} of dialogues, with sign accuracy {} on those.\n",
        rows.len(),
        pct(majority),
        pct(by_rule.len() as f64 / rows.len() as f64),
        pct(rule_acc)
    ));
    Ok(report)
}

/// `hotspots`: clusters of the messages-with-votes file.
pub fn run_hotspots(args: &EvalArgs) -> anyhow::Result<Report> {
    let mut models = Models::new(&args.models_toml)?;
    let path = args.data.join(data::VOTES);
    let rows = data::read_jsonl(&path)?;
    let fz = models.featurizer(FeatureConfig { ngram_buckets: 4096, embedding_model: Some("multilingual-e5-small".into()), embedding_dim: 384, ..FeatureConfig::default() })?;
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    let mut times = Vec::new();
    let mut weights = Vec::new();
    for (_, m) in &rows {
        let title = m.get("title").and_then(|v| v.as_str()).unwrap_or("");
        let detail = m.get("detail").and_then(|v| v.as_str()).unwrap_or("");
        let time = m.get("time").and_then(|v| v.as_str()).unwrap_or("");
        let Ok(t) = chrono::NaiveDateTime::parse_from_str(time, "%Y/%m/%d %H:%M:%S") else { continue };
        ids.push(m.get("id").map(|v| v.to_string()).unwrap_or_default());
        texts.push(format!("{title}\n{detail}"));
        times.push(t.and_utc() - chrono::Duration::hours(8));
        weights.push(m.get("likes").and_then(|v| v.as_f64()).unwrap_or(0.0) + m.get("dislikes").and_then(|v| v.as_f64()).unwrap_or(0.0));
    }
    anyhow::ensure!(!texts.is_empty(), "no dated messages in {}", path.display());
    let t0 = Instant::now();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut vectors = Vec::new();
    for chunk in refs.chunks(256) {
        let x = fz.features(chunk)?;
        vectors.extend(x.chunks(fz.dim()).map(<[f32]>::to_vec));
        eprintln!("hotspots: embedded {}/{}", vectors.len(), refs.len());
    }
    let embed_s = t0.elapsed().as_secs_f64();
    // Districts as the messages write them (A1区 … A9区).
    let district = |t: &str| -> Option<String> {
        let i = t.find('A')?;
        let rest = &t[i..];
        let end = rest.find('区')?;
        (end <= 4).then(|| rest[..end + '区'.len_utf8()].to_string())
    };
    let items: Vec<hotspots::Item> = (0..texts.len())
        .map(|i| hotspots::Item { id: ids[i].clone(), at: times[i], district: district(&texts[i]), weight: weights[i], vector: vectors[i].clone() })
        .collect();
    let now = times.iter().max().copied().unwrap_or_else(chrono::Utc::now);
    let cfg = HotspotConfig { idf_prefix: 4096, ..HotspotConfig::default() };
    let mut sweep = String::from("\n### Similarity threshold sweep\n\n| threshold | clusters | clusters ≥ 2 | largest | share in clusters ≥ 2 | mean cohesion of clusters ≥ 2 |\n|---:|---:|---:|---:|---:|---:|\n");
    for th in [0.4f32, 0.5, 0.6, 0.7, 0.8] {
        let c = hotspots::cluster(&items, &HotspotConfig { similarity: th, ..cfg.clone() }, now);
        let multi: Vec<_> = c.iter().filter(|x| x.size >= 2).collect();
        let share = multi.iter().map(|x| x.size).sum::<u64>() as f64 / items.len() as f64;
        let coh = multi.iter().map(|x| f64::from(x.cohesion)).sum::<f64>() / multi.len().max(1) as f64;
        sweep.push_str(&format!("| {th} | {} | {} | {} | {} | {:.3} |\n", c.len(), multi.len(), c.iter().map(|x| x.size).max().unwrap_or(0), pct(share), coh));
    }
    let t1 = Instant::now();
    let clusters = hotspots::cluster(&items, &cfg, now);
    let cluster_s = t1.elapsed().as_secs_f64();
    let multi = clusters.iter().filter(|c| c.size >= 2).count();
    let in_multi: u64 = clusters.iter().filter(|c| c.size >= 2).map(|c| c.size).sum();
    let mut report = Report::new("Hot spots (热点) on the messages-with-votes file");
    report.metric("hotspots.messages", items.len() as f64);
    report.metric("hotspots.clusters", clusters.len() as f64);
    report.metric("hotspots.clusters_2plus", multi as f64);
    report.metric("hotspots.share_in_2plus", in_multi as f64 / items.len() as f64);
    report.metric("hotspots.bursts", clusters.iter().filter(|c| c.burst).count() as f64);
    report.metric("hotspots.embed_seconds", embed_s);
    report.metric("hotspots.cluster_seconds", cluster_s);
    let mut md = format!(
        "## Top clusters\n\nLeader clustering of n-gram + e5 vectors (mean of lexical and semantic cosine ≥ {}), recent window {} days ending at the newest message ({}), baseline {} days. Representative = message id of the member nearest the centroid (texts stay in the data folder).\n\n| # | size | votes | heat | representative id | first | last | districts | recent | burst z | cohesion |\n|---:|---:|---:|---:|---|---|---|---|---:|---:|---:|\n",
        cfg.similarity,
        cfg.window_days,
        now.format("%Y-%m-%d"),
        cfg.baseline_days
    );
    for (i, c) in clusters.iter().take(15).enumerate() {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |\n",
            i + 1,
            c.size,
            c.weight,
            fmt_num(c.heat),
            c.representative,
            c.first.format("%Y-%m-%d"),
            c.last.format("%Y-%m-%d"),
            c.districts.iter().take(4).cloned().collect::<Vec<_>>().join(" "),
            c.recent,
            fmt_num(c.burst_z),
            c.cohesion
        ));
    }
    md.push_str(&sweep);
    report.section(md);
    if let Some(out) = &args.out {
        // Representative texts for a person to read, next to the report (not committed).
        let mut txt = String::new();
        for c in clusters.iter().take(15) {
            if let Some(i) = ids.iter().position(|x| *x == c.representative) {
                txt.push_str(&format!("[{} msgs, {} votes] {}\n", c.size, c.weight, texts[i].replace('\n', " ").chars().take(120).collect::<String>()));
            }
        }
        fs_err::create_dir_all(out)?;
        fs_err::write(out.join("representatives.txt"), txt)?;
    }
    Ok(report)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// `copilot`: latency of one co-pilot update (knowledge search, classification, form filling,
/// dispatch) as a call's transcript grows, in process (no HTTP), on messages of the data folder.
pub fn run_copilot(args: &EvalArgs) -> anyhow::Result<Report> {
    use zhengwu_hotline::intel::form::FormFiller;
    use zhengwu_hotline::tickets::model::Channel;
    let mut models = Models::new(&args.models_toml)?;
    // As in the server: the models share one bounded in-memory embedding cache (nothing from
    // earlier runs), so an update embeds its text once, and not again while its first 128
    // characters stay the same.
    let shared = Arc::new(zhengwu_hotline::intel::features::EmbeddingCache::bounded(384, 4096));
    let type_m = models.artifact_uncached(Task::ClassifyMsgabenchType)?.with_cache(shared.clone());
    let cat_m = models.artifact_uncached(Task::ClassifyTeddy)?.with_cache(shared.clone());
    let disp_m = Arc::new(models.artifact_uncached(Task::Dispatch)?.with_cache(shared));
    let catalogue = Arc::new(Catalogue::load(&knowledge_file("departments.toml").context("departments.toml")?)?);
    let rules = load_rules(&knowledge_file("dispatch_rules.toml").context("dispatch_rules.toml")?, &catalogue)?;
    let dispatcher = Dispatcher::new(catalogue, rules, Some(disp_m), DispatchConfig::default())?;
    let embedder = models.embedder("multilingual-e5-small")?;
    // The shipped knowledge base in a fresh embedded store.
    let dir = std::env::temp_dir().join(format!("zhengwu-copilot-eval-{}", std::process::id()));
    let _ = fs_err::remove_dir_all(&dir);
    let store = zhengwu_rag::edge::EdgeStore::open(&dir, embedder.dim())?;
    let kb = zhengwu_rag::KnowledgeBase::new(Arc::new(store), embedder.clone())?;
    let policy = knowledge_file("policy").context("knowledge-base/policy not found")?;
    let t_ing = Instant::now();
    kb.ingest_dir(&policy, &zhengwu_rag::kb::IngestOptions::default(), &mut |_| {})?;
    eprintln!("copilot: knowledge base ingested in {:.0}s", t_ing.elapsed().as_secs_f64());
    let filler = FormFiller::new();
    let loaded = data::teddy(&args.data)?;
    let calls: Vec<&str> = loaded.examples.iter().take(20).map(|e| e.text.as_str()).collect();
    let (mut kn, mut cl, mut fo, mut di, mut total) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for call in &calls {
        let chars: Vec<char> = call.chars().collect();
        let mut end = 40;
        while end < chars.len().min(400) + 40 {
            let so_far: String = chars[..end.min(chars.len())].iter().collect();
            let tail: String = chars[end.min(chars.len()).saturating_sub(200)..end.min(chars.len())].iter().collect();
            let t0 = Instant::now();
            let req = zhengwu_rag::SearchRequest { query: tail, mode: zhengwu_rag::Mode::Hybrid, limit: 3, filter: Default::default(), include_expired: false, weights: None };
            let _hits = kb.search(&req)?;
            let t1 = Instant::now();
            let ty = type_m.classify(&[so_far.as_str()])?.remove(0);
            let cat = cat_m.classify(&[so_far.as_str()])?.remove(0);
            let t2 = Instant::now();
            let _form = filler.fill(&so_far, Channel::Phone, Some(("type", ty.as_slice())), Some(("category", cat.as_slice())), None);
            let t3 = Instant::now();
            let _s = dispatcher.suggest(&so_far, &[], &[])?;
            let t4 = Instant::now();
            kn.push((t1 - t0).as_secs_f64() * 1000.0);
            cl.push((t2 - t1).as_secs_f64() * 1000.0);
            fo.push((t3 - t2).as_secs_f64() * 1000.0);
            di.push((t4 - t3).as_secs_f64() * 1000.0);
            total.push((t4 - t0).as_secs_f64() * 1000.0);
            end += 40;
        }
    }
    // The written requests, read as the citizen chat reads them, for the two measurements below.
    let written = match read_realistic_set()? {
        Some(set) => {
            let dir = knowledge_file("understanding.toml").and_then(|p| p.parent().map(Path::to_path_buf)).context("knowledge-base/ not found")?;
            Some((set, zhengwu_rag::understand::Lexicon::load(&dir)?))
        }
        None => None,
    };
    let relevance = match &written { Some((set, lex)) => Some(copilot_knowledge_relevance(&kb, set, lex)?), None => None };
    let types = match &written { Some((set, lex)) => Some(copilot_request_types(&type_m, set, lex)?), None => None };
    // The store flushes when dropped: drop it before removing its folder.
    drop(kb);
    let _ = fs_err::remove_dir_all(&dir);
    let mut report = Report::new("Agent co-pilot latency per transcript update");
    let n = total.len();
    report.metric("copilot.updates", n as f64);
    report.metric("copilot.update_p50_ms", percentile(&mut total.clone(), 0.5));
    report.metric("copilot.update_p95_ms", percentile(&mut total, 0.95));
    report.metric("copilot.knowledge_p50_ms", percentile(&mut kn, 0.5));
    report.metric("copilot.classify_p50_ms", percentile(&mut cl, 0.5));
    report.metric("copilot.form_p50_ms", percentile(&mut fo, 0.5));
    report.metric("copilot.dispatch_p50_ms", percentile(&mut di, 0.5));
    report.section(format!(
        "## Co-pilot updates\n\n{n} updates: {} calls (Teddy messages as transcripts), one update per 40 new characters (up to 400). \
Each update runs hybrid knowledge search on the last 200 characters, both classifiers on the transcript so far, form filling, and the dispatcher (rules + model). \
As in the server, the three models share one bounded in-memory embedding cache (empty at start): e5 embeds the transcript's first 128 characters once per update while they change, and not at all once they are fixed (later updates of a long call); the knowledge search embeds the last 200 characters every time. Threads: {}.\n",
        calls.len(),
        args.threads.unwrap_or(1)
    ));
    for (md, metrics) in [relevance, types].into_iter().flatten() {
        for (k, v) in metrics {
            report.metric(k, v);
        }
        report.section(md);
    }
    Ok(report)
}

/// `copilot.form.consult_share*`: the written requests of `eval/sets/dispatch_realistic.jsonl` are
/// all requests for a department to act (repair, complaint, report), none a consultation. Share
/// of them the pre-filled form calls 咨询: the MSGABench type model alone, and after the form's
/// correction (a message the citizen chat reads as a service request is 求助).
fn copilot_request_types(type_m: &Artifact, set: &[RealisticRequest], lexicon: &zhengwu_rag::understand::Lexicon) -> anyhow::Result<(String, Vec<(String, f64)>)> {
    let texts: Vec<&str> = set.iter().map(|r| r.text.as_str()).collect();
    let refs = &texts;
    let mut ranked = Vec::new();
    for chunk in refs.chunks(256) {
        ranked.extend(type_m.classify(chunk)?);
    }
    let consult: Vec<bool> = ranked.iter().map(|r| r.first().is_some_and(|t| t.label == "咨询")).collect();
    let n = texts.len().max(1) as f64;
    let before = consult.iter().filter(|c| **c).count();
    let after = consult.iter().zip(&texts).filter(|(c, t)| **c && lexicon.understand(t).kind.as_str() != "service_request").count();
    let md = format!(
        "## Request type of the pre-filled form on ordinary requests\n\nThe {} written requests of `eval/sets/dispatch_realistic.jsonl` ask a department to act; none is a consultation. Called 咨询 by the type model ({}): {before} ({}); after the form's correction (a message read as a service request is 求助): {after} ({}).\n",
        texts.len(),
        type_m.version(),
        pct(before as f64 / n),
        pct(after as f64 / n)
    );
    Ok((md, vec![("copilot.form.consult_share_model".into(), before as f64 / n), ("copilot.form.consult_share".into(), after as f64 / n)]))
}

/// Matters of the written dispatch set that the starter knowledge base has a document on
/// (`knowledge-base/policy`): for the others, the co-pilot should show no article at all.
const COVERED_MATTERS: &[&str] = &["公积金提取/缴存", "户籍/居住证", "社保/养老金", "拖欠工资", "低保/养老院", "入学/学位", "医保报销"];

/// `copilot.knowledge.*`: for each written request of `eval/sets/dispatch_realistic.jsonl` (both
/// parts: nothing here was tuned on them), the knowledge the co-pilot would show after the
/// server's relevance rules ([`zhengwu_rag::answer::keep_relevant`]).
fn copilot_knowledge_relevance(kb: &zhengwu_rag::KnowledgeBase, set: &[RealisticRequest], lexicon: &zhengwu_rag::understand::Lexicon) -> anyhow::Result<(String, Vec<(String, f64)>)> {
    let gate = zhengwu_rag::answer::AnswerConfig::default();
    let (mut unc, mut unc_none, mut cov, mut cov_some) = (0usize, 0usize, 0usize, 0usize);
    let mut shown = String::new();
    let mut missed = String::new();
    for r in set {
        let req = zhengwu_rag::SearchRequest { query: r.text.clone(), mode: zhengwu_rag::Mode::Hybrid, limit: 3, filter: Default::default(), include_expired: false, weights: None };
        let mut hits = kb.search(&req)?;
        zhengwu_rag::answer::keep_relevant(lexicon, &gate, &r.text, &mut hits);
        if COVERED_MATTERS.contains(&r.matter.as_str()) {
            cov += 1;
            cov_some += usize::from(!hits.is_empty());
            if hits.is_empty() {
                let u = lexicon.understand(&r.text);
                missed.push_str(&format!("| {} | {} | {} | {} |\n", r.id, r.matter, u.kind.as_str(), u.entity().map_or("–", |e| e.name.as_str())));
            }
        } else {
            unc += 1;
            unc_none += usize::from(hits.is_empty());
            if let Some(h) = hits.first() {
                shown.push_str(&format!("| {} | {} | {} |\n", r.id, r.matter, h.chunk.doc_id));
            }
        }
    }
    let no_article = unc_none as f64 / unc.max(1) as f64;
    let with_article = cov_some as f64 / cov.max(1) as f64;
    let mut md = format!(
        "## Co-pilot knowledge on ordinary requests\n\nThe {} written requests of `eval/sets/dispatch_realistic.jsonl` as call transcripts, through hybrid search (top 3) and the citizen answer path's relevance rules, as `/api/copilot` shows them. {} requests are about matters the starter knowledge base has no document on; {} are about matters it covers ({}).\n\n| | requests | share |\n|---|---:|---:|\n| uncovered matter, no article shown | {unc_none} of {unc} | {} |\n| covered matter, an article shown | {cov_some} of {cov} | {} |\n",
        unc + cov,
        unc,
        cov,
        COVERED_MATTERS.join("、"),
        pct(no_article),
        pct(with_article)
    );
    if !missed.is_empty() {
        md.push_str(&format!("\nCovered matters with no article (the message read as something other than a question, naming no 证件/事项 with documents):\n\n| id | matter | read as | entity |\n|---|---|---|---|\n{missed}"));
    }
    if !shown.is_empty() {
        md.push_str(&format!("\nArticles shown for uncovered matters:\n\n| id | matter | first article |\n|---|---|---|\n{shown}"));
    }
    Ok((md, vec![("copilot.knowledge.uncovered_no_article".into(), no_article), ("copilot.knowledge.covered_with_article".into(), with_article)]))
}
