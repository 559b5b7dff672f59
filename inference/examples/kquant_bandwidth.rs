//! How fast the K-quant decode kernels stream weights on this machine, against a plain read:
//! `cargo run -p zhengwu-inference --example kquant_bandwidth [-- ROUNDS]`.
//!
//! Random f32 matrices of the 1.5B model's shapes (gate/up `[8960, 1536]`, down `[1536, 8960]`,
//! the output layer `[151936, 1536]`) are quantized to Q4_K and Q6_K and multiplied by one
//! token, as in decode, on one thread, in rounds (the 193 MB output matrix flushes the caches
//! between the others); the median GB/s over the rounds is printed.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use zhengwu_inference::llm::kquant::KQuantLinear;

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(9);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    println!("plain read, 512 MiB: {:.1} GB/s", zhengwu_inference::device::read_bandwidth_gb_s());
    let mut cases = Vec::new();
    for (name, n, k, dtype) in [
        ("gate/up Q4_K", 8960, 1536, GgmlDType::Q4K),
        ("down Q4_K", 1536, 8960, GgmlDType::Q4K),
        ("down Q6_K", 1536, 8960, GgmlDType::Q6K),
        ("output Q6_K", 151_936, 1536, GgmlDType::Q6K),
    ] {
        let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
        let q = QTensor::quantize(&w, dtype)?;
        let lin = KQuantLinear::from_qtensor(&q)?.ok_or_else(|| anyhow::anyhow!("kernel unavailable on this CPU"))?;
        cases.push((name, k, lin));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (_, k, lin)) in cases.iter().enumerate() {
            let x: Vec<f32> = (0..*k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let t = Instant::now();
            std::hint::black_box(pool.install(|| lin.forward_slice(&x)));
            times[i].push(t.elapsed().as_secs_f64());
        }
    }
    for ((name, _, lin), mut v) in cases.iter().zip(times) {
        v.sort_by(|a, b| a.total_cmp(b));
        let gb = lin.storage_bytes() as f64 / 1e9;
        println!("{name:<14} {:>6.1} MB: {:.1} GB/s", gb * 1e3, gb / v[v.len() / 2]);
    }
    Ok(())
}
