//! Text in and out of the model: chat templates (Jinja, from the GGUF), incremental
//! detokenisation that never splits a UTF-8 character, and stop strings.

use minijinja::{context, Environment};
use tokenizers::Tokenizer;

use crate::{Error, Result};

pub use zhengwu_core::ChatMessage;

/// A compiled chat template plus the special tokens it may reference.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.to_string())?;
        Ok(Self { env, bos_token: bos_token.into(), eos_token: eos_token.into() })
    }

    /// Render `messages` into the prompt string the model expects.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        if messages.is_empty() {
            return Err(Error::Invalid("`messages` must not be empty".into()));
        }
        for m in messages {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(Error::Invalid(format!(
                    "unsupported message role `{}` (use system, user or assistant)",
                    m.role
                )));
            }
        }
        let tmpl = self.env.get_template("chat")?;
        Ok(tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })?)
    }
}

/// Turns a growing list of token ids into text deltas. Text is only released once it is
/// complete UTF-8 and cannot be the beginning of a stop string.
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    text: String,
    emitted: usize,
    stops: Vec<String>,
    stopped: bool,
}

impl IncrementalDecoder {
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        Self { ids: Vec::new(), text: String::new(), emitted: 0, stops, stopped: false }
    }

    /// Add one token; returns the newly releasable text (may be empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        if self.stopped {
            return Ok(String::new());
        }
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids, true)?;
        // An incomplete multi-byte character decodes to U+FFFD: wait for the next token.
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        self.text = text;
        if let Some(cut) = self.stops.iter().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(cut);
            self.stopped = true;
            return Ok(self.release(self.text.len()));
        }
        let hold = self.stop_prefix_len();
        Ok(self.release(self.text.len() - hold))
    }

    /// True once a stop string has been seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Release everything still held back (end of generation without a stop string).
    pub fn finish(&mut self) -> String {
        let end = self.text.len();
        self.release(end)
    }

    /// All text produced so far (after stop-string truncation).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn release(&mut self, upto: usize) -> String {
        let mut upto = upto.max(self.emitted);
        while !self.text.is_char_boundary(upto) {
            upto -= 1;
        }
        if upto <= self.emitted {
            return String::new();
        }
        let out = self.text[self.emitted..upto].to_string();
        self.emitted = upto;
        out
    }

    /// Longest suffix of the text that is a proper prefix of some stop string.
    fn stop_prefix_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                let prefix = &stop[..i];
                if i > best && self.text.ends_with(prefix) {
                    best = i;
                }
            }
        }
        best
    }
}
