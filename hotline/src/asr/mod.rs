//! Call transcription ("Speech").
//!
//! [`Transcriber`] is the engine seam: it turns one chunk of 16 kHz mono speech into timed
//! segments. [`Transcriber::transcribe`] runs the whole pipeline on an uploaded file: decode
//! ([`audio`]), resample to 16 kHz, mix or split the channels, cut the speech into chunks at
//! pauses ([`vad`]), transcribe each chunk on its own, shift the timestamps, and convert
//! traditional characters to simplified. [`whisper::WhisperTranscriber`] is the whisper.cpp
//! engine (via `whisper-rs`) for the registry's `whisper-base` model.
//!
//! Uploads are untrusted: [`audio::decode`] bounds every header claim before it allocates from
//! it (sample rate [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`], at most [`MAX_CHANNELS`]
//! channels, decoding stopped at the duration limit, container tables checked against the bytes
//! present) and turns a panic inside a decoder into [`AsrError::NotAudio`]; see [`audio`] for
//! the full list and the reasons.

pub mod audio;
pub mod cer;
pub mod http;
pub mod vad;
pub mod whisper;

use serde::{Deserialize, Serialize};

pub use audio::{
    decode, decode_owned, Audio, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, MODEL_SAMPLE_RATE,
};
pub use whisper::{WhisperConfig, WhisperTranscriber};

/// Why a transcription failed. The first six are the caller's fault (HTTP 4xx).
/// [`AsrError::Unsupported`] (HTTP 415) also covers audio outside the accepted bounds (sample
/// rate, channels, codec buffer sizes, see [`audio`]).
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error("empty audio: {0}")]
    Empty(String),
    #[error("not audio: {0}")]
    NotAudio(String),
    #[error("truncated audio: {0}")]
    Truncated(String),
    #[error("audio too long: {secs} s, the limit is {max_secs} s")]
    TooLong { secs: f64, max_secs: f64 },
    #[error("unsupported audio: {0}")]
    Unsupported(String),
    #[error("invalid option: {0}")]
    Invalid(String),
    /// The model could not be found or loaded.
    #[error("speech model: {0}")]
    Model(String),
    /// The engine failed on valid audio.
    #[error("speech engine: {0}")]
    Engine(String),
}

impl AsrError {
    /// True when the input (not the server) is at fault.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, AsrError::Model(_) | AsrError::Engine(_))
    }

    /// Short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AsrError::Empty(_) => "empty_audio",
            AsrError::NotAudio(_) => "not_audio",
            AsrError::Truncated(_) => "truncated_audio",
            AsrError::TooLong { .. } => "audio_too_long",
            AsrError::Unsupported(_) => "unsupported_audio",
            AsrError::Invalid(_) => "invalid_option",
            AsrError::Model(_) => "model_error",
            AsrError::Engine(_) => "engine_error",
        }
    }
}

/// A timed piece of a transcript. Times are milliseconds from the start of the audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    /// Source channel when channels are transcribed separately (0 = left / first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<usize>,
}

/// What [`Transcriber::transcribe`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// All segments' text in time order (simplified Chinese).
    pub text: String,
    pub segments: Vec<Segment>,
    pub duration_ms: u64,
    /// Of the uploaded audio.
    pub sample_rate: u32,
    pub channels: usize,
    pub format: String,
    pub language: String,
    pub model: String,
    /// Chunks sent to the model (speech regions after VAD).
    pub chunks: usize,
}

/// How multi-channel audio is handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelMode {
    /// Average all channels into one (default).
    #[default]
    Mix,
    /// Transcribe every channel on its own (e.g. agent and citizen of a call recording); each
    /// segment carries its channel.
    Split,
}

impl std::str::FromStr for ChannelMode {
    type Err = AsrError;
    fn from_str(s: &str) -> Result<Self, AsrError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mix" | "mixed" | "mono" => Ok(ChannelMode::Mix),
            "split" | "separate" => Ok(ChannelMode::Split),
            other => Err(AsrError::Invalid(format!(
                "channels = `{other}` (use `mix` or `split`)"
            ))),
        }
    }
}

/// Options of one transcription.
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    pub channels: ChannelMode,
    /// Longer audio is refused with [`AsrError::TooLong`].
    pub max_duration_secs: f64,
    pub vad: vad::VadConfig,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            channels: ChannelMode::Mix,
            max_duration_secs: 2.0 * 3600.0,
            vad: vad::VadConfig::default(),
        }
    }
}

/// A speech-to-text engine.
pub trait Transcriber: Send + Sync {
    /// Model name, e.g. `whisper-base`.
    fn model(&self) -> &str;

