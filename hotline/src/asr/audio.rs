//! Audio input: decode an uploaded file (WAV through `hound`; MP3, AAC/M4A, FLAC, Ogg Vorbis and
//! others through `symphonia`), check it, and turn it into 16 kHz mono `f32` tracks for the model
//! (telephone audio at 8 kHz and any other rate is resampled with `rubato`).

use std::io::Cursor;

use rubato::{FftFixedInOut, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::AsrError;

/// The sample rate Whisper works at.
pub const MODEL_SAMPLE_RATE: u32 = 16_000;

/// Decoded audio: one `Vec<f32>` per channel, samples in [-1, 1].
#[derive(Debug, Clone)]
pub struct Audio {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
    /// Container/codec, e.g. `wav/pcm16`, `mp3`.
    pub format: String,
}

impl Audio {
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    pub fn duration_secs(&self) -> f64 {
        if self.sample_rate == 0 {
            0.0
        } else {
            self.frames() as f64 / self.sample_rate as f64
        }
    }

    /// All channels averaged into one.
    pub fn mixed(&self) -> Vec<f32> {
        match self.channels.len() {
            0 => Vec::new(),
            1 => self.channels[0].clone(),
            n => {
                let scale = 1.0 / n as f32;
                (0..self.frames())
                    .map(|i| self.channels.iter().map(|c| c[i]).sum::<f32>() * scale)
                    .collect()
            }
        }
    }
}

/// Decode `bytes`; `max_secs` bounds the duration (checked from the header where it has one, so
/// an over-long upload is refused before it is decoded).
pub fn decode(bytes: &[u8], max_secs: f64) -> Result<Audio, AsrError> {
    if bytes.is_empty() {
        return Err(AsrError::Empty("the upload has no bytes".into()));
    }
    let audio = if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        decode_wav(bytes, max_secs)?
    } else {
        decode_other(bytes, max_secs)?
    };
    if audio.frames() == 0 || audio.channels.is_empty() {
        return Err(AsrError::Empty(format!(
            "the {} audio contains no samples",
            audio.format
        )));
    }
    if audio.duration_secs() > max_secs {
        return Err(too_long(audio.duration_secs(), max_secs));
    }
    Ok(audio)
}

fn too_long(secs: f64, max: f64) -> AsrError {
    AsrError::TooLong {
        secs: (secs * 10.0).round() / 10.0,
        max_secs: max,
    }
}

fn decode_wav(bytes: &[u8], max_secs: f64) -> Result<Audio, AsrError> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AsrError::Truncated("the WAV header is cut off".into())
        }
        e if e.to_string().contains("enough bytes") => {
            AsrError::Truncated("the WAV header is cut off".into())
        }
        hound::Error::Unsupported => AsrError::Unsupported("this WAV encoding".into()),
        other => AsrError::NotAudio(format!("invalid WAV file: {other}")),
    })?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(AsrError::NotAudio(format!(
            "WAV header says {} channels at {} Hz",
            spec.channels, spec.sample_rate
        )));
    }
    let n_ch = spec.channels as usize;
    let frames = reader.duration() as usize;
    let secs = frames as f64 / spec.sample_rate as f64;
    if secs > max_secs {
        return Err(too_long(secs, max_secs));
    }
    let format = match spec.sample_format {
        hound::SampleFormat::Int => format!("wav/pcm{}", spec.bits_per_sample),
        hound::SampleFormat::Float => format!("wav/float{}", spec.bits_per_sample),
    };
    let mut channels: Vec<Vec<f32>> = (0..n_ch).map(|_| Vec::with_capacity(frames)).collect();
    let truncated = |got: usize| {
        AsrError::Truncated(format!(
            "the WAV header announces {frames} frames ({secs:.2} s) but the data ends after {} frames",
            got / n_ch
        ))
    };
    let wav_err = |e: hound::Error, got: usize| match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            truncated(got)
        }
        // hound's word for a data chunk that ends early (an `Other` I/O error)
        e if e.to_string().contains("enough bytes") => truncated(got),
        hound::Error::Unsupported => AsrError::Unsupported(format!("{format} WAV")),
        other => AsrError::NotAudio(format!("invalid WAV data: {other}")),
    };
    let mut reader = reader;
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for (i, s) in reader.samples::<f32>().enumerate() {
                channels[i % n_ch].push(s.map_err(|e| wav_err(e, i))?);
            }
        }
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if bits == 0 || bits > 32 {
                return Err(AsrError::Unsupported(format!("{bits}-bit WAV")));
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for (i, s) in reader.samples::<i32>().enumerate() {
                channels[i % n_ch].push(s.map_err(|e| wav_err(e, i))? as f32 * scale);
            }
        }
    }
    // hound stops quietly when the data ends inside a frame; a short last channel is truncation.
    let got: usize = channels.iter().map(Vec::len).sum();
    if got < frames * n_ch {
        return Err(truncated(got));
    }
    Ok(Audio {
        sample_rate: spec.sample_rate,
        channels,
        format,
    })
}

