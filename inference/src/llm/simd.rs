//! x86 helpers shared by the CPU kernels ([`super::q8`], [`super::kquant`]).
#![allow(unsafe_code)]

use std::arch::x86_64::*;

/// How far ahead of the block being read the decode kernels prefetch the weights, in bytes.
/// Decode streams the whole model from DRAM once per token; the hardware prefetcher alone left
/// the K-quant kernel at ~14 GB/s on one core, 2-4 KB of software prefetch gave ~16-17 GB/s
/// (measured on 61 MB of Q4_K rows, alternating distances).
pub(super) const PREFETCH_BYTES: usize = 3072;

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Unaligned load of 32 bytes.
///
/// # Safety
/// `p` must be valid for reading 32 bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn load<T>(p: *const T) -> __m256i {
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// `Σ a[i] · b[i]` over the shorter of the two, 8 lanes at a time with FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let whole = n - n % 8;
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i < whole {
        // SAFETY: i + 8 <= whole <= n, both slices hold at least n values.
        unsafe {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc);
        }
        i += 8;
    }
    let mut s = hsum(acc);
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}
