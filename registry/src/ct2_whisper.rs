//! Post-processing recipe `ct2-whisper-ggml`: a CTranslate2 Whisper `model.bin` (as shipped by
//! faster-whisper, spec `WhisperSpec`) becomes a whisper.cpp ggml model file.
//!
//! CTranslate2 `model.bin` (binary version 6, all integers little-endian):
//!
//! ```text
//! u32 version | str spec_name | u32 spec_revision | u32 n_variables
//! n_variables x { str name | u8 rank | rank x u32 dim | u8 dtype | u32 n_bytes | bytes }
//! u32 n_aliases x { str alias | str target }
//! str = u16 length (including a trailing NUL) | utf-8 bytes | NUL
//! dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16
//! ```
//!
//! whisper.cpp ggml (what `whisper_model_load` reads, all integers i32 little-endian):
//!
//! ```text
//! magic 0x67676d6c | n_vocab n_audio_ctx n_audio_state n_audio_head n_audio_layer
//!   n_text_ctx n_text_state n_text_head n_text_layer n_mels ftype
//! mel filters: n_mel | n_fft (= 1 + 400/2) | n_mel*n_fft f32
//! vocabulary: count | count x { u32 length | bytes }   (regular BPE tokens only; the loader
//!   names the special tokens itself)
//! tensors: { n_dims | name length | type (0 f32, 1 f16) | dims, innermost first | name | data }
//! ```
//!
//! Mapping: CTranslate2 fuses the self-attention projections into `self_attention/linear_0`
//! (rows query | key | value) and the cross-attention key/value into `attention/linear_1`
//! (rows key | value); they are split again, and the key bias (zeros: Whisper's key projection
//! has none) is dropped. Matrices are stored f16; vectors, the conv biases (as `[n, 1]`) and the
//! positional embeddings f32, like OpenAI's checkpoints converted by whisper.cpp. The 80-bin
//! Slaney mel filter bank (n_fft 400, 16 kHz) is computed here; the vocabulary comes from
//! CTranslate2's `vocabulary.txt` (GPT-2 byte-to-unicode strings decoded back to bytes).
//!
//! The output is deterministic: a fixed tensor order and no timestamps.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use half::f16;

use super::verify::{bytes_bar, HashingWriter};
use crate::error::{Error, Result};

/// Name of this recipe in `models.toml`.
pub(crate) const RECIPE: &str = "ct2-whisper-ggml";

const GGML_MAGIC: u32 = 0x6767_6d6c;
const SAMPLE_RATE: f64 = 16_000.0;
const N_FFT: usize = 400;

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub(crate) struct ConvertStats {
    pub sha256: String,
    pub size: u64,
    pub tensors: usize,
    pub vocab: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl DType {
    fn from_id(id: u8) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One CTranslate2 variable: shape, type and where its bytes are in the file.
#[derive(Debug, Clone)]
struct Var {
    dims: Vec<usize>,
    dtype: DType,
    start: usize,
    len: usize,
}

/// A parsed CTranslate2 model file.
struct Ct2Model {
    spec: String,
    bytes: Vec<u8>,
    vars: HashMap<String, Var>,
    aliases: HashMap<String, String>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "truncated: {what} needs {n} bytes at offset {} but the file has {}",
                self.pos,
                self.buf.len()
            )),
        }
    }
    fn u8(&mut self, what: &str) -> std::result::Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not valid UTF-8"))
    }
}

