//! Configuration layering: built-in defaults < config file (`zhengwu.toml`) < environment
//! (`ZHENGWU_*`) < command-line flags. clap handles env + flags; the file fills what they leave.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Contents of the optional config file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub models: ModelsSection,
    #[serde(default)]
    pub tickets: zhengwu_hotline::tickets::TicketsConfig,
    /// Dispatch thresholds and evidence weights.
    #[serde(default)]
    pub dispatch: zhengwu_hotline::intel::dispatch::DispatchConfig,
    /// Web app users and the audit log.
    #[serde(default)]
    pub web: crate::web::WebConfig,
    /// The knowledge base: folders, answer gates, fusion, the vector store.
    #[serde(default)]
    pub kb: KbSection,
}

/// `[kb]`: where the knowledge base lives and how `/api/ask` answers from it. Each key is
/// overridden by its environment variable (named beside it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbSection {
    /// Documents and FAQ files (`ZHENGWU_KB_DIR`, default `knowledge-base/policy`).
    pub docs_dir: Option<PathBuf>,
    /// The embedded vector store (`ZHENGWU_KB_STORE`, default `knowledge-base/.index`).
    pub store_dir: Option<PathBuf>,
    /// `understanding.toml` and friends (`ZHENGWU_KB_LEXICON_DIR`, default beside the documents).
    pub lexicon_dir: Option<PathBuf>,
    /// Sync the documents into the store at start-up (`ZHENGWU_KB_AUTO_INGEST=1`).
    pub auto_ingest: Option<bool>,
    /// Hybrid fusion `DENSE:SPARSE[:K]` (`ZHENGWU_KB_FUSION`).
    pub fusion: Option<String>,
    /// Best dense cosine below which `/api/ask` refuses (`ZHENGWU_RAG_RELEVANCE`).
    pub relevance_threshold: Option<f32>,
    /// Question-coverage gate (`ZHENGWU_RAG_COVERAGE`).
    pub coverage_threshold: Option<f32>,
    /// Weight of coverage in the relevance gate, 0..=1 (`ZHENGWU_RAG_COVERAGE_WEIGHT`).
    pub coverage_weight: Option<f32>,
    /// Cosine from which a FAQ on the same matter and aspect answers verbatim (`ZHENGWU_RAG_FAQ`).
    pub faq_threshold: Option<f32>,
    /// A Qdrant server or cluster (gRPC URL) instead of the embedded store (`ZHENGWU_QDRANT_URL`).
    pub qdrant_url: Option<String>,
    /// Its collection (`ZHENGWU_QDRANT_COLLECTION`, default `zhengwu_kb`).
    pub qdrant_collection: Option<String>,
    /// Its API key (`ZHENGWU_QDRANT_API_KEY`).
    pub qdrant_api_key: Option<String>,
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `name` from the environment if set, else the file's value; parsed, with the source named in
/// the error.
fn layered<T: std::str::FromStr>(name: &str, file: Option<T>) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match env(name) {
        Some(v) => v.parse::<T>().map(Some).map_err(|e| anyhow::anyhow!("{name}=`{v}`: {e}")),
        None => Ok(file),
    }
}

/// A number in `range`, or an error naming the setting.
fn in_range(name: &str, v: Option<f32>, range: std::ops::RangeInclusive<f32>) -> anyhow::Result<Option<f32>> {
    match v {
        Some(t) if !range.contains(&t) => anyhow::bail!("{name}: {t} is outside {}..={}", range.start(), range.end()),
        v => Ok(v),
    }
}

impl KbSection {
    pub fn docs_dir(&self) -> PathBuf {
        env("ZHENGWU_KB_DIR").map(PathBuf::from).or(self.docs_dir.clone()).unwrap_or_else(|| "knowledge-base/policy".into())
    }

    pub fn store_dir(&self) -> PathBuf {
        env("ZHENGWU_KB_STORE").map(PathBuf::from).or(self.store_dir.clone()).unwrap_or_else(|| "knowledge-base/.index".into())
    }

    pub fn lexicon_dir(&self) -> Option<PathBuf> {
        env("ZHENGWU_KB_LEXICON_DIR")
            .map(PathBuf::from)
            .or(self.lexicon_dir.clone())
            .or_else(|| zhengwu_rag::http::RagConfig::default_lexicon_dir(&self.docs_dir()))
    }

