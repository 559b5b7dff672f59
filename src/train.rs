//! `zhengwu train classify|dispatch|callback|all --data DIR`: train the hotline models from a
//! data folder laid out like `../shared/data`, save each as a safetensors artifact, and record
//! its sha256 and size in models.toml so the server and `zhengwu eval` find and verify it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use zhengwu_hotline::intel::departments::Catalogue;
use zhengwu_hotline::intel::features::EmbeddingCache;
use zhengwu_hotline::intel::tasks::Task;
use zhengwu_hotline::tickets::knowledge_file;
use zhengwu_inference::registry::Registry;
use zhengwu_inference::Embedder;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// What to train: classify (3 classifiers), dispatch, callback, all, or one model by name (classify-teddy).
    pub what: String,
    /// Data folder with the layout of ../shared/data.
    #[arg(long, default_value = "../shared/data")]
    pub data: PathBuf,
    /// Where artifacts go (default: the `path` source of each model in models.toml).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not write the new sha256/size into models.toml.
    #[arg(long)]
    pub no_register: bool,
    /// Department catalogue (dispatch).
    #[arg(long)]
    pub departments: Option<PathBuf>,
    /// Also learn dispatch from this ticket database (sqlite://… or postgres://…): every ticket
    /// that reached a final department (replied, called back, closed) is an example of its text
    /// → that department, including tickets a department returned (退单) before the right one
    /// took them.
    #[arg(long)]
    pub tickets_db: Option<String>,
    /// Departments with fewer handled tickets than this in the ticket database contribute none:
    /// one stray correction should not teach the model a department.
    #[arg(long, default_value_t = 3)]
    pub tickets_min_per_dept: usize,
}

/// Keep the examples of departments with at least `min` of them; returns the departments left
/// out with their counts.
fn at_least_per_dept(examples: &mut Vec<zhengwu_hotline::intel::artifact::Example>, min: usize) -> Vec<(String, usize)> {
    use zhengwu_hotline::intel::artifact::Target;
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for e in examples.iter() {
        if let Target::Class(c) = &e.target {
            *counts.entry(c.clone()).or_default() += 1;
        }
    }
    let few: Vec<(String, usize)> = counts.into_iter().filter(|(_, n)| *n < min).collect();
    examples.retain(|e| !matches!(&e.target, Target::Class(c) if few.iter().any(|(d, _)| d == c)));
    few
}

/// Dispatch examples from handled tickets: (summary + text) → final lead department (catalogue id).
fn ticket_examples(url: &str, catalogue: &Catalogue) -> anyhow::Result<(Vec<zhengwu_hotline::intel::artifact::Example>, usize)> {
    use zhengwu_hotline::intel::artifact::{Example, Target};
    use zhengwu_hotline::tickets::{PageRequest, Status, TicketFilter};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = zhengwu_hotline::tickets::open_store(url).await?;
        let mut out = Vec::new();
        let mut unknown = 0usize;
        let mut cursor = None;
        loop {
            let page = store.list(&TicketFilter::default(), PageRequest { limit: 500, cursor }, chrono::Utc::now()).await?;
            for t in &page.data {
                let b = &t.body;
                if !matches!(b.status, Status::Replied | Status::CallbackDone | Status::Closed) {
                    continue;
                }
                let Some(d) = b.lead_dept.as_deref() else { continue };
                match catalogue.resolve_label(d) {
                    Some(dep) => out.push(Example { text: format!("{}\n{}", b.summary, b.text).trim().to_string(), target: Target::Class(dep.id.clone()) }),
                    None => unknown += 1,
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok((out, unknown))
    })
}

/// Replace `sha256` and `size` of the `[[model]]` named `name` in models.toml text.
pub fn update_registry_text(text: &str, name: &str, sha: &str, size: u64) -> Option<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut done = (false, false);
    for line in text.lines() {
        let t = line.trim();
        if t == "[[model]]" {
            in_block = false;
        }
        if t == format!("name = \"{name}\"") {
            in_block = true;
        }
        if in_block && t.starts_with("sha256 = ") && !done.0 {
            out.push(format!("sha256 = \"{sha}\""));
            done.0 = true;
            continue;
        }
        if in_block && t.starts_with("size = ") && !done.1 {
            out.push(format!("size = {size}"));
            done.1 = true;
            continue;
        }
        out.push(line.to_string());
    }
    (done.0 && done.1).then(|| out.join("\n") + "\n")
}

fn sha256_file(p: &Path) -> anyhow::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    let bytes = fs_err::read(p)?;
    Ok((hex::encode(Sha256::digest(&bytes)), bytes.len() as u64))
}

