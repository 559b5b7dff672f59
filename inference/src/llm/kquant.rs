//! Q4_K and Q6_K linear layers with their own CPU kernel (AVX2 + FMA), used where the CPU has it.
//!
//! The default 1.5B model is a Q4_K_M GGUF: its projections are Q4_K and Q6_K super-blocks of
//! 256 values. At load each super-block is repacked once: the f16 scales become f32 and the
//! 6-bit packed sub-block scales/mins of Q4_K become plain bytes, so the inner loop does no
//! format decoding. The 4-/6-bit quants keep ggml's bit layout (no extra memory beyond 8 bytes
//! per 256 values). Activations are quantized once per call to int8 with one f32 scale per 256
//! values and int16 sums per 16 (ggml's Q8_K), and each 32 values cost one `maddubs` and one
//! `madd` with the sub-block scale; the minimums (Q4_K) and the −32 offset (Q6_K) are folded in
//! once per super-block from the activation sums. Results match candle's K-quant × Q8_K product
//! up to float summation order.
#![allow(unsafe_code)]

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::{Error, Result};

const QK_K: usize = 256;
const Q4K_BYTES: usize = 144;
const Q6K_BYTES: usize = 210;

/// One repacked Q4_K super-block: value = d·sc[j]·q − dmin·m[j] for sub-block j of 32.
#[derive(Clone, Copy)]
#[repr(C)]
struct Q4Block {
    d: f32,
    dmin: f32,
    sc: [u8; 8],
    m: [u8; 8],
    /// ggml layout: 4 chunks of 32 bytes; low nibbles are values 64c..64c+32, high nibbles
    /// the next 32.
    qs: [u8; 128],
}

/// One repacked Q6_K super-block: value = d·sc[v/16]·(q − 32).
#[derive(Clone, Copy)]
#[repr(C)]
struct Q6Block {
    d: f32,
    sc: [i8; 16],
    /// ggml layout: low 4 bits of each value (two halves of 64 bytes).
    ql: [u8; 128],
    /// ggml layout: high 2 bits, four values per byte (two halves of 32 bytes).
    qh: [u8; 64],
}

enum Rows {
    Q4(Vec<Q4Block>),
    Q6(Vec<Q6Block>),
}

/// K-quant weights `[n, k]` (`k` a multiple of 256), repacked for the kernel.
pub struct KQuantLinear {
    n: usize,
    k: usize,
    rows: Rows,
}

/// True when this CPU can run the kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of sub-block `j` (0..8).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

impl KQuantLinear {
    /// Repack a 2-D Q4_K or Q6_K CPU tensor `[n, k]`; `None` for any other kind of tensor.
    pub fn from_qtensor(t: &QTensor) -> Result<Option<Self>> {
        let block_bytes = match t.dtype() {
            GgmlDType::Q4K => Q4K_BYTES,
            GgmlDType::Q6K => Q6K_BYTES,
            _ => return Ok(None),
        };
        if !matches!(t.device(), Device::Cpu) {
            return Ok(None);
        }
        let (n, k) = t.shape().dims2()?;
        if k % QK_K != 0 {
            return Ok(None);
        }
        let raw = t.data()?;
        let nb = n * k / QK_K;
        if raw.len() != nb * block_bytes {
            return Err(Error::Load {
                model: "k-quant".into(),
                msg: format!(
                    "{:?} tensor [{n}, {k}] has {} bytes, expected {}",
                    t.dtype(),
                    raw.len(),
                    nb * block_bytes
                ),
            });
        }
        let rows = if t.dtype() == GgmlDType::Q4K {
            Rows::Q4(raw.chunks_exact(Q4K_BYTES).map(repack_q4k).collect())
        } else {
            Rows::Q6(raw.chunks_exact(Q6K_BYTES).map(repack_q6k).collect())
        };
        Ok(Some(Self { n, k, rows }))
    }

    pub fn out_dim(&self) -> usize {
        self.n
    }

    pub fn storage_bytes(&self) -> usize {
        match &self.rows {
            Rows::Q4(b) => std::mem::size_of_val(b.as_slice()),
            Rows::Q6(b) => std::mem::size_of_val(b.as_slice()),
        }
    }