    /// Language the engine transcribes, e.g. `zh`.
    fn language(&self) -> &str;

    /// Transcribe one chunk of 16 kHz mono samples (at most 30 s, usually one speech region).
    /// Times are relative to the chunk's start. Called with no context from earlier chunks.
    fn transcribe_chunk(&self, pcm: &[f32]) -> Result<Vec<Segment>, AsrError>;

    /// Decode an uploaded file and transcribe it.
    fn transcribe_bytes(
        &self,
        bytes: &[u8],
        opts: &TranscribeOptions,
    ) -> Result<Transcript, AsrError> {
        let audio = audio::decode(bytes, opts.max_duration_secs)?;
        self.transcribe(&audio, opts)
    }

    /// Transcribe decoded audio: resample, mix/split channels, chunk by voice activity,
    /// transcribe the chunks and put the segments together.
    fn transcribe(&self, audio: &Audio, opts: &TranscribeOptions) -> Result<Transcript, AsrError> {
        if audio.duration_secs() > opts.max_duration_secs {
            return Err(AsrError::TooLong {
                secs: audio.duration_secs(),
                max_secs: opts.max_duration_secs,
            });
        }
        let tracks: Vec<(Option<usize>, Vec<f32>)> = match opts.channels {
            ChannelMode::Split if audio.channels.len() > 1 => audio
                .channels
                .iter()
                .enumerate()
                .map(|(i, c)| (Some(i), c.clone()))
                .collect(),
            _ => vec![(None, audio.mixed())],
        };
        let mut segments = Vec::new();
        let mut n_chunks = 0;
        for (channel, samples) in tracks {
            let pcm = audio::resample_to_16k(&samples, audio.sample_rate)?;
            drop(samples);
            let mut queue: std::collections::VecDeque<vad::Span> =
                vad::chunks(&pcm, MODEL_SAMPLE_RATE, &opts.vad).into();
            while let Some(span) = queue.pop_front() {
                n_chunks += 1;
                let offset_ms = span.start as u64 * 1000 / MODEL_SAMPLE_RATE as u64;
                let chunk_end_ms = span.end as u64 * 1000 / MODEL_SAMPLE_RATE as u64;
                let mut covered_ms = offset_ms;
                for mut s in self.transcribe_chunk(&pcm[span.start..span.end])? {
                    s.text = fast2s::convert(s.text.trim());
                    if s.text.is_empty() {
                        continue;
                    }
                    s.start_ms = (s.start_ms + offset_ms).min(chunk_end_ms);
                    s.end_ms = (s.end_ms + offset_ms).clamp(s.start_ms, chunk_end_ms);
                    s.channel = channel;
                    covered_ms = covered_ms.max(s.end_ms);
                    segments.push(s);
                }
                // Whisper sometimes ends a window early and skips speech after a pause: a whole
                // speech region that starts after the last segment is transcribed again, from
                // there, as a chunk of its own. (The tail of the region being spoken when the
                // last segment ended is not: segment end times often fall a little short.)
                let covered = (covered_ms * MODEL_SAMPLE_RATE as u64 / 1000) as usize;
                if covered > span.start && covered < span.end {
                    let chunk = &pcm[span.start..span.end];
                    if let Some(next) = vad::speech_regions(chunk, MODEL_SAMPLE_RATE, &opts.vad)
                        .into_iter()
                        .find(|r| {
                            span.start + r.start >= covered
                                && r.len() >= MODEL_SAMPLE_RATE as usize / 2
                        })
                    {
                        queue.push_front(vad::Span {
                            start: span.start + next.start,
                            end: span.end,
                        });
                    }
                }
            }
        }
        segments.sort_by_key(|s| (s.start_ms, s.channel));
        Ok(Transcript {
            text: join_text(segments.iter().map(|s| s.text.as_str())),
            segments,
            duration_ms: (audio.duration_secs() * 1000.0).round() as u64,
            sample_rate: audio.sample_rate,
            channels: audio.channels.len(),
            format: audio.format.clone(),
            language: self.language().to_string(),
            model: self.model().to_string(),
            chunks: n_chunks,
        })
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x2E80..=0x9FFF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF)
}

/// Join segment texts: no separator between Chinese text, a space between other words.
pub fn join_text<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        if let (Some(a), Some(b)) = (out.chars().last(), p.chars().next()) {
            if !(is_cjk(a) || is_cjk(b)) {
                out.push(' ');
            }
        }
        out.push_str(p);
    }
    out
}
