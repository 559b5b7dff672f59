//! Suite `asr`: character error rate, real-time factor and peak RSS of call transcription on the
//! AISHELL sample (`<data>/asr/aishell_sample/text`, Kaldi format `<utt-id> <reference>`, with
//! `<utt-id>.wav` beside it). The whole transcription pipeline runs (decode, VAD chunking,
//! whisper.cpp with the initial prompt, traditional -> simplified); CER is summed edits over
//! summed reference characters after removing punctuation and whitespace.

use std::time::Instant;

use anyhow::{bail, Context};
use zhengwu_hotline::asr::{
    cer, TranscribeOptions, Transcriber, WhisperConfig, WhisperTranscriber,
};
use zhengwu_inference::registry::Registry;

use crate::llm_speed::peak_rss_mb;
use crate::report::{fmt_num, Report};
use crate::EvalArgs;

const DEFAULT_MODEL: &str = "whisper-base";

pub fn run(args: &EvalArgs) -> anyhow::Result<Report> {
    let dir = args.data.join("asr/aishell_sample");
    let text_path = dir.join("text");
    let text = fs_err::read_to_string(&text_path)
        .with_context(|| format!("the asr suite reads {}", text_path.display()))?;
    let mut clips: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (id, reference) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        clips.push((id.to_string(), reference.trim().to_string()));
    }
    if clips.is_empty() {
        bail!("{} lists no utterances", text_path.display());
    }

    let model = args
        .models
        .first()
        .map(String::as_str)
        .unwrap_or(DEFAULT_MODEL);
    let threads = args.threads.unwrap_or(1);
    let registry = Registry::load(&args.models_toml)?;
    let t_load = Instant::now();
    let engine = WhisperTranscriber::load(
        model,
        &registry.locate_whisper(model)?,
        WhisperConfig {
            threads,
            ..WhisperConfig::default()
        },
    )?;
    let load_secs = t_load.elapsed().as_secs_f64();
    let opts = TranscribeOptions::default();

    let (mut edits, mut ref_chars, mut audio_secs, mut busy_secs) =
        (0usize, 0usize, 0.0f64, 0.0f64);
    let mut edits_spelled = 0usize;
    let mut rows: Vec<(String, f64, String, String)> = Vec::new();
    let bar = indicatif::ProgressBar::new(clips.len() as u64);
    for (id, reference) in &clips {
        let wav = dir.join(format!("{id}.wav"));
        let bytes = fs_err::read(&wav)?;
        let t = Instant::now();
        let tr = engine
            .transcribe_bytes(&bytes, &opts)
            .with_context(|| format!("transcribing {}", wav.display()))?;
        busy_secs += t.elapsed().as_secs_f64();
        audio_secs += tr.duration_ms as f64 / 1000.0;
        let (e, n) = cer::cer_counts(reference, &tr.text);
        edits += e;
        ref_chars += n;
        edits_spelled += cer::cer_counts(reference, &cer::spell_numbers(&tr.text)).0;
        rows.push((
            id.clone(),
            e as f64 / n.max(1) as f64,
            reference.clone(),
            tr.text,
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();

    let corpus_cer = edits as f64 / ref_chars.max(1) as f64;
    let rtf = busy_secs / audio_secs.max(1e-9);
    let rss = peak_rss_mb(None).unwrap_or(f64::NAN);
    let exact = rows.iter().filter(|r| r.1 == 0.0).count();

    let mut report = Report::new(&format!("ASR ({model}, whisper.cpp, {threads} thread(s))"));
    report.metric("asr.cer", corpus_cer);
    report.metric(
        "asr.cer_spelled_numbers",
        edits_spelled as f64 / ref_chars.max(1) as f64,
    );
    report.metric("asr.rtf", rtf);
    report.metric("asr.peak_rss_mb", rss);
    report.metric("asr.clips", clips.len() as f64);
    report.metric("asr.audio_secs", audio_secs);
    report.metric("asr.load_secs", load_secs);
    report.metric("asr.exact_match_rate", exact as f64 / clips.len() as f64);
    report.section(format!(
        "## Setup\n\n{} clips from `{}` ({:.1} s of audio, {} reference characters). CER = \
         edits / reference characters over the whole set, after traditional -> simplified, \
         full-width -> ASCII, lower case, punctuation and spaces removed (numbers are not \
         normalised: `29` against `二十九` counts as errors; `asr.cer_spelled_numbers` spells the \
         transcript's Arabic numerals out first). RTF = transcription wall time \
         (decode + VAD + whisper) / audio duration, model load excluded. Peak RSS is this \
         process's VmHWM.",
        clips.len(),
        dir.display(),
        audio_secs,
        ref_chars
    ));
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut md = String::from(
        "## Worst clips\n\n| clip | CER | reference | transcript |\n|---|---:|---|---|\n",
    );
    for (id, c, r, h) in rows.iter().take(15) {
        md.push_str(&format!("| {id} | {} | {r} | {h} |\n", fmt_num(*c)));
    }
    report.section(md);
    Ok(report)
}
