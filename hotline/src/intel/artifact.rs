//! Trained artifacts: a [`LinearModel`] plus everything needed to use and audit it (labels,
//! feature recipe, calibration temperature, training data hash, held-out metrics, and the hashes
//! of the rows it was trained on, so an evaluation never scores a model on its own training rows).
//!
//! One safetensors file: tensors `w` and `b`, the [`Manifest`] as JSON under the metadata key
//! `zhengwu.manifest`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zhengwu_core::Embedder;

use crate::intel::features::{text_hash, EmbeddingCache, FeatureConfig, Featurizer};
use crate::intel::linear::{fit_temperature, softmax_in_place, LinearModel, LinearTrainer, Targets, TrainConfig};
use crate::intel::score;
use crate::intel::IntelError;

pub const FORMAT: &str = "zhengwu-linear/1";
const META_KEY: &str = "zhengwu.manifest";

/// What the outputs mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Outputs {
    /// Softmax over these labels.
    Classes { labels: Vec<String> },
    /// One real value per name.
    Values { names: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// e.g. `classify.teddy`, `dispatch`, `callback`.
    pub task: String,
    pub outputs: Outputs,
    pub features: FeatureConfig,
    pub train: TrainConfig,
    /// Softmax temperature fitted on the calibration split (1 for regression).
    pub temperature: f32,
    /// sha256 of the training examples (texts and targets, in order).
    pub data_sha256: String,
    /// Rows used for training and calibration (hex FNV-1a of the trimmed text).
    pub seen: Vec<String>,
    /// Held-out (dev split) measurements taken at training time.
    pub metrics: BTreeMap<String, f64>,
    pub trained_at: String,
}

/// Deterministic split of a row by its text: 70% train, 10% calibration, 20% dev.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Calibrate,
    Dev,
}

pub fn split_of(text: &str) -> Split {
    // A different mix of the hash than the n-gram buckets use.
    match (text_hash(text).wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) % 10 {
        0 | 1 => Split::Dev,
        2 => Split::Calibrate,
        _ => Split::Train,
    }
}

/// One labelled text.
#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub target: Target,
}

#[derive(Debug, Clone)]
pub enum Target {
    Class(String),
    Values(Vec<f32>),
}

/// A loaded artifact, ready to predict.
pub struct Artifact {
    pub manifest: Manifest,
    pub model: LinearModel,
    pub featurizer: Featurizer,
    seen: HashSet<u64>,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact").field("task", &self.manifest.task).field("outputs", &self.manifest.outputs).finish()
    }
}

/// Ranked labels with calibrated probabilities, best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    pub label: String,
    pub confidence: f32,
}

fn data_sha256(examples: &[Example]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for e in examples {
        h.update(e.text.as_bytes());
        h.update([0u8]);
        match &e.target {
            Target::Class(c) => h.update(c.as_bytes()),
            Target::Values(v) => v.iter().for_each(|x| h.update(x.to_le_bytes())),
        }
        h.update([0xffu8]);
    }
    hex::encode(h.finalize())
}

/// What training reports besides the artifact.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub rows_train: usize,
    pub rows_calibrate: usize,
    pub rows_dev: usize,
    pub final_loss: f32,
    pub temperature: f32,
    pub metrics: BTreeMap<String, f64>,
    pub seconds_features: f64,
    pub seconds_train: f64,
}

impl Artifact {
    /// Train on `examples` (all classes or all values, not mixed) with the deterministic split.
    /// `dev_metrics` are computed on the dev split: accuracy + macro-F1 (classes) or per-output
    /// Spearman (values).
    pub fn train(
        task: &str,
        examples: &[Example],
        featurizer: Featurizer,
        cfg: &TrainConfig,
        trainer: &dyn LinearTrainer,
    ) -> Result<(Artifact, TrainReport), IntelError> {
        Artifact::train_with_extra(task, examples, &[], featurizer, cfg, trainer)
    }

