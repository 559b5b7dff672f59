//! Device selection: CPU by default, CUDA when built with the `cuda` feature.

use candle_core::Device;

use crate::{Error, Result};

/// Parse a `--device` value: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("cpu") {
        return Ok(Device::Cpu);
    }
    let ordinal = if spec.eq_ignore_ascii_case("cuda") {
        0
    } else if let Some(n) = spec.strip_prefix("cuda:") {
        n.parse::<usize>()
            .map_err(|_| Error::Invalid(format!("bad device `{spec}`: expected cuda:N")))?
    } else {
        return Err(Error::Invalid(format!("unknown device `{spec}`: use cpu, cuda or cuda:N")));
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(Error::Invalid(format!(
            "device `{spec}` requested but this binary was built without the `cuda` feature"
        )));
    }
    Ok(Device::new_cuda(ordinal)?)
}

/// CPU features candle was compiled with, for the start-up log.
pub fn cpu_features() -> String {
    format!(
        "avx={} neon={} simd128={} f16c={} threads={}",
        candle_core::utils::with_avx(),
        candle_core::utils::with_neon(),
        candle_core::utils::with_simd128(),
        candle_core::utils::with_f16c(),
        candle_core::utils::get_num_threads()
    )
}

/// Single-thread sequential read bandwidth in GB/s: the best of three passes over 512 MiB,
/// summed with eight independent accumulators (vectorised loads, no dependency chain), i.e. how
/// fast one core can stream weights from memory at best.
pub fn read_bandwidth_gb_s() -> f64 {
    let words = 64 * 1024 * 1024; // 512 MiB of u64
    let buf: Vec<u64> = (0..words as u64).collect();
    let mut best = 0.0_f64;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let mut acc = [0u64; 8];
        for chunk in buf.chunks_exact(8) {
            for (a, w) in acc.iter_mut().zip(chunk) {
                *a = a.wrapping_add(*w);
            }
        }
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(acc);
        best = best.max((words * 8) as f64 / secs / 1e9);
    }
    best
}
