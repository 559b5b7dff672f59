//! Audio input: decode an uploaded file (WAV through `hound`; MP3, AAC/M4A, FLAC, Ogg Vorbis and
//! others through `symphonia`), check it, and turn it into 16 kHz mono `f32` tracks for the model
//! (telephone audio at 8 kHz and any other rate is resampled with `rubato`).
//!
//! # What is bounded, and why
//!
//! An upload is hostile until proven otherwise: its headers are only claims, and a few bytes can
//! claim 4 GHz, 65,535 channels or 4 GiB of samples. Every size that drives an allocation or a
//! loop is therefore checked against a fixed bound or against the bytes really present, *before*
//! anything is allocated from it:
//!
//! - **Sample rate** [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`] (8-48 kHz: telephone to studio
//!   rate) and **channels** 1..=[`MAX_CHANNELS`], read from the WAV header, from the codec
//!   parameters of a compressed stream and again from every decoded buffer. Anything else is
//!   [`AsrError::Unsupported`] (HTTP 415) and is never decoded. The resampler, whose working
//!   buffers grow with the rate, refuses rates outside the range too.
//! - **Duration**: the declared duration (WAV header, container frame count) is checked first,
//!   and decoding stops with [`AsrError::TooLong`] as soon as the decoded frames pass
//!   `max_secs * rate`, before the buffer that passes it is copied. So decoded audio never holds
//!   more than `max_secs * MAX_SAMPLE_RATE * MAX_CHANNELS` samples, whatever the stream claims.
//!   Compressed audio can expand a thousandfold (a FLAC block of constant samples takes a few
//!   bytes), so this product, not the upload size, is the memory bound: 2.8 billion `f32`
//!   (11 GiB) at the default two-hour limit for 48 kHz with 8 channels, 230 MB for 8 kHz mono.
//! - **Declared lengths are never used to reserve memory**: the WAV sample vectors are sized by
//!   the frames the uploaded bytes can really hold (and grow with the data); a header announcing
//!   more data than the file has still ends in [`AsrError::Truncated`].
//! - **Decoder buffers**: a codec that declares more than [`MAX_FRAMES_PER_PACKET`] frames per
//!   packet is refused (symphonia allocates its output buffer from that number).
//! - **Container tables symphonia would allocate blindly**: MP4/M4A sample tables
//!   (`stts`/`stsc`/`stsz`/`stco`/`co64`, sized from a 32-bit count) and boxes read whole into
//!   memory are checked against the bytes present ([`mp4`]); Ogg Vorbis codebooks (a 16-bit
//!   dimension times a 24-bit entry count, terabytes from a few bytes) are capped ([`ogg`]).
//!   An allocation that fails aborts the whole process, so these must be refused up front.
//! - **Panics**: a panic inside `hound` or `symphonia` on malformed data (an arithmetic overflow,
//!   a failed assertion) is caught and reported as [`AsrError::NotAudio`] instead of taking the
//!   server down.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rubato::{FftFixedInOut, Resampler};
use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::conv::IntoSample;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, ReadBytes};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Instantiate;
use symphonia::core::sample::Sample;

use super::AsrError;

/// The sample rate Whisper works at.
pub const MODEL_SAMPLE_RATE: u32 = 16_000;

/// Lowest accepted sample rate (narrow-band telephone audio).
pub const MIN_SAMPLE_RATE: u32 = 8_000;

/// Highest accepted sample rate. Higher rates carry nothing the model can use, and the
/// resampler's buffers grow with the rate.
pub const MAX_SAMPLE_RATE: u32 = 48_000;

/// Most channels accepted (7.1); a call recording has one or two.
pub const MAX_CHANNELS: usize = 8;

/// Most samples one upload may decode to (1 GiB of `f32`), whatever its duration limit: a
/// ~100 KB FLAC of silence can expand to hours of 48 kHz, 8-channel audio. 2 hours of 16 kHz
/// stereo (a recorded call) fits; 48 kHz stereo is cut at about 46 minutes.
pub const MAX_DECODED_SAMPLES: usize = 256 * 1024 * 1024;

/// Most frames a codec may declare per packet (symphonia allocates the decoder's output buffer
/// from it). FLAC's largest block is 65,535 frames; this leaves room for PCM codecs that pack
/// several thousand frames per packet.
pub const MAX_FRAMES_PER_PACKET: u64 = 1 << 18;

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