    /// The Qdrant server, when one is configured.
    pub fn qdrant(&self) -> Option<zhengwu_rag::qdrant_server::ServerConfig> {
        let url = env("ZHENGWU_QDRANT_URL").or(self.qdrant_url.clone()).filter(|u| !u.trim().is_empty())?;
        let collection = env("ZHENGWU_QDRANT_COLLECTION")
            .or(self.qdrant_collection.clone())
            .unwrap_or_else(|| zhengwu_rag::qdrant_server::DEFAULT_COLLECTION.into());
        let mut c = zhengwu_rag::qdrant_server::ServerConfig::new(url, collection);
        c.api_key = env("ZHENGWU_QDRANT_API_KEY").or(self.qdrant_api_key.clone());
        Some(c)
    }

    /// The knowledge base's whole configuration: defaults < `[kb]` < environment. An invalid
    /// value is an error that names its setting, never ignored.
    pub fn rag(&self) -> anyhow::Result<zhengwu_rag::http::RagConfig> {
        let mut c = zhengwu_rag::http::RagConfig::new(self.docs_dir(), self.store_dir());
        c.lexicon_dir = self.lexicon_dir();
        c.qdrant = self.qdrant();
        c.auto_ingest = match env("ZHENGWU_KB_AUTO_INGEST") {
            Some(v) => v == "1" || v == "true",
            None => self.auto_ingest.unwrap_or(false),
        };
        if let Some(f) = env("ZHENGWU_KB_FUSION").or(self.fusion.clone()) {
            c.weights = zhengwu_rag::FusionWeights::parse(&f).map_err(|e| anyhow::anyhow!("kb fusion (ZHENGWU_KB_FUSION) `{f}`: {e}"))?;
        }
        let a = &mut c.answer;
        let cosine = -1.0..=1.0;
        for (name, file, slot) in [
            ("ZHENGWU_RAG_RELEVANCE", self.relevance_threshold, &mut a.relevance_threshold),
            ("ZHENGWU_RAG_COVERAGE", self.coverage_threshold, &mut a.coverage_threshold),
            ("ZHENGWU_RAG_FAQ", self.faq_threshold, &mut a.faq_threshold),
        ] {
            if let Some(v) = in_range(name, layered(name, file)?, cosine.clone())? {
                *slot = v;
            }
        }
        if let Some(v) = in_range("ZHENGWU_RAG_COVERAGE_WEIGHT", layered("ZHENGWU_RAG_COVERAGE_WEIGHT", self.coverage_weight)?, 0.0..=1.0)? {
            a.coverage_weight = v;
        }
        Ok(c)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub api_key: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub request_timeout_secs: Option<u64>,
    pub default_max_tokens: Option<usize>,
    pub max_active: Option<usize>,
    pub max_queued: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsSection {
    pub registry: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub chat: Option<String>,
    pub embedding: Option<String>,
    pub device: Option<String>,
    pub threads: Option<usize>,
    pub max_context: Option<usize>,
    /// A remote OpenAI-compatible server for the chat model (`chat` is the name it serves).
    pub chat_remote_url: Option<String>,
    pub chat_remote_api_key: Option<String>,
}

impl FileConfig {
    /// Read `path` if given; otherwise `./zhengwu.toml` when it exists; otherwise defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let default = PathBuf::from("zhengwu.toml");
                if !default.exists() {
                    return Ok(Self::default());
                }
                default
            }
        };
        let text = fs_err::read_to_string(&path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kb_settings_layer_file_under_environment_and_bad_values_are_errors() {
        let file: FileConfig = toml::from_str("[kb]\nrelevance_threshold = 0.8\nfusion = \"1:0.5\"\ndocs_dir = \"/srv/policy\"\n").unwrap();
        // Variables these tests set are their own (no other test reads them).
        std::env::remove_var("ZHENGWU_RAG_RELEVANCE");
        let c = file.kb.rag().unwrap();
        assert_eq!(c.answer.relevance_threshold, 0.8);
        assert_eq!(c.docs_dir, PathBuf::from("/srv/policy"));
        assert!(c.qdrant.is_none());
        std::env::set_var("ZHENGWU_RAG_RELEVANCE", "0.9");
        assert_eq!(file.kb.rag().unwrap().answer.relevance_threshold, 0.9, "the environment wins over the file");
        std::env::set_var("ZHENGWU_RAG_RELEVANCE", "1.5");
        assert!(file.kb.rag().unwrap_err().to_string().contains("ZHENGWU_RAG_RELEVANCE"));
        std::env::set_var("ZHENGWU_RAG_RELEVANCE", "high");
        assert!(file.kb.rag().is_err());
        std::env::remove_var("ZHENGWU_RAG_RELEVANCE");
        let bad: FileConfig = toml::from_str("[kb]\ncoverage_weight = 2.0\n").unwrap();
        assert!(bad.kb.rag().unwrap_err().to_string().contains("COVERAGE_WEIGHT"));
        assert!(toml::from_str::<FileConfig>("[kb]\nrelevance = 0.8\n").is_err(), "unknown keys are refused");
    }
}