fn decode_other(bytes: &[u8], max_secs: f64) -> Result<Audio, AsrError> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| {
            AsrError::NotAudio(format!(
                "not a recognised audio file (WAV, MP3, M4A/AAC, FLAC, Ogg Vorbis): {e}"
            ))
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AsrError::NotAudio("the file has no audio track".into()))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let codec_name = symphonia::default::get_codecs()
        .get_codec(params.codec)
        .map(|d| d.short_name.to_string())
        .unwrap_or_else(|| "unknown".into());
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| AsrError::Unsupported(format!("audio codec {codec_name}: {e}")))?;
    if let (Some(n), Some(sr)) = (params.n_frames, params.sample_rate) {
        let secs = n as f64 / sr as f64;
        if secs > max_secs {
            return Err(too_long(secs, max_secs));
        }
    }

    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut decode_errors = 0usize;
    let mut packets = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                if packets == 0 {
                    return Err(AsrError::NotAudio(format!(
                        "cannot read audio packets: {e}"
                    )));
                }
                return Err(AsrError::Truncated(format!(
                    "reading stopped after {packets} packets: {e}"
                )));
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        packets += 1;
        let buf = match decoder.decode(&packet) {
            Ok(b) => b,
            Err(SymError::DecodeError(_)) => {
                decode_errors += 1;
                continue;
            }
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(AsrError::NotAudio(format!("decoding failed: {e}"))),
        };
        let spec = *buf.spec();
        let n_ch = spec.channels.count();
        if n_ch == 0 {
            continue;
        }
        if channels.is_empty() {
            channels = vec![Vec::new(); n_ch];
            sample_rate = spec.rate;
        }
        if n_ch != channels.len() || spec.rate != sample_rate {
            return Err(AsrError::Unsupported(
                "audio whose channel count or sample rate changes mid-stream".into(),
            ));
        }
        let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
        sb.copy_interleaved_ref(buf);
        for (i, s) in sb.samples().iter().enumerate() {
            channels[i % n_ch].push(*s);
        }
        if sample_rate > 0 && channels[0].len() as f64 / sample_rate as f64 > max_secs {
            return Err(too_long(
                channels[0].len() as f64 / sample_rate as f64,
                max_secs,
            ));
        }
    }
    if channels.is_empty() || sample_rate == 0 {
        return Err(if packets == 0 {
            AsrError::Empty(format!("the {codec_name} file holds no audio packets"))
        } else {
            AsrError::NotAudio(format!(
                "none of the {packets} {codec_name} packets could be decoded"
            ))
        });
    }
    if decode_errors > 0 {
        tracing::warn!("{codec_name}: skipped {decode_errors} undecodable packets of {packets}");
    }
    Ok(Audio {
        sample_rate,
        channels,
        format: codec_name,
    })
}

/// Resample one channel to 16 kHz (unchanged when it already is).
pub fn resample_to_16k(samples: &[f32], rate: u32) -> Result<Vec<f32>, AsrError> {
    resample(samples, rate, MODEL_SAMPLE_RATE)
}

/// Resample one channel from `rate` to `to` Hz (band-limited FFT resampler), same duration.
pub fn resample(samples: &[f32], rate: u32, to: u32) -> Result<Vec<f32>, AsrError> {
    if rate == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let internal = |e: String| AsrError::Engine(format!("resampling {rate} Hz -> {to} Hz: {e}"));
    let mut r = FftFixedInOut::<f32>::new(rate as usize, to as usize, 1024, 1)
        .map_err(|e| internal(e.to_string()))?;
    let delay = r.output_delay();
    let expected = ((samples.len() as u64 * to as u64).div_ceil(rate as u64)) as usize;
    let mut out: Vec<f32> = Vec::with_capacity(expected + delay + 4096);
    let mut pos = 0usize;
    let mut chunk: Vec<f32> = Vec::new();
    while out.len() < expected + delay {
        let need = r.input_frames_next();
        chunk.clear();
        chunk.resize(need, 0.0);
        let take = need.min(samples.len().saturating_sub(pos));
        chunk[..take].copy_from_slice(&samples[pos..pos + take]);
        pos += take;
        let o = r
            .process(&[&chunk[..]], None)
            .map_err(|e| internal(e.to_string()))?;
        out.extend_from_slice(&o[0]);
    }
    out.drain(..delay);
    out.truncate(expected);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, secs: f32, hz: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn resampling_8k_keeps_length_and_pitch() {
        let x = sine(8000, 1.0, 440.0);
        let y = resample_to_16k(&x, 8000).unwrap();
        assert_eq!(y.len(), 16000);
        // zero crossings of a 440 Hz tone over 1 s: ~880
        let zc = y.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!((435..=445).contains(&zc), "{zc}");
        // aligned: compare with a 16 kHz sine in the middle
        let z = sine(16000, 1.0, 440.0);
        let err: f32 = (4000..12000)
            .map(|i| (y[i] - z[i]).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.02, "max error {err}");
    }

    #[test]
    fn bad_bytes_are_clear_errors() {
        assert!(matches!(decode(b"", 60.0), Err(AsrError::Empty(_))));
        assert!(matches!(
            decode(
                b"hello, this is plainly some text and not audio at all",
                60.0
            ),
            Err(AsrError::NotAudio(_))
        ));
    }
}