impl Ct2Model {
    fn parse(bytes: Vec<u8>) -> std::result::Result<Ct2Model, String> {
        let mut c = Cursor {
            buf: &bytes,
            pos: 0,
        };
        let version = c.u32("binary version")?;
        if version != 6 {
            return Err(format!(
                "CTranslate2 binary version {version} is not supported (only 6)"
            ));
        }
        let spec = c.string("spec name")?;
        let _revision = c.u32("spec revision")?;
        let n = c.u32("variable count")? as usize;
        let mut vars = HashMap::with_capacity(n);
        for i in 0..n {
            let name = c.string(&format!("name of variable #{i}"))?;
            let rank = c.u8(&format!("rank of `{name}`"))? as usize;
            let mut dims = Vec::with_capacity(rank);
            for _ in 0..rank {
                dims.push(c.u32(&format!("shape of `{name}`"))? as usize);
            }
            let id = c.u8(&format!("dtype of `{name}`"))?;
            let dtype =
                DType::from_id(id).ok_or_else(|| format!("`{name}`: unknown dtype id {id}"))?;
            let len = c.u32(&format!("size of `{name}`"))? as usize;
            let count: usize = dims.iter().product();
            if count * dtype.size() != len {
                return Err(format!(
                    "`{name}`: shape {dims:?} of {dtype:?} needs {} bytes but {len} are stored",
                    count * dtype.size()
                ));
            }
            let start = c.pos;
            c.take(len, &format!("data of `{name}`"))?;
            vars.insert(
                name,
                Var {
                    dims,
                    dtype,
                    start,
                    len,
                },
            );
        }
        let mut aliases = HashMap::new();
        // Older writers may end without an alias table.
        if c.pos < bytes.len() {
            let na = c.u32("alias count")? as usize;
            for _ in 0..na {
                let alias = c.string("alias")?;
                let target = c.string("alias target")?;
                aliases.insert(alias, target);
            }
        }
        if c.pos != bytes.len() {
            return Err(format!(
                "{} unexpected trailing bytes after offset {}",
                bytes.len() - c.pos,
                c.pos
            ));
        }
        Ok(Ct2Model {
            spec,
            bytes,
            vars,
            aliases,
        })
    }

    fn var(&self, name: &str) -> std::result::Result<&Var, String> {
        let resolved = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        self.vars
            .get(resolved)
            .ok_or_else(|| format!("variable `{name}` is missing"))
    }

    fn data(&self, v: &Var) -> &[u8] {
        &self.bytes[v.start..v.start + v.len]
    }

    /// An integer scalar (e.g. `encoder/num_heads`).
    fn scalar(&self, name: &str) -> std::result::Result<i64, String> {
        let v = self.var(name)?;
        let d = self.data(v);
        if v.dims.iter().product::<usize>() != 1 {
            return Err(format!("`{name}` is not a scalar (shape {:?})", v.dims));
        }
        Ok(match v.dtype {
            DType::I8 => d[0] as i8 as i64,
            DType::I16 => i16::from_le_bytes([d[0], d[1]]) as i64,
            DType::I32 => i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64,
            other => return Err(format!("`{name}` is {other:?}, not an integer")),
        })
    }

    fn count_layers(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.vars
                    .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    }
}

/// A slice of rows of a CTranslate2 variable, to be written as one ggml tensor.
struct Piece<'a> {
    name: String,
    /// Shape in PyTorch order (outermost first).
    shape: Vec<usize>,
    f16_out: bool,
    dtype: DType,
    data: &'a [u8],
}

fn row_slice<'a>(
    m: &'a Ct2Model,
    var: &str,
    rows: std::ops::Range<usize>,
    parts: usize,
) -> std::result::Result<(&'a [u8], Vec<usize>, DType), String> {
    let v = m.var(var)?;
    let outer = *v
        .dims
        .first()
        .ok_or_else(|| format!("`{var}` is a scalar"))?;
    if outer % parts != 0 || rows.end > outer {
        return Err(format!(
            "`{var}` (shape {:?}) cannot be split into {parts} parts",
            v.dims
        ));
    }
    let row_bytes = v.len / outer;
    let data = &m.data(v)[rows.start * row_bytes..rows.end * row_bytes];
    let mut shape = v.dims.clone();
    shape[0] = rows.len();
    Ok((data, shape, v.dtype))
}

type Plan<'a> = Vec<Piece<'a>>;
type R = std::result::Result<(), String>;

/// Add variable `var` (optionally reshaped) as tensor `name`.
fn whole<'a>(
    m: &'a Ct2Model,
    out: &mut Plan<'a>,
    name: String,
    var: &str,
    reshape: Option<Vec<usize>>,
) -> R {
    let v = m.var(var)?;
    let shape = reshape.unwrap_or_else(|| v.dims.clone());
    if shape.iter().product::<usize>() != v.dims.iter().product::<usize>() {
        return Err(format!("`{var}`: cannot reshape {:?} to {shape:?}", v.dims));
    }
    out.push(Piece {
        f16_out: default_f16(&name, shape.len()),
        name,
        shape,
        dtype: v.dtype,
        data: m.data(v),
    });
    Ok(())
}

/// Add rows `part` of `parts` equal row blocks of `var` as tensor `name`.
fn split<'a>(
    m: &'a Ct2Model,
    out: &mut Plan<'a>,
    name: String,
    var: &str,
    part: usize,
    parts: usize,
) -> R {
    let outer = m.var(var)?.dims.first().copied().unwrap_or(0);
    let n = outer / parts;
    let (data, shape, dtype) = row_slice(m, var, part * n..(part + 1) * n, parts)?;
    out.push(Piece {
        f16_out: default_f16(&name, shape.len()),
        name,
        shape,
        dtype,
        data,
    });
    Ok(())
}

