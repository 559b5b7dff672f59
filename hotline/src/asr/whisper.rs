//! [`Transcriber`] on whisper.cpp (through `whisper-rs`) with a ggml Whisper model, e.g. the
//! registry's `whisper-base` (converted from CTranslate2 by `zhengwu models fetch whisper-base`).

use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::{AsrError, Segment, Transcriber, MODEL_SAMPLE_RATE};

/// The default initial prompt: simplified Mandarin with punctuation, which steers Whisper to
/// simplified characters and punctuated output.
pub const DEFAULT_PROMPT: &str = "以下是普通话的句子。";

/// Silence put before each chunk (milliseconds).
const LEAD_IN_MS: usize = 500;

/// How the whisper engine runs.
#[derive(Debug, Clone)]
pub struct WhisperConfig {
    /// whisper.cpp threads per transcription. On 2 shared cores 1 was 3x faster than 2.
    pub threads: usize,
    /// Language code (`zh`); never auto-detected, so short clips cannot flip language.
    pub language: String,
    /// Initial prompt (empty: none).
    pub initial_prompt: String,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        WhisperConfig {
            threads: 1,
            language: "zh".into(),
            initial_prompt: DEFAULT_PROMPT.into(),
        }
    }
}

/// whisper.cpp with one loaded model. Each chunk is decoded without context from the previous
/// one (`no_context`); decoding states are pooled, so concurrent calls each get their own.
pub struct WhisperTranscriber {
    ctx: WhisperContext,
    states: Mutex<Vec<WhisperState>>,
    prompt_tokens: Vec<c_int>,
    cfg: WhisperConfig,
    name: String,
    path: PathBuf,
}

impl std::fmt::Debug for WhisperTranscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperTranscriber")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl WhisperTranscriber {
    /// Load a ggml Whisper model file.
    pub fn load(
        name: &str,
        path: &Path,
        cfg: WhisperConfig,
    ) -> Result<WhisperTranscriber, AsrError> {
        if cfg.threads == 0 {
            return Err(AsrError::Invalid("threads must be at least 1".into()));
        }
        if cfg.language.is_empty() || cfg.language == "auto" {
            return Err(AsrError::Invalid(
                "a fixed language is required (e.g. `zh`)".into(),
            ));
        }
        if cfg.initial_prompt.contains('\0') {
            return Err(AsrError::Invalid("the prompt contains a NUL byte".into()));
        }
        if !path.is_file() {
            return Err(AsrError::Model(format!(
                "{} does not exist; run: zhengwu models fetch {name}",
                path.display()
            )));
        }
        // whisper.cpp's own logging goes to `tracing` instead of stderr.
        whisper_rs::install_logging_hooks();
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| {
                AsrError::Model(format!(
                    "whisper.cpp could not load {}: {e}",
                    path.display()
                ))
            })?;
        if whisper_rs::get_lang_id(&cfg.language).is_none() {
            return Err(AsrError::Invalid(format!(
                "unknown language `{}`",
                cfg.language
            )));
        }
        let prompt_tokens = if cfg.initial_prompt.is_empty() {
            Vec::new()
        } else {
            ctx.tokenize(&cfg.initial_prompt, 224).map_err(|e| {
                AsrError::Invalid(format!("the initial prompt cannot be tokenized: {e}"))
            })?
        };
        Ok(WhisperTranscriber {
            ctx,
            states: Mutex::new(Vec::new()),
            prompt_tokens,
            cfg,
            name: name.to_string(),
            path: path.to_path_buf(),
        })
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.cfg
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Transcriber for WhisperTranscriber {
    fn model(&self) -> &str {
        &self.name
    }

    fn language(&self) -> &str {
        &self.cfg.language
    }

    fn transcribe_chunk(&self, pcm: &[f32]) -> Result<Vec<Segment>, AsrError> {
        if pcm.is_empty() {
            return Ok(Vec::new());
        }
        let engine = |what: &str, e: whisper_rs::WhisperError| {
            AsrError::Engine(format!("whisper.cpp {what}: {e}"))
        };
        let pooled = self.states.lock().map(|mut v| v.pop()).unwrap_or(None);
        let mut state = match pooled {
            Some(s) => s,
            None => self.ctx.create_state().map_err(|e| engine("state", e))?,
        };
        // Whisper was trained on utterances with some silence around them: a chunk that starts
        // right on speech loses its first syllables, so a short lead-in of silence goes first
        // (timestamps are shifted back below). whisper.cpp skips input under 1 s, so short
        // chunks are padded with silence at the end.
        let lead = MODEL_SAMPLE_RATE as usize * LEAD_IN_MS / 1000;
        let mut input = vec![0.0f32; lead];
        input.extend_from_slice(pcm);
        let min = MODEL_SAMPLE_RATE as usize * 11 / 10;
        if input.len() < min {
            input.resize(min, 0.0);
        }
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.cfg.threads as c_int);
        params.set_language(Some(&self.cfg.language));
        params.set_detect_language(false);
        params.set_translate(false);
        params.set_no_context(true);
        if !self.prompt_tokens.is_empty() {
            params.set_tokens(&self.prompt_tokens);
        }
        params.set_suppress_nst(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        state
            .full(params, &input)
            .map_err(|e| engine("decode", e))?;
        let chunk_ms = (pcm.len() as u64 * 1000) / MODEL_SAMPLE_RATE as u64;
        let lead_ms = LEAD_IN_MS as u64;
        let mut out = Vec::new();
        for seg in state.as_iter() {
            let text = seg
                .to_str_lossy()
                .map_err(|e| engine("segment text", e))?
                .trim()
                .to_string();
            if text.is_empty() {
                continue;
            }
            let t0 = (seg.start_timestamp().max(0) as u64 * 10)
                .saturating_sub(lead_ms)
                .min(chunk_ms);
            let t1 = (seg.end_timestamp().max(0) as u64 * 10)
                .saturating_sub(lead_ms)
                .clamp(t0, chunk_ms);
            out.push(Segment {
                start_ms: t0,
                end_ms: t1,
                text,
                channel: None,
            });
        }
        if let Ok(mut pool) = self.states.lock() {
            pool.push(state);
        }
        Ok(out)
    }
}