/// `embedding`: the embedding model for the features (`--embedding-model`), `None` for n-grams only.
pub fn run(args: TrainArgs, registry_path: &Path, registry: &Registry, embedding: Option<String>) -> anyhow::Result<()> {
    let tasks = Task::in_group(&args.what);
    anyhow::ensure!(!tasks.is_empty(), "unknown training target `{}`: classify, dispatch, callback, all or a model name", args.what);
    anyhow::ensure!(args.data.is_dir(), "data folder {} not found", args.data.display());
    let embedder: Option<Arc<dyn Embedder>> = match &embedding {
        None => None,
        Some(name) => {
            let path = registry.locate(name)?;
            Some(Arc::new(zhengwu_inference::e5::E5Embedder::load(&path, name, &candle_core::Device::Cpu)?))
        }
    };
    let cache = match &embedder {
        Some(e) => Some(Arc::new(EmbeddingCache::open(&zhengwu_eval::intel::cache_root().join("embcache").join(format!("{}.bin", e.model_id())), e.dim())?)),
        None => None,
    };
    let catalogue = match args.departments.clone().or_else(|| knowledge_file("departments.toml")) {
        Some(p) => Some(Catalogue::load(&p)?),
        None => None,
    };
    for task in tasks {
        let name = task.model_name();
        let spec = registry.get(name).with_context(|| format!("models.toml has no entry `{name}`"))?;
        let dest = match &args.out {
            Some(dir) => dir.join(&spec.file),
            None => registry
                .models()
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| {
                    m.sources.iter().find_map(|s| match s {
                        zhengwu_inference::registry::Source::Path { path } => Some(registry_path.parent().unwrap_or(Path::new(".")).join(path)),
                        _ => None,
                    })
                })
                .unwrap_or_else(|| registry.models_dir().join(name).join(&spec.file)),
        };
        eprintln!("train {name}: reading {}", args.data.display());
        let t0 = std::time::Instant::now();
        let mut loaded = task.load(&args.data, catalogue.as_ref())?;
        if let (Task::Dispatch, Some(url), Some(cat)) = (task, &args.tickets_db, &catalogue) {
            let (mut extra, unknown) = ticket_examples(url, cat)?;
            let few = at_least_per_dept(&mut extra, args.tickets_min_per_dept);
            eprintln!("train {name}: {} handled tickets from the ticket database ({unknown} with a department not in the catalogue)", extra.len());
            if !few.is_empty() {
                eprintln!(
                    "train {name}: left out departments with fewer than {} handled tickets: {}",
                    args.tickets_min_per_dept,
                    few.iter().map(|(d, n)| format!("{d} ({n})")).collect::<Vec<_>>().join(", ")
                );
            }
            loaded.examples.extend(extra);
        }
        eprintln!("train {name}: {} examples ({} rows skipped{})", loaded.examples.len(), loaded.skipped, if loaded.notes.is_empty() { String::new() } else { format!(": {}", loaded.notes.join("; ")) });
        // The featurizer shares the cache so the texts of several tasks are embedded once.
        let mut fz = task.featurizer(embedder.clone())?;
        if let Some(c) = &cache {
            fz = fz.with_cache(c.clone());
        }
        let (artifact, report, written) = task.train(&loaded.examples, &loaded.train_only, catalogue.as_ref(), fz, &zhengwu_inference::linear::CandleTrainer)?;
        if written > 0 {
            eprintln!("train {name}: + {written} rows that only train (the department catalogue's written examples, label descriptions)");
        }
        artifact.save(&dest)?;
        let (sha, size) = sha256_file(&dest)?;
        println!(
            "{name}: {} train / {} calibration / {} dev rows, loss {:.4}, temperature {:.3}, features {:.0}s, training {:.1}s, total {:.0}s",
            report.rows_train,
            report.rows_calibrate,
            report.rows_dev,
            report.final_loss,
            report.temperature,
            report.seconds_features,
            report.seconds_train,
            t0.elapsed().as_secs_f64()
        );
        for (k, v) in &report.metrics {
            println!("  {k} = {v:.4}");
        }
        println!("  wrote {} ({size} bytes, sha256 {sha}) from {} examples", dest.display(), loaded.examples.len());
        if !args.no_register {
            let text = fs_err::read_to_string(registry_path)?;
            match update_registry_text(&text, name, &sha, size) {
                Some(new) => {
                    fs_err::write(registry_path, new)?;
                    println!("  updated {} entry `{name}`", registry_path.display());
                }
                None => eprintln!("  warning: could not find sha256/size of `{name}` in {}; update it by hand", registry_path.display()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departments_with_too_few_handled_tickets_are_left_out() {
        use zhengwu_hotline::intel::artifact::{Example, Target};
        let ex = |d: &str| Example { text: format!("工单 {d}"), target: Target::Class(d.into()) };
        let mut v = vec![ex("hrss"), ex("hrss"), ex("hrss"), ex("gas")];
        let few = at_least_per_dept(&mut v, 3);
        assert_eq!(few, vec![("gas".to_string(), 1)]);
        assert_eq!(v.len(), 3);
        assert!(at_least_per_dept(&mut v, 0).is_empty());
    }

    #[test]
    fn registry_update_touches_only_the_named_entry() {
        let text = "[[model]]\nname = \"a\"\nsha256 = \"00\"\nsize = 1\n\n[[model]]\nname = \"b\"\nsha256 = \"00\"\nsize = 1\n";
        let new = update_registry_text(text, "b", "ff", 42).unwrap();
        assert_eq!(new, "[[model]]\nname = \"a\"\nsha256 = \"00\"\nsize = 1\n\n[[model]]\nname = \"b\"\nsha256 = \"ff\"\nsize = 42\n");
        assert!(update_registry_text(text, "c", "ff", 1).is_none());
    }
}