/// One attention block `to` (whisper.cpp name prefix) from CTranslate2 prefix `from`.
fn attention<'a>(m: &'a Ct2Model, out: &mut Plan<'a>, to: &str, from: &str, cross: bool) -> R {
    let w = |s: &str| format!("{from}/{s}");
    if cross {
        // query is its own projection; key and value are fused in linear_1 (rows key | value).
        whole(
            m,
            out,
            format!("{to}.query.weight"),
            &w("linear_0/weight"),
            None,
        )?;
        whole(
            m,
            out,
            format!("{to}.query.bias"),
            &w("linear_0/bias"),
            None,
        )?;
        split(
            m,
            out,
            format!("{to}.key.weight"),
            &w("linear_1/weight"),
            0,
            2,
        )?;
        split(
            m,
            out,
            format!("{to}.value.weight"),
            &w("linear_1/weight"),
            1,
            2,
        )?;
        split(
            m,
            out,
            format!("{to}.value.bias"),
            &w("linear_1/bias"),
            1,
            2,
        )?;
        whole(
            m,
            out,
            format!("{to}.out.weight"),
            &w("linear_2/weight"),
            None,
        )?;
        whole(m, out, format!("{to}.out.bias"), &w("linear_2/bias"), None)?;
    } else {
        // query, key and value fused in linear_0 (rows query | key | value).
        split(
            m,
            out,
            format!("{to}.query.weight"),
            &w("linear_0/weight"),
            0,
            3,
        )?;
        split(
            m,
            out,
            format!("{to}.query.bias"),
            &w("linear_0/bias"),
            0,
            3,
        )?;
        split(
            m,
            out,
            format!("{to}.key.weight"),
            &w("linear_0/weight"),
            1,
            3,
        )?;
        split(
            m,
            out,
            format!("{to}.value.weight"),
            &w("linear_0/weight"),
            2,
            3,
        )?;
        split(
            m,
            out,
            format!("{to}.value.bias"),
            &w("linear_0/bias"),
            2,
            3,
        )?;
        whole(
            m,
            out,
            format!("{to}.out.weight"),
            &w("linear_1/weight"),
            None,
        )?;
        whole(m, out, format!("{to}.out.bias"), &w("linear_1/bias"), None)?;
    }
    whole(
        m,
        out,
        format!("{to}_ln.weight"),
        &w("layer_norm/gamma"),
        None,
    )?;
    whole(m, out, format!("{to}_ln.bias"), &w("layer_norm/beta"), None)
}

fn mlp<'a>(m: &'a Ct2Model, out: &mut Plan<'a>, to: &str, from: &str) -> R {
    let w = |s: &str| format!("{from}/ffn/{s}");
    whole(
        m,
        out,
        format!("{to}.mlp.0.weight"),
        &w("linear_0/weight"),
        None,
    )?;
    whole(
        m,
        out,
        format!("{to}.mlp.0.bias"),
        &w("linear_0/bias"),
        None,
    )?;
    whole(
        m,
        out,
        format!("{to}.mlp.2.weight"),
        &w("linear_1/weight"),
        None,
    )?;
    whole(
        m,
        out,
        format!("{to}.mlp.2.bias"),
        &w("linear_1/bias"),
        None,
    )?;
    whole(
        m,
        out,
        format!("{to}.mlp_ln.weight"),
        &w("layer_norm/gamma"),
        None,
    )?;
    whole(
        m,
        out,
        format!("{to}.mlp_ln.bias"),
        &w("layer_norm/beta"),
        None,
    )
}

