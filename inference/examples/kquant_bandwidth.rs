//! How fast the K-quant decode kernel streams weights on this machine, against a plain read of
//! the same bytes: `cargo run -p zhengwu-inference --example kquant_bandwidth [-- MB]`.
//!
//! A random f32 matrix is quantized to Q4_K and to Q6_K (`MB` megabytes of quantized weights,
//! default 64, i.e. larger than the caches) and multiplied by one token, as in decode.
//! Single-threaded; prints the median GB/s of 15 products for each type.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use zhengwu_inference::llm::kquant::KQuantLinear;

fn main() -> anyhow::Result<()> {
    let mb: f64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(64.0);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    println!("plain read, 512 MiB: {:.1} GB/s", zhengwu_inference::device::read_bandwidth_gb_s());
    let k = 1536;
    for (dtype, bytes_per_256) in [(GgmlDType::Q4K, 144.0), (GgmlDType::Q6K, 210.0)] {
        let n = ((mb * 1e6) / (k as f64 / 256.0 * bytes_per_256)) as usize;
        let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
        let q = QTensor::quantize(&w, dtype)?;
        let lin = KQuantLinear::from_qtensor(&q)?.ok_or_else(|| anyhow::anyhow!("kernel unavailable on this CPU"))?;
        drop(w);
        let x: Vec<f32> = (0..k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let mut times: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(pool.install(|| lin.forward_slice(&x)));
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        let gb = lin.storage_bytes() as f64 / 1e9;
        println!("{dtype:?} [{n} x {k}], {:.1} MB: {:.1} GB/s (median of 15)", gb * 1e3, gb / times[7]);
    }
    Ok(())
}