    /// Dequantized row `i` (for embedding lookups from a tied output matrix).
    pub fn row(&self, i: usize) -> Vec<f32> {
        let nb = self.k / QK_K;
        let mut out = Vec::with_capacity(self.k);
        match &self.rows {
            Rows::Q4(blocks) => {
                for b in &blocks[i * nb..(i + 1) * nb] {
                    for c in 0..4 {
                        let q = &b.qs[c * 32..(c + 1) * 32];
                        let (s0, m0) = (b.d * b.sc[2 * c] as f32, b.dmin * b.m[2 * c] as f32);
                        out.extend(q.iter().map(|v| s0 * (v & 0xF) as f32 - m0));
                        let (s1, m1) = (b.d * b.sc[2 * c + 1] as f32, b.dmin * b.m[2 * c + 1] as f32);
                        out.extend(q.iter().map(|v| s1 * (v >> 4) as f32 - m1));
                    }
                }
            }
            Rows::Q6(blocks) => {
                for b in &blocks[i * nb..(i + 1) * nb] {
                    out.extend((0..QK_K).map(|v| b.d * b.sc[v / 16] as f32 * (q6_value(b, v) as f32 - 32.0)));
                }
            }
        }
        out
    }

    /// `x[.., k] -> [.., n]`, f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let k = *dims.last().ok_or_else(|| Error::Invalid("k-quant forward on a scalar".into()))?;
        if k != self.k {
            return Err(Error::Invalid(format!("k-quant forward: input width {k}, weight width {}", self.k)));
        }
        let xs = x.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let out = self.forward_slice(&xs);
        let mut out_dims = dims;
        *out_dims.last_mut().expect("non-empty") = self.n;
        Ok(Tensor::from_vec(out, out_dims, x.device())?)
    }

    /// `xs` holds `m` rows of `k` values; returns `m` rows of `n`.
    pub fn forward_slice(&self, xs: &[f32]) -> Vec<f32> {
        assert_eq!(xs.len() % self.k, 0, "k-quant forward: input is not whole rows of {}", self.k);
        let m = xs.len() / self.k;
        let act = ActQ8K::quantize(xs, m, self.k);
        let mut out = vec![0f32; m * self.n];
        super::q8::split_rows(self.n, m, &mut out, |s, e, buf| self.matmul_rows(s, e, &act, m, buf));
        out
    }

    /// Weight rows `s..e` only: `out` is `m × (e - s)`.
    fn matmul_rows(&self, s: usize, e: usize, act: &ActQ8K, m: usize, out: &mut [f32]) {
        let nb = self.k / QK_K;
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `supported()` is checked before any KQuantLinear is built (see model.rs);
            // every row slice holds `nb` blocks and every activation row `nb` blocks (asserted).
            assert!(act.q.len() == m * self.k && act.d.len() == m * nb && act.bsums.len() == m * nb * 16);
            assert!(out.len() == m * (e - s));
            let w = e - s;
            match &self.rows {
                Rows::Q4(blocks) => tiled(
                    &blocks[s * nb..e * nb],
                    nb,
                    act,
                    m,
                    w,
                    out,
                    |r, a| unsafe { avx2::dot_q4k::<1>(r, a) },
                    |r, a| unsafe { avx2::dot_q4k::<4>(r, a) },
                ),
                Rows::Q6(blocks) => tiled(
                    &blocks[s * nb..e * nb],
                    nb,
                    act,
                    m,
                    w,
                    out,
                    |r, a| unsafe { avx2::dot_q6k::<1>(r, a) },
                    |r, a| unsafe { avx2::dot_q6k::<4>(r, a) },
                ),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (s, e, act, m, out, nb);
            unreachable!("KQuantLinear is only built when the CPU supports it");
        }
    }
}

/// Tokens per pass over the weights in prefill: their int8 activations (≤ 32 × k bytes) stay in
/// L2 while each weight row, in L1, meets all of them.
const TOKEN_TILE: usize = 32;