/// The list of ggml tensors, in the order of OpenAI's checkpoints.
fn plan(m: &Ct2Model) -> std::result::Result<Plan<'_>, String> {
    let mut out = Vec::new();
    whole(
        m,
        &mut out,
        "encoder.positional_embedding".into(),
        "encoder/position_encodings/encodings",
        None,
    )?;
    for conv in ["conv1", "conv2"] {
        whole(
            m,
            &mut out,
            format!("encoder.{conv}.weight"),
            &format!("encoder/{conv}/weight"),
            None,
        )?;
        let bias = format!("encoder/{conv}/bias");
        let n = m.var(&bias)?.dims.iter().product::<usize>();
        whole(
            m,
            &mut out,
            format!("encoder.{conv}.bias"),
            &bias,
            Some(vec![n, 1]),
        )?;
    }
    for i in 0..m.count_layers("encoder") {
        let (to, from) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        attention(
            m,
            &mut out,
            &format!("{to}.attn"),
            &format!("{from}/self_attention"),
            false,
        )?;
        mlp(m, &mut out, &to, &from)?;
    }
    whole(
        m,
        &mut out,
        "encoder.ln_post.weight".into(),
        "encoder/layer_norm/gamma",
        None,
    )?;
    whole(
        m,
        &mut out,
        "encoder.ln_post.bias".into(),
        "encoder/layer_norm/beta",
        None,
    )?;

    whole(
        m,
        &mut out,
        "decoder.positional_embedding".into(),
        "decoder/position_encodings/encodings",
        None,
    )?;
    whole(
        m,
        &mut out,
        "decoder.token_embedding.weight".into(),
        "decoder/embeddings/weight",
        None,
    )?;
    for i in 0..m.count_layers("decoder") {
        let (to, from) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        attention(
            m,
            &mut out,
            &format!("{to}.attn"),
            &format!("{from}/self_attention"),
            false,
        )?;
        attention(
            m,
            &mut out,
            &format!("{to}.cross_attn"),
            &format!("{from}/attention"),
            true,
        )?;
        mlp(m, &mut out, &to, &from)?;
    }
    whole(
        m,
        &mut out,
        "decoder.ln.weight".into(),
        "decoder/layer_norm/gamma",
        None,
    )?;
    whole(
        m,
        &mut out,
        "decoder.ln.bias".into(),
        "decoder/layer_norm/beta",
        None,
    )?;
    Ok(out)
}

/// whisper.cpp keeps matrices in f16 and vectors, conv biases and positional embeddings in f32.
fn default_f16(name: &str, n_dims: usize) -> bool {
    n_dims >= 2
        && !matches!(
            name,
            "encoder.conv1.bias"
                | "encoder.conv2.bias"
                | "encoder.positional_embedding"
                | "decoder.positional_embedding"
        )
}

fn write_i32(w: &mut impl Write, v: usize) -> std::io::Result<()> {
    let v = i32::try_from(v)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "value exceeds i32"))?;
    w.write_all(&v.to_le_bytes())
}

/// Write `data` (of `dtype`) as f16 or f32 little-endian values.
fn write_values(w: &mut impl Write, data: &[u8], dtype: DType, f16_out: bool) -> Result<()> {
    let io = |e| Error::io("writing converted model", e);
    match (dtype, f16_out) {
        (DType::F16, true) | (DType::F32, false) => w.write_all(data).map_err(io),
        (DType::F16 | DType::F32 | DType::Bf16, _) => {
            let sz = dtype.size();
            let mut buf = Vec::with_capacity(data.len() / sz * if f16_out { 2 } else { 4 });
            for c in data.chunks_exact(sz) {
                let x = match dtype {
                    DType::F16 => f16::from_le_bytes([c[0], c[1]]).to_f32(),
                    DType::Bf16 => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
                    _ => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                };
                if f16_out {
                    buf.extend_from_slice(&f16::from_f32(x).to_le_bytes());
                } else {
                    buf.extend_from_slice(&x.to_le_bytes());
                }
            }
            w.write_all(&buf).map_err(io)
        }
        (other, _) => Err(Error::Load {
            model: RECIPE.into(),
            msg: format!("a weight tensor has integer type {other:?}"),
        }),
    }
}

/// GPT-2's byte <-> printable-unicode table, inverted: char -> byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut extra = 0u32;
    for b in 0u32..256 {
        let c = if printable(b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        if let Some(ch) = char::from_u32(c) {
            map.insert(ch, b as u8);
        }
    }
    map
}

/// Parse `vocabulary.txt` (one token per line) and return the regular tokens' bytes: those
/// before the first special token `<|endoftext|>`. `n_vocab` is the embedding row count.
fn vocabulary(text: &[u8], n_vocab: usize) -> std::result::Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "vocabulary.txt is not UTF-8".to_string())?;
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    if lines.len() != n_vocab {
        return Err(format!(
            "vocabulary.txt has {} tokens but the embedding has {n_vocab} rows",
            lines.len()
        ));
    }
    let eot = lines
        .iter()
        .position(|t| *t == "<|endoftext|>")
        .ok_or("vocabulary.txt has no <|endoftext|> token")?;
    let table = unicode_to_byte();
    lines[..eot]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.chars()
                .map(|c| {
                    table.get(&c).copied().ok_or_else(|| {
                        format!("token {i} `{t}`: character {c:?} is not in the byte-level BPE alphabet")
                    })
                })
                .collect()
        })
        .collect()
}

