//! A Q8_0 linear layer with its own CPU kernel (AVX-512 VNNI), used where the CPU has it.
//!
//! candle's Q8_0 kernels use AVX2 `maddubs` + `madd` and convert each block's f16 scale on
//! every use. Here the weights are repacked once at load into plain int8 rows plus f32 block
//! scales, activations are quantized once per call, and each 32-value block costs one VNNI
//! `dpbusd`. Decode walks four weight rows per activation load; prefill keeps a tile of four
//! rows hot in L1 while it streams all tokens past it. Results match candle's Q8_0 x Q8_0
//! product up to float summation order.
#![allow(unsafe_code)]

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::{Error, Result};

const QK: usize = 32;
const BLOCK_BYTES: usize = 34;

/// Int8 weights `[n, k]` with one f32 scale per 32 values.
pub struct Q8Linear {
    n: usize,
    k: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
}

/// True when this CPU can run the kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Q8Linear {
    /// Repack a 2-D Q8_0 CPU tensor `[n, k]`; `None` for any other kind of tensor.
    pub fn from_qtensor(t: &QTensor) -> Result<Option<Self>> {
        if t.dtype() != GgmlDType::Q8_0 || !matches!(t.device(), Device::Cpu) {
            return Ok(None);
        }
        let (n, k) = t.shape().dims2()?;
        if k % QK != 0 {
            return Ok(None);
        }
        let raw = t.data()?;
        let nb = n * k / QK;
        if raw.len() != nb * BLOCK_BYTES {
            return Err(Error::Load {
                model: "q8".into(),
                msg: format!("Q8_0 tensor [{n}, {k}] has {} bytes, expected {}", raw.len(), nb * BLOCK_BYTES),
            });
        }
        let mut qs = Vec::with_capacity(n * k);
        let mut d = Vec::with_capacity(nb);
        for block in raw.chunks_exact(BLOCK_BYTES) {
            d.push(half::f16::from_le_bytes([block[0], block[1]]).to_f32());
            qs.extend(block[2..].iter().map(|b| *b as i8));
        }
        Ok(Some(Self { n, k, qs, d }))
    }

    pub fn out_dim(&self) -> usize {
        self.n
    }

    pub fn storage_bytes(&self) -> usize {
        self.qs.len() + self.d.len() * 4
    }

    /// Dequantized row `i` (for embedding lookups from a tied output matrix).
    pub fn row(&self, i: usize) -> Vec<f32> {
        let q = &self.qs[i * self.k..(i + 1) * self.k];
        let d = &self.d[i * self.k / QK..(i + 1) * self.k / QK];
        q.iter().enumerate().map(|(j, v)| *v as f32 * d[j / QK]).collect()
    }

    /// `x[.., k] -> [.., n]`, f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let k = *dims.last().ok_or_else(|| Error::Invalid("q8 forward on a scalar".into()))?;
        if k != self.k {
            return Err(Error::Invalid(format!("q8 forward: input width {k}, weight width {}", self.k)));
        }
        let xs = x.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let out = self.forward_slice(&xs);
        let mut out_dims = dims;
        *out_dims.last_mut().expect("non-empty") = self.n;
        Ok(Tensor::from_vec(out, out_dims, x.device())?)
    }

    /// `xs` holds `m` rows of `k` values; returns `m` rows of `n`.
    pub fn forward_slice(&self, xs: &[f32]) -> Vec<f32> {
        assert_eq!(xs.len() % self.k, 0, "q8 forward: input is not whole rows of {}", self.k);
        let m = xs.len() / self.k;
        let (aq, ad) = quantize_rows(xs, m, self.k);
        let mut out = vec![0f32; m * self.n];
        self.matmul(&aq, &ad, m, &mut out);
        out
    }

    /// `out[m × n] = a[m × k] · wᵀ`, split over rayon's threads by weight rows.
    fn matmul(&self, aq: &[i8], ad: &[f32], m: usize, out: &mut [f32]) {
        split_rows(self.n, m, out, |s, e, buf| self.matmul_rows(s, e, aq, ad, m, buf));
    }

    /// Weight rows `s..e` only: `out` is `m × (e - s)`.
    fn matmul_rows(&self, s: usize, e: usize, aq: &[i8], ad: &[f32], m: usize, out: &mut [f32]) {
        let nb = self.k / QK;
        let (qs, d) = (&self.qs[s * self.k..e * self.k], &self.d[s * nb..e * nb]);
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `supported()` is checked before any Q8Linear is built (see model.rs) and
            // the slices have the lengths the kernel expects (asserted inside).
            unsafe { vnni::matmul(e - s, self.k, qs, d, aq, ad, m, out) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (qs, d, aq, ad, m, out);
            unreachable!("Q8Linear is only built when the CPU supports it");
        }
    }
}

