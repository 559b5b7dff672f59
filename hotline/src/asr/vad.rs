//! Energy-based voice activity detection and chunking.
//!
//! Whisper decodes 30-second windows; on long calls it drifts into repetition loops when one
//! window's output conditions the next, and it invents text on long silences. So the audio is cut
//! into chunks at pauses: frames are classified as speech by their energy against the clip's own
//! noise floor, nearby speech is merged, and speech regions are packed into chunks of at most
//! `max_chunk_secs` (a region longer than that is cut at its quietest frame). Silence between
//! chunks is never sent to the model.

/// VAD and chunking parameters (all times in milliseconds unless named otherwise).
#[derive(Debug, Clone)]
pub struct VadConfig {
    pub frame_ms: u32,
    /// Speech closer than this is merged into one region.
    pub merge_gap_ms: u32,
    /// Regions with less speech than this are dropped (clicks, pops).
    pub min_speech_ms: u32,
    /// Context kept around each region.
    pub pad_ms: u32,
    /// Longest chunk handed to the model.
    pub max_chunk_secs: f32,
    /// Frames quieter than this (dBFS) are never speech.
    pub silence_dbfs: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            frame_ms: 30,
            merge_gap_ms: 700,
            min_speech_ms: 120,
            pad_ms: 250,
            max_chunk_secs: 25.0,
            silence_dbfs: -55.0,
        }
    }
}

/// A span of samples `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

fn frame_db(pcm: &[f32], frame: usize) -> Vec<f32> {
    pcm.chunks(frame)
        .map(|c| {
            let e = c.iter().map(|x| x * x).sum::<f32>() / c.len().max(1) as f32;
            10.0 * (e + 1e-10).log10()
        })
        .collect()
}

fn percentile(sorted: &[f32], p: f32) -> f32 {
    if sorted.is_empty() {
        return -100.0;
    }
    let i = ((sorted.len() - 1) as f32 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Speech regions of `pcm` (mono at `rate` Hz), padded, merged and sorted.
pub fn speech_regions(pcm: &[f32], rate: u32, cfg: &VadConfig) -> Vec<Span> {
    let frame = ((rate as u64 * cfg.frame_ms as u64 / 1000) as usize).max(1);
    let db = frame_db(pcm, frame);
    if db.is_empty() {
        return Vec::new();
    }
    let mut sorted = db.clone();
    sorted.sort_by(f32::total_cmp);
    let floor = percentile(&sorted, 0.10);
    let peak = percentile(&sorted, 0.95);
    if peak < cfg.silence_dbfs {
        return Vec::new();
    }
    // With little dynamic range the clip is either all speech or steady noise; let the model
    // judge it. Otherwise speech is what rises well above the floor.
    let threshold = if peak - floor < 6.0 {
        cfg.silence_dbfs
    } else {
        (floor + (0.3 * (peak - floor)).max(4.0)).max(cfg.silence_dbfs)
    };
    let ms_frames = |ms: u32| (ms as usize).div_ceil(cfg.frame_ms.max(1) as usize);
    let (gap, min_speech, pad) = (
        ms_frames(cfg.merge_gap_ms),
        ms_frames(cfg.min_speech_ms),
        ms_frames(cfg.pad_ms),
    );

    // runs of speech frames: (first, last+1, voiced frame count)
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, &d) in db.iter().enumerate() {
        if d < threshold {
            continue;
        }
        match runs.last_mut() {
            Some(r) if i - r.1 <= gap => {
                r.1 = i + 1;
                r.2 += 1;
            }
            _ => runs.push((i, i + 1, 1)),
        }
    }
    let mut spans: Vec<Span> = Vec::new();
    for (a, b, voiced) in runs {
        if voiced < min_speech {
            continue;
        }
        let start = a.saturating_sub(pad) * frame;
        let end = ((b + pad) * frame).min(pcm.len());
        match spans.last_mut() {
            Some(s) if start <= s.end => s.end = s.end.max(end),
            _ => spans.push(Span { start, end }),
        }
    }
    spans
}

/// Chunks of at most `cfg.max_chunk_secs` covering all speech of `pcm`.
pub fn chunks(pcm: &[f32], rate: u32, cfg: &VadConfig) -> Vec<Span> {
    let max = ((cfg.max_chunk_secs * rate as f32) as usize).max(rate as usize);
    let frame = ((rate as u64 * cfg.frame_ms as u64 / 1000) as usize).max(1);
    // cut over-long regions at their quietest frame in the second half of the window
    let mut pieces: Vec<Span> = Vec::new();
    for mut s in speech_regions(pcm, rate, cfg) {
        while s.len() > max {
            let lo = s.start + max / 2;
            let hi = s.start + max - frame;
            let mut best = hi;
            let mut best_e = f32::INFINITY;
            let mut at = lo;
            while at + frame <= hi {
                let e: f32 = pcm[at..at + frame].iter().map(|x| x * x).sum();
                if e < best_e {
                    best_e = e;
                    best = at + frame / 2;
                }
                at += frame;
            }
            pieces.push(Span {
                start: s.start,
                end: best,
            });
            s.start = best;
        }
        if !s.is_empty() {
            pieces.push(s);
        }
    }
    // pack neighbouring pieces into chunks up to `max`
    let mut out: Vec<Span> = Vec::new();
    for p in pieces {
        match out.last_mut() {
            Some(c) if p.end - c.start <= max => c.end = p.end,
            _ => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.3).sin() * amp).collect()
    }

    #[test]
    fn silence_has_no_speech_and_bursts_are_found() {
        let cfg = VadConfig::default();
        assert!(speech_regions(&vec![0.0; 16000 * 5], 16000, &cfg).is_empty());
        let mut x = vec![0.0005f32; 16000 * 10];
        x[16000 * 2..16000 * 4].copy_from_slice(&tone(32000, 0.3));
        x[16000 * 7..16000 * 8].copy_from_slice(&tone(16000, 0.3));
        let r = speech_regions(&x, 16000, &cfg);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].start <= 32000 && r[0].start >= 32000 - 16000 / 2);
        assert!(r[1].end >= 16000 * 8 && r[1].end <= 16000 * 8 + 16000 / 2);
    }

    #[test]
    fn long_speech_is_cut_into_bounded_chunks() {
        let cfg = VadConfig::default();
        // 70 s of "speech" with a short dip every 9 s
        let mut x = tone(16000 * 70, 0.3);
        for k in 1..8 {
            let at = k * 9 * 16000;
            x[at..at + 1600].iter_mut().for_each(|v| *v *= 0.01);
        }
        let c = chunks(&x, 16000, &cfg);
        assert!(c.len() >= 3, "{c:?}");
        let max = (cfg.max_chunk_secs * 16000.0) as usize;
        assert!(c.iter().all(|s| s.len() <= max));
        assert_eq!(c.first().unwrap().start, 0);
        assert_eq!(c.last().unwrap().end, x.len());
        for w in c.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }
}