    /// [`Artifact::train`] with `extra` examples that always go to the training split (e.g.
    /// written descriptions of classes the history lacks); they never reach the dev metrics.
    pub fn train_with_extra(
        task: &str,
        examples: &[Example],
        extra: &[Example],
        featurizer: Featurizer,
        cfg: &TrainConfig,
        trainer: &dyn LinearTrainer,
    ) -> Result<(Artifact, TrainReport), IntelError> {
        if examples.is_empty() {
            return Err(IntelError::Data(format!("{task}: no training examples")));
        }
        let n_hist = examples.len();
        let examples: Vec<Example> = examples.iter().chain(extra).cloned().collect();
        let examples = examples.as_slice();
        let splits: Vec<Split> = examples.iter().enumerate().map(|(i, e)| if i >= n_hist { Split::Train } else { split_of(&e.text) }).collect();
        let t0 = std::time::Instant::now();
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let x_all = featurizer.features(&texts)?;
        let seconds_features = t0.elapsed().as_secs_f64();
        let dim = featurizer.dim();
        let rows_of = |want: Split| -> Vec<usize> { (0..examples.len()).filter(|&i| splits[i] == want).collect() };
        let (tr, ca, dv) = (rows_of(Split::Train), rows_of(Split::Calibrate), rows_of(Split::Dev));
        if tr.is_empty() {
            return Err(IntelError::Data(format!("{task}: the training split is empty ({} examples)", examples.len())));
        }
        let gather = |rows: &[usize]| -> Vec<f32> { rows.iter().flat_map(|&r| x_all[r * dim..(r + 1) * dim].iter().copied()).collect() };
        let t1 = std::time::Instant::now();
        let mut metrics = BTreeMap::new();
        let (model, loss, temperature, outputs) = match &examples[0].target {
            Target::Class(_) => {
                let mut labels: Vec<String> = examples
                    .iter()
                    .map(|e| match &e.target {
                        Target::Class(c) => Ok(c.clone()),
                        Target::Values(_) => Err(IntelError::Data("mixed class and value targets".into())),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                labels.sort();
                labels.dedup();
                let index: HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
                let y_of = |rows: &[usize]| -> Vec<u32> {
                    rows.iter()
                        .map(|&r| match &examples[r].target {
                            Target::Class(c) => index[c.as_str()],
                            Target::Values(_) => 0,
                        })
                        .collect()
                };
                let (model, loss) = trainer.train(&gather(&tr), dim, Targets::Classes { labels: &y_of(&tr), classes: labels.len() }, cfg)?;
                let k = labels.len();
                let temperature = if ca.is_empty() { 1.0 } else { fit_temperature(&model.forward(&gather(&ca))?, k, &y_of(&ca)) };
                if !dv.is_empty() {
                    let logits = model.forward(&gather(&dv))?;
                    let pred: Vec<usize> = logits.chunks(k).map(argmax).collect();
                    let gold: Vec<usize> = y_of(&dv).into_iter().map(|g| g as usize).collect();
                    metrics.insert("dev.accuracy".into(), score::accuracy(&gold, &pred));
                    metrics.insert("dev.macro_f1".into(), score::macro_f1(&gold, &pred, k));
                }
                (model, loss, temperature, Outputs::Classes { labels })
            }
            Target::Values(v0) => {
                let outputs = v0.len();
                let mut vals = Vec::with_capacity(tr.len() * outputs);
                for &r in &tr {
                    match &examples[r].target {
                        Target::Values(v) if v.len() == outputs => vals.extend_from_slice(v),
                        _ => return Err(IntelError::Data("value targets must all have the same length".into())),
                    }
                }
                let (model, loss) = trainer.train(&gather(&tr), dim, Targets::Values { values: &vals, outputs }, cfg)?;
                if !dv.is_empty() {
                    let pred = model.forward(&gather(&dv))?;
                    for o in 0..outputs {
                        let p: Vec<f64> = pred.chunks(outputs).map(|r| f64::from(r[o])).collect();
                        let g: Vec<f64> = dv
                            .iter()
                            .map(|&r| match &examples[r].target {
                                Target::Values(v) => f64::from(v[o]),
                                Target::Class(_) => 0.0,
                            })
                            .collect();
                        metrics.insert(format!("dev.spearman.{o}"), score::spearman(&g, &p));
                    }
                }
                (model, loss, 1.0, Outputs::Values { names: (0..outputs).map(|i| format!("v{i}")).collect() })
            }
        };
        let seconds_train = t1.elapsed().as_secs_f64();
        let mut seen: Vec<u64> = tr.iter().chain(&ca).map(|&r| text_hash(&examples[r].text)).collect();
        seen.sort_unstable();
        seen.dedup();
        let manifest = Manifest {
            format: FORMAT.into(),
            task: task.into(),
            outputs,
            features: featurizer.config.clone(),
            train: cfg.clone(),
            temperature,
            data_sha256: data_sha256(examples),
            seen: seen.iter().map(|h| format!("{h:016x}")).collect(),
            metrics: metrics.clone(),
            trained_at: chrono::Utc::now().to_rfc3339(),
        };
        let report = TrainReport {
            rows_train: tr.len(),
            rows_calibrate: ca.len(),
            rows_dev: dv.len(),
            final_loss: loss,
            temperature,
            metrics,
            seconds_features,
            seconds_train,
        };
        Ok((Artifact { manifest, model, featurizer, seen: seen.into_iter().collect() }, report))
    }

    /// Name the value outputs (regression artifacts).
    pub fn set_value_names(&mut self, names: &[&str]) {
        if let Outputs::Values { names: n } = &mut self.manifest.outputs {
            if n.len() == names.len() {
                *n = names.iter().map(|s| s.to_string()).collect();
            }
        }
    }

    /// `task@<first 12 hex of the training-data sha256>`: names the model and the data it was
    /// trained on (for audit entries and API answers).
    pub fn version(&self) -> String {
        let d = &self.manifest.data_sha256;
        format!("{}@{}", self.manifest.task, &d[..d.len().min(12)])
    }

    /// Was this text a training or calibration row?
    pub fn seen(&self, text: &str) -> bool {
        self.seen.contains(&text_hash(text))
    }

    pub fn labels(&self) -> &[String] {
        match &self.manifest.outputs {
            Outputs::Classes { labels } => labels,
            Outputs::Values { names } => names,
        }
    }

    /// Calibrated class probabilities, best first, for each text.
    pub fn classify(&self, texts: &[&str]) -> Result<Vec<Vec<Ranked>>, IntelError> {
        let Outputs::Classes { labels } = &self.manifest.outputs else {
            return Err(IntelError::Model(format!("{} is a regression model, not a classifier", self.manifest.task)));
        };
        let x = self.featurizer.features(texts)?;
        let logits = self.model.forward(&x)?;
        let k = labels.len();
        Ok(logits
            .chunks(k)
            .map(|row| {
                let mut p = row.to_vec();
                softmax_in_place(&mut p, self.manifest.temperature);
                let mut r: Vec<Ranked> = labels.iter().zip(p).map(|(l, c)| Ranked { label: l.clone(), confidence: c }).collect();
                r.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
                r
            })
            .collect())
    }

    /// Raw regression outputs for each text.
    pub fn regress(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, IntelError> {
        let x = self.featurizer.features(texts)?;
        let y = self.model.forward(&x)?;
        Ok(y.chunks(self.model.outputs()).map(|r| r.to_vec()).collect())
    }

    /// Write the weights (`w`: features × outputs, `b`: outputs; f32) and the manifest as
    /// safetensors metadata; written beside the target and renamed into place.
    pub fn save(&self, path: &Path) -> Result<(), IntelError> {
        use safetensors::tensor::{Dtype, TensorView};
        let manifest = serde_json::to_string(&self.manifest).map_err(|e| IntelError::Model(e.to_string()))?;
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (w, b) = (bytes(&self.model.w), bytes(&self.model.b));
        let (dim, k) = (self.model.dim(), self.model.outputs());
        let bad = |e: safetensors::SafeTensorError| IntelError::Model(e.to_string());
        let views = vec![
            ("b", TensorView::new(Dtype::F32, vec![k], &b).map_err(bad)?),
            ("w", TensorView::new(Dtype::F32, vec![dim, k], &w).map_err(bad)?),
        ];
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("safetensors.tmp");
        let meta = std::collections::HashMap::from([(META_KEY.to_string(), manifest)]);
        safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| IntelError::Model(format!("writing {}: {e}", tmp.display())))?;
        fs_err::rename(&tmp, path)?;
        Ok(())
    }

    /// Share an embedding cache with other featurizers.
    pub fn with_cache(mut self, cache: Arc<EmbeddingCache>) -> Artifact {
        self.featurizer = self.featurizer.with_cache(cache);
        self
    }

    fn parse_manifest(bytes: &[u8], path: &Path) -> Result<Manifest, IntelError> {
        let bad = |m: String| IntelError::Model(format!("{}: {m}", path.display()));
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let manifest_json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| bad(format!("no {META_KEY} metadata: not a zhengwu artifact")))?;
        let manifest: Manifest = serde_json::from_str(manifest_json).map_err(|e| bad(format!("manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(bad(format!("format {} is not {FORMAT}", manifest.format)));
        }
        Ok(manifest)
    }

    /// The manifest alone (to find out which embedding model an artifact needs).
    pub fn read_manifest(path: &Path) -> Result<Manifest, IntelError> {
        let bytes = fs_err::read(path).map_err(IntelError::Io)?;
        Artifact::parse_manifest(&bytes, path)
    }

    /// Load an artifact; `embedder` must be the model its features name (if any).
    pub fn load(path: &Path, embedder: Option<Arc<dyn Embedder>>) -> Result<Artifact, IntelError> {
        let bytes = fs_err::read(path).map_err(IntelError::Io)?;
        let bad = |m: String| IntelError::Model(format!("{}: {m}", path.display()));
        let manifest = Artifact::parse_manifest(&bytes, path)?;
        let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let k = match &manifest.outputs {
            Outputs::Classes { labels } => labels.len(),
            Outputs::Values { names } => names.len(),
        };
        let dim = manifest.features.dim();
        let get = |n: &str, shape: &[usize]| -> Result<Vec<f32>, IntelError> {
            let t = tensors.tensor(n).map_err(|_| bad(format!("tensor {n} missing")))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape {
                return Err(bad(format!(
                    "tensor {n} is {:?} {:?}, the manifest needs F32 {shape:?} ({dim} features, {k} outputs)",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        let model = LinearModel::new(dim, k, get("w", &[dim, k])?, get("b", &[k])?)?;
        let featurizer = Featurizer::new(manifest.features.clone(), embedder)?;
        let seen = manifest.seen.iter().filter_map(|h| u64::from_str_radix(h, 16).ok()).collect();
        Ok(Artifact { manifest, model, featurizer, seen })
    }
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<Example> {
        let fund = ["公积金提取", "公积金贷款额度", "公积金缴存基数", "住房公积金转移", "公积金账户冻结"];
        let car = ["驾驶证换证", "驾驶证扣分", "违章罚单处理", "驾驶证补办", "机动车违章查询"];
        let mut v = Vec::new();
        for i in 0..12 {
            for (label, list) in [("housing-fund", &fund), ("traffic-police", &car)] {
                v.push(Example { text: format!("请问{}需要什么材料{i}号", list[i % 5]), target: Target::Class(label.into()) });
            }
        }
        v
    }

    #[test]
    fn trains_saves_loads_and_predicts_the_same() {
        let ex = fixture();
        let fz = Featurizer::new(FeatureConfig { ngram_buckets: 1024, ..Default::default() }, None).unwrap();
        let trainer = zhengwu_core::testing::GradientDescentTrainer;
        let (a, rep) = Artifact::train("test", &ex, fz, &TrainConfig { epochs: 20, ..Default::default() }, &trainer).unwrap();
        assert_eq!(rep.rows_train + rep.rows_calibrate + rep.rows_dev, ex.len());
        assert!(rep.temperature > 0.0);
        let probe = ["我想办公积金提取", "驾驶证过期了怎么换证"];
        let before = a.classify(&probe).unwrap();
        assert_eq!(before[0][0].label, "housing-fund");
        assert_eq!(before[1][0].label, "traffic-police");
        let sum: f32 = before[0].iter().map(|r| r.confidence).sum();
        assert!((sum - 1.0).abs() < 1e-4);
        let dir = std::env::temp_dir().join(format!("zhengwu-artifact-{}", std::process::id()));
        let path = dir.join("a.safetensors");
        a.save(&path).unwrap();
        let b = Artifact::load(&path, None).unwrap();
        assert_eq!(b.classify(&probe).unwrap(), before, "save → load gives the same predictions");
        assert_eq!(b.manifest, a.manifest);
        // Training rows are known as seen; a new text is not.
        let train_row = ex.iter().find(|e| split_of(&e.text) == Split::Train).unwrap();
        assert!(b.seen(&train_row.text));
        assert!(!b.seen("完全没见过的句子"));
        // A file that is not an artifact is a clear error.
        fs_err::write(dir.join("bad.safetensors"), b"not a model").unwrap();
        let e = Artifact::load(&dir.join("bad.safetensors"), None).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors"), "{e}");
        // An artifact that needs an embedding model refuses to load without it.
        let mut m = a.manifest.clone();
        m.features.embedding_model = Some("multilingual-e5-small".into());
        assert!(Featurizer::new(m.features, None).is_err());
        let _ = fs_err::remove_dir_all(&dir);
    }

    #[test]
    fn splits_are_deterministic_and_roughly_70_10_20() {
        let mut n = [0usize; 3];
        for i in 0..5000 {
            let s = split_of(&format!("第{i}条留言"));
            assert_eq!(s, split_of(&format!("第{i}条留言")));
            n[s as usize] += 1;
        }
        assert!((3200..3800).contains(&n[0]) && (300..700).contains(&n[1]) && (800..1200).contains(&n[2]), "{n:?}");
    }
}
