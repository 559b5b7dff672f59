//! Chat-formatted training data: JSONL with one `{"messages": [{"role", "content"}, ...]}` per
//! line (the OpenAI fine-tuning layout). Loss is taken on assistant turns only.

use serde::Deserialize;
use std::path::Path;
use tokenizers::Tokenizer;

use crate::llm::text::{ChatMessage, ChatTemplate};
use crate::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
pub struct ChatExample {
    pub messages: Vec<ChatMessage>,
}

/// A training file: its examples and its sha256.
pub struct ChatDataset {
    pub examples: Vec<ChatExample>,
    pub sha256: String,
}

/// Read and check a JSONL file. Any bad line is an error naming the line; blank lines are skipped.
pub fn read_jsonl(path: &Path) -> Result<ChatDataset> {
    let bytes = fs_err::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::Invalid(format!("{}: not UTF-8 ({e})", path.display())))?;
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let ex: ChatExample =
            serde_json::from_str(line).map_err(|e| Error::Invalid(format!("{}: {e}", at())))?;
        if ex.messages.is_empty() {
            return Err(Error::Invalid(format!("{}: `messages` is empty", at())));
        }
        for m in &ex.messages {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(Error::Invalid(format!("{}: unsupported role `{}`", at(), m.role)));
            }
        }
        if !ex.messages.iter().any(|m| m.role == "assistant" && !m.content.trim().is_empty()) {
            return Err(Error::Invalid(format!("{}: no non-empty assistant message to learn from", at())));
        }
        examples.push(ex);
    }
    if examples.is_empty() {
        return Err(Error::Invalid(format!("{}: no examples", path.display())));
    }
    Ok(ChatDataset { examples, sha256: crate::registry::sha256_bytes(&bytes) })
}

/// Token ids and, per token, whether it is a training target (an assistant token).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedExample {
    pub ids: Vec<u32>,
    pub targets: Vec<bool>,
}

impl TokenizedExample {
    pub fn n_targets(&self) -> usize {
        self.targets.iter().skip(1).filter(|&&t| t).count()
    }
}

/// Render an example through the chat template and mark the assistant tokens. Each assistant
/// turn is the text the template adds for it (content and end marker); everything else (system,
/// user turns, role headers) is context. Sequences longer than `max_len` are cut at `max_len`;
/// `None` when no target token is left.
pub fn tokenize(
    example: &ChatExample,
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    max_len: usize,
) -> Result<Option<TokenizedExample>> {
    let msgs = &example.messages;
    let mut pieces: Vec<(String, bool)> = Vec::new();
    let mut done = String::new();
    for (i, m) in msgs.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let prompt = template.render(&msgs[..i], true)?;
        let full = template.render(&msgs[..=i], false)?;
        let (Some(context), Some(answer)) = (prompt.strip_prefix(done.as_str()), full.strip_prefix(prompt.as_str()))
        else {
            return Err(Error::Template(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                "chat template output is not incremental; cannot find the assistant turns",
            )));
        };
        pieces.push((context.to_string(), false));
        pieces.push((answer.to_string(), true));
        done = full;
    }
    let mut ids = Vec::new();
    let mut targets = Vec::new();
    for (text, is_target) in pieces {
        if text.is_empty() {
            continue;
        }
        let enc = tokenizer.encode(text.as_str(), false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        ids.extend_from_slice(enc.get_ids());
        targets.extend(std::iter::repeat_n(is_target, enc.get_ids().len()));
    }
    ids.truncate(max_len);
    targets.truncate(max_len);
    let ex = TokenizedExample { ids, targets };
    Ok(if ex.n_targets() == 0 { None } else { Some(ex) })
}
