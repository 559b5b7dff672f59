//! The E5S1 container: a bounds-checked little-endian reader over the file image, Q4_0
//! dequantisation and the tensor directory (layout in the parent module's docs).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result};

pub(super) const MAGIC: &[u8; 4] = b"E5S1";
pub(super) const VERSION: u32 = 1;
/// Q4_0 block size (weights per block).
pub(super) const QK: usize = 32;
/// Bytes per Q4_0 block: f16 scale + 16 bytes of nibbles.
pub(super) const Q4_BLOCK_BYTES: usize = 18;
pub(super) const DTYPE_F32: u8 = 0;
pub(super) const DTYPE_Q4_0: u8 = 1;

pub(super) fn corrupt(path: &Path, msg: impl Into<String>) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}


/// Bounds-checked little-endian reader over the file image.
pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    pub(super) path: &'a Path,
}

impl<'a> Reader<'a> {
    pub(super) fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => Err(corrupt(
                self.path,
                format!(
                    "truncated or corrupt: {what} needs {n} bytes at offset {} but the file has {} bytes",
                    self.pos,
                    self.data.len()
                ),
            )),
        }
    }

    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(super) fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(super) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(super) fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub(super) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(super) fn f32(&mut self, what: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }

    /// An `i32` that must lie in `min..=max`.
    pub(super) fn count(&mut self, what: &str, min: usize, max: usize) -> Result<usize> {
        let at = self.pos;
        let v = self.i32(what)?;
        match usize::try_from(v) {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(corrupt(
                self.path,
                format!("corrupt header: {what} = {v} at offset {at}, expected {min}..={max}"),
            )),
        }
    }
}

pub(super) fn read_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Dequantise whole Q4_0 blocks into `out` (`out.len() == 32 × blocks`).
pub(super) fn dequant_q4_0(blocks: &[u8], out: &mut [f32]) {
    for (b, o) in blocks
        .chunks_exact(Q4_BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
        for (j, &q) in b[2..].iter().enumerate() {
            o[j] = (i32::from(q & 0x0f) - 8) as f32 * d;
            o[j + 16] = (i32::from(q >> 4) - 8) as f32 * d;
        }
    }
}

/// [`dequant_q4_0`] split over the available cores (the word-embedding table is 96M weights).
pub(super) fn dequant_q4_0_par(blocks: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .clamp(1, 8);
    let nblocks = n / QK;
    let per = nblocks.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (bi, oi) in blocks
            .chunks(per * Q4_BLOCK_BYTES)
            .zip(out.chunks_mut(per * QK))
        {
            s.spawn(move || dequant_q4_0(bi, oi));
        }
    });
    out
}

/// One tensor directory entry.
pub(super) struct Entry {
    pub(super) dtype: u8,
    pub(super) n: usize,
    pub(super) off: usize,
    pub(super) nbytes: usize,
}

/// The tensor directory plus the file image, producing candle tensors by name.
pub(super) struct Tensors<'a> {
    pub(super) data: &'a [u8],
    pub(super) path: &'a Path,
    pub(super) dir: HashMap<String, Entry>,
    pub(super) device: &'a Device,
}

impl Tensors<'_> {
    /// Tensor `name`, which must hold `rows × cols` weights; Q4_0 tensors are dequantised to f32.
    pub(super) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let e = self.dir.get(name).ok_or_else(|| {
            corrupt(
                self.path,
                format!("tensor `{name}` is missing from the directory"),
            )
        })?;
        let n: usize = shape.iter().product();
        if e.n != n {
            return Err(corrupt(
                self.path,
                format!(
                    "tensor `{name}` has {} elements, expected {n} (shape {shape:?})",
                    e.n
                ),
            ));
        }
        let bytes = &self.data[e.off..e.off + e.nbytes];
        let values = match e.dtype {
            DTYPE_F32 => read_f32s(bytes),
            DTYPE_Q4_0 => {
                let cols = shape.last().copied().unwrap_or(0);
                if cols % QK != 0 {
                    return Err(corrupt(
                        self.path,
                        format!("tensor `{name}` is Q4_0 but its rows ({cols}) are not a multiple of {QK}"),
                    ));
                }
                dequant_q4_0_par(bytes, n)
            }
            other => {
                return Err(corrupt(
                    self.path,
                    format!("tensor `{name}` has unknown dtype {other}"),
                ))
            }
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(corrupt(
                self.path,
                format!("tensor `{name}` has a non-finite value at element {i}"),
            ));
        }
        Ok(Tensor::from_vec(values, shape, self.device)?)
    }
}
