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