/// librosa's `filters.mel(sr=16000, n_fft=400, n_mels)` (Slaney mel scale, Slaney area
/// normalisation) as float32, row-major `[n_mels, 1 + n_fft/2]`. Computed in f64 and rounded like
/// librosa: the triangles are stored as f32 before the normalisation multiplies them.
pub(crate) fn mel_filters(n_mels: usize) -> Vec<f32> {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |f: f64| {
        if f >= MIN_LOG_HZ {
            min_log_mel + (f / MIN_LOG_HZ).ln() / logstep
        } else {
            f / F_SP
        }
    };
    let mel_to_hz = |m: f64| {
        if m >= min_log_mel {
            MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp()
        } else {
            F_SP * m
        }
    };
    let n_bins = 1 + N_FFT / 2;
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|k| k as f64 * (SAMPLE_RATE / N_FFT as f64))
        .collect();
    // n_mels + 2 points evenly spaced in mel between 0 Hz and Nyquist (numpy linspace).
    let max_mel = hz_to_mel(SAMPLE_RATE / 2.0);
    let n_pts = n_mels + 2;
    let step = max_mel / (n_pts - 1) as f64;
    let mel_f: Vec<f64> = (0..n_pts)
        .map(|i| {
            let m = if i == n_pts - 1 {
                max_mel
            } else {
                i as f64 * step
            };
            mel_to_hz(m)
        })
        .collect();
    let mut out = Vec::with_capacity(n_mels * n_bins);
    for i in 0..n_mels {
        let (lo_w, hi_w) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for &f in &fft_freqs {
            let lower = -(mel_f[i] - f) / lo_w;
            let upper = (mel_f[i + 2] - f) / hi_w;
            let tri = lower.min(upper).max(0.0) as f32;
            out.push((tri as f64 * enorm) as f32);
        }
    }
    out
}

