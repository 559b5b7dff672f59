//! LoRA fine-tuning of the GGUF chat models, in candle: data (chat JSONL, loss on assistant
//! tokens), a trainable f32 copy of the base with frozen weights, AdamW with checkpoints and
//! exact resume, and adapters saved as safetensors that the server merges at load time.

pub mod adapter;
pub mod data;
pub mod model;
pub mod optim;
pub mod train;

pub use adapter::{parse_targets, AdapterManifest, LoraAdapter, LoraSpec, ADAPTER_FORMAT};
pub use data::{read_jsonl, tokenize, ChatDataset, ChatExample, TokenizedExample};
pub use model::TrainableModel;
pub use train::{train, Progress, Quiet, TrainOptions, TrainState};

/// Peak resident memory of this process in MB (Linux `VmHWM`); `None` elsewhere.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
