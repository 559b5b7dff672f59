//! The trained models of the hotline and how each is made from the data layout of
//! `../shared/data`: which file, which labels, which features. `zhengwu train` and
//! `zhengwu eval` both go through here, so a model is always evaluated the way it was trained.

use std::path::Path;
use std::sync::Arc;

use zhengwu_core::Embedder;

use crate::intel::artifact::{Artifact, Example, Target, TrainReport};
use crate::intel::data::{self, Loaded};
use crate::intel::departments::Catalogue;
use crate::intel::features::{FeatureConfig, Featurizer};
use crate::intel::linear::TrainConfig;
use crate::intel::IntelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Teddy Cup messages → 7 first-level categories.
    ClassifyTeddy,
    /// MSGABench messages → request type (咨询 / 投诉/求助 / 建言).
    ClassifyMsgabenchType,
    /// MSGABench messages → domain (城建, 交通, …).
    ClassifyMsgabenchDomain,
    /// Handling history → department.
    Dispatch,
    /// STC-3 dialogues → annotators' mean A (accomplished) and S (satisfaction).
    Callback,
}

impl Task {
    pub const ALL: [Task; 5] = [Task::ClassifyTeddy, Task::ClassifyMsgabenchType, Task::ClassifyMsgabenchDomain, Task::Dispatch, Task::Callback];

    /// Registry (models.toml) name of the artifact.
    pub fn model_name(self) -> &'static str {
        match self {
            Task::ClassifyTeddy => "classify-teddy",
            Task::ClassifyMsgabenchType => "classify-msgabench-type",
            Task::ClassifyMsgabenchDomain => "classify-msgabench-domain",
            Task::Dispatch => "dispatch-msgabench",
            Task::Callback => "callback-stc3",
        }
    }

    /// The `zhengwu train` group it belongs to.
    pub fn group(self) -> &'static str {
        match self {
            Task::ClassifyTeddy | Task::ClassifyMsgabenchType | Task::ClassifyMsgabenchDomain => "classify",
            Task::Dispatch => "dispatch",
            Task::Callback => "callback",
        }
    }

    /// The tasks of a group (`classify`, `dispatch`, `callback`, `all`), or the one task of that model name (`classify-teddy`).
    pub fn in_group(group: &str) -> Vec<Task> {
        Task::ALL.into_iter().filter(|t| group == "all" || t.group() == group || t.model_name() == group).collect()
    }

    pub fn train_config(self) -> TrainConfig {
        match self {
            Task::Callback => TrainConfig { epochs: 40, learning_rate: 0.01, weight_decay: 1e-3, ..Default::default() },
            Task::ClassifyMsgabenchType | Task::ClassifyMsgabenchDomain => TrainConfig { epochs: 12, batch_size: 128, ..Default::default() },
            // Full class balancing: 5-fold cross-validated macro-F1 0.727 ± 0.045 against 0.693 ±
            // 0.062 at 0.5 (`zhengwu eval classify`); 环境保护 has 25 rows against 74.
            Task::ClassifyTeddy => TrainConfig { class_balance: 1.0, ..Default::default() },
            _ => TrainConfig::default(),
        }
    }

    pub fn feature_config(self, embedder: Option<&dyn Embedder>) -> FeatureConfig {
        FeatureConfig {
            embedding_model: embedder.map(|e| e.model_id().to_string()),
            embedding_dim: embedder.map(|e| e.dim()).unwrap_or(0),
            max_chars: if self == Task::Callback { 600 } else { 400 },
            ..FeatureConfig::default()
        }
    }

    /// Labelled examples from a data folder.
    pub fn load(self, dir: &Path, catalogue: Option<&Catalogue>) -> Result<Loaded, IntelError> {
        match self {
            Task::ClassifyTeddy => data::teddy(dir),
            Task::ClassifyMsgabenchType => data::msgabench(dir, "type"),
            Task::ClassifyMsgabenchDomain => data::msgabench(dir, "domain"),
            Task::Dispatch => data::dispatch(dir, catalogue.ok_or_else(|| IntelError::Config("dispatch needs the department catalogue".into()))?),
            Task::Callback => {
                let (dialogues, skipped) = data::stc3(dir)?;
                Ok(Loaded {
                    examples: dialogues.iter().map(|d| Example { text: d.model_text(), target: Target::Values(vec![d.mean_a, d.mean_s]) }).collect(),
                    skipped,
                    ..Default::default()
                })
            }
        }
    }

    /// Written examples for the dispatch model from the catalogue: each department's duties and
    /// its keywords in small groups, so departments the handling history never saw (the history
    /// covers about 20 of the catalogue's departments) are still reachable. Training split only.
    pub fn catalogue_examples(catalogue: &Catalogue) -> Vec<Example> {
        let mut out = Vec::new();
        for d in catalogue.departments() {
            if !d.duties.trim().is_empty() {
                out.push(Example { text: d.duties.clone(), target: Target::Class(d.id.clone()) });
            }
            for group in d.keywords.chunks(3) {
                out.push(Example { text: format!("咨询{}的问题", group.join("、")), target: Target::Class(d.id.clone()) });
            }
        }
        out
    }

    /// The featurizer this task trains with (`embedder` must match [`Task::feature_config`]).
    pub fn featurizer(self, embedder: Option<Arc<dyn Embedder>>) -> Result<Featurizer, IntelError> {
        Featurizer::new(self.feature_config(embedder.as_deref()), embedder)
    }

    /// Train this task's artifact on `examples` (from [`Task::load`], perhaps with more added)
    /// and `train_only` rows ([`crate::intel::data::Loaded::train_only`]): the dispatch model also
    /// gets the catalogue's written examples (training split only), the callback model its output
    /// names. Returns how many rows trained only.
    pub fn train(
        self,
        examples: &[Example],
        train_only: &[Example],
        catalogue: Option<&Catalogue>,
        featurizer: Featurizer,
        trainer: &dyn crate::intel::linear::LinearTrainer,
    ) -> Result<(Artifact, TrainReport, usize), IntelError> {
        let mut extra = match (self, catalogue) {
            (Task::Dispatch, Some(c)) => Task::catalogue_examples(c),
            _ => Vec::new(),
        };
        extra.extend_from_slice(train_only);
        let (mut artifact, report) = Artifact::train_with_extra(self.model_name(), examples, &extra, featurizer, &self.train_config(), trainer)?;
        if self == Task::Callback {
            artifact.set_value_names(&["accomplished", "satisfaction"]);
        }
        Ok((artifact, report, extra.len()))
    }
}