/// Run `rows(s, e, buf)` (which fills `buf`, `m × (e - s)`, for weight rows `s..e`) over
/// rayon's threads when there are several: each thread streams its own slice of the weights and
/// the pieces are scattered back into `out` (`m × n`). One thread writes `out` directly.
pub(super) fn split_rows(n: usize, m: usize, out: &mut [f32], rows: impl Fn(usize, usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    if threads <= 1 || n < 128 {
        return rows(0, n, out);
    }
    // Row ranges, multiples of 4 (the prefill tile), a few per thread for balance.
    let pieces = threads * 2;
    let chunk = n.div_ceil(pieces).div_ceil(4) * 4;
    let ranges: Vec<(usize, usize)> = (0..n).step_by(chunk).map(|s| (s, (s + chunk).min(n))).collect();
    let parts: Vec<Vec<f32>> = ranges
        .par_iter()
        .map(|&(s, e)| {
            let mut buf = vec![0f32; m * (e - s)];
            rows(s, e, &mut buf);
            buf
        })
        .collect();
    for (&(s, e), buf) in ranges.iter().zip(parts) {
        let w = e - s;
        for t in 0..m {
            out[t * n + s..t * n + e].copy_from_slice(&buf[t * w..(t + 1) * w]);
        }
    }
}

/// Per-row, per-32 quantization of activations to int8 (like ggml's Q8_0).
fn quantize_rows(xs: &[f32], m: usize, k: usize) -> (Vec<i8>, Vec<f32>) {
    let nb = k / QK;
    let mut q = vec![0i8; m * k];
    let mut d = vec![0f32; m * nb];
    for (bi, (src, dst)) in xs.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        for (o, v) in dst.iter_mut().zip(src) {
            *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
        }
        d[bi] = scale;
    }
    (q, d)
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::super::simd::{hsum, load, PREFETCH_BYTES};

    const QK: usize = 32;

    /// 32 int8 * 32 int8 -> 8 int32 partial sums, via |w| * sign(a, w) and one dpbusd.
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
    fn dot_block(w: __m256i, a: __m256i) -> __m256 {
        let aw = _mm256_sign_epi8(w, w);
        let sa = _mm256_sign_epi8(a, w);
        _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sa))
    }

    /// out[t, j] = sum_b wd[j,b] * ad[t,b] * <w[j, b], a[t, b]>
    ///
    /// # Safety
    /// The CPU must support avx2, fma, avx512f/vl/vnni.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
    pub unsafe fn matmul(n: usize, k: usize, wq: &[i8], wd: &[f32], aq: &[i8], ad: &[f32], m: usize, out: &mut [f32]) {
        let nb = k / QK;
        assert!(wq.len() == n * k && wd.len() == n * nb && aq.len() == m * k && ad.len() == m * nb);
        assert!(out.len() == m * n);
        let wp = wq.as_ptr();
        let ap = aq.as_ptr();
        if m == 1 {
            // Decode: walk the weights strictly in memory order (one row after another) so the
            // hardware prefetcher streams them; the single activation row stays in L1.
            for (j, o) in out.iter_mut().enumerate() {
                let w = unsafe { wp.add(j * k) };
                let d = &wd[j * nb..(j + 1) * nb];
                let (mut c0, mut c1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let mut b = 0;
                while b + 2 <= nb {
                    let off = b * QK;
                    // The weights are one stream from DRAM: prefetch ahead as the K-quant kernel does.
                    _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(off + PREFETCH_BYTES));
                    let p0 = dot_block(unsafe { load(w.add(off)) }, unsafe { load(ap.add(off)) });
                    let p1 = dot_block(unsafe { load(w.add(off + QK)) }, unsafe { load(ap.add(off + QK)) });
                    c0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d[b] * ad[b]), c0);
                    c1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(d[b + 1] * ad[b + 1]), c1);
                    b += 2;
                }
                if b < nb {
                    let off = b * QK;
                    let p0 = dot_block(unsafe { load(w.add(off)) }, unsafe { load(ap.add(off)) });
                    c0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(d[b] * ad[b]), c0);
                }
                *o = hsum(_mm256_add_ps(c0, c1));
            }
            return;
        }
        let mut j = 0;
        // Prefill: four weight rows at a time stay in L1 while every token streams past them.
        while j + 4 <= n {
            for t in 0..m {
                let (mut c0, mut c1, mut c2, mut c3) =
                    (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
                let arow = unsafe { ap.add(t * k) };
                let (w0, w1, w2, w3) =
                    unsafe { (wp.add(j * k), wp.add((j + 1) * k), wp.add((j + 2) * k), wp.add((j + 3) * k)) };
                let (d0, d1, d2, d3) = (
                    &wd[j * nb..(j + 1) * nb],
                    &wd[(j + 1) * nb..(j + 2) * nb],
                    &wd[(j + 2) * nb..(j + 3) * nb],
                    &wd[(j + 3) * nb..(j + 4) * nb],
                );
                let da = &ad[t * nb..(t + 1) * nb];
                for b in 0..nb {
                    let off = b * QK;
                    let a = unsafe { load(arow.add(off)) };
                    let s = da[b];
                    c0 = _mm256_fmadd_ps(dot_block(unsafe { load(w0.add(off)) }, a), _mm256_set1_ps(d0[b] * s), c0);
                    c1 = _mm256_fmadd_ps(dot_block(unsafe { load(w1.add(off)) }, a), _mm256_set1_ps(d1[b] * s), c1);
                    c2 = _mm256_fmadd_ps(dot_block(unsafe { load(w2.add(off)) }, a), _mm256_set1_ps(d2[b] * s), c2);
                    c3 = _mm256_fmadd_ps(dot_block(unsafe { load(w3.add(off)) }, a), _mm256_set1_ps(d3[b] * s), c3);
                }
                let o = &mut out[t * n + j..t * n + j + 4];
                o[0] = hsum(c0);
                o[1] = hsum(c1);
                o[2] = hsum(c2);
                o[3] = hsum(c3);
            }
            j += 4;
        }
        while j < n {
            for t in 0..m {
                let mut acc = _mm256_setzero_ps();
                for b in 0..nb {
                    let a = unsafe { load(ap.add(t * k + b * QK)) };
                    let w = unsafe { load(wp.add(j * k + b * QK)) };
                    let s = _mm256_set1_ps(wd[j * nb + b] * ad[t * nb + b]);
                    acc = _mm256_fmadd_ps(dot_block(w, a), s, acc);
                }
                out[t * n + j] = hsum(acc);
            }
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threaded_matmul_equals_single_threaded_and_tracks_f32() {
        if !supported() {
            eprintln!("no AVX-512 VNNI here: the Q8 kernel is not used on this CPU");
            return;
        }
        let (n, k) = (300, 256);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2).collect();
        let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&wt, GgmlDType::Q8_0).unwrap();
        let lin = Q8Linear::from_qtensor(&q).unwrap().expect("a Q8_0 tensor");
        for m in [1usize, 5] {
            let x: Vec<f32> = (0..m * k).map(|i| (i * 104_729 % 997) as f32 / 997.0 - 0.5).collect();
            let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap();
            let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
            let a: Vec<f32> = one.install(|| lin.forward(&xt)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = three.install(|| lin.forward(&xt)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a, b, "m={m}: the split over threads must not change any output");
            // And it is a matmul: close to the f32 product.
            for t in 0..m {
                for j in [0, 1, 150, 299] {
                    let exact: f32 = (0..k).map(|i| x[t * k + i] * w[j * k + i]).sum();
                    assert!((a[t * n + j] - exact).abs() < 0.05, "m={m} t={t} j={j}: {} vs {exact}", a[t * n + j]);
                }
            }
        }
    }
}