/// Convert the CTranslate2 Whisper `model.bin` at `src` with its `vocabulary.txt` contents into a
/// whisper.cpp ggml file at `dst` (created/truncated).
pub(crate) fn convert(
    src: &Path,
    vocabulary_txt: &[u8],
    dst: &Path,
    progress: bool,
) -> Result<ConvertStats> {
    let bad = |msg: String| Error::Load {
        model: src.display().to_string(),
        msg: format!("not a convertible CTranslate2 Whisper model: {msg}"),
    };
    let bytes =
        std::fs::read(src).map_err(|e| Error::io(format!("reading {}", src.display()), e))?;
    let m = Ct2Model::parse(bytes).map_err(bad)?;
    if m.spec != "WhisperSpec" {
        return Err(bad(format!("spec is `{}`, expected `WhisperSpec`", m.spec)));
    }
    let dims = |name: &str| m.var(name).map(|v| v.dims.clone()).map_err(bad);
    let emb = dims("decoder/embeddings/weight")?;
    let enc_pos = dims("encoder/position_encodings/encodings")?;
    let dec_pos = dims("decoder/position_encodings/encodings")?;
    let conv1 = dims("encoder/conv1/weight")?;
    if emb.len() != 2 || enc_pos.len() != 2 || dec_pos.len() != 2 || conv1.len() != 3 {
        return Err(bad("unexpected embedding/conv shapes".into()));
    }
    // whisper.cpp ties the output projection to the token embedding.
    if let Ok(p) = m.var("decoder/projection/weight") {
        let e = m.var("decoder/embeddings/weight").map_err(bad)?;
        if m.data(p) != m.data(e) {
            return Err(bad(
                "decoder/projection differs from the token embedding".into()
            ));
        }
    }
    let (n_vocab, n_text_state) = (emb[0], emb[1]);
    let (n_audio_ctx, n_audio_state) = (enc_pos[0], enc_pos[1]);
    let n_text_ctx = dec_pos[0];
    let n_mels = conv1[1];
    let n_audio_head = m.scalar("encoder/num_heads").map_err(bad)? as usize;
    let n_text_head = m.scalar("decoder/num_heads").map_err(bad)? as usize;
    let n_audio_layer = m.count_layers("encoder");
    let n_text_layer = m.count_layers("decoder");
    if n_audio_layer == 0 || n_text_layer == 0 || n_text_state != n_audio_state {
        return Err(bad(format!(
            "{n_audio_layer} encoder / {n_text_layer} decoder layers, widths {n_audio_state}/{n_text_state}"
        )));
    }
    let tokens = vocabulary(vocabulary_txt, n_vocab).map_err(bad)?;
    let pieces = plan(&m).map_err(bad)?;
    let filters = mel_filters(n_mels);

    let out = fs_err::File::create(dst).map_err(|e| Error::io("writing converted model", e))?;
    let total: u64 = pieces
        .iter()
        .map(|p| (p.shape.iter().product::<usize>() * if p.f16_out { 2 } else { 4 }) as u64)
        .sum();
    let bar = bytes_bar(progress, total, format!("convert {RECIPE}"));
    let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, out), bar);
    let io = |e| Error::io(format!("writing {}", dst.display()), e);
    w.write_all(&GGML_MAGIC.to_le_bytes()).map_err(io)?;
    for v in [
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        n_audio_head,
        n_audio_layer,
        n_text_ctx,
        n_text_state,
        n_text_head,
        n_text_layer,
        n_mels,
        1, // ftype: mostly f16
    ] {
        write_i32(&mut w, v).map_err(io)?;
    }
    write_i32(&mut w, n_mels).map_err(io)?;
    write_i32(&mut w, 1 + N_FFT / 2).map_err(io)?;
    for x in &filters {
        w.write_all(&x.to_le_bytes()).map_err(io)?;
    }
    write_i32(&mut w, tokens.len()).map_err(io)?;
    for t in &tokens {
        write_i32(&mut w, t.len()).map_err(io)?;
        w.write_all(t).map_err(io)?;
    }
    for p in &pieces {
        write_i32(&mut w, p.shape.len()).map_err(io)?;
        write_i32(&mut w, p.name.len()).map_err(io)?;
        write_i32(&mut w, usize::from(p.f16_out)).map_err(io)?;
        for &d in p.shape.iter().rev() {
            write_i32(&mut w, d).map_err(io)?;
        }
        w.write_all(p.name.as_bytes()).map_err(io)?;
        write_values(&mut w, p.data, p.dtype, p.f16_out)?;
    }
    let (buf, sha256, size) = w.finish().map_err(io)?;
    let file = buf.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(ConvertStats {
        sha256,
        size,
        tensors: pieces.len(),
        vocab: tokens.len(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn mel_filters_are_slaney_triangles() {
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * 201);
        // every filter is non-negative with one peak; the Slaney area normalisation makes each
        // triangle's area (in Hz) 1, i.e. sum(weights) * 40 Hz bin width ~ 1.
        for i in 0..80 {
            let row = &f[i * 201..(i + 1) * 201];
            assert!(row.iter().all(|&x| x >= 0.0));
            let area: f32 = row.iter().sum::<f32>() * 40.0;
            if i > 8 {
                assert!((area - 1.0).abs() < 0.2, "filter {i}: area {area}");
            }
        }
        // first filter: peak at mel point 1 = 200/3*... Hz lies between bins 0 and 1
        assert!(f[0] == 0.0 && f[1] > 0.0);
    }

    /// Writes a CTranslate2 v6 file from (name, shape, f16 values) plus int16 scalars.
    fn write_ct2(path: &Path, vars: &[(String, Vec<usize>, Vec<f32>)], scalars: &[(&str, i16)]) {
        let mut b: Vec<u8> = Vec::new();
        let put_str = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        };
        b.extend_from_slice(&6u32.to_le_bytes());
        put_str(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&((vars.len() + scalars.len()) as u32).to_le_bytes());
        for (name, shape, vals) in vars {
            put_str(&mut b, name);
            b.push(shape.len() as u8);
            for d in shape {
                b.extend_from_slice(&(*d as u32).to_le_bytes());
            }
            b.push(4);
            b.extend_from_slice(&((vals.len() * 2) as u32).to_le_bytes());
            for v in vals {
                b.extend_from_slice(&f16::from_f32(*v).to_le_bytes());
            }
        }
        for (name, v) in scalars {
            put_str(&mut b, name);
            b.push(0);
            b.push(2);
            b.extend_from_slice(&2u32.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&1u32.to_le_bytes());
        put_str(&mut b, "decoder/projection/weight");
        put_str(&mut b, "decoder/embeddings/weight");
        std::fs::write(path, b).unwrap();
    }

    /// A tiny Whisper: width 4, one encoder and one decoder layer, 2 mel bins, 5 tokens.
    fn tiny_ct2(path: &Path) {
        let mut counter = 0.0f32;
        let mut var = |name: &str, shape: &[usize]| {
            let n: usize = shape.iter().product();
            let vals: Vec<f32> = (0..n)
                .map(|_| {
                    counter += 1.0;
                    counter / 64.0
                })
                .collect();
            (name.to_string(), shape.to_vec(), vals)
        };
        let mut v = vec![
            var("encoder/conv1/weight", &[4, 2, 3]),
            var("encoder/conv1/bias", &[4]),
            var("encoder/conv2/weight", &[4, 4, 3]),
            var("encoder/conv2/bias", &[4]),
            var("encoder/position_encodings/encodings", &[6, 4]),
            var("encoder/layer_norm/gamma", &[4]),
            var("encoder/layer_norm/beta", &[4]),
            var("decoder/embeddings/weight", &[5, 4]),
            var("decoder/position_encodings/encodings", &[3, 4]),
            var("decoder/layer_norm/gamma", &[4]),
            var("decoder/layer_norm/beta", &[4]),
        ];
        for side in ["encoder", "decoder"] {
            let l = format!("{side}/layer_0");
            let mut attn = vec![("self_attention", [12usize, 4], "linear_1")];
            if side == "decoder" {
                attn.push(("attention", [4, 4], "linear_2"));
            }
            for (a, q, out) in attn {
                v.push(var(&format!("{l}/{a}/linear_0/weight"), &q));
                v.push(var(&format!("{l}/{a}/linear_0/bias"), &q[..1]));
                if a == "attention" {
                    v.push(var(&format!("{l}/{a}/linear_1/weight"), &[8, 4]));
                    v.push(var(&format!("{l}/{a}/linear_1/bias"), &[8]));
                }
                v.push(var(&format!("{l}/{a}/{out}/weight"), &[4, 4]));
                v.push(var(&format!("{l}/{a}/{out}/bias"), &[4]));
                v.push(var(&format!("{l}/{a}/layer_norm/gamma"), &[4]));
                v.push(var(&format!("{l}/{a}/layer_norm/beta"), &[4]));
            }
            v.push(var(&format!("{l}/ffn/linear_0/weight"), &[8, 4]));
            v.push(var(&format!("{l}/ffn/linear_0/bias"), &[8]));
            v.push(var(&format!("{l}/ffn/linear_1/weight"), &[4, 8]));
            v.push(var(&format!("{l}/ffn/linear_1/bias"), &[4]));
            v.push(var(&format!("{l}/ffn/layer_norm/gamma"), &[4]));
            v.push(var(&format!("{l}/ffn/layer_norm/beta"), &[4]));
        }
        write_ct2(
            path,
            &v,
            &[("encoder/num_heads", 2), ("decoder/num_heads", 2)],
        );
    }

    /// Tensors of a written ggml file: name -> (dims innermost first, type, data bytes).
    fn read_ggml(
        b: &[u8],
    ) -> (
        Vec<i32>,
        Vec<Vec<u8>>,
        HashMap<String, (Vec<i32>, i32, Vec<u8>)>,
    ) {
        let mut pos = 0;
        let i32_ = |pos: &mut usize| {
            let v = i32::from_le_bytes(b[*pos..*pos + 4].try_into().unwrap());
            *pos += 4;
            v
        };
        assert_eq!(i32_(&mut pos) as u32, GGML_MAGIC);
        let hp: Vec<i32> = (0..11).map(|_| i32_(&mut pos)).collect();
        let (nm, nf) = (i32_(&mut pos) as usize, i32_(&mut pos) as usize);
        pos += nm * nf * 4;
        let nv = i32_(&mut pos) as usize;
        let mut vocab = Vec::new();
        for _ in 0..nv {
            let n = i32_(&mut pos) as usize;
            vocab.push(b[pos..pos + n].to_vec());
            pos += n;
        }
        let mut t = HashMap::new();
        while pos < b.len() {
            let (nd, nl, ty) = (i32_(&mut pos), i32_(&mut pos) as usize, i32_(&mut pos));
            let dims: Vec<i32> = (0..nd).map(|_| i32_(&mut pos)).collect();
            let name = String::from_utf8(b[pos..pos + nl].to_vec()).unwrap();
            pos += nl;
            let n: i32 = dims.iter().product();
            let len = n as usize * if ty == 1 { 2 } else { 4 };
            t.insert(name, (dims, ty, b[pos..pos + len].to_vec()));
            pos += len;
        }
        (hp, vocab, t)
    }

    #[test]
    fn tiny_model_converts_deterministically_with_split_attention() {
        let dir = std::env::temp_dir().join(format!("zhengwu-ct2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("model.bin");
        tiny_ct2(&src);
        let vocab_txt = "a\nĠb\n\n<|endoftext|>\n<|x|>\n".as_bytes();
        let (o1, o2) = (dir.join("a.bin"), dir.join("b.bin"));
        let s1 = convert(&src, vocab_txt, &o1, false).unwrap();
        let s2 = convert(&src, vocab_txt, &o2, false).unwrap();
        let (b1, b2) = (std::fs::read(&o1).unwrap(), std::fs::read(&o2).unwrap());
        assert_eq!(b1, b2);
        assert_eq!(
            (s1.sha256.as_str(), s1.size),
            (s2.sha256.as_str(), b1.len() as u64)
        );
        assert_eq!((s1.vocab, s1.tensors), (3, 5 + 15 + 2 + 2 + 24 + 2));

        let (hp, vocab, t) = read_ggml(&b1);
        assert_eq!(hp, [5, 6, 4, 2, 1, 3, 4, 2, 1, 2, 1]);
        assert_eq!(vocab, vec![b"a".to_vec(), b" b".to_vec(), vec![]]);
        let src_bytes = std::fs::read(&src).unwrap();
        let m = Ct2Model::parse(src_bytes).unwrap();
        let rows = |name: &str, a: usize, b: usize| {
            let v = m.var(name).unwrap();
            let row = v.len / v.dims[0];
            m.data(v)[a * row..b * row].to_vec()
        };
        let f16_to_f32 = |b: &[u8]| -> Vec<u8> {
            b.chunks(2)
                .flat_map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes())
                .collect()
        };
        let sa = "encoder/layer_0/self_attention/linear_0";
        let q = &t["encoder.blocks.0.attn.query.weight"];
        assert_eq!((q.0.clone(), q.1), (vec![4, 4], 1));
        assert_eq!(q.2, rows(&format!("{sa}/weight"), 0, 4));
        assert_eq!(
            t["encoder.blocks.0.attn.key.weight"].2,
            rows(&format!("{sa}/weight"), 4, 8)
        );
        assert_eq!(
            t["encoder.blocks.0.attn.value.weight"].2,
            rows(&format!("{sa}/weight"), 8, 12)
        );
        assert_eq!(
            t["encoder.blocks.0.attn.value.bias"].2,
            f16_to_f32(&rows(&format!("{sa}/bias"), 8, 12))
        );
        assert!(!t.contains_key("encoder.blocks.0.attn.key.bias"));
        let ca = "decoder/layer_0/attention/linear_1";
        assert_eq!(
            t["decoder.blocks.0.cross_attn.key.weight"].2,
            rows(&format!("{ca}/weight"), 0, 4)
        );
        assert_eq!(
            t["decoder.blocks.0.cross_attn.value.weight"].2,
            rows(&format!("{ca}/weight"), 4, 8)
        );
        assert_eq!(
            t["decoder.blocks.0.cross_attn.value.bias"].2,
            f16_to_f32(&rows(&format!("{ca}/bias"), 4, 8))
        );
        assert_eq!(
            t["decoder.blocks.0.cross_attn.out.weight"].2,
            rows("decoder/layer_0/attention/linear_2/weight", 0, 4)
        );
        let cb = &t["encoder.conv1.bias"];
        assert_eq!((cb.0.clone(), cb.1), (vec![1, 4], 0));
        assert_eq!(t["encoder.conv1.weight"].0, vec![3, 2, 4]);
        assert_eq!(t["encoder.positional_embedding"].1, 0);
        assert_eq!(t["decoder.token_embedding.weight"].0, vec![4, 5]);
        assert_eq!(t["decoder.blocks.0.mlp_ln.bias"].1, 0);

        // a damaged file is a clear error
        std::fs::write(&src, &std::fs::read(&src).unwrap()[..100]).unwrap();
        let msg = convert(&src, vocab_txt, &o1, false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("truncated"), "{msg}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn byte_level_alphabet_roundtrips() {
        let t = unicode_to_byte();
        assert_eq!(t.len(), 256);
        assert_eq!(t[&'Ġ'], b' ');
        assert_eq!(t[&'Ċ'], b'\n');
        assert_eq!(t[&'a'], b'a');
        let v = vocabulary("a\nĠb\n\n<|endoftext|>\n<|x|>\n".as_bytes(), 5).unwrap();
        assert_eq!(v, vec![b"a".to_vec(), b" b".to_vec(), vec![]]);
    }
}