/// `out[t][j] = dot(row j, token t)` for `w` rows of `nb` blocks: tokens in tiles, and within a
/// tile four at a time (the kernel unpacks each weight block once for the four).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn tiled<B>(
    rows: &[B],
    nb: usize,
    act: &ActQ8K,
    m: usize,
    w: usize,
    out: &mut [f32],
    dot1: impl Fn(&[B], &[ActRow<'_>; 1]) -> [f32; 1],
    dot4: impl Fn(&[B], &[ActRow<'_>; 4]) -> [f32; 4],
) {
    for t0 in (0..m).step_by(TOKEN_TILE) {
        let t1 = (t0 + TOKEN_TILE).min(m);
        // The tile's activation rows, sliced once for all weight rows.
        let tile: Vec<ActRow<'_>> = (t0..t1).map(|t| act.row(t, nb)).collect();
        for (j, row) in rows.chunks_exact(nb).take(w).enumerate() {
            let mut quads = tile.chunks_exact(4);
            let mut t = t0;
            for q in quads.by_ref() {
                let r = dot4(row, &[q[0], q[1], q[2], q[3]]);
                for (u, v) in r.into_iter().enumerate() {
                    out[(t + u) * w + j] = v;
                }
                t += 4;
            }
            for a in quads.remainder() {
                out[t * w + j] = dot1(row, &[*a])[0];
                t += 1;
            }
        }
    }
}

fn repack_q4k(raw: &[u8]) -> Q4Block {
    let scales = &raw[4..16];
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        (sc[j], m[j]) = scale_min_k4(j, scales);
    }
    let mut qs = [0u8; 128];
    qs.copy_from_slice(&raw[16..144]);
    Q4Block { d: f16_at(raw, 0), dmin: f16_at(raw, 2), sc, m, qs }
}

fn repack_q6k(raw: &[u8]) -> Q6Block {
    let mut ql = [0u8; 128];
    ql.copy_from_slice(&raw[0..128]);
    let mut qh = [0u8; 64];
    qh.copy_from_slice(&raw[128..192]);
    let mut sc = [0i8; 16];
    for (o, b) in sc.iter_mut().zip(&raw[192..208]) {
        *o = *b as i8;
    }
    Q6Block { d: f16_at(raw, 208), sc, ql, qh }
}

/// The stored 6-bit value (0..63) of position `v` (0..256) of a Q6_K super-block.
fn q6_value(b: &Q6Block, v: usize) -> u8 {
    let (h, r) = (v / 128, v % 128);
    let (quarter, l) = (r / 32, r % 32);
    let ql = b.ql[h * 64 + (quarter % 2) * 32 + l];
    let low = if quarter < 2 { ql & 0xF } else { ql >> 4 };
    let high = (b.qh[h * 32 + l] >> (2 * quarter)) & 3;
    low | (high << 4)
}

/// Activations quantized like ggml's Q8_K: int8, one f32 scale per 256, int16 sums per 16.
struct ActQ8K {
    q: Vec<i8>,
    d: Vec<f32>,
    bsums: Vec<i16>,
}

/// One activation row as the kernel reads it.
#[derive(Clone, Copy)]
struct ActRow<'a> {
    q: &'a [i8],
    d: &'a [f32],
    bsums: &'a [i16],
}

impl ActQ8K {
    fn quantize(xs: &[f32], m: usize, k: usize) -> Self {
        let nb = m * k / QK_K;
        let mut q = vec![0i8; m * k];
        let mut d = vec![0f32; nb];
        let mut bsums = vec![0i16; nb * 16];
        for (bi, (src, dst)) in xs.chunks_exact(QK_K).zip(q.chunks_exact_mut(QK_K)).enumerate() {
            let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (o, v) in dst.iter_mut().zip(src) {
                // Round half away from zero without a libm call (|v · inv| ≤ 127).
                let x = v * inv;
                *o = (x + 0.5f32.copysign(x)) as i32 as i8;
            }
            d[bi] = scale;
            for (g, group) in dst.chunks_exact(16).enumerate() {
                bsums[bi * 16 + g] = group.iter().map(|v| *v as i16).sum();
            }
        }
        Self { q, d, bsums }
    }

    fn row(&self, t: usize, nb: usize) -> ActRow<'_> {
        ActRow {
            q: &self.q[t * nb * QK_K..(t + 1) * nb * QK_K],
            d: &self.d[t * nb..(t + 1) * nb],
            bsums: &self.bsums[t * nb * 16..(t + 1) * nb * 16],
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::simd::{hsum, load, PREFETCH_BYTES};
    use super::{ActRow, Q4Block, Q6Block, QK_K};
    use std::arch::x86_64::*;

    /// Prefetch the three cache lines `PREFETCH_BYTES` past `block` (blocks are ≤ 212 bytes; rows
    /// are contiguous, and a prefetch past the end of the weights is harmless).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn prefetch_ahead<B>(block: &B) {
        let p = (block as *const B as *const i8).wrapping_add(PREFETCH_BYTES);
        _mm_prefetch::<_MM_HINT_T0>(p);
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(128));
    }

    /// `Σ row · act[t]` for one Q4_K row and `N` tokens: the weights are unpacked once and
    /// meet every token (prefill); `N = 1` is the decode kernel.
    ///
    /// # Safety
    /// The CPU must support avx2 and fma; each `act[t]` holds as many super-blocks as `row`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4k<const N: usize>(row: &[Q4Block], act: &[ActRow<'_>; N]) -> [f32; N] {
        for a in act {
            debug_assert!(a.q.len() == row.len() * QK_K && a.d.len() == row.len() && a.bsums.len() == row.len() * 16);
        }
        let m4 = _mm256_set1_epi8(0x0F);
        // In-lane shuffles that broadcast 16-bit element e of a lane to the whole lane.
        let spread = |e: i16| _mm256_set1_epi16(((2 * e + 1) << 8) | (2 * e));
        let sh = [spread(0), spread(1), spread(2), spread(3), spread(4), spread(5), spread(6), spread(7)];
        let mut acc = [_mm256_setzero_ps(); N];
        let mut acc_min = [_mm_setzero_ps(); N];
        for (i, b) in row.iter().enumerate() {
            unsafe {
                prefetch_ahead(b);
                let q = b.qs.as_ptr();
                // Minimums: Σ_j m[j] · (activation sum of sub-block j), as 4 int32 lanes.
                let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(b.m.as_ptr() as *const __m128i));
                for t in 0..N {
                    let bs = _mm256_loadu_si256(act[t].bsums.as_ptr().add(i * 16) as *const __m256i);
                    let bs32 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
                    let pm = _mm_madd_epi16(mins, bs32);
                    let dm = _mm_set1_ps(*act[t].d.get_unchecked(i) * b.dmin);
                    acc_min[t] = _mm_fmadd_ps(dm, _mm_cvtepi32_ps(pm), acc_min[t]);
                }
                // Scales as 8 × i16 in both lanes.
                let scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(b.sc.as_ptr() as *const __m128i)));
                let mut sumi = [_mm256_setzero_si256(); N];
                for c in 0..4 {
                    let bits = load(q.add(c * 32));
                    let lo = _mm256_and_si256(bits, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                    let slo = _mm256_shuffle_epi8(scales, sh[2 * c]);
                    let shi = _mm256_shuffle_epi8(scales, sh[2 * c + 1]);
                    for t in 0..N {
                        let a = (act[t].q.as_ptr() as *const u8).add(i * QK_K + c * 64);
                        let plo = _mm256_maddubs_epi16(lo, load(a));
                        let phi = _mm256_maddubs_epi16(hi, load(a.add(32)));
                        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(plo, slo));
                        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(phi, shi));
                    }
                }
                for t in 0..N {
                    let d = _mm256_set1_ps(*act[t].d.get_unchecked(i) * b.d);
                    acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi[t]), acc[t]);
                }
            }
        }
        let mut out = [0f32; N];
        for t in 0..N {
            let m = _mm_add_ps(acc_min[t], _mm_movehl_ps(acc_min[t], acc_min[t]));
            let m = _mm_add_ss(m, _mm_shuffle_ps(m, m, 1));
            out[t] = hsum(acc[t]) - _mm_cvtss_f32(m);
        }
        out
    }

    /// Byte shuffle that spreads scale `2i` over the first 8 bytes and `2i + 1` over the last 8.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pair_shuffle(i: i8) -> __m128i {
        let (lo, hi) = (2 * i, 2 * i + 1);
        _mm_setr_epi8(lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi)
    }

    /// `Σ row · act[t]` for one Q6_K row and `N` tokens (see [`dot_q4k`]).
    ///
    /// # Safety
    /// The CPU must support avx2 and fma; each `act[t]` holds as many super-blocks as `row`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q6k<const N: usize>(row: &[Q6Block], act: &[ActRow<'_>; N]) -> [f32; N] {
        for a in act {
            debug_assert!(a.q.len() == row.len() * QK_K && a.d.len() == row.len() && a.bsums.len() == row.len() * 16);
        }
        let m4 = _mm256_set1_epi8(0x0F);
        let m2 = _mm256_set1_epi8(0x03);
        let pairs = [
            pair_shuffle(0),
            pair_shuffle(1),
            pair_shuffle(2),
            pair_shuffle(3),
            pair_shuffle(4),
            pair_shuffle(5),
            pair_shuffle(6),
            pair_shuffle(7),
        ];
        let mut acc = [_mm256_setzero_ps(); N];
        for (i, b) in row.iter().enumerate() {
            unsafe {
                prefetch_ahead(b);
                let scales = _mm_loadu_si128(b.sc.as_ptr() as *const __m128i);
                let scales16 = _mm256_cvtepi8_epi16(scales);
                let mut sumi = [_mm256_setzero_si256(); N];
                for t in 0..N {
                    // The −32 offset: 32 · Σ_g sc[g] · (sum of the 16 activations of group g).
                    let bsums = _mm256_loadu_si256(act[t].bsums.as_ptr().add(i * 16) as *const __m256i);
                    sumi[t] = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales16), 5));
                }
                for h in 0..2 {
                    let (ql, qh) = (b.ql.as_ptr().add(h * 64), b.qh.as_ptr().add(h * 32));
                    let l0 = load(ql);
                    let l1 = load(ql.add(32));
                    let hb = load(qh);
                    let v = [
                        _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4)),
                        _mm256_or_si256(
                            _mm256_and_si256(l1, m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4),
                        ),
                    ];
                    for (quarter, vq) in v.into_iter().enumerate() {
                        let s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pairs[h * 4 + quarter]));
                        for t in 0..N {
                            let a = (act[t].q.as_ptr() as *const u8).add(i * QK_K + h * 128 + quarter * 32);
                            let p = _mm256_maddubs_epi16(vq, load(a));
                            sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, s));
                        }
                    }
                }
                for t in 0..N {
                    let d = _mm256_set1_ps(*act[t].d.get_unchecked(i) * b.d);
                    acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi[t]), acc[t]);
                }
            }
        }
        let mut out = [0f32; N];
        for t in 0..N {
            out[t] = hsum(acc[t]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(n: usize, k: usize) -> Vec<f32> {
        // Uneven magnitudes per row and per sub-block so scales and minimums all matter.
        (0..n * k)
            .map(|i| {
                let (r, c) = (i / k, i % k);
                let base = ((i * 7919 % 1000) as f32 / 1000.0 - 0.4) * 0.2;
                base * (1.0 + (r % 5) as f32) * (1.0 + ((c / 32) % 3) as f32 * 0.5)
            })
            .collect()
    }

    #[test]
    fn k_quant_kernels_match_candle_dequantized_product() {
        if !supported() {
            eprintln!("no AVX2/FMA here: the K-quant kernel is not used on this CPU");
            return;
        }
        let (n, k) = (37, 512);
        let w = weights(n, k);
        let wt = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q4K, GgmlDType::Q6K] {
            let q = QTensor::quantize(&wt, dtype).unwrap();
            let lin = KQuantLinear::from_qtensor(&q).unwrap().expect("a K-quant tensor");
            // The repacked rows dequantize to exactly what candle dequantizes.
            let deq: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for j in [0, 1, 17, n - 1] {
                assert_eq!(lin.row(j), deq[j * k..(j + 1) * k].to_vec(), "{dtype:?} row {j}");
            }
            for m in [1usize, 3, 6] {
                let x: Vec<f32> = (0..m * k).map(|i| (i * 104_729 % 997) as f32 / 997.0 - 0.5).collect();
                let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap();
                let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
                let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
                let a: Vec<f32> = one.install(|| lin.forward(&xt)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let b: Vec<f32> = three.install(|| lin.forward(&xt)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                assert_eq!(a, b, "{dtype:?} m={m}: the split over threads must not change any output");
                for t in 0..m {
                    for j in 0..n {
                        let exact: f32 = (0..k).map(|i| x[t * k + i] * deq[j * k + i]).sum();
                        let got = a[t * n + j];
                        // Activation int8 rounding: relative error well under 1%.
                        let tol = 0.01 * (0..k).map(|i| (x[t * k + i] * deq[j * k + i]).abs()).sum::<f32>() + 1e-4;
                        assert!((got - exact).abs() <= tol, "{dtype:?} m={m} t={t} j={j}: {got} vs {exact}");
                    }
                }
            }
        }
    }

    #[test]
    fn other_dtypes_are_not_taken() {
        let wt = Tensor::from_vec(weights(4, 256), (4, 256), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&wt, GgmlDType::Q8_0).unwrap();
        assert!(KQuantLinear::from_qtensor(&q).unwrap().is_none());
    }
}

