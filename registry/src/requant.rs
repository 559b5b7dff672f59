//! GGUF post-processing: re-quantize the legacy low-bit block types (Q4_0/Q4_1/Q5_0/Q5_1),
//! which candle's CPU kernels run slowly, to Q8_0. F32/F16 tensors (norms, biases), Q8_0 and
//! K-quant tensors are copied unchanged. All metadata (architecture, tokenizer, chat template)
//! is kept; only `general.file_type` is updated to "mostly Q8_0".
//!
//! The output is deterministic: metadata keys are written in sorted order, tensors in their
//! original file order, and candle's Q8_0 quantizer is a plain round-to-nearest per block.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

use super::verify::{count_bar, HashingWriter};
use crate::error::{Error, Result};

/// llama.cpp's `LLAMA_FTYPE_MOSTLY_Q8_0`.
const FTYPE_MOSTLY_Q8_0: u32 = 7;

/// Target types `requantize.to` may name.
pub(crate) fn parse_target(to: &str) -> Option<GgmlDType> {
    match to.to_ascii_lowercase().as_str() {
        "q8_0" => Some(GgmlDType::Q8_0),
        _ => None,
    }
}

/// The legacy low-bit block types that get re-quantized.
pub(crate) fn is_legacy_low_bit(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
    )
}

/// What a requantize run did.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequantStats {
    /// dtype -> count in the source file.
    pub before: BTreeMap<String, usize>,
    /// dtype -> count in the written file.
    pub after: BTreeMap<String, usize>,
    pub sha256: String,
    pub size: u64,
}

fn dtype_name(d: GgmlDType) -> String {
    format!("{d:?}")
}

/// Read the GGUF at `src`, re-quantize legacy tensors to `to`, write the result to `dst`
/// (created/truncated). Returns counts and the sha256/size of what was written.
pub(crate) fn requantize(
    src: &Path,
    dst: &Path,
    to: GgmlDType,
    progress: bool,
) -> Result<RequantStats> {
    let load = |msg: String| Error::Load {
        model: src.display().to_string(),
        msg,
    };
    let f = fs_err::File::open(src).map_err(|e| Error::io("opening GGUF to requantize", e))?;
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let content = gguf_file::Content::read(&mut reader)
        .map_err(|e| load(format!("not a readable GGUF file: {e}")))?;

    let mut infos: Vec<(&String, &gguf_file::TensorInfo)> = content.tensor_infos.iter().collect();
    infos.sort_by(|a, b| a.1.offset.cmp(&b.1.offset).then_with(|| a.0.cmp(b.0)));

    let mut stats = RequantStats::default();
    let bar = count_bar(progress, infos.len() as u64, "requantize");
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(infos.len());
    for (name, info) in &infos {
        *stats.before.entry(dtype_name(info.ggml_dtype)).or_default() += 1;
        let qt = info
            .read(&mut reader, content.tensor_data_offset, &Device::Cpu)
            .map_err(|e| load(format!("reading tensor `{name}`: {e}")))?;
        let qt = if is_legacy_low_bit(info.ggml_dtype) {
            let block = to.block_size();
            let last = qt.shape().dims().last().copied().unwrap_or(0);
            if last % block != 0 {
                tracing::warn!(
                    "tensor `{name}` ({:?}): last dim {last} not a multiple of {block}; kept",
                    info.ggml_dtype
                );
                qt
            } else {
                let t = qt.dequantize(&Device::Cpu)?;
                QTensor::quantize(&t, to)
                    .map_err(|e| load(format!("re-quantizing `{name}`: {e}")))?
            }
        } else {
            qt
        };
        *stats.after.entry(dtype_name(qt.dtype())).or_default() += 1;
        tensors.push(((*name).clone(), qt));
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Metadata: everything, sorted by key for a deterministic output. candle's writer always
    // aligns tensor data to 32 bytes, so the alignment key must agree with that.
    let mut metadata: BTreeMap<String, gguf_file::Value> = content.metadata.into_iter().collect();
    if to == GgmlDType::Q8_0 && metadata.contains_key("general.file_type") {
        metadata.insert(
            "general.file_type".into(),
            gguf_file::Value::U32(FTYPE_MOSTLY_Q8_0),
        );
    }
    if metadata.contains_key("general.alignment") {
        metadata.insert(
            "general.alignment".into(),
            gguf_file::Value::U32(gguf_file::DEFAULT_ALIGNMENT as u32),
        );
    }
    let md: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();

    let out = fs_err::File::create(dst).map_err(|e| Error::io("writing requantized GGUF", e))?;
    let mut w = HashingWriter::new(
        BufWriter::with_capacity(1 << 20, out),
        indicatif::ProgressBar::hidden(),
    );
    gguf_file::write(&mut w, &md, &ts)
        .map_err(|e| load(format!("writing {}: {e}", dst.display())))?;
    let (buf, sha, size) = w
        .finish()
        .map_err(|e| Error::io(format!("writing {}", dst.display()), e))?;
    let file = buf
        .into_inner()
        .map_err(|e| Error::io(format!("writing {}", dst.display()), e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io("syncing requantized file", e))?;
    stats.sha256 = sha;
    stats.size = size;
    Ok(stats)
}