/// Refuse a sample rate outside [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`] (0 Hz is malformed:
/// `NotAudio`; any other value out of range: `Unsupported`). `what` names the source.
fn check_rate(rate: u32, what: &str) -> Result<(), AsrError> {
    if rate == 0 {
        return Err(AsrError::NotAudio(format!("{what} says 0 Hz")));
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        return Err(AsrError::Unsupported(format!(
            "{what} says {rate} Hz; the sample rate must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )));
    }
    Ok(())
}

/// Refuse 0 channels (`NotAudio`) or more than [`MAX_CHANNELS`] (`Unsupported`).
fn check_channels(channels: usize, what: &str) -> Result<(), AsrError> {
    if channels == 0 {
        return Err(AsrError::NotAudio(format!("{what} says 0 channels")));
    }
    if channels > MAX_CHANNELS {
        return Err(AsrError::Unsupported(format!(
            "{what} says {channels} channels; at most {MAX_CHANNELS} are supported"
        )));
    }
    Ok(())
}

/// Frames that fit in `max_secs` at `rate` (saturating; a NaN limit allows none).
fn frame_limit(max_secs: f64, rate: u32) -> usize {
    // `as` saturates: +inf -> usize::MAX, NaN and negatives -> 0.
    (max_secs * rate as f64).floor() as usize
}

/// Decode `bytes`; `max_secs` bounds the duration (checked from the header where it has one, so
/// an over-long upload is refused before it is decoded, and again while decoding). The sample
/// rate and channel count are checked before anything is allocated from them (see the module
/// documentation for every bound).
///
/// Compressed input goes through symphonia, which needs an owned buffer: this copies the bytes
/// once; [`decode_owned`] takes a buffer the caller already owns (e.g. the request body) instead.
pub fn decode(bytes: &[u8], max_secs: f64) -> Result<Audio, AsrError> {
    check_input(bytes, max_secs)?;
    let audio = if is_wav(bytes) {
        guarded("WAV", || decode_wav(bytes, max_secs))?
    } else {
        decode_other(Shared::new(bytes.to_vec()), max_secs)?
    };
    finish(audio, max_secs)
}

/// [`decode`] without copying: `bytes` is any owned buffer (`Vec<u8>`, `Arc<[u8]>`,
/// `bytes::Bytes`, ...), handed to the decoder as it is.
pub fn decode_owned<B>(bytes: B, max_secs: f64) -> Result<Audio, AsrError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    check_input(bytes.as_ref(), max_secs)?;
    let audio = if is_wav(bytes.as_ref()) {
        guarded("WAV", || decode_wav(bytes.as_ref(), max_secs))?
    } else {
        decode_other(Shared::new(bytes), max_secs)?
    };
    finish(audio, max_secs)
}

fn check_input(bytes: &[u8], max_secs: f64) -> Result<(), AsrError> {
    if max_secs.is_nan() {
        return Err(AsrError::Invalid(
            "the duration limit is not a number".into(),
        ));
    }
    if bytes.is_empty() {
        return Err(AsrError::Empty("the upload has no bytes".into()));
    }
    Ok(())
}

fn is_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

/// The checks every decoded file passes, whichever decoder produced it.
fn finish(audio: Audio, max_secs: f64) -> Result<Audio, AsrError> {
    if audio.frames() == 0 || audio.channels.is_empty() {
        return Err(AsrError::Empty(format!(
            "the {} audio contains no samples",
            audio.format
        )));
    }
    check_rate(audio.sample_rate, "the decoded audio")?;
    check_channels(audio.channels.len(), "the decoded audio")?;
    if audio.channels.iter().any(|c| c.len() != audio.frames()) {
        return Err(AsrError::Truncated(format!(
            "the {} channels end at different lengths",
            audio.format
        )));
    }
    if audio.duration_secs() > max_secs {
        return Err(too_long(audio.duration_secs(), max_secs));
    }
    Ok(audio)
}

/// Run a decoder, turning a panic inside it (a dependency tripping over malformed data) into
/// [`AsrError::NotAudio`]: one bad upload must not take the server down.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, AsrError>) -> Result<T, AsrError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::warn!("the {what} decoder panicked on an upload: {msg}");
            Err(AsrError::NotAudio(format!(
                "the {what} decoder failed on malformed data ({msg})"
            )))
        }
    }
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
    // Header values are claims: bound them before anything is allocated or decoded.
    check_rate(spec.sample_rate, "the WAV header")?;
    check_channels(spec.channels as usize, "the WAV header")?;
    let bits = spec.bits_per_sample;
    if spec.sample_format == hound::SampleFormat::Int && (bits == 0 || bits > 32) {
        return Err(AsrError::Unsupported(format!("{bits}-bit WAV")));
    }
    let n_ch = spec.channels as usize;
    let frames = reader.duration() as usize;
    let secs = frames as f64 / spec.sample_rate as f64;
    if secs > max_secs {
        return Err(too_long(secs, max_secs));
    }
    let max_frames = frame_limit(max_secs, spec.sample_rate);
    let format = match spec.sample_format {
        hound::SampleFormat::Int => format!("wav/pcm{bits}"),
        hound::SampleFormat::Float => format!("wav/float{bits}"),
    };
    // Reserve for the frames the uploaded bytes can really hold, never for the declared length.
    let frame_bytes = (n_ch * (bits as usize).div_ceil(8)).max(1);
    let reserve = frames.min(bytes.len() / frame_bytes).min(max_frames);
    let mut channels: Vec<Vec<f32>> = (0..n_ch).map(|_| Vec::with_capacity(reserve)).collect();
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
    // Never read past the duration limit (the declared length was checked above; this keeps
    // the bound even if the two disagree).
    let sample_limit = max_frames.saturating_add(1).saturating_mul(n_ch);
    let mut reader = reader;
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for (i, s) in reader.samples::<f32>().take(sample_limit).enumerate() {
                channels[i % n_ch].push(s.map_err(|e| wav_err(e, i))?);
            }
        }
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for (i, s) in reader.samples::<i32>().take(sample_limit).enumerate() {
                channels[i % n_ch].push(s.map_err(|e| wav_err(e, i))? as f32 * scale);
            }
        }
    }
    if channels[0].len() > max_frames {
        return Err(too_long(
            channels[0].len() as f64 / spec.sample_rate as f64,
            max_secs,
        ));
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

/// An owned upload shared between symphonia's reader (which needs `'static`) and the container
/// checks, without copying it.
struct Shared<B>(Arc<B>);

impl<B> Shared<B> {
    fn new(bytes: B) -> Self {
        Shared(Arc::new(bytes))
    }
}

impl<B> Clone for Shared<B> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<B: AsRef<[u8]>> AsRef<[u8]> for Shared<B> {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

fn decode_other<B>(data: Shared<B>, max_secs: f64) -> Result<Audio, AsrError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let view = data.clone();
    let mss = MediaSourceStream::new(Box::new(Cursor::new(data)), Default::default());
    guarded("audio", || decode_symphonia(view.as_ref(), mss, max_secs))
}

/// Find the container the way symphonia's probe does, and check the container's own size
/// fields against `bytes` before its reader is built (see [`mp4`] and [`ogg`]).
fn open_container(
    bytes: &[u8],
    mut mss: MediaSourceStream,
) -> Result<Box<dyn FormatReader>, AsrError> {
    let not_recognised = |e: SymError| {
        AsrError::NotAudio(format!(
            "not a recognised audio file (WAV, MP3, M4A/AAC, FLAC, Ogg Vorbis): {e}"
        ))
    };
    let probe = symphonia::default::get_probe();
    loop {
        match probe.next(&mut mss).map_err(not_recognised)? {
            Instantiate::Metadata(make) => {
                make(&MetadataOptions::default())
                    .read_all(&mut mss)
                    .map_err(|e| AsrError::NotAudio(format!("unreadable metadata tag: {e}")))?;
            }
            Instantiate::Format(make) => {
                // The probe leaves the stream at the marker it matched.
                let at = mss.pos() as usize;
                match bytes.get(at..at + 4) {
                    Some(b"ftyp") if at >= 4 => mp4::check(bytes, at - 4)?,
                    Some(b"OggS") => ogg::check(bytes, at)?,
                    _ => {}
                }
                return make(mss, &FormatOptions::default()).map_err(not_recognised);
            }
        }
    }
}

fn decode_symphonia(
    bytes: &[u8],
    mss: MediaSourceStream,
    max_secs: f64,
) -> Result<Audio, AsrError> {
    let mut format = open_container(bytes, mss)?;
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
    // The stream's own claims, checked before a decoder allocates anything from them.
    let what = format!("the {codec_name} stream");
    if let Some(sr) = params.sample_rate {
        check_rate(sr, &what)?;
    }
    if let Some(ch) = params.channels {
        check_channels(ch.count(), &what)?;
    }
    if let Some(n) = params.max_frames_per_packet {
        if n > MAX_FRAMES_PER_PACKET {
            return Err(AsrError::Unsupported(format!(
                "{what} declares {n} frames per packet; at most {MAX_FRAMES_PER_PACKET} are supported"
            )));
        }
    }
    if let (Some(n), Some(sr)) = (params.n_frames, params.sample_rate) {
        let secs = n as f64 / sr as f64;
        if secs > max_secs {
            return Err(too_long(secs, max_secs));
        }
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| AsrError::Unsupported(format!("audio codec {codec_name}: {e}")))?;

    // Hard ceiling on decoded samples, whatever the stream says: the duration limit at the
    // highest rate with the most channels.
    let max_samples = frame_limit(max_secs, MAX_SAMPLE_RATE).saturating_mul(MAX_CHANNELS).min(MAX_DECODED_SAMPLES);
    let mut max_frames = 0usize;
    let mut sample_rate = 0u32;
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
        let frames = buf.frames();
        if n_ch == 0 || frames == 0 {
            continue;
        }
        if channels.is_empty() {
            check_rate(spec.rate, &format!("the decoded {codec_name} audio"))?;
            check_channels(n_ch, &format!("the decoded {codec_name} audio"))?;
            channels = vec![Vec::new(); n_ch];
            sample_rate = spec.rate;
            max_frames = frame_limit(max_secs, sample_rate);
        }
        if n_ch != channels.len() || spec.rate != sample_rate {
            return Err(AsrError::Unsupported(
                "audio whose channel count or sample rate changes mid-stream".into(),
            ));
        }
        // Stop before copying the buffer that passes the limit.
        let total = channels[0].len() + frames;
        if total > max_frames || total.saturating_mul(n_ch) > max_samples {
            // Past the memory budget before the duration limit: the limit that applies is the
            // budget's duration at this rate and channel count.
            let budget_secs = (max_samples / n_ch) as f64 / sample_rate as f64;
            return Err(too_long(total as f64 / sample_rate as f64, max_secs.min((budget_secs * 10.0).floor() / 10.0)));
        }
        append_planar(buf, &mut channels);
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

/// Append a decoded buffer to the per-channel vectors, converting to `f32` (no intermediate
/// interleaved copy).
fn append_planar(buf: AudioBufferRef<'_>, out: &mut [Vec<f32>]) {
    fn append<S: Sample + IntoSample<f32>>(buf: &AudioBuffer<S>, out: &mut [Vec<f32>]) {
        for (c, dst) in out.iter_mut().enumerate() {
            dst.extend(buf.chan(c).iter().map(|&s| s.into_sample()));
        }
    }
    match buf {
        AudioBufferRef::U8(b) => append(&b, out),
        AudioBufferRef::U16(b) => append(&b, out),
        AudioBufferRef::U24(b) => append(&b, out),
        AudioBufferRef::U32(b) => append(&b, out),
        AudioBufferRef::S8(b) => append(&b, out),
        AudioBufferRef::S16(b) => append(&b, out),
        AudioBufferRef::S24(b) => append(&b, out),
        AudioBufferRef::S32(b) => append(&b, out),
        AudioBufferRef::F32(b) => append(&b, out),
        AudioBufferRef::F64(b) => append(&b, out),
    }
}

/// Resample one channel to 16 kHz (unchanged when it already is).
pub fn resample_to_16k(samples: &[f32], rate: u32) -> Result<Vec<f32>, AsrError> {
    resample(samples, rate, MODEL_SAMPLE_RATE)
}

/// Resample one channel from `rate` to `to` Hz (band-limited FFT resampler), same duration.
/// Both rates must be in [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`]: the resampler's FFT and
/// chunk buffers are sized from the rates (a 4 GHz rate would ask for ~17 GB).
pub fn resample(samples: &[f32], rate: u32, to: u32) -> Result<Vec<f32>, AsrError> {
    for r in [rate, to] {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&r) {
            return Err(AsrError::Unsupported(format!(
                "resampling {rate} Hz -> {to} Hz: sample rates must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
            )));
        }
    }
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

/// MP4/M4A (ISO base media) checks, run before symphonia's `isomp4` reader sees the file.
///
/// That reader (0.5) reserves its sample tables from the 32-bit entry count in the box
/// (`Vec::with_capacity(count)`: a 16-byte `stsz` box asking for 4 billion entries reserves
/// 16 GiB, a `co64` one 32 GiB, and a failed allocation aborts the process), and reads several
/// boxes whole into memory from their declared size (`hdlr`, metadata `data`, codec
/// configuration boxes). Here the boxes the reader descends into are walked the way it walks them,
/// and every such claim is compared with the bytes that really follow: a table whose entries
/// cannot all be present, or a box that ends past the end of the file, is refused
/// ([`AsrError::Truncated`]) — the reader would have run out of data on it anyway, after the
/// allocation.
pub mod mp4 {
    use super::AsrError;

    /// Deepest box nesting walked (the reader's own structure is at most ~10 deep).
    const MAX_DEPTH: usize = 16;

    struct Header {
        typ: [u8; 4],
        /// Total box length; 0 = "to the end of the parent".
        len: u64,
        header_len: u64,
    }

    fn be32(b: &[u8], at: u64) -> Option<u32> {
        let at = usize::try_from(at).ok()?;
        b.get(at..at.checked_add(4)?)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn header(b: &[u8], at: u64) -> Option<Header> {
        let len32 = be32(b, at)?;
        let at_u = usize::try_from(at).ok()?;
        let typ: [u8; 4] = b.get(at_u + 4..at_u + 8)?.try_into().ok()?;
        if len32 == 1 {
            let hi = be32(b, at + 8)? as u64;
            let lo = be32(b, at + 12)? as u64;
            Some(Header {
                typ,
                len: (hi << 32) | lo,
                header_len: 16,
            })
        } else {
            Some(Header {
                typ,
                len: len32 as u64,
                header_len: 8,
            })
        }
    }

    fn name(t: &[u8; 4]) -> String {
        t.iter()
            .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
            .collect()
    }

    /// Check the file whose top-level boxes start at `start` (where the reader starts).
    pub fn check(bytes: &[u8], start: usize) -> Result<(), AsrError> {
        walk(bytes, start as u64, bytes.len() as u64, *b"root", 0)
    }

    /// How the reader treats a child of `parent`: `Some(skip)` = a container it descends into,
    /// whose children start `skip` bytes into its payload.
    fn container(parent: &[u8; 4], typ: &[u8; 4]) -> Option<u64> {
        match (parent, typ) {
            (b"root", b"moov") | (b"moov", b"trak") | (b"trak", b"mdia") => Some(0),
            (b"mdia", b"minf") | (b"minf", b"stbl") | (b"moov", b"udta") => Some(0),
            (b"meta", b"ilst") | (b"ilst", _) | (b"sent", b"wave") => Some(0),
            // `meta` is read as a full box: 4 bytes of version and flags first
            (b"root", b"meta") | (b"udta", b"meta") => Some(4),
            _ => None,
        }
    }

    fn walk(
        b: &[u8],
        mut pos: u64,
        end: u64,
        parent: [u8; 4],
        depth: usize,
    ) -> Result<(), AsrError> {
        if depth > MAX_DEPTH {
            return Err(AsrError::NotAudio(
                "the MP4 boxes are nested too deeply".into(),
            ));
        }
        let file_len = b.len() as u64;
        while pos < end {
            // A cut-off header or an impossible size: the reader stops with an error there.
            let Some(h) = header(b, pos) else {
                return Ok(());
            };
            if h.len != 0 && h.len < h.header_len {
                return Ok(());
            }
            let box_end = if h.len == 0 {
                end
            } else {
                pos.saturating_add(h.len)
            };
            let payload = pos + h.header_len;
            // At the top level only the boxes the reader parses matter (`mdat` may well be cut
            // off: that is ordinary truncation, reported while decoding); inside them, all do.
            let parsed = parent != *b"root" || matches!(&h.typ, b"moov" | b"meta");
            if parsed && h.len != 0 && box_end > file_len {
                return Err(AsrError::Truncated(format!(
                    "the MP4 `{}` box announces {} bytes but the file ends {} bytes after its start",
                    name(&h.typ),
                    h.len,
                    file_len - pos
                )));
            }
            if parent == *b"stbl" {
                table(b, &h.typ, payload)?;
            }
            if parent == *b"stbl" && h.typ == *b"stsd" && h.len != 0 {
                sample_entry(b, payload + 8, depth)?;
            } else if let Some(skip) = container(&parent, &h.typ) {
                // A zero-length container has no children for the reader.
                if h.len != 0 {
                    walk(b, payload + skip, box_end, h.typ, depth + 1)?;
                }
            }
            if h.len == 0 {
                break;
            }
            pos = box_end;
        }
        Ok(())
    }

    /// The (single) sample entry of an `stsd` box: fixed fields, then child boxes (codec
    /// configuration) read whole.
    fn sample_entry(b: &[u8], pos: u64, depth: usize) -> Result<(), AsrError> {
        let Some(h) = header(b, pos) else {
            return Ok(());
        };
        if h.len < h.header_len || pos.saturating_add(h.len) > b.len() as u64 {
            // Cut off or zero-length: children cannot be placed; the reader fails on it.
            if h.len != 0 && h.len >= h.header_len {
                return Err(AsrError::Truncated(format!(
                    "the MP4 sample entry `{}` announces {} bytes but the file ends first",
                    name(&h.typ),
                    h.len
                )));
            }
            return Ok(());
        }
        let payload = pos + h.header_len;
        // 6 reserved, data reference (2), version (2), revision+vendor (6), channels, sample
        // size (2+2), compression id + packet size (4), rate (4): 28 bytes; then 16 more for
        // version 1 and 36 more for version 2.
        let version = be32(b, payload + 8).map(|v| v >> 16);
        let fields = match version {
            Some(0) => 28,
            Some(1) => 44,
            Some(2) => 64,
            _ => return Ok(()),
        };
        walk(b, payload + fields, pos + h.len, *b"sent", depth + 1)
    }

    /// Sample-table boxes: the entries the count announces must all be in the file.
    fn table(b: &[u8], typ: &[u8; 4], payload: u64) -> Result<(), AsrError> {
        let avail = |at: u64| (b.len() as u64).saturating_sub(at);
        let (count_at, entry) = match typ {
            b"stts" | b"co64" => (payload + 4, 8),
            b"stsc" => (payload + 4, 12),
            b"stco" => (payload + 4, 4),
            b"stsz" => {
                let (Some(size), Some(_)) = (be32(b, payload + 4), be32(b, payload + 8)) else {
                    return Ok(());
                };
                if size != 0 {
                    // One constant sample size: each packet is read whole from it.
                    if size as u64 > b.len() as u64 {
                        return Err(AsrError::Truncated(format!(
                            "the MP4 sample size is {size} bytes, the file has {}",
                            b.len()
                        )));
                    }
                    return Ok(());
                }
                (payload + 8, 4)
            }
            _ => return Ok(()),
        };
        let Some(count) = be32(b, count_at) else {
            return Ok(());
        };
        let need = count as u64 * entry;
        if need > avail(count_at + 4) {
            return Err(AsrError::Truncated(format!(
                "the MP4 `{}` table announces {count} entries ({need} bytes) but only {} bytes follow",
                name(typ),
                avail(count_at + 4)
            )));
        }
        if typ == b"stsz" {
            // Variable sizes: each packet is read whole from its size, so none may pass the file.
            let first = count_at + 4;
            for i in 0..count as u64 {
                let size = be32(b, first + 4 * i).unwrap_or(0);
                if size as u64 > b.len() as u64 {
                    return Err(AsrError::Truncated(format!(
                        "MP4 sample {i} is {size} bytes, the file has {}",
                        b.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Ogg checks, run before symphonia's Ogg reader sees the file: the Vorbis setup header.
///
/// Each Vorbis codebook declares a 16-bit dimension and a 24-bit entry count, and symphonia's
/// Vorbis decoder (0.5) allocates and fills `entries * dimensions` floats for its lookup table
/// when the decoder is built — gigabytes from a setup header of a few bytes (a "length-ordered"
/// codebook describes 16 million entries in 8 bytes), per codebook, up to 256 codebooks. The
/// setup headers are found the way the reader finds them (pages synchronised on `OggS` with
/// their CRC checked, packets put together from their segments) and their codebooks are read
/// with the same bit layout; a setup whose codebooks together exceed
/// [`MAX_VORBIS_CODEBOOK_ENTRIES`] entries or [`MAX_VORBIS_LOOKUP_VALUES`] lookup values is
/// refused ([`AsrError::Unsupported`]). Real encoders stay orders of magnitude below both
/// (libvorbis: a few thousand entries per codebook, a few dozen codebooks).
pub mod ogg {
    use std::collections::HashMap;

    use super::AsrError;

    /// Most codebook entries, all codebooks of one setup header together.
    pub const MAX_VORBIS_CODEBOOK_ENTRIES: u64 = 1 << 20;
    /// Most vector-quantisation lookup values (`entries * dimensions`, 4 bytes each), all
    /// codebooks together.
    pub const MAX_VORBIS_LOOKUP_VALUES: u64 = 1 << 22;

    const CRC_TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut r = (i as u32) << 24;
            let mut k = 0;
            while k < 8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04c1_1db7
                } else {
                    r << 1
                };
                k += 1;
            }
            t[i] = r;
            i += 1;
        }
        t
    };

    /// The Ogg page CRC (polynomial 0x04c11db7, no reflection, initial value 0).
    pub fn crc32(crc: u32, data: &[u8]) -> u32 {
        data.iter().fold(crc, |c, &b| {
            (c << 8) ^ CRC_TABLE[((c >> 24) as u8 ^ b) as usize]
        })
    }

    enum Packet {
        /// Putting together a Vorbis setup header.
        Setup(Vec<u8>),
        /// Inside some other packet.
        Other,
    }

    /// Check every Vorbis setup header of the Ogg stream starting at `start`.
    pub fn check(bytes: &[u8], start: usize) -> Result<(), AsrError> {
        // Per logical stream: the packet being read (absent between packets).
        let mut open: HashMap<u32, Packet> = HashMap::new();
        // Bytes spent on pages whose CRC fails. The reader re-synchronises after each one and
        // reads the next claimed page in full: a file of fake capture patterns claiming 64 KiB
        // pages costs it (and us) 64 KiB per byte. Past a few times the file size, refuse.
        let mut wasted = 0usize;
        let waste_limit = 4 * bytes.len() + (1 << 20);
        let mut pos = start;
        while let Some(p) = find_capture(bytes, pos) {
            if bytes.len() < p + 27 {
                break;
            }
            let n_segs = bytes[p + 26] as usize;
            let body_at = p + 27 + n_segs;
            if bytes.len() < body_at {
                break;
            }
            let lacing = &bytes[p + 27..body_at];
            let body_len: usize = lacing.iter().map(|&l| l as usize).sum();
            if bytes.len() < body_at + body_len {
                break;
            }
            let stored =
                u32::from_le_bytes([bytes[p + 22], bytes[p + 23], bytes[p + 24], bytes[p + 25]]);
            let mut crc = crc32(0, &bytes[p..p + 22]);
            crc = crc32(crc, &[0; 4]);
            crc = crc32(crc, &bytes[p + 26..body_at + body_len]);
            if crc != stored {
                // The reader resynchronises after a corrupt page; so do we.
                wasted += body_at + body_len - p;
                if wasted > waste_limit {
                    return Err(AsrError::NotAudio(
                        "the Ogg stream is made of corrupt pages".into(),
                    ));
                }
                pos = p + 1;
                continue;
            }
            let serial =
                u32::from_le_bytes([bytes[p + 14], bytes[p + 15], bytes[p + 16], bytes[p + 17]]);
            let mut at = body_at;
            for &l in lacing {
                let seg = &bytes[at..at + l as usize];
                at += l as usize;
                let state = match open.remove(&serial) {
                    Some(Packet::Setup(mut buf)) => {
                        buf.extend_from_slice(seg);
                        Packet::Setup(buf)
                    }
                    Some(Packet::Other) => Packet::Other,
                    None if seg.starts_with(b"\x05vorbis") => Packet::Setup(seg.to_vec()),
                    None => Packet::Other,
                };
                if l < 255 {
                    if let Packet::Setup(buf) = state {
                        check_setup(&buf)?;
                    }
                } else {
                    open.insert(serial, state);
                }
            }
            pos = body_at + body_len;
        }
        Ok(())
    }

    fn find_capture(bytes: &[u8], from: usize) -> Option<usize> {
        bytes
            .get(from..)?
            .windows(4)
            .position(|w| w == b"OggS")
            .map(|i| from + i)
    }

    enum Stop {
        /// The header ends (or is malformed) here: the decoder fails on it as well.
        End,
        Refuse(AsrError),
    }

    struct Bits<'a> {
        data: &'a [u8],
        pos: u64,
    }

    impl Bits<'_> {
        /// `n` <= 32 bits, least significant first (the Vorbis bit order).
        fn read(&mut self, n: u32) -> Result<u32, Stop> {
            if self.pos + n as u64 > self.data.len() as u64 * 8 {
                return Err(Stop::End);
            }
            let mut v = 0u64;
            for i in 0..n as u64 {
                let b = self.pos + i;
                v |= (((self.data[(b / 8) as usize] >> (b % 8)) & 1) as u64) << i;
            }
            self.pos += n as u64;
            Ok(v as u32)
        }

        fn skip(&mut self, n: u64) -> Result<(), Stop> {
            match self.pos.checked_add(n) {
                Some(p) if p <= self.data.len() as u64 * 8 => {
                    self.pos = p;
                    Ok(())
                }
                _ => Err(Stop::End),
            }
        }
    }

    fn ilog(x: u32) -> u32 {
        32 - x.leading_zeros()
    }

    /// Check the codebooks of one setup header packet (`\x05vorbis` + bit-packed data).
    pub fn check_setup(packet: &[u8]) -> Result<(), AsrError> {
        match codebooks(&packet[7.min(packet.len())..]) {
            Ok(()) | Err(Stop::End) => Ok(()),
            Err(Stop::Refuse(e)) => Err(e),
        }
    }

    fn codebooks(data: &[u8]) -> Result<(), Stop> {
        let mut bits = Bits { data, pos: 0 };
        let count = bits.read(8)? + 1;
        let mut entries_total = 0u64;
        let mut values_total = 0u64;
        for _ in 0..count {
            if bits.read(24)? != 0x56_4342 {
                return Err(Stop::End);
            }
            let dims = bits.read(16)?;
            let entries = bits.read(24)?;
            entries_total += entries as u64;
            if entries_total > MAX_VORBIS_CODEBOOK_ENTRIES {
                return Err(Stop::Refuse(AsrError::Unsupported(format!(
                    "the Ogg Vorbis setup header declares codebooks of {entries_total}+ entries; \
                     at most {MAX_VORBIS_CODEBOOK_ENTRIES} are supported"
                ))));
            }
            if bits.read(1)? == 0 {
                if bits.read(1)? == 1 {
                    for _ in 0..entries {
                        if bits.read(1)? == 1 {
                            bits.read(5)?;
                        }
                    }
                } else {
                    bits.skip(entries as u64 * 5)?;
                }
            } else {
                let mut cur = 0u32;
                bits.read(5)?;
                loop {
                    let n = if entries > cur {
                        ilog(entries - cur)
                    } else {
                        0
                    };
                    cur = cur.saturating_add(bits.read(n)?);
                    if cur > entries {
                        return Err(Stop::End);
                    }
                    if cur == entries {
                        break;
                    }
                }
            }
            let lookup = bits.read(4)?;
            match lookup {
                0 => {}
                1 | 2 => {
                    bits.skip(64)?;
                    let value_bits = bits.read(4)? + 1;
                    bits.read(1)?;
                    values_total += entries as u64 * dims as u64;
                    if values_total > MAX_VORBIS_LOOKUP_VALUES {
                        return Err(Stop::Refuse(AsrError::Unsupported(format!(
                            "the Ogg Vorbis setup header declares codebook lookup tables of \
                             {values_total}+ values; at most {MAX_VORBIS_LOOKUP_VALUES} are supported"
                        ))));
                    }
                    let lookup_values = if lookup == 1 {
                        // As the decoder computes it (then checks it with assertions).
                        (entries as f32).powf(1.0 / dims as f32).floor() as u32 as u64
                    } else {
                        entries as u64 * dims as u64
                    };
                    bits.skip(lookup_values * value_bits as u64)?;
                }
                _ => return Err(Stop::End),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn sine(rate: u32, secs: f32, hz: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    /// A canonical 44-byte PCM WAV header with any field values (no validation), then `data`.
    fn wav_with(rate: u32, channels: u16, bits: u16, data_len: u32, data: &[u8]) -> Vec<u8> {
        let block_align = channels.wrapping_mul(bits.div_ceil(8));
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&36u32.wrapping_add(data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(block_align as u32).wrapping_mul(rate).to_le_bytes());
        v.extend_from_slice(&block_align.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    /// A valid 16-bit WAV written by hound: a 440 Hz tone on every channel.
    fn hound_wav(rate: u32, channels: u16, secs: f32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Vec::new();
        let mut w = hound::WavWriter::new(Cursor::new(&mut out), spec).unwrap();
        for s in sine(rate, secs, 440.0) {
            for _ in 0..channels {
                w.write_sample((s * 32767.0) as i16).unwrap();
            }
        }
        w.finalize().unwrap();
        out
    }

    /// Run `f`, fail if it takes longer than `limit` (a DoS guard: the real cost is
    /// microseconds; the margin absorbs a loaded test machine).
    fn timed<T>(limit: Duration, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        assert!(t.elapsed() < limit, "took {:?}", t.elapsed());
        r
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
        assert!(matches!(
            decode(&hound_wav(8000, 1, 0.1), f64::NAN),
            Err(AsrError::Invalid(_))
        ));
    }

    /// A reported crash: 108 bytes declaring 4,294,967,291 Hz made the resampler
    /// ask for ~17 GB and the process abort.
    #[test]
    fn wav_with_a_4ghz_sample_rate_is_refused_before_allocation() {
        let bytes = wav_with(4_294_967_291, 1, 8, 64, &[0x80; 64]);
        assert_eq!(bytes.len(), 108);
        let err = timed(Duration::from_secs(1), || decode(&bytes, 7200.0)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AsrError::Unsupported(_)), "{err:?}");
        assert!(
            msg.contains("4294967291") && msg.contains("8000-48000"),
            "{msg}"
        );
        assert_eq!(err.code(), "unsupported_audio");
    }

    #[test]
    fn wav_with_a_3hz_sample_rate_is_refused() {
        let bytes = wav_with(3, 1, 16, 64, &[0; 64]);
        let err = decode(&bytes, 7200.0).unwrap_err();
        assert!(matches!(err, AsrError::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains("3 Hz"), "{err}");
    }

    #[test]
    fn wav_rates_at_the_bounds_are_accepted_and_just_outside_refused() {
        for (rate, ok) in [
            (7_999, false),
            (8_000, true),
            (48_000, true),
            (48_001, false),
        ] {
            let bytes = wav_with(rate, 1, 16, 3200, &[0x11; 3200]);
            let r = decode(&bytes, 60.0);
            assert_eq!(r.is_ok(), ok, "{rate} Hz: {r:?}");
            if !ok {
                assert!(matches!(r, Err(AsrError::Unsupported(_))), "{rate}: {r:?}");
            }
        }
    }

    /// 65,535 channels cost 7 s of CPU before the fix.
    #[test]
    fn wav_with_65535_channels_is_refused_fast() {
        let bytes = wav_with(8000, 65_535, 8, 65_535, &[0x80; 1024]);
        let err = timed(Duration::from_secs(1), || decode(&bytes, 7200.0)).unwrap_err();
        assert!(matches!(err, AsrError::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains("65535 channels"), "{err}");
        // 8 is the most, 9 is refused
        let nine = wav_with(8000, 9, 16, 18 * 100, &[0; 18 * 100]);
        assert!(matches!(decode(&nine, 60.0), Err(AsrError::Unsupported(_))));
        let eight = wav_with(8000, 8, 16, 16 * 100, &[0; 16 * 100]);
        assert_eq!(decode(&eight, 60.0).unwrap().channels.len(), 8);
    }

    /// A bare 44-byte header declaring 0xFFFFFFF0 bytes of data used to reserve 17 GB
    /// (`Vec::with_capacity` from the declared length).
    #[test]
    fn declared_data_length_never_reserves_memory() {
        let bytes = wav_with(8000, 1, 16, 0xFFFF_FFF0, &[]);
        assert_eq!(bytes.len(), 44);
        // with the usual limit, the declared duration (74 hours) is refused up front
        let err = timed(Duration::from_secs(1), || decode(&bytes, 7200.0)).unwrap_err();
        assert!(matches!(err, AsrError::TooLong { .. }), "{err:?}");
        // with no limit it is read, and ends at once where the data does
        let err = timed(Duration::from_secs(1), || decode(&bytes, f64::INFINITY)).unwrap_err();
        assert!(matches!(err, AsrError::Truncated(_)), "{err:?}");
        // the same with a few real frames, stereo and 8 channels
        for ch in [1u16, 2, 8] {
            let b = wav_with(48_000, ch, 16, 0xFFFF_FFF0, &[1; 4000]);
            let err = timed(Duration::from_secs(1), || decode(&b, f64::INFINITY)).unwrap_err();
            assert!(matches!(err, AsrError::Truncated(_)), "{ch}: {err:?}");
        }
    }

    #[test]
    fn wav_shorter_than_its_header_is_truncated() {
        let mut bytes = hound_wav(16_000, 1, 1.0);
        bytes.truncate(bytes.len() / 2);
        let err = decode(&bytes, 60.0).unwrap_err();
        assert!(matches!(err, AsrError::Truncated(_)), "{err:?}");
        assert!(err.to_string().contains("announces 16000 frames"), "{err}");
    }

    #[test]
    fn wav_longer_than_the_limit_is_refused_from_the_header() {
        let bytes = hound_wav(8000, 1, 2.0);
        match decode(&bytes, 1.5) {
            Err(AsrError::TooLong { secs, max_secs }) => {
                assert_eq!(secs, 2.0);
                assert_eq!(max_secs, 1.5);
            }
            other => panic!("{other:?}"),
        }
        assert!(decode(&bytes, 2.0).is_ok());
    }

    #[test]
    fn valid_8k_mono_and_44k_stereo_wavs_decode() {
        let a = decode(&hound_wav(8000, 1, 0.5), 60.0).unwrap();
        assert_eq!(
            (a.sample_rate, a.channels.len(), a.frames()),
            (8000, 1, 4000)
        );
        assert_eq!(a.format, "wav/pcm16");
        let peak = a.channels[0].iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((0.45..0.55).contains(&peak), "{peak}");

        let b = decode(&hound_wav(44_100, 2, 0.25), 60.0).unwrap();
        assert_eq!(
            (b.sample_rate, b.channels.len(), b.frames()),
            (44_100, 2, 11_025)
        );
        assert_eq!(b.channels[0], b.channels[1]);
        // and they resample to 16 kHz
        assert_eq!(resample_to_16k(&b.mixed(), 44_100).unwrap().len(), 4000);

        // the owned entry point gives the same
        let c = decode_owned(hound_wav(44_100, 2, 0.25), 60.0).unwrap();
        assert_eq!(c.channels, b.channels);
    }

    #[test]
    fn resample_refuses_out_of_range_rates() {
        let x = vec![0.0f32; 1600];
        let t = Instant::now();
        for (from, to) in [
            (4_294_967_291, 16_000),
            (16_000, 4_294_967_291),
            (3, 16_000),
            (0, 16_000),
        ] {
            match resample(&x, from, to) {
                Err(AsrError::Unsupported(m)) => assert!(m.contains("8000-48000"), "{m}"),
                other => panic!("{from} -> {to}: {other:?}"),
            }
        }
        assert!(resample_to_16k(&x, 96_000).is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
        // the ends of the range work
        assert_eq!(resample(&x, 8000, 48_000).unwrap().len(), 9600);
        assert_eq!(resample(&x, 48_000, 8000).unwrap().len(), 267);
    }

    #[test]
    fn a_panicking_decoder_becomes_not_audio() {
        let r: Result<(), AsrError> = guarded("test", || panic!("index out of bounds: boom"));
        match r {
            Err(AsrError::NotAudio(m)) => assert!(m.contains("boom"), "{m}"),
            other => panic!("{other:?}"),
        }
        let r: Result<(), AsrError> = guarded("test", || std::panic::panic_any(42u8));
        assert!(matches!(r, Err(AsrError::NotAudio(_))));
        // errors and values pass through
        assert_eq!(guarded("test", || Ok::<_, AsrError>(7)).unwrap(), 7);
    }

    #[test]
    fn frame_limit_saturates() {
        assert_eq!(frame_limit(1.5, 8000), 12_000);
        assert_eq!(frame_limit(f64::INFINITY, 48_000), usize::MAX);
        assert_eq!(frame_limit(-1.0, 48_000), 0);
        assert_eq!(frame_limit(f64::NAN, 48_000), 0);
    }
}
