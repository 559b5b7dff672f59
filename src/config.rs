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
